"""Action delivery: bounded queues, retries with back-off, one error document per firing, drops counted."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from thingcore.broker.message import Message
from thingcore.rules.actions.base import Action, ActionError, ActionRunner, Firing, RetryPolicy


class Destination(Action):
    """A destination the test controls: fails the first `failures` tries (retryable or not), can hold."""

    kind = "fake"
    failed_action = "FakeAction"

    def __init__(self, failures: int = 0, retryable: bool = True, concurrency: int = 1, inline: bool = False) -> None:
        self.inline = inline
        self.on_execute: Any = None
        self.failures = failures
        self.retryable = retryable
        self.concurrency = concurrency
        self.tries: list[Any] = []
        self.delivered: list[Any] = []
        self.gate: asyncio.Event | None = None
        self.in_flight = 0
        self.max_in_flight = 0

    def resource(self, firing: Firing) -> str:
        return "fake://dest"

    def execute(self, firing: Firing) -> Any:
        self.tries.append(firing.output)
        if self.on_execute is not None:
            self.on_execute(firing)
        if len(self.tries) <= self.failures:
            raise ActionError(f"try {len(self.tries)} failed", retryable=self.retryable)
        if self.gate is None:
            self.delivered.append(firing.output)
            return None
        return self._held(firing)

    async def _held(self, firing: Firing) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await self.gate.wait()
        self.in_flight -= 1
        self.delivered.append(firing.output)


def firing(output: Any, pending: int = 1, errors: list | None = None) -> Firing:
    msg = Message("in/topic", b'{"v": 1}', client_id="dev-1")
    on_failed = errors.append if errors is not None else None
    return Firing("rule1", msg, None, output, pending, on_failed)


async def drained(*runners: ActionRunner) -> None:
    for _ in range(500):
        if all(not r.queue and not r.active and not r._timers for r in runners):
            return
        await asyncio.sleep(0.005)
    raise AssertionError("runners did not drain")


async def test_retry_then_success() -> None:
    dest = Destination(failures=2)
    runner = ActionRunner(dest, queue_size=10, retry=RetryPolicy(3, 0.001))
    errors: list[Firing] = []
    runner.submit(firing("a", errors=errors))
    await drained(runner)
    assert dest.tries == ["a", "a", "a"]
    assert dest.delivered == ["a"]
    m = runner.metrics
    assert (m.fired, m.succeeded, m.retried, m.failed) == (1, 1, 2, 0)
    assert errors == []


async def test_gives_up_after_max_attempts_and_reports_once() -> None:
    dest = Destination(failures=99)
    runner = ActionRunner(dest, queue_size=10, retry=RetryPolicy(3, 0.001))
    errors: list[Firing] = []
    runner.submit(firing("a", errors=errors))
    await drained(runner)
    assert len(dest.tries) == 3
    assert runner.metrics.failed == 1
    [failed] = errors
    doc = failed.error_document("in/topic")
    assert doc["ruleName"] == "rule1" and doc["clientId"] == "dev-1" and doc["topic"] == "in/topic"
    assert base64.b64decode(doc["base64OriginalPayload"]) == b'{"v": 1}'
    assert doc["failures"] == [{"failedAction": "FakeAction", "failedResource": "fake://dest",
                                "errorMessage": "try 3 failed (after 3 tries)"}]


async def test_permanent_error_is_not_retried() -> None:
    dest = Destination(failures=99, retryable=False)
    runner = ActionRunner(dest, queue_size=10, retry=RetryPolicy(5, 0.001))
    errors: list[Firing] = []
    runner.submit(firing("a", errors=errors))
    await drained(runner)
    assert len(dest.tries) == 1 and len(errors) == 1


async def test_one_error_document_for_all_failed_actions_of_a_firing() -> None:
    bad1, good, bad2 = Destination(99, False), Destination(), Destination(99, False)
    runners = [ActionRunner(d, queue_size=10, retry=RetryPolicy(1, 0)) for d in (bad1, good, bad2)]
    errors: list[Firing] = []
    f = firing("x", pending=3, errors=errors)
    for r in runners:
        r.submit(f)
    await drained(*runners)
    assert len(errors) == 1
    assert len(errors[0].failures) == 2
    assert good.delivered == ["x"]


async def test_full_queue_drops_and_reports_without_blocking() -> None:
    dest = Destination()
    dest.gate = asyncio.Event()
    runner = ActionRunner(dest, queue_size=2, retry=RetryPolicy(1, 0))
    errors: list[Firing] = []
    for i in range(5):
        runner.submit(firing(i, errors=errors))
    # nothing ran yet: two queued, three refused at once
    assert runner.metrics.dropped == 3 and len(errors) == 3
    assert all("queue is full" in e.failures[0]["errorMessage"] for e in errors)
    dest.gate.set()
    await drained(runner)
    assert dest.delivered == [0, 1]


async def test_a_held_destination_uses_up_to_its_concurrency() -> None:
    dest = Destination(concurrency=3)
    dest.gate = asyncio.Event()
    runner = ActionRunner(dest, queue_size=100, retry=RetryPolicy(1, 0))
    for i in range(10):
        runner.submit(firing(i))
        await asyncio.sleep(0)
    for _ in range(100):
        if dest.in_flight == 3:
            break
        await asyncio.sleep(0.001)
    assert dest.in_flight == 3 and runner.queued() == 7
    dest.gate.set()
    await drained(runner)
    assert sorted(dest.delivered) == list(range(10))
    assert dest.max_in_flight == 3


async def test_a_burst_of_synchronous_deliveries_is_drained_by_one_worker() -> None:
    dest = Destination(concurrency=16)
    runner = ActionRunner(dest, queue_size=1000, retry=RetryPolicy(1, 0))
    for i in range(100):
        runner.submit(firing(i))
    assert len(runner._tasks) == 1
    await drained(runner)
    assert dest.delivered == list(range(100))  # in order


async def test_close_cancels_pending_retries() -> None:
    dest = Destination(failures=99)
    runner = ActionRunner(dest, queue_size=10, retry=RetryPolicy(5, 10.0))
    errors: list[Firing] = []
    runner.submit(firing("a", errors=errors))
    for _ in range(100):
        if runner._timers:
            break
        await asyncio.sleep(0.001)
    assert runner._timers
    await runner.close()
    assert not runner._timers and len(dest.tries) == 1


@pytest.mark.parametrize("attempt,low,high", [(1, 0.075, 0.125), (2, 0.15, 0.25), (3, 0.3, 0.5), (20, 22.5, 37.5)])
def test_backoff_doubles_with_jitter_and_a_cap(attempt: int, low: float, high: float) -> None:
    policy = RetryPolicy(max_attempts=30, first_delay=0.1, max_delay=30.0)
    for _ in range(50):
        assert low <= policy.delay(attempt) <= high


async def test_inline_delivery_happens_in_submit() -> None:
    dest = Destination(inline=True)
    runner = ActionRunner(dest, queue_size=10, retry=RetryPolicy(1, 0))
    runner.submit(firing("now"))
    assert dest.delivered == ["now"] and not runner._tasks  # no worker, no loop turn needed
    assert runner.metrics.succeeded == 1


async def test_a_rule_loop_is_queued_not_recursed() -> None:
    dest = Destination(inline=True)
    runner = ActionRunner(dest, queue_size=100, retry=RetryPolicy(1, 0))
    # every delivery triggers another one (a republish to a topic its own rule reads), ten times
    dest.on_execute = lambda f: runner.submit(firing(f.output + 1)) if f.output < 10 else None
    runner.submit(firing(0))
    assert dest.delivered == [0]  # the next one waits in the queue: no recursion
    await drained(runner)
    assert dest.delivered == list(range(11))


async def test_inline_delivery_that_must_wait_is_finished_by_a_worker() -> None:
    dest = Destination(inline=True)
    dest.gate = asyncio.Event()
    runner = ActionRunner(dest, queue_size=10, retry=RetryPolicy(1, 0))
    runner.submit(firing("a"))
    runner.submit(firing("b"))  # queued behind the one in flight: order is kept
    assert dest.tries == ["a"] and runner.queued() == 1
    dest.gate.set()
    await drained(runner)
    assert dest.delivered == ["a", "b"]


@pytest.mark.parametrize("text", [
    "out/${topic()}", "out/${topic(2)}/x", "${topic(1)}-${TOPIC( 3 )}", "a/${topic(9)}", "a/${topic(0)}",
    "${topic(02)}", "plain/${topic(1)}/${topic(2)}/${topic(3)}",
])
@pytest.mark.parametrize("topic", ["sensors/kitchen/temp", "a", "x//y/", ""])
def test_topic_templates_render_like_the_sql_evaluator(text: str, topic: str) -> None:
    from thingcore.rules.actions.base import ActionEnv, TemplateField, topic_only_parts
    from thingcore.rules.sql import MessageContext, compile_template

    field = TemplateField(text, ActionEnv(None, None, compile_template, sql_version="2016-03-23"), "t")
    assert field.topic_parts is not None
    f = Firing("r", Message("t", b"{}"), MessageContext(topic, b"{}"), {}, 1, None)
    assert field.render(f) == field.template.render(f.ctx, {})
    assert topic_only_parts("out/${topic(2)}/${clientid()}") is None
    assert topic_only_parts("$$aws/${topic(2)}") is None


def test_a_firing_without_context_builds_it_from_the_message_when_an_action_asks() -> None:
    """The engine passes no context for statements that do not read it; templates and error documents
    still see the message: client id, topic() as the rule saw it, payload fields, one trace id."""
    import re

    from thingcore.rules.actions.base import ActionEnv, TemplateField
    from thingcore.rules.sql import compile_template

    msg = Message("$aws/rules/r1/dev/7/t", b'{"temp": 3}', client_id="dev-1", principal="p1")
    f = Firing("r1", msg, None, {"temp": 3}, 1, None, "dev/7/t", 42, None, {"temp": 3})
    field = TemplateField("${clientid()}|${topic(2)}|${temp}|${principal()}|${traceid()}",
                          ActionEnv(None, None, compile_template, sql_version="2016-03-23"), "t")
    client, level, temp, principal, trace = field.render(f).split("|")
    assert (client, level, temp, principal) == ("dev-1", "7", "3", "p1")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", trace)
    assert trace == f.trace_id == f.error_document(msg.topic)["cloudwatchTraceId"]
    assert f.ctx is f.ctx  # built once
    other = Firing("r1", msg, None, {}, 1, None, "dev/7/t", 43, None, None)
    assert other.trace_id != trace


@pytest.mark.parametrize(("sql", "uses"), [
    ("SELECT * FROM 'a/+' WHERE temp > 1", False),
    ("SELECT temp, upper(name) AS n FROM 'a/+'", False),
    ("SELECT topic(2) AS t FROM 'a/+'", True),
    ("SELECT * FROM 'a/+' WHERE clientid() = 'x'", True),
    ("SELECT encode(*, 'base64') AS raw FROM 'a/+'", True),
    ("SELECT timestamp() AS at FROM 'a/+'", True),
    ("SET @x = temp SELECT @x AS y FROM 'a/+'", True),
    ("SELECT (SELECT v FROM items WHERE v > traceid()) AS n FROM 'a/+'", True),
])
def test_the_compiler_knows_which_statements_read_the_message_context(sql: str, uses: bool) -> None:
    from thingcore.rules.sql import MessageContext, compile_sql

    query = compile_sql(sql)
    assert query.uses_context is uses
    if not uses:  # and such a statement evaluates without one
        ctx = MessageContext("a/1", b'{"temp": 5, "name": "n"}')
        assert query.run(None, ctx.document()) == query.evaluate(ctx).output
