"""The rules outbox: entries stored losslessly, pages written and ended in batches, replay into real runners.

Storage is a real SQLite file; the action runners and compiled rules are real; only the destinations
are the test's own."""

from __future__ import annotations

import asyncio
import math
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from thingcore.broker.message import Message
from thingcore.config import load_settings
from thingcore.rules.actions.base import Action, ActionError, Firing
from thingcore.rules.engine import CompiledRule
from thingcore.rules.metrics import EngineMetrics
from thingcore.rules.outbox import (
    DONE,
    NAMESPACE,
    Outbox,
    decode_entry,
    decode_page,
    encode_entry,
    encode_page,
    fingerprint,
    replay,
    tag,
    untag,
)
from thingcore.rules.sql.context import MessageContext
from thingcore.rules.sql.values import UNDEFINED
from thingcore.storage import SQLiteStorage


class Destination(Action):
    """A destination the test controls: fails the first ``failures`` tries, or holds deliveries on a gate."""

    kind = "fake"
    failed_action = "FakeAction"

    def __init__(self, failures: int = 0, retryable: bool = True) -> None:
        self.failures = failures
        self.retryable = retryable
        self.tries: list[Any] = []
        self.delivered: list[Any] = []
        self.gate: asyncio.Event | None = None

    def resource(self, firing: Firing) -> str:
        return "fake://dest"

    def execute(self, firing: Firing) -> Any:
        self.tries.append(firing.output)
        if len(self.tries) <= self.failures:
            raise ActionError(f"try {len(self.tries)} failed", retryable=self.retryable)
        if self.gate is None:
            self.delivered.append(firing.output)
            return None
        return self._held(firing)

    async def _held(self, firing: Firing) -> None:
        await self.gate.wait()
        self.delivered.append(firing.output)

PROPS = {"user_property": [("unit", "°C"), ("unit", "K")], "correlation_data": b"\x00\xffid",
         "content_type": "application/json", "response_topic": "reply/here", "payload_format_indicator": 1}


def message(payload: bytes = b'{"t": 21.5}', **kw: Any) -> Message:
    return Message("devices/d1/temp", payload, 1, False, dict(PROPS), "dev-1", "cert/abc", "10.0.0.7:51000",
                   1732630000.123456, **kw)


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1 is not 1.0, bytes are not str)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b if a is not UNDEFINED else b is UNDEFINED


OUTPUTS = [
    {"t": 21.5, "n": 3, "whole": 10.0, "neg": -0.0, "big": 1e300, "ok": True, "none": None},
    {"text": "grüße ✓ 𝄞 日本", "nested": {"a": [1, [2, {"b": "c"}], {}], "e": []}},
    [1, "two", 3.0, None, False],
    "a string", 42, 2.5, None, True,
    b"\x00\x01binary\xff",  # binary SELECT * output that is not the payload
    {"raw": b"\xde\xad", "list": [b"x", 1]},  # bytes inside JSON (decode(...))
    UNDEFINED, {"u": UNDEFINED, "l": [UNDEFINED]},
    2**64 - 1, -(2**63), 2**70, {"big": -(10**30)},
    {"inf": math.inf, "nan": math.nan},
    Decimal("1.10"),
    {"$b": "looks like a tag", "$o": {"$u": 0}},  # objects whose keys look like tags stay objects
    "lone \udc80 surrogate",
]


@pytest.mark.parametrize("output", OUTPUTS, ids=range(len(OUTPUTS)))
def test_an_entry_round_trips_its_output_and_message(output: Any) -> None:
    msg = message()
    msg.expires_at = msg.received_at + 60
    entry = decode_entry(encode_entry("rule_1", "fp0", msg, "temp/as/seen", "trace-1", output))
    assert same(entry.output, output)
    assert (entry.rule, entry.fingerprint, entry.topic, entry.trace_id) == ("rule_1", "fp0", "temp/as/seen", "trace-1")
    got = entry.message
    assert (got.topic, got.payload, got.qos, got.client_id, got.principal, got.source_address) == \
        (msg.topic, msg.payload, 1, "dev-1", "cert/abc", "10.0.0.7:51000")
    assert got.received_at == msg.received_at and got.expires_at == msg.expires_at
    assert got.properties == PROPS
    assert got.properties["user_property"] == [("unit", "°C"), ("unit", "K")]  # tuples again


def test_a_binary_select_star_output_is_the_payload_and_stored_once() -> None:
    payload = bytes(range(256)) * 40
    msg = message(payload)
    value = encode_entry("r", "f", msg, msg.topic, "t", payload)
    assert len(value) < len(payload) + 600
    assert decode_entry(value).output == payload


@pytest.mark.parametrize("version", ["2015-10-08", "2016-03-23"])
async def test_a_select_star_document_is_read_back_from_the_payload(tmp_path: Path, version: str) -> None:
    from thingcore.rules.sql import compile_sql

    payload = b'{"text": "gr\xc3\xbc\xc3\x9fe", "n": [1, 2.5, {"deep": null}], "pad": "' + b"x" * 500 + b'"}'
    msg = message(payload)
    ctx = MessageContext(msg.topic, msg.payload, trace_id="t")
    output = compile_sql("SELECT * FROM 'devices/+/temp'", version=version).evaluate(ctx).output
    assert output is ctx.document()  # nothing to normalize in 2016-03-23 either: the document itself
    storage = SQLiteStorage(tmp_path / "db")
    await storage.open()
    try:
        outbox = Outbox(storage)
        outbox.add(Firing("r", msg, ctx, output, 1, None), "fp", "0")
        await outbox.commit_future()
        [(_key, page)] = await storage.list_documents(NAMESPACE)
    finally:
        await storage.close()
    _rows, [value] = decode_page(page)
    assert len(value) < len(encode_entry("r", "fp", msg, msg.topic, "t", output)) - 500  # not stored twice
    assert same(decode_entry(value).output, output)


def test_plain_json_output_is_written_as_json_and_tags_only_when_needed() -> None:
    head_of = lambda v: orjson.loads(v[4:4 + int.from_bytes(v[:4], "big")])  # noqa: E731
    plain = head_of(encode_entry("r", "f", message(), "t", "i", {"a": [1, 2]}))
    assert plain["o"] == {"a": [1, 2]} and "ot" not in plain
    tagged = head_of(encode_entry("r", "f", message(), "t", "i", {"a": b"\x01"}))
    assert tagged["ot"] == {"$o": {"a": {"$b": "AQ=="}}}
    assert same(untag(tag({"$o": 1})), {"$o": 1})


def test_what_cannot_be_stored_is_refused() -> None:
    with pytest.raises(TypeError):
        encode_entry("r", "f", message(), "t", "i", {1: "a non-string key"})
    with pytest.raises(TypeError):
        encode_entry("r", "f", message(), "t", "i", {"set": {1, 2}})


def test_a_page_round_trips_and_shares_the_entries_of_one_firing() -> None:
    a, b = encode_entry("r", "f", message(), "t", "i", {"n": 1}), encode_entry("r", "f", message(), "t", "i", {"n": 2})
    value = encode_page({0: a, 1: a, 3: b}, {0: "0", 1: "1", 3: "error"})
    rows, entries = decode_page(value)
    assert rows == [(0, "0", 0), (1, "1", 0), (3, "error", 1)]
    assert entries == [a, b]
    with pytest.raises(ValueError):
        decode_page(value[:-3])  # a truncated page is refused, not half read
    with pytest.raises(ValueError):
        decode_page(encode_page({5000: a}, {5000: "0"}))  # an index a handle cannot hold


def test_the_fingerprint_ignores_description_and_disabled() -> None:
    rule = {"sql": "SELECT * FROM 'a'", "awsIotSqlVersion": "2016-03-23", "actions": [{"http": {"url": "x"}}]}
    assert fingerprint(rule) == fingerprint({**rule, "description": "new", "ruleDisabled": True})
    assert fingerprint(rule) != fingerprint({**rule, "actions": [{"http": {"url": "y"}}]})
    assert fingerprint(rule) != fingerprint({**rule, "errorAction": {"http": {"url": "x"}}})


# -- the outbox on a real SQLite file ---------------------------------------------------------------------


@pytest.fixture
async def storage(tmp_path: Path):
    s = SQLiteStorage(tmp_path / "thingcore.db")
    await s.open()
    yield s
    await s.close()


def fake_firing(output: Any, pending: int = 1) -> Firing:
    msg = message()
    ctx = MessageContext(msg.topic, msg.payload, trace_id="trace")
    return Firing("rule1", msg, ctx, output, pending, None)


async def documents(storage: SQLiteStorage) -> dict[str, bytes]:
    return dict(await storage.list_documents(NAMESPACE))


async def test_entries_are_written_as_one_page_and_ended_in_its_done_list(storage: SQLiteStorage) -> None:
    outbox = Outbox(storage)
    firings = [fake_firing({"n": i}, pending=2) for i in range(3)]
    handles = [outbox.add(f, "fp", action) for f in firings for action in ("0", "1")]
    assert outbox.pending == 6
    outbox.delete(handles[0])  # over before the page was written: never written
    commit = outbox.commit_future()
    await commit
    docs = await documents(storage)
    [(key, value)] = docs.items()
    rows, entries = decode_page(value)
    assert [(i, a) for i, a, _n in rows] == [(1, "1"), (2, "0"), (3, "1"), (4, "0"), (5, "1")]
    assert len(entries) == 3  # one per firing
    assert [decode_entry(e).output for e in entries] == [{"n": 0}, {"n": 1}, {"n": 2}]

    outbox.delete(handles[2])
    outbox.delete(handles[5])
    await outbox.flush()
    assert orjson.loads((await documents(storage))[key + DONE]) == [2, 5]
    for h in (handles[1], handles[3], handles[4]):
        outbox.delete(h)
    await outbox.flush()
    assert await documents(storage) == {}  # page and done list go together
    assert outbox.pending == 0 and not outbox._pages  # nothing kept in memory either


async def test_without_an_acknowledgement_waiting_a_batch_waits_for_the_window(storage: SQLiteStorage) -> None:
    outbox = Outbox(storage)
    before = storage.stats.operations
    handle = outbox.add(fake_firing("quick"), "fp", "0")
    await asyncio.sleep(0)
    outbox.delete(handle)  # delivered within the window
    await asyncio.sleep(0.05)
    await storage.flush()
    assert storage.stats.operations == before  # nothing ever reached the disk
    outbox.add(fake_firing("slow"), "fp", "0")
    await asyncio.sleep(0.05)  # no one asked for the commit: the window flushed it
    assert len(await documents(storage)) == 1


async def test_an_entry_that_cannot_be_encoded_is_counted_and_the_delivery_goes_on(storage: SQLiteStorage) -> None:
    outbox = Outbox(storage)
    assert outbox.add(fake_firing({1: "int key"}), "fp", "0") is None
    assert outbox.unstorable == 1 and outbox.pending == 0


# -- replay into real runners ------------------------------------------------------------------------------


SETTINGS = load_settings(None)


def compiled(outbox: Outbox, destinations: list[Destination], error: Destination | None = None,
             url: str = "x", max_attempts: int = 1, queue_size: int = 100) -> CompiledRule:
    resource = {"ruleName": "rule1", "sql": "SELECT * FROM 'a'", "awsIotSqlVersion": "2016-03-23",
                "actions": [{"http": {"url": url}} for _ in destinations]}
    settings = SETTINGS.model_copy(update={"rules": SETTINGS.rules.model_copy(
        update={"max_attempts": max_attempts, "retry_delay": 0.001, "action_queue_size": queue_size})})
    return CompiledRule("rule1", resource, None, destinations, error, settings, outbox=outbox)


async def drained(*rules: CompiledRule) -> None:
    runners = [r for rule in rules for _l, _i, r in rule.all_runners()]
    for _ in range(1000):
        if all(not r.queue and not r.active and not r._timers for r in runners):
            return
        await asyncio.sleep(0.005)
    raise AssertionError("runners did not drain")


def resume(rule: CompiledRule, runner: Any, entry: Any, handle: Any) -> None:
    msg = entry.message
    ctx = MessageContext(entry.topic, msg.payload, trace_id=entry.trace_id)
    on_failed = rule.on_failed if runner is not rule.error_runner and rule.error_runner is not None else None
    runner.submit(Firing(rule.name, msg, ctx, entry.output, 1, on_failed), handle)


async def test_replay_gives_pending_entries_to_the_new_runners_in_order(storage: SQLiteStorage) -> None:
    # the first run: two actions, both destinations down (every try fails, retried for long)
    first = Outbox(storage)
    down = [Destination(failures=99), Destination(failures=99)]
    rule = compiled(first, down, max_attempts=20)
    for i in range(5):
        f = fake_firing({"n": i}, pending=2)
        for runner in rule.runners:
            runner.submit(f)
    await first.flush()
    assert first.pending == 10
    await rule.close()  # the process ends (like kill -9, the entries stay)
    await asyncio.sleep(0.002)  # the next run's pages sort after this run's

    second = Outbox(storage)
    up = [Destination(), Destination()]
    for d in up:
        d.gate = asyncio.Event()  # held: the queues (2 each) fill up and replay has to wait
    again = compiled(second, up, queue_size=2)
    metrics = EngineMetrics()
    task = asyncio.create_task(replay(second, {"rule1": again}, resume, metrics))
    await asyncio.sleep(0.1)
    assert second.replaying and metrics.outbox_replayed < 10  # waiting for room, not dropping
    for d in up:
        d.gate.set()
    await task
    await drained(again)
    assert [d.delivered for d in up] == [[{"n": i} for i in range(5)]] * 2
    assert all(r.metrics.dropped == 0 for r in again.runners)
    assert (metrics.outbox_replayed, metrics.outbox_discarded, second.pending) == (10, 0, 0)
    await second.flush()
    assert await documents(storage) == {}


async def test_replay_discards_entries_of_a_changed_rule_and_keeps_ended_ones_ended(storage: SQLiteStorage) -> None:
    first = Outbox(storage)
    rule = compiled(first, [Destination(failures=99)], max_attempts=20)
    handles = []
    for i in range(3):
        rule.runners[0].submit(fake_firing({"n": i}))
        handles.append(max(rule.runners[0].journal.handles))
    await first.flush()
    await rule.close()
    first.delete(handles[1])  # ended before the crash: never replayed
    await first.flush()
    await asyncio.sleep(0.002)

    second = Outbox(storage)
    kept = compiled(second, [Destination()])
    metrics = EngineMetrics()
    await replay(second, {"rule1": kept}, resume, metrics)
    await drained(kept)
    assert kept.runners[0].action.delivered == [{"n": 0}, {"n": 2}]

    # once more, and the rule changed meanwhile: nothing is delivered, everything is ended
    for i in range(2):
        kept.runners[0].action.gate = asyncio.Event()
        kept.runners[0].submit(fake_firing({"n": 10 + i}))
    await second.flush()
    await kept.close()
    await asyncio.sleep(0.002)
    third = Outbox(storage)
    changed = compiled(third, [Destination()], url="another")
    metrics = EngineMetrics()
    await replay(third, {"rule1": changed}, resume, metrics)
    await third.flush()
    assert changed.runners[0].action.tries == []
    assert (metrics.outbox_replayed, metrics.outbox_discarded) == (0, 2)
    assert await documents(storage) == {}


async def test_a_failure_keeps_its_entry_until_the_error_document_has_one(storage: SQLiteStorage) -> None:
    outbox = Outbox(storage)
    bad, slow, errors = Destination(failures=99, retryable=False), Destination(), Destination()
    slow.gate = asyncio.Event()
    errors.gate = asyncio.Event()
    rule = compiled(outbox, [bad, slow], error=errors)
    f = fake_firing({"n": 1}, pending=2)
    f.on_failed = rule.on_failed
    for runner in rule.runners:
        runner.submit(f)
    await asyncio.sleep(0.05)
    assert len(bad.tries) == 1 and outbox.pending == 2  # failed, but its entry waits for the firing's end
    slow.gate.set()
    await asyncio.sleep(0.05)
    # the firing is over: the error document has its own entry, the two of the actions are ended
    assert outbox.pending == 1 and [j.action for j in rule.journal.actions if j.handles] == ["error"]
    errors.gate.set()
    await drained(rule)
    [doc] = errors.delivered
    assert [x["failedAction"] for x in doc["failures"]] == ["FakeAction"]
    assert outbox.pending == 0


async def test_replaying_nothing_is_quiet(storage: SQLiteStorage, caplog: pytest.LogCaptureFixture) -> None:
    metrics = EngineMetrics()
    await replay(Outbox(storage), {}, resume, metrics)
    assert (metrics.outbox_replayed, metrics.outbox_discarded) == (0, 0)
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]


def test_memory_storage_has_no_outbox() -> None:
    from thingcore.rules.engine import RulesEngine
    from thingcore.storage import MemoryStorage

    engine = RulesEngine(SETTINGS, SimpleNamespace(), MemoryStorage())
    assert engine.outbox is None and engine.engine_metrics()["outboxPending"] is None
