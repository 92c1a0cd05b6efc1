"""What every rule action shares: a bounded queue, worker tasks, retries with back-off, the error document.

An action never runs on the message path: the engine hands a :class:`Firing` to each action's
:class:`ActionRunner`, which only appends it to a bounded queue. Worker tasks (at most
``concurrency`` per action, started on demand, gone when the queue is empty) deliver it; a failure
that may be temporary is tried again after an exponential back-off that waits on a timer, not in a
worker, so a dead destination neither blocks its own queue nor slows anything else. When the last
try fails, or the queue is full, the firing records the failure; once every action of the firing
is done, the rule's error action receives one error document listing all failures (AWS's shape).
A durable action's runner also writes each queued delivery to the outbox (``rules/outbox.py``) and
deletes it when the delivery is over, so deliveries pending at a crash are made after the restart.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from thingcore.auth import Identity
from thingcore.rules.metrics import ActionMetrics
from thingcore.rules.sql.context import MessageContext, format_trace_id
from thingcore.rules.sql.limits import SqlLimitError
from thingcore.rules.sql.values import bytes_as_text, dumps, output_to_bytes

log = logging.getLogger("thingcore.rules")


class ActionError(Exception):
    """A delivery that failed; ``retryable`` when another try may succeed (AWS's intermittent errors)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class ActionConfigError(ValueError):
    """Action parameters that cannot work: refused when the rule is created."""


@dataclass(slots=True)
class ActionEnv:
    """What actions reach: the broker (republish), an HTTP client, the function runner, the settings."""

    broker: Any
    settings: Any
    compile_template: Callable[[str, str], Any]  #: (text, SQL version) -> template with render(ctx, output)
    functions: Any = None  #: thingcore.rules.functions.FunctionRunner
    http_client: Callable[[], Any] | None = None  #: returns the shared httpx.AsyncClient
    sql_version: str = "2015-10-08"  #: the rule's awsIotSqlVersion: templates evaluate with it
    origin: Identity | None = None  #: who the rule acts as when it publishes ([rules] principal)
    #: topic rule destinations (thingcore.rules.destinations.TopicRuleDestinations): where http actions may go
    destinations: Any = None
    #: which addresses actions may connect to (thingcore.rules.address_policy.AddressPolicy)
    address_policy: Any = None


def output_payload(out: Any) -> bytes:
    """The SELECT output as a message payload (:func:`encode_output` without the flag, JSON objects first)."""
    t = type(out)
    if t is dict or t is list:
        try:  # dumps(), inlined for the usual output
            return orjson.dumps(out, default=bytes_as_text)
        except TypeError:
            return dumps(out)
    if t is bytes:
        return out
    return encode_output(out)[0]


def encode_output(value: Any) -> tuple[bytes, bool]:
    """The SELECT result as a payload: raw bytes stay raw (binary ``SELECT *``), the rest is JSON."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), False
    return output_to_bytes(value), True


class Firing:
    """One rule fired by one message: the evaluation context, the SELECT output, the failures so far.

    The engine passes no context for a statement that did not need one to evaluate (most do not): it is
    built from the message, ``topic``, ``trace_seq`` and ``services`` the first time an action reads
    :attr:`ctx` (templates beyond ``${topic(n)}``, error documents)."""

    __slots__ = ("_ctx", "_doc", "_payload", "failures", "message", "on_failed", "output", "pending",
                 "rule_name", "services", "topic", "trace_seq")

    def __init__(self, rule_name: str, message: Any, ctx: Any, output: Any, pending: int,
                 on_failed: Callable[[Firing], None] | None, topic: str | None = None, trace_seq: int = 0,
                 services: Any = None, doc: Any = None) -> None:
        self.rule_name = rule_name
        self.message = message  #: the incoming Message (topic as published, payload, client id)
        self._ctx = ctx
        #: the topic as ``topic()`` sees it (without a Basic Ingest prefix)
        self.topic = topic if topic is not None else (ctx.topic if ctx is not None else message.topic)
        self.output = output
        self.pending = pending
        self.failures: list[dict[str, str]] | None = None
        self.on_failed = on_failed
        self._payload: bytes | None = None
        self.trace_seq = trace_seq
        self.services = services
        self._doc = doc

    @property
    def parsed_payload(self) -> Any:
        """The payload as the statement read it (a document, or raw bytes), or None if it was never parsed."""
        if self._doc is not None:
            return self._doc
        ctx = self._ctx
        cached = ctx._doc if ctx is not None else None
        return cached[0] if cached is not None else None

    @property
    def received_at(self) -> float:
        """When the message arrived (epoch seconds)."""
        return self.message.received_at

    def with_output(self, output: Any) -> Firing:
        """A firing of the same message and context with another output (the error action's document)."""
        return Firing(self.rule_name, self.message, self._ctx, output, 1, None, self.topic, self.trace_seq,
                      self.services, self._doc)

    @property
    def trace_id(self) -> str | None:
        ctx = self._ctx
        return ctx.trace_id if ctx is not None else format_trace_id(self.trace_seq)

    @property
    def ctx(self) -> MessageContext:
        """The SQL MessageContext that templates are evaluated against."""
        ctx = self._ctx
        if ctx is None:
            ctx = self._ctx = MessageContext.of_message(self.message, self.topic, self.rule_name, self.services,
                                                        trace_seq=self.trace_seq, doc=self._doc)
        return ctx

    @property
    def payload(self) -> bytes:
        """The serialized SELECT output, computed once for all actions of the firing."""
        payload = self._payload
        if payload is None:
            payload = self._payload = output_payload(self.output)
        return payload

    @property
    def is_json(self) -> bool:
        """Whether :attr:`payload` is JSON (else raw bytes: a binary ``SELECT *``)."""
        return not isinstance(self.output, bytes | bytearray | memoryview)

    def done(self, failure: dict[str, str] | None) -> None:
        if failure is not None:
            if self.failures is None:
                self.failures = [failure]
            else:
                self.failures.append(failure)
        self.pending -= 1
        if self.pending == 0 and self.failures and self.on_failed is not None:
            self.on_failed(self)

    def error_document(self, topic: str) -> dict[str, Any]:
        """AWS's error action message: one per rule and message, every failed action listed."""
        msg = self.message
        return {
            "ruleName": self.rule_name,
            "topic": topic,
            "cloudwatchTraceId": self.trace_id or "",
            "clientId": msg.client_id or "n/a",
            "base64OriginalPayload": base64.b64encode(msg.payload).decode(),
            "failures": list(self.failures or ()),
        }


class Action:
    """One configured action of a rule. Subclasses parse their AWS parameters in ``__init__``."""

    kind: ClassVar[str]  #: the AWS ``Action`` member, e.g. ``republish``
    failed_action: ClassVar[str]  #: its name in error documents, e.g. ``RepublishAction``
    concurrency: int = 1  #: deliveries in flight at once for this action
    inline: bool = False  #: deliveries complete synchronously (mostly): may run right in ``submit``
    direct: bool = False  #: ``execute_direct`` works (and completes synchronously)
    durable: bool = True  #: pending deliveries go to the outbox; False when the destination keeps nothing

    def __init__(self, params: dict[str, Any], env: ActionEnv) -> None:
        self.params = params
        self.env = env

    def resource(self, firing: Firing) -> str:
        """What the action writes to (topic, URL, function): ``failedResource`` of an error document."""
        return ""

    def execute(self, firing: Firing) -> Awaitable[None] | None:
        """Deliver; None means done. Raise (or make the awaitable raise) :class:`ActionError` on failure."""
        raise NotImplementedError

    def describe(self, firing: Firing) -> dict[str, Any]:
        """The rendered parameters, without side effects (``rules test``)."""
        raise NotImplementedError

    def destination_problem(self) -> str | None:
        """Why the action could not deliver if its rule were created now (an ``http`` URL without an ENABLED
        topic rule destination, a refused address), or None. Asked by CreateTopicRule and ReplaceTopicRule only:
        stored rules and the rules directory load anyway and their deliveries fail until it is fixed."""
        return None

    def execute_direct(self, topic: str, output: Any) -> None:
        """Deliver at once without a :class:`Firing` (only actions whose ``direct`` is true): the rule's
        only action, needing nothing but ``topic()`` and the output. Raise to let ``submit`` deliver it the
        usual way, which reports the failure; nothing may have been delivered then."""
        raise NotImplementedError

    def template_fields(self) -> list[TemplateField]:
        found: list[TemplateField] = []

        def walk(value: Any) -> None:
            if isinstance(value, TemplateField):
                found.append(value)
            elif isinstance(value, list | tuple):
                for item in value:
                    walk(item)

        for value in vars(self).values():
            walk(value)
        return found

    @property
    def needs_services(self) -> bool:
        """Some template calls an external function (``get_thing_shadow``...): render off the event loop."""
        return any(f.needs_services for f in self.template_fields())


@dataclass(slots=True)
class RetryPolicy:
    max_attempts: int = 3
    first_delay: float = 0.2
    max_delay: float = 30.0

    def delay(self, attempt: int) -> float:
        """Back-off before try ``attempt + 1``: doubling, with jitter so retries of a burst spread out."""
        base = min(self.first_delay * (2 ** (attempt - 1)), self.max_delay)
        return base * (0.75 + random.random() * 0.5)


class _Job:
    __slots__ = ("attempts", "entry", "firing")

    def __init__(self, firing: Firing, entry: Any = None) -> None:
        self.firing = firing
        self.attempts = 0
        self.entry = entry  #: its outbox entry (durable actions): what the journal ends when the delivery is over


# > 0 while an inline delivery runs: what it triggers is queued, so rule loops never recurse. A module global,
# not a class attribute: writing a class attribute per message would invalidate CPython's attribute caches.
_inline_depth = 0


class ActionRunner:
    """The queue and workers of one action of one rule."""

    LOG_EVERY = 10.0  #: seconds between failure log lines of one action (the counters count every failure)

    def __init__(self, action: Action, *, queue_size: int, retry: RetryPolicy, metrics: ActionMetrics | None = None,
                 error_action: bool = False, journal: Any = None) -> None:
        self.action = action
        self.journal = journal  #: the action's outbox entries (thingcore.rules.outbox.ActionJournal), or None
        self.queue: deque[_Job] = deque()
        self.queue_size = queue_size
        self.retry = retry
        self.metrics = metrics or ActionMetrics()
        self.error_action = error_action  #: an error action's own failures only get logged
        self.inline = action.inline
        self.active = 0
        self.starting = 0
        self.closed = False
        self._tasks: set[asyncio.Task] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._logged_at = -self.LOG_EVERY
        self._unlogged = 0

    @property
    def label(self) -> str:
        return self.action.kind

    def submit(self, firing: Firing, entry: Any = None) -> None:
        """Queue a delivery (never blocks, never raises). A full queue fails the delivery at once.

        An action that completes synchronously (republish) is delivered right here when nothing of it
        is queued, so a burst read in one loop turn does not pile up behind the worker's next turn.
        ``entry``: the outbox entry of a replayed delivery; else a durable action adds one here."""
        global _inline_depth
        if self.inline and not _inline_depth and not self.queue and not self.active and not self.closed:
            if entry is None and self.journal is not None:
                entry = self.journal.add(firing)
            metrics = self.metrics
            metrics.fired += 1
            _inline_depth += 1
            try:
                pending = self.action.execute(firing)
            except Exception as exc:
                job = _Job(firing, entry)
                job.attempts = 1
                self._error(job, exc)
                return
            finally:
                _inline_depth -= 1
            if pending is None:
                # delivered within the publish that triggered it, microseconds after the message arrived:
                # counted in the first latency bucket without reading the clock
                metrics.succeeded += 1
                metrics.buckets[0] += 1
                firing.pending -= 1  # firing.done(None), inlined
                if firing.failures and not firing.pending and firing.on_failed is not None:
                    firing.on_failed(firing)
                if entry is not None:
                    self.journal.done(firing, entry)
            else:  # it has to wait (a copy being committed): a worker finishes it
                job = _Job(firing, entry)
                job.attempts = 1
                self._spawn(job, pending, fresh=False)
            return
        if self.closed or len(self.queue) >= self.queue_size:
            self.metrics.dropped += 1
            self._fail(firing, "the action's queue is full: message dropped" if not self.closed
                       else "the rule was stopped before delivery", 0, entry)
            return
        if entry is None and self.journal is not None:
            entry = self.journal.add(firing)
        self.metrics.fired += 1
        self.queue.append(_Job(firing, entry))
        self._wake()

    def deliver_direct(self, topic: str, output: Any) -> bool:
        """:meth:`submit`'s inline delivery without a Firing, for a ``direct`` action that is its rule's only
        one (a QoS 0 republish to a topic made of topic levels): True when delivered; False when the
        caller must build the firing and :meth:`submit` it (something is queued, or this way failed)."""
        global _inline_depth
        if _inline_depth or self.queue or self.active or self.closed:
            return False
        _inline_depth += 1
        try:
            self.action.execute_direct(topic, output)
        except Exception:
            return False
        finally:
            _inline_depth -= 1
        metrics = self.metrics
        metrics.fired += 1
        metrics.succeeded += 1
        metrics.buckets[0] += 1  # as in submit(): delivered microseconds after the message arrived
        return True

    def _wake(self) -> None:
        # a new worker only when none is about to start: a burst queued in one loop turn is drained by one
        # worker when deliveries are synchronous, and spreads over several only while some are waiting
        if not self.starting and self.active < self.action.concurrency and self.queue:
            self.starting += 1
            self._spawn(None, None, fresh=True)

    def _spawn(self, job: _Job | None, pending: Awaitable[None] | None, fresh: bool) -> None:
        self.active += 1
        task = asyncio.get_running_loop().create_task(self._work(job, pending, fresh))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work(self, job: _Job | None, pending: Awaitable[None] | None, fresh: bool) -> None:
        if fresh:
            self.starting -= 1
        try:
            if job is not None and pending is not None:
                await self._finish(job, pending)
            queue = self.queue
            while queue and not self.closed:
                job = queue.popleft()
                pending = self._start(job)
                if pending is not None:
                    self._wake()  # this delivery waits on the network: let another worker take the next job
                    await self._finish(job, pending)
        finally:
            self.active -= 1

    def _start(self, job: _Job) -> Awaitable[None] | None:
        """One try: None when it is over (success or failure handled), else what to await."""
        job.attempts += 1
        try:
            pending = self.action.execute(job.firing)
        except Exception as exc:
            self._error(job, exc)
            return None
        if pending is None:
            self._success(job)
        return pending

    async def _finish(self, job: _Job, pending: Awaitable[None]) -> None:
        try:
            await pending
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._error(job, exc)
        else:
            self._success(job)

    def _success(self, job: _Job) -> None:
        firing = job.firing
        self.metrics.observe(time.time() - firing.message.received_at)
        firing.done(None)
        if job.entry is not None:
            self.journal.done(firing, job.entry)

    def _error(self, job: _Job, exc: Exception) -> None:
        firing = job.firing
        if not isinstance(exc, ActionError):  # a bug in an action must not kill the worker
            log.error("rule %s: %s action crashed", firing.rule_name, self.label, exc_info=exc)
            self.metrics.failed += 1
            self._fail(firing, f"internal error: {exc!r}", job.attempts, job.entry)
            return
        if exc.retryable and job.attempts < self.retry.max_attempts and not self.closed:
            self.metrics.retried += 1
            loop = asyncio.get_running_loop()
            timer: asyncio.TimerHandle | None = None

            def again() -> None:
                self._timers.discard(timer)
                self._requeue(job)

            timer = loop.call_later(self.retry.delay(job.attempts), again)
            self._timers.add(timer)
            return
        self.metrics.failed += 1
        self._fail(firing, exc.message, job.attempts, job.entry)

    def _requeue(self, job: _Job) -> None:
        if self.closed or len(self.queue) >= self.queue_size:
            self.metrics.dropped += 1
            self._fail(job.firing, "the action's queue is full: retry dropped", job.attempts, job.entry)
            return
        self.queue.append(job)
        self._wake()

    def _fail(self, firing: Firing, message: str, attempts: int = 0, entry: Any = None) -> None:
        try:
            resource = self.action.resource(firing)
        except Exception:  # a template that cannot render still deserves its error document
            resource = ""
        tries = f" (after {attempts} tries)" if attempts > 1 else ""
        self._log_failure(firing.rule_name, resource, message + tries)
        if self.error_action:
            firing.done(None)
        else:
            firing.done({"failedAction": self.action.failed_action, "failedResource": resource,
                         "errorMessage": message + tries})
        if entry is not None:  # after done(): the error document's own entry is added first
            self.journal.done(firing, entry, failed=True)

    def _log_failure(self, rule: str, resource: str, message: str) -> None:
        """At most one line per LOG_EVERY seconds per action: a dead destination must not flood the log."""
        now = time.monotonic()
        if now - self._logged_at < self.LOG_EVERY:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more failures since the last report)" if self._unlogged else ""
        what = "error action" if self.error_action else "action"
        log.warning("rule %s: %s %s failed on %s: %s%s", rule, self.label, what, resource or "-", message, more)
        self._logged_at = now
        self._unlogged = 0

    def queued(self) -> int:
        return len(self.queue)

    async def close(self, grace: float = 0.0) -> None:
        """Stop: give queued deliveries up to ``grace`` seconds, then cancel what is left.

        What is left keeps its outbox entries: delivered at the next start (or deleted by the caller)."""
        if grace > 0 and (self.queue or self.active):
            deadline = time.monotonic() + grace
            while (self.queue or self.active) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        self.closed = True
        for timer in list(self._timers):
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.queue.clear()


# ``${topic()}`` / ``${topic(n)}`` (any case, spaces allowed): the most common templates, rendered without
# the SQL evaluator (same results: a level past the end, or n < 1, renders as the empty string)
_TOPIC_CALL = re.compile(r"\$\{\s*topic\s*\(\s*(\d*)\s*\)\s*\}", re.IGNORECASE)


def topic_only_parts(text: str) -> list[str | int | None] | None:
    """``text`` as literal strings and topic levels (None: the whole topic), or None if it has anything else."""
    parts: list[str | int | None] = []
    pos = 0
    for m in _TOPIC_CALL.finditer(text):
        literal = text[pos:m.start()]
        if "$" in literal:
            return None
        if literal:
            parts.append(literal)
        parts.append(int(m.group(1)) if m.group(1) else None)
        pos = m.end()
    rest = text[pos:]
    if "$" in rest or not parts:
        return None
    if rest:
        parts.append(rest)
    return parts


def topic_renderer(parts: list[str | int | None]) -> Callable[[str], str]:
    """A function of the topic for :func:`topic_only_parts`' output; ``literal/${topic(n)}/literal``, the
    usual republish target, gets its own closure (this runs once per message and action)."""
    if len(parts) == 3 and type(parts[0]) is str and type(parts[1]) is int and type(parts[2]) is str:
        head, n, tail = parts
        i = n - 1

        def one_level(topic: str) -> str:
            levels = topic.split("/")
            return head + levels[i] + tail if 0 <= i < len(levels) else head + tail
        return one_level

    def general(topic: str) -> str:
        levels = topic.split("/")
        out = []
        for part in parts:
            if type(part) is str:
                out.append(part)
            elif part is None:
                out.append(topic)
            else:
                out.append(levels[part - 1] if 0 < part <= len(levels) else "")
        return "".join(out)
    return general


class TemplateField:
    """An action parameter that may hold ``${expression}`` substitutions (and ``$$`` for ``$``), compiled once."""

    __slots__ = ("const", "from_topic", "source", "template", "topic_parts")

    def __init__(self, text: Any, env: ActionEnv, where: str) -> None:
        if not isinstance(text, str):
            raise ActionConfigError(f"{where} must be a string")
        self.source = text
        try:
            self.template = env.compile_template(text, env.sql_version)
        except Exception as exc:  # SqlError: the message names the position
            raise ActionConfigError(f"{where}: invalid substitution template: {exc}") from exc
        self.const: str | None = self.template.render(None) if self.template.is_constant else None
        self.topic_parts = topic_only_parts(text) if self.const is None else None
        #: the renderer of a template made only of literals and ``${topic(n)}``: topic -> text
        self.from_topic = topic_renderer(self.topic_parts) if self.topic_parts is not None else None

    @property
    def needs_services(self) -> bool:
        return bool(self.template.needs_services)

    def render(self, firing: Firing) -> str:
        if self.const is not None:
            return self.const
        from_topic = self.from_topic
        if from_topic is not None:
            return from_topic(firing.topic)
        try:
            return self.template.render(firing.ctx, firing.output)
        except SqlLimitError as exc:  # a message too costly for the template: a failed delivery, not a crash
            raise ActionError(f"substitution template {self.source!r}: {exc}") from None


def params_check(params: dict[str, Any], kind: str, allowed: set[str], required: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ActionConfigError(f"{kind}: unknown parameter(s) {', '.join(unknown)}")
    missing = sorted(required - set(params))
    if missing:
        raise ActionConfigError(f"{kind}: missing required parameter(s) {', '.join(missing)}")
