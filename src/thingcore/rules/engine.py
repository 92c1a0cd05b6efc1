"""The rules engine: rules indexed by their FROM filter on the broker's bus, Basic Ingest, evaluation, firing.

- **Index.** Every distinct FROM filter has one bus subscription (``broker.add_bus_subscription``) shared by the
  enabled rules with that filter, so the broker's trie decides which rules a message reaches and a
  message costs nothing for rules it cannot match.
- **Basic Ingest.** The broker hands every message on ``$aws/rules/...`` to :meth:`RulesEngine.ingest`
  before routing; it reaches only the named rule (never subscribers), and ``topic()`` sees the topic
  without the ``$aws/rules/<ruleName>/`` prefix.
- **Evaluation.** Pure statements are evaluated right in the event loop; statements that call an
  external function (``get_thing_shadow``, ``aws_lambda``, ...) in a bounded thread pool.
- **Firing.** When WHERE passes, each action's runner queues the result (see ``actions/base.py``).
- **Outbox.** Durable actions' pending deliveries are stored (``outbox.py``); a QoS 1/2 message's
  acknowledgement waits for its entries, and :meth:`RulesEngine.start` replays an earlier run's.
- **Management.** Create, replace, delete, enable and disable persist the rule before it takes effect.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson

from thingcore.auth import service_identity
from thingcore.broker.core import BusSubscription
from thingcore.broker.message import Message
from thingcore.mqtt.topics import topic_matches
from thingcore.rules.actions import ACTIONS, Action, ActionConfigError, ActionEnv, ActionRunner, Firing
from thingcore.rules.actions.base import RetryPolicy
from thingcore.rules.actions.unserved import unserved_message
from thingcore.rules.address_policy import AddressPolicy, guarded_client
from thingcore.rules.destinations import TopicRuleDestinations
from thingcore.rules.functions import FunctionRunner
from thingcore.rules.metrics import ActionMetrics, EngineMetrics, RuleMetrics, RulesCollector
from thingcore.rules.model import (
    RuleError,
    action_kind,
    check_name,
    invalid,
    make_resource,
    normalize_payload,
    not_found,
    payload_of,
    rule_arn,
)
from thingcore.rules.outbox import ERROR_ACTION, Entry, Outbox, fingerprint, replay
from thingcore.rules.services import Services
from thingcore.rules.sql import MessageContext, SqlError, compile_sql, compile_template
from thingcore.rules.sql.context import document_of
from thingcore.rules.sql.limits import Limits, SqlLimitError
from thingcore.rules.sql.query import NO_MATCH
from thingcore.rules.store import RuleFileError, RuleStore, read_directory

log = logging.getLogger("thingcore.rules")

INGEST_PREFIX = "$aws/rules/"
_INGEST_LEN = len(INGEST_PREFIX)
RETIRE_GRACE = 30.0  # seconds a replaced or deleted rule's queued deliveries get to complete
LOG_EVERY = 10.0  # seconds between two log lines about one rule's failed evaluations


def sql_parse_error(exc: SqlError) -> RuleError:
    """AWS's SqlParseException, with where the statement went wrong and what was expected there."""
    message = str(exc)
    extra = {"position": exc.position} if exc.position is not None else {}
    return RuleError("SqlParseException", message, 400, **extra)


class CompiledRule:
    """A rule ready to run: its stored resource, compiled statement, action runners and counters."""

    __slots__ = ("actions", "direct", "error", "error_runner", "failure_handler", "journal", "logged_at", "metrics",
                 "name", "query", "resource", "runners", "topic_filter", "unlogged")

    def __init__(self, name: str, resource: dict[str, Any], query: Any, actions: list[Action],
                 error_action: Action | None, settings: Any, metrics: RuleMetrics | None = None,
                 outbox: Outbox | None = None) -> None:
        self.name = name
        self.resource = resource
        self.query = query
        self.topic_filter: str | None = (query.topic_filter or None) if query is not None else None
        self.actions = actions
        rules = settings.rules
        retry = RetryPolicy(rules.max_attempts, rules.retry_delay)
        journal = self.journal = outbox.rule(name, payload_of(resource)) if outbox is not None else None
        self.runners = [ActionRunner(a, queue_size=rules.action_queue_size, retry=retry, metrics=ActionMetrics(),
                                     journal=journal.action(i) if journal is not None and a.durable else None)
                        for i, a in enumerate(actions)]
        self.error_runner = ActionRunner(error_action, queue_size=rules.action_queue_size, retry=retry,
                                         error_action=True,
                                         journal=journal.action(ERROR_ACTION) if journal is not None
                                         and error_action.durable else None) if error_action is not None else None
        #: what a firing calls when some action failed: None without an error action
        self.failure_handler = self.on_failed if self.error_runner is not None else None
        #: the runner of the rule's only action when it can deliver without a firing (ActionRunner.deliver_direct)
        self.direct = (self.runners[0] if len(self.runners) == 1 and self.runners[0].action.direct
                       and self.runners[0].journal is None else None)
        self.metrics = metrics or RuleMetrics()
        self.error: str | None = None  #: why a stored rule could not be loaded (it is kept, not run)
        self.logged_at = -LOG_EVERY  # the last log line about a failed evaluation (time.monotonic())
        self.unlogged = 0  # failed evaluations since, not logged

    @property
    def disabled(self) -> bool:
        return bool(self.resource.get("ruleDisabled"))

    @property
    def runnable(self) -> bool:
        return self.query is not None and not self.disabled

    def on_failed(self, firing: Firing) -> None:
        """Every action of the firing is done and some failed: one error document to the error action."""
        runner = self.error_runner
        if runner is None:
            return
        self.metrics.error_actions += 1
        doc = firing.error_document(firing.message.topic)
        runner.submit(firing.with_output(doc))
        if self.journal is not None and self.journal.deferred:
            self.journal.release(firing)  # the error document's entry is written: the failures it lists are over

    def all_runners(self) -> Iterator[tuple[str, int, ActionRunner]]:
        for i, runner in enumerate(self.runners):
            yield runner.label, i, runner
        if self.error_runner is not None:
            yield "error:" + self.error_runner.label, 0, self.error_runner

    async def close(self, grace: float = 0.0) -> None:
        for _label, _i, runner in list(self.all_runners()):
            await runner.close(grace)


class _FilterGroup(BusSubscription):
    """The enabled rules sharing one FROM filter: the bus subscription that runs them for each message."""

    __slots__ = ("engine", "parent", "rules")

    def __init__(self, engine: RulesEngine, topic_filter: str) -> None:
        super().__init__(f"$rules/{topic_filter}", topic_filter, None, 1)  # type: ignore[arg-type]
        self.engine = engine
        self.rules: list[CompiledRule] = []
        # MQTT's 'a/#' also matches 'a'; AWS's FROM 'a/#' does not
        self.parent = topic_filter[:-2] if topic_filter.endswith("/#") else None

    def deliver(self, msg: Message, qos: int, retain: bool, sids: tuple[int, ...],
                cache: dict | None) -> asyncio.Future | None:
        """Run the rules; for a QoS 1/2 message, what its acknowledgement waits for (its outbox entries)."""
        topic = msg.topic
        if topic == self.parent:
            return None
        engine = self.engine
        run = engine.run
        outbox = engine.outbox if msg.qos else None
        before = outbox.adds if outbox is not None else 0
        try:
            for rule in self.rules:
                run(rule, msg, topic)
        except Exception:  # the publisher's connection must not pay for a rules bug
            log.exception("rules on %s failed on a message to %s", self.filter, topic)
        if outbox is not None and outbox.adds != before:
            return outbox.commit_future()
        return None


class RulesEngine:
    def __init__(self, settings: Any, broker: Any, storage: Any) -> None:
        self.settings = settings
        self.broker = broker
        self.store = RuleStore(storage)
        #: pending deliveries of durable actions; None when nothing would survive a restart anyway (memory storage)
        self.outbox: Outbox | None = Outbox(storage) if getattr(storage, "persistent", False) else None
        self._replay: asyncio.Task | None = None
        rs = settings.rules
        try:
            self.functions = FunctionRunner(settings.functions, workers=rs.function_workers,
                                            timeout=rs.function_timeout, region=settings.aws.region,
                                            account_id=settings.aws.account_id)
        except ValueError as exc:
            from thingcore.config import ConfigError

            raise ConfigError(f"[functions]: {exc}") from exc
        self.services = Services(self.functions, dict(settings.secrets), settings.aws.account_id)
        #: where rule actions may connect (every connection of the actions' HTTP client is checked)
        self.address_policy = AddressPolicy.from_settings(settings)
        self.destinations = TopicRuleDestinations(storage, settings.aws.region, settings.aws.account_id,
                                                  self.address_policy, self._http_client, rs.http_timeout)
        #: what one evaluation of a statement or template may build and spend
        self.limits = Limits(max_value_size=rs.max_value_size, max_cost=rs.max_evaluation_cost)
        self.env = ActionEnv(broker, settings, partial(compile_template, limits=self.limits), self.functions,
                             self._http_client, origin=service_identity(settings.rules.principal, "rules"),
                             destinations=self.destinations, address_policy=self.address_policy)
        self.rules: dict[str, CompiledRule] = {}
        self.metrics = EngineMetrics()
        self.collector = RulesCollector(self._metric_rows, self.metrics, lambda: len(self.rules), self.outbox)
        self._groups: dict[str, _FilterGroup] = {}
        self._http: httpx.AsyncClient | None = None
        self._eval_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._eval_pending = 0
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_msg: Message | None = None
        self._last_doc: Any = None
        self._trace_seq = 0  # trace ids: the context formats them from this counter when one is read
        self._retired: set[asyncio.Task] = set()

    # -- start and stop ------------------------------------------------------------------------------

    async def start(self, shadows: Any = None, registry: Any = None) -> None:
        """Load stored rules, apply the rules directory, then take Basic Ingest and the FROM filters."""
        self._loop = asyncio.get_running_loop()
        self.services.bind(self._loop, shadows, registry)
        await self.destinations.load()
        for resource in await self.store.load_all():
            name = resource["ruleName"]
            try:
                rule = self._compile(name, payload_of(resource), resource)
            except RuleError as exc:
                log.error("stored rule %s cannot run: %s (it is kept; fix it with ReplaceTopicRule)", name,
                          exc.message)
                rule = CompiledRule(name, resource, None, [], None, self.settings, outbox=self.outbox)
                rule.error = exc.message
            self.rules[name] = rule
            self._index(rule)
        directory = self.settings.rules.directory
        if directory is not None:
            await self._apply_directory(Path(directory))
        if self.outbox is not None:  # in the background: a backlog is fed to the runners as their queues drain
            self._replay = asyncio.create_task(replay(self.outbox, self.rules, self._resume, self.metrics))
        self.broker.rules_ingest = self.ingest
        log.info("rules engine: %d rules, %d topic filters", len(self.rules), len(self._groups))

    async def _apply_directory(self, directory: Path) -> None:
        from thingcore.config import ConfigError

        try:
            files = read_directory(directory)
        except RuleFileError as exc:
            raise ConfigError(str(exc)) from exc
        for path, name, payload in files:
            try:
                changed = await self.apply(name, payload)
            except RuleError as exc:
                raise ConfigError(f"{path}: {exc.error_type}: {exc.message}") from exc
            if changed:
                log.info("rule %s applied from %s", name, path)

    async def stop(self, grace: float = 0.0) -> None:
        """Stop; deliveries still pending after ``grace`` keep their outbox entries for the next start."""
        if getattr(self.broker, "rules_ingest", None) == self.ingest:
            self.broker.rules_ingest = None
        for group in self._groups.values():
            self.broker.unsubscribe(group)
        self._groups.clear()
        if self._replay is not None:
            self._replay.cancel()
            await asyncio.gather(self._replay, return_exceptions=True)
        await asyncio.gather(*(rule.close(grace) for rule in self.rules.values()), return_exceptions=True)
        for task in list(self._retired):
            task.cancel()
        if self.outbox is not None:
            await self.outbox.flush()
        await self.destinations.close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._eval_pool is not None:
            self._eval_pool.shutdown(wait=False, cancel_futures=True)
            self._eval_pool = None
        self.functions.close()

    def _http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = guarded_client(self.address_policy, max_connections=200)
        return self._http

    # -- the message path ----------------------------------------------------------------------------

    def ingest(self, msg: Message) -> asyncio.Future | None:
        """Basic Ingest: ``$aws/rules/<ruleName>[/<topic>]`` reaches that rule only.

        Returns what a QoS 1/2 publisher's acknowledgement waits for (the message's outbox entries), or None."""
        name, _, topic = msg.topic[_INGEST_LEN:].partition("/")
        rule = self.rules.get(name)
        if rule is None or not rule.runnable:
            self.metrics.ingest_unknown += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("Basic Ingest message for missing or disabled rule %r dropped", name)
            return None
        outbox = self.outbox
        before = outbox.adds if outbox is not None else 0
        try:
            self.run(rule, msg, topic)
        except Exception:  # the publisher's connection must not pay for a rules bug
            log.exception("rule %s failed on a Basic Ingest message", name)
        if msg.qos and outbox is not None and outbox.adds != before:
            return outbox.commit_future()
        return None

    def run(self, rule: CompiledRule, msg: Message, topic: str) -> None:
        """Evaluate one rule for one message (``topic`` as ``topic()`` sees it) and fire its actions."""
        rule.metrics.received += 1
        if msg is not self._last_msg:  # one trace id and one parse per message, shared by every rule it reaches
            self._last_msg = msg
            self._trace_seq += 1
            payload = msg.payload
            doc = None
            if payload[:1] == b"{":  # the usual JSON object parsed right here (one call less than document_of)
                try:
                    doc = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    pass
                if type(doc) is not dict:
                    doc = None
            self._last_doc = doc = doc if doc is not None else document_of(payload)
        else:
            doc = self._last_doc
        query = rule.query
        if query.uses_context:
            ctx = MessageContext.of_message(msg, topic, rule.name, self.services, trace_seq=self._trace_seq, doc=doc)
            if query.needs_services:
                self._evaluate_in_thread(rule, msg, ctx)
                return
        else:  # most statements read only the payload: the context is built if an action asks for it
            ctx = None
        try:
            output = query.run(ctx, doc)
        except Exception as exc:
            self.evaluation_failed(rule, msg, ctx, topic, exc)
            return
        if output is not NO_MATCH:  # fire(), inlined: this is the message path
            rule.metrics.matched += 1
            direct = rule.direct
            if direct is not None and direct.deliver_direct(topic, output):
                return
            runners = rule.runners
            if runners:
                firing = Firing(rule.name, msg, ctx, output, len(runners), rule.failure_handler, topic,
                                self._trace_seq, self.services, doc)
                for runner in runners:
                    runner.submit(firing)

    def _evaluate_in_thread(self, rule: CompiledRule, msg: Message, ctx: Any) -> None:
        if self._eval_pending >= self.settings.rules.evaluation_queue_size:
            self.metrics.evaluations_dropped += 1
            rule.metrics.errors += 1
            return
        if self._eval_pool is None:
            self._eval_pool = concurrent.futures.ThreadPoolExecutor(self.settings.rules.evaluation_workers,
                                                                    thread_name_prefix="thingcore-rules")
        self._eval_pending += 1
        fut = self._eval_pool.submit(rule.query.evaluate, ctx)
        fut.add_done_callback(partial(self._hand_back, rule, msg, ctx))

    def _hand_back(self, rule: CompiledRule, msg: Message, ctx: Any, fut: concurrent.futures.Future) -> None:
        try:
            self._loop.call_soon_threadsafe(self._evaluated, rule, msg, ctx, fut)
        except RuntimeError:  # the loop is closed: the server stopped meanwhile
            pass

    def _evaluated(self, rule: CompiledRule, msg: Message, ctx: Any, fut: concurrent.futures.Future) -> None:
        self._eval_pending -= 1
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self.evaluation_failed(rule, msg, ctx, ctx.topic, exc)
            return
        result = fut.result()
        if result.matched:
            self.fire(rule, msg, ctx, result.output)

    def evaluation_failed(self, rule: CompiledRule, msg: Message, ctx: Any, topic: str, exc: BaseException) -> None:
        """The statement failed on this message: the rule does nothing for it, and a line is logged (at most
        one per rule every LOG_EVERY seconds, so a stream of hostile messages cannot flood the log). When an
        evaluation limit stopped it (SqlLimitError: thingcore's own bound, no AWS counterpart) the error
        action gets the reason; a failed external function does not reach it, as on AWS."""
        rule.metrics.errors += 1
        now = time.monotonic()
        if now - rule.logged_at >= LOG_EVERY:
            more = f" ({rule.unlogged} more since the last report)" if rule.unlogged else ""
            log.warning("rule %s: evaluation failed on a message to %s: %s%s", rule.name, msg.topic, exc, more)
            rule.logged_at = now
            rule.unlogged = 0
        else:
            rule.unlogged += 1
        runner = rule.error_runner
        if runner is None or not isinstance(exc, SqlLimitError):
            return
        firing = Firing(rule.name, msg, ctx, None, 0, None, topic, self._trace_seq, self.services)
        firing.failures = [{"failedAction": "SqlEvaluation", "failedResource": rule.name, "errorMessage": str(exc)}]
        rule.metrics.error_actions += 1
        runner.submit(firing.with_output(firing.error_document(msg.topic)))

    def _resume(self, rule: CompiledRule, runner: ActionRunner, entry: Entry, handle: Any) -> None:
        """A delivery pending at the last stop (outbox replay): its firing rebuilt, given to its runner."""
        msg = entry.message
        ctx = MessageContext.of_message(msg, entry.topic, rule.name, self.services, trace_id=entry.trace_id)
        # one action per firing now: its failure gets its own error document
        on_failed = rule.on_failed if runner is not rule.error_runner and rule.error_runner is not None else None
        runner.submit(Firing(rule.name, msg, ctx, entry.output, 1, on_failed), handle)

    def fire(self, rule: CompiledRule, msg: Message, ctx: Any, output: Any) -> None:
        rule.metrics.matched += 1
        runners = rule.runners
        if not runners:
            return
        firing = Firing(rule.name, msg, ctx, output, len(runners), rule.failure_handler)
        for runner in runners:
            runner.submit(firing)

    # -- compiling and indexing ----------------------------------------------------------------------

    def arn(self, name: str) -> str:
        return rule_arn(self.settings.aws.region, self.settings.aws.account_id, name)

    def compile_query(self, sql: str, version: str) -> Any:
        try:
            return compile_sql(sql, version=version, limits=self.limits)
        except SqlError as exc:
            raise sql_parse_error(exc) from None

    def build_action(self, action: Any, where: str, version: str, *, error_action: bool = False) -> Action:
        kind, params = action_kind(action, where)
        cls = ACTIONS.get(kind)
        if cls is None and unserved_message(kind):
            raise invalid(f"{where}: {unserved_message(kind)}")
        if cls is None:
            raise invalid(f"{where}: the {kind} action is not supported by thingcore yet "
                          f"(supported: {', '.join(sorted(ACTIONS))})")
        env = self.env if version == self.env.sql_version else dataclasses.replace(self.env, sql_version=version)
        try:
            built = cls(params, env)
        except ActionConfigError as exc:
            raise invalid(f"{where}: {exc}") from None
        if error_action and any(f.needs_services for f in built.template_fields()):
            raise invalid(f"{where}: an error action's templates cannot call external functions "
                          "(get_thing_shadow, aws_lambda, get_secret, ...)")
        return built

    def _compile(self, name: str, payload: dict[str, Any], resource: dict[str, Any]) -> CompiledRule:
        query = self.compile_query(payload["sql"], payload["awsIotSqlVersion"])
        version = payload["awsIotSqlVersion"]
        actions = [self.build_action(a, f"actions[{i}]", version) for i, a in enumerate(payload["actions"])]
        error_action = payload.get("errorAction")
        err = self.build_action(error_action, "errorAction", version, error_action=True) if error_action else None
        old = self.rules.get(name)
        return CompiledRule(name, resource, query, actions, err, self.settings,
                            metrics=old.metrics if old is not None else None, outbox=self.outbox)

    def _index(self, rule: CompiledRule) -> None:
        topic_filter = rule.topic_filter
        if not rule.runnable or topic_filter is None:
            return
        group = self._groups.get(topic_filter)
        if group is None:
            group = self._groups[topic_filter] = self.broker.add_bus_subscription(_FilterGroup(self, topic_filter))
        group.rules.append(rule)

    def _unindex(self, rule: CompiledRule) -> None:
        group = self._groups.get(rule.topic_filter) if rule.topic_filter is not None else None
        if group is None or rule not in group.rules:
            return
        group.rules.remove(rule)
        if not group.rules:
            self.broker.unsubscribe(group)
            del self._groups[rule.topic_filter]

    async def _retire(self, old: CompiledRule) -> None:
        """A replaced or deleted rule: its queued deliveries get RETIRE_GRACE, then the rest is given up."""
        await old.close(RETIRE_GRACE)
        journal = old.journal
        if journal is not None:
            given_up = journal.abandon()
            if given_up:
                self.metrics.outbox_discarded += given_up
                log.warning("rule %s was replaced or deleted: %d pending deliveries of the old definition given up",
                            old.name, given_up)

    def _swap(self, name: str, new: CompiledRule | None) -> None:
        """Put ``new`` in place of the current rule; the old one's queued deliveries still complete."""
        old = self.rules.pop(name, None)
        if old is not None:
            self._unindex(old)
            task = asyncio.get_running_loop().create_task(self._retire(old))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)
        if new is not None:
            self.rules[name] = new
            self._index(new)

    # -- management (the AWS control plane, the CLI and the rules directory) -------------------------

    def get(self, name: str) -> dict[str, Any]:
        rule = self.rules.get(name)
        if rule is None:
            raise not_found(name)
        return rule.resource

    def list(self, *, topic: str | None = None, disabled: bool | None = None) -> list[dict[str, Any]]:
        """Rules sorted by name: all, or those whose FROM is ``topic`` or matches it, enabled or disabled."""
        out = []
        for name in sorted(self.rules):
            rule = self.rules[name]
            if disabled is not None and rule.disabled != disabled:
                continue
            if topic is not None:
                pattern = rule.topic_filter
                if pattern is None or (pattern != topic and not _matches(pattern, topic)):
                    continue
            out.append(rule.resource)
        return out

    def topic_pattern(self, name: str) -> str | None:
        rule = self.rules.get(name)
        return rule.topic_filter if rule is not None else None

    async def create(self, name: str, payload: Any) -> dict[str, Any]:
        check_name(name)
        async with self._lock:
            if name in self.rules:
                raise RuleError("ResourceAlreadyExistsException", f"Rule {name} already exists", 409,
                                resourceId=name, resourceArn=self.arn(name))
            return await self._put(name, payload, None, strict=True)

    async def replace(self, name: str, payload: Any) -> dict[str, Any]:
        check_name(name)
        async with self._lock:
            current = self.rules.get(name)
            if current is None:
                raise not_found(name)
            return await self._put(name, payload, current.resource.get("createdAt"), strict=True)

    async def apply(self, name: str, payload: Any) -> bool:
        """Create or replace (the rules directory); False when the stored rule is already the same."""
        check_name(name)
        async with self._lock:
            current = self.rules.get(name)
            normalized = normalize_payload(payload)
            if current is not None and payload_of(current.resource) == normalized and current.error is None:
                return False
            await self._put(name, normalized, current.resource.get("createdAt") if current else None)
            return True

    async def _put(self, name: str, payload: Any, created_at: float | None, *, strict: bool = False
                   ) -> dict[str, Any]:
        """Store and run a rule; ``strict`` (the API) also refuses actions that could not deliver now
        (an http URL without an ENABLED topic rule destination), as AWS does."""
        normalized = normalize_payload(payload)
        resource = make_resource(name, normalized, self.arn(name), created_at)
        current = self.rules.get(name)
        if current is not None and current.error is None and fingerprint(payload_of(current.resource)) == \
                fingerprint(normalized):
            # only the description or ruleDisabled changed: the running rule keeps its pending deliveries
            await self.store.save(resource)
            self._unindex(current)
            current.resource = resource
            self._index(current)
            return resource
        rule = self._compile(name, normalized, resource)
        self._check_destinations(rule, strict)
        await self.store.save(resource)
        self._swap(name, rule)
        return resource

    def _check_destinations(self, rule: CompiledRule, strict: bool) -> None:
        where = [(f"actions[{i}]", a) for i, a in enumerate(rule.actions)]
        if rule.error_runner is not None:
            where.append(("errorAction", rule.error_runner.action))
        for label, action in where:
            problem = action.destination_problem()
            if problem is None:
                continue
            if strict:
                log.warning("rule %s refused: %s: %s", rule.name, label, problem)
                raise invalid(f"{label}: {problem}")
            log.warning("rule %s: %s: %s; its deliveries fail until this is fixed", rule.name, label, problem)

    async def delete(self, name: str) -> None:
        check_name(name)
        async with self._lock:
            if name not in self.rules:
                raise not_found(name)
            await self.store.delete(name)
            self._swap(name, None)

    async def set_disabled(self, name: str, disabled: bool) -> dict[str, Any]:
        check_name(name)
        async with self._lock:
            rule = self.rules.get(name)
            if rule is None:
                raise not_found(name)
            if rule.disabled == disabled:
                return rule.resource
            resource = {**rule.resource, "ruleDisabled": disabled}
            await self.store.save(resource)
            self._unindex(rule)
            rule.resource = resource
            self._index(rule)
            return resource

    # -- metrics -------------------------------------------------------------------------------------

    def _metric_rows(self) -> Iterator[tuple[str, RuleMetrics, list]]:
        for name, rule in self.rules.items():
            yield name, rule.metrics, [(label, i, r.metrics, r.queued()) for label, i, r in rule.all_runners()]

    def rule_metrics(self, name: str) -> dict[str, Any]:
        rule = self.rules.get(name)
        if rule is None:
            raise not_found(name)
        actions = []
        for label, i, runner in rule.all_runners():
            actions.append({"action": label, "index": i, "queued": runner.queued(), **runner.metrics.as_dict()})
        return {"ruleName": name, "enabled": rule.runnable, "error": rule.error, **rule.metrics.as_dict(),
                "actions": actions, "at": time.time()}

    def engine_metrics(self) -> dict[str, Any]:
        outbox = self.outbox
        return {"rules": len(self.rules), "topicFilters": len(self._groups), **self.metrics.as_dict(),
                "outboxPending": outbox.pending if outbox is not None else None,
                "outboxReplaying": outbox.replaying if outbox is not None else False,
                "functionInvocations": self.functions.invocations, "functionFailures": self.functions.failures}


def _matches(pattern: str, topic: str) -> bool:
    if "+" in topic or "#" in topic:
        return False
    try:
        return topic_matches(pattern, topic)
    except ValueError:
        return False
