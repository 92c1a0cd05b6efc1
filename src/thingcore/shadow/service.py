"""The shadow service: AWS's shadow topics and REST operations on top of the bus and storage.

A bus subscriber like any other: requests arrive as messages on ``$aws/things/+/shadow/...`` and
responses leave through ``broker.publish`` so devices, the dashboard and rules see them. The REST
API (:mod:`thingcore.http.shadow_api`) calls :meth:`ShadowService.get` / ``update`` / ``delete``.

Ordering and durability: each shadow has one entry holding its committed state and a queue of
requests, run in arrival order with at most one storage write per shadow pending. An update's new
state is written with ``storage.put_document`` and becomes the entry's state, and its
``/accepted`` is published, only when that write has committed; updates that queued up behind a
pending write are merged one after the other (each on the result of the previous, each with its
own version) and written together. So concurrent MQTT and HTTP writers never lose an update,
different shadows write concurrently and share storage's group commits, and a busy shadow costs
one write per commit, not one per update. The hot path creates no task: requests run inside the
bus callback and continue in the storage future's callback. Messages nobody subscribed to (no
client, rule or bus handler matches the topic) are not built.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from thingcore.broker.message import Message
from thingcore.shadow.document import (
    INTERNAL_FAILURE,
    TOO_LARGE,
    TOO_MANY_REQUESTS,
    Accepted,
    Shadow,
    ShadowError,
    UpdateRequest,
    apply_update,
    check_names,
    not_found,
    parse_token,
    parse_update,
)

if TYPE_CHECKING:
    from thingcore.broker.core import Broker, BusSubscription
    from thingcore.storage import Storage

log = logging.getLogger("thingcore.shadow")

NAMESPACE = "shadow"  #: storage namespace of existing shadows, key "<thing>/<shadow name or empty>"
DELETED_NAMESPACE = "shadow-deleted"  #: version and time of deleted shadows, same keys
VERSION_MEMORY = 48 * 3600  #: a shadow re-created within this many seconds continues its versions

REQUEST_FILTERS = tuple(
    f"$aws/things/+/shadow/{named}{op}" for named in ("", "name/+/") for op in ("get", "update", "delete")
)

MAX_INFLIGHT_PER_CLIENT = 10  #: AWS: more in-flight shadow requests on one connection get 429
MAX_QUEUED_PER_SHADOW = 100  #: thingcore's bound on requests waiting for one shadow (then 429)
MAX_CACHED = 10_000  #: shadows kept in memory (a few KB each); the least recently used idle ones go first
MAX_UPDATES_PER_WRITE = 64  #: queued updates of one shadow merged into one storage write
MAX_REST_PAYLOAD = 128 * 1024  #: larger REST bodies are refused with 413 without being parsed


def shadow_key(thing: str, shadow: str | None) -> str:
    return f"{thing}/{shadow or ''}"


@dataclass(slots=True)
class _Request:
    op: str  # get | update | delete
    update: UpdateRequest | None
    client_token: str | None
    client_id: str | None  # the MQTT requester, counted against its in-flight limit
    reply: asyncio.Future[bytes] | None  # the REST caller waiting; None for MQTT


class _Entry:
    """One shadow's committed state and the requests waiting for it."""

    __slots__ = ("busy", "deleted_at", "deleted_version", "key", "loaded", "name", "prefix", "queue", "shadow",
                 "thing")

    def __init__(self, thing: str, name: str | None) -> None:
        self.thing = thing
        self.name = name
        self.key = shadow_key(thing, name)
        self.prefix = f"$aws/things/{thing}/shadow/name/{name}" if name else f"$aws/things/{thing}/shadow"
        self.shadow: Shadow | None = None
        self.deleted_version = 0  # when shadow is None: version at deletion (0: never existed / expired)
        self.deleted_at = 0.0
        self.loaded = False
        self.busy = False
        self.queue: deque[_Request] = deque()

    def base_version(self, now: float) -> int:
        if self.shadow is not None:
            return self.shadow.version
        if self.deleted_version and now - self.deleted_at < VERSION_MEMORY:
            return self.deleted_version
        return 0


@dataclass(slots=True)
class ShadowStats:
    requests: int = 0
    accepted: int = 0
    rejected: int = 0
    storage_failures: int = 0


class ShadowService:
    def __init__(self, broker: Broker, storage: Storage, *, clock: Callable[[], float] = time.time,
                 max_inflight_per_client: int = MAX_INFLIGHT_PER_CLIENT,
                 max_queued_per_shadow: int = MAX_QUEUED_PER_SHADOW, max_cached: int = MAX_CACHED) -> None:
        self.broker = broker
        self.storage = storage
        self.clock = clock
        self.max_inflight = max_inflight_per_client
        self.max_queued = max_queued_per_shadow
        self.max_cached = max_cached
        self.stats = ShadowStats()
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._inflight: dict[str, int] = {}
        self._subs: list[BusSubscription] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy = 0

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        for topic_filter in REQUEST_FILTERS:
            self._subs.append(self.broker.subscribe(topic_filter, self._on_request, qos=1, name="$shadow"))

    async def stop(self, timeout: float = 5.0) -> None:
        """Take no new MQTT requests and let the running ones commit and answer."""
        for sub in self._subs:
            self.broker.unsubscribe(sub)
        self._subs.clear()
        deadline = time.monotonic() + timeout
        while self._busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    # -- MQTT ------------------------------------------------------------------------------------

    def _on_request(self, msg: Message) -> None:
        """Bus callback for the six request topics."""
        parts = msg.topic.split("/")
        thing = parts[2]
        if len(parts) == 5:
            name, op = None, parts[4]
        else:
            name, op = parts[5], parts[6]
        self.stats.requests += 1
        prefix = f"$aws/things/{thing}/shadow/name/{name}" if name is not None else f"$aws/things/{thing}/shadow"
        client_id = msg.client_id
        try:
            check_names(thing, name)
            if op == "update":
                update = parse_update(msg.payload)
                token = update.client_token
            else:
                update, token = None, parse_token(msg.payload)
        except ShadowError as err:
            self._publish_error(prefix, op, err)
            return
        if client_id is not None:
            count = self._inflight.get(client_id, 0)
            if count >= self.max_inflight:
                self._publish_error(prefix, op, ShadowError(429, TOO_MANY_REQUESTS, token))
                return
            self._inflight[client_id] = count + 1
        self._submit(self._entry(thing, name), _Request(op, update, token, client_id, None))

    def _publish(self, topic: str, payload: bytes) -> None:
        if self._listened(topic):
            self.broker.publish(Message(topic, payload, 1))

    def _publish_error(self, prefix: str, op: str, err: ShadowError) -> None:
        self.stats.rejected += 1
        log.debug("%s/%s rejected: %d %s", prefix, op, err.code, err.message)
        self._publish(f"{prefix}/{op}/rejected", err.payload(int(self.clock())))

    # -- REST ------------------------------------------------------------------------------------

    async def get(self, thing: str, name: str | None = None) -> bytes:
        """GetThingShadow: the full document; raises ShadowError (400, 404, 429, 500)."""
        return await self._call(thing, name, "get", None)

    async def update(self, thing: str, name: str | None, payload: bytes) -> bytes:
        """UpdateThingShadow: the accepted document; raises ShadowError (400, 409, 413, 415, 429, 500)."""
        check_names(thing, name)
        if len(payload) > MAX_REST_PAYLOAD:
            raise ShadowError(413, TOO_LARGE)
        return await self._call(thing, name, "update", parse_update(payload))

    async def delete(self, thing: str, name: str | None = None) -> bytes:
        """DeleteThingShadow: ``{"version", "timestamp"}``; raises ShadowError (400, 404, 429, 500)."""
        return await self._call(thing, name, "delete", None)

    async def get_document(self, thing: str, name: str | None = None) -> dict[str, Any] | None:
        """The full document as a dict, None when the shadow does not exist (rules' get_thing_shadow)."""
        try:
            return orjson.loads(await self.get(thing, name))
        except ShadowError as err:
            if err.code == 404:
                return None
            raise

    async def _call(self, thing: str, name: str | None, op: str, update: UpdateRequest | None) -> bytes:
        check_names(thing, name)
        self.stats.requests += 1
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        token = update.client_token if update is not None else None
        self._submit(self._entry(thing, name), _Request(op, update, token, None, reply))
        return await reply

    async def list_named(self, thing: str, next_token: str | None = None, page_size: int = 100) -> dict[str, Any]:
        """ListNamedShadowsForThing: names in order, ``nextToken`` when there are more."""
        check_names(thing, None)
        if not 1 <= page_size <= 100:
            raise ShadowError(400, "pageSize must be between 1 and 100")
        prefix = shadow_key(thing, None)  # "<thing>/": the classic shadow's key, which sorts first
        start = prefix
        if next_token:
            try:
                start = prefix + base64.b64decode(next_token.encode(), altchars=b"-_", validate=True).decode()
            except (binascii.Error, UnicodeError, ValueError):
                raise ShadowError(400, "Invalid nextToken") from None
        rows = await self.storage.list_documents(NAMESPACE, prefix=prefix, start_after=start, limit=page_size + 1)
        names = [key[len(prefix):] for key, _ in rows]
        out: dict[str, Any] = {"results": names[:page_size], "timestamp": int(self.clock())}
        if len(names) > page_size:
            out["nextToken"] = base64.urlsafe_b64encode(names[page_size - 1].encode()).decode()
        return out

    # -- per-shadow queue ------------------------------------------------------------------------

    def _entry(self, thing: str, name: str | None) -> _Entry:
        key = shadow_key(thing, name)
        cache = self._cache
        entry = cache.get(key)
        if entry is not None:
            cache.move_to_end(key)
            return entry
        if len(cache) >= self.max_cached:
            self._evict()
        entry = cache[key] = _Entry(thing, name)
        return entry

    def _evict(self) -> None:
        """Drop the least recently used idle entries (their state is in storage); busy ones stay."""
        cache = self._cache
        for _ in range(8):  # look at a few of the oldest; busy ones go to the back
            if len(cache) < self.max_cached:
                return
            key, entry = next(iter(cache.items()))
            if entry.busy:
                cache.move_to_end(key)
            else:
                del cache[key]

    def _submit(self, entry: _Entry, req: _Request) -> None:
        if entry.busy:
            if len(entry.queue) >= self.max_queued:
                self._fail(entry, req, ShadowError(429, TOO_MANY_REQUESTS, req.client_token))
                return
            entry.queue.append(req)
            return
        entry.busy = True
        self._busy += 1
        entry.queue.append(req)
        self._drain(entry)

    def _drain(self, entry: _Entry) -> None:
        """Run queued requests until one waits for storage (its callback drains again) or none is left."""
        queue = entry.queue
        while queue:
            req = queue.popleft()
            if not entry.loaded:
                queue.appendleft(req)
                task = asyncio.get_running_loop().create_task(self._load(entry))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return
            try:
                if req.op == "get":
                    self._do_get(entry, req)
                elif req.op == "update":
                    if self._do_updates(entry, req):
                        return
                elif self._do_delete(entry, req):
                    return
            except Exception:  # a bug must not wedge the shadow: answer 500 and go on
                log.exception("shadow %s: %s failed", entry.key, req.op)
                self._fail(entry, req, ShadowError(500, INTERNAL_FAILURE, req.client_token))
        entry.busy = False
        self._busy -= 1

    async def _load(self, entry: _Entry) -> None:
        try:
            record = await self.storage.get_document(NAMESPACE, entry.key)
            if record is not None:
                entry.shadow = Shadow.from_record(record)
            else:
                tomb = await self.storage.get_document(DELETED_NAMESPACE, entry.key)
                if tomb is not None:
                    info = orjson.loads(tomb)
                    entry.deleted_version, entry.deleted_at = info["version"], info["deleted_at"]
            entry.loaded = True
        except Exception:
            log.exception("shadow %s: cannot load from storage", entry.key)
            self.stats.storage_failures += 1
            while entry.queue:
                req = entry.queue.popleft()
                self._fail(entry, req, ShadowError(500, INTERNAL_FAILURE, req.client_token))
        self._drain(entry)

    # -- operations ------------------------------------------------------------------------------

    def _do_get(self, entry: _Entry, req: _Request) -> None:
        shadow = entry.shadow
        if shadow is None:
            self._fail(entry, req, not_found(entry.thing, entry.name, req.client_token))
            return
        now = int(self.clock())
        if req.reply is not None:
            self._answer(req, orjson.dumps(shadow.document(now)))
        else:
            self._publish(f"{entry.prefix}/get/accepted", orjson.dumps(shadow.document(now, req.client_token)))
            self._release(req)

    def _do_updates(self, entry: _Entry, first: _Request) -> bool:
        """Apply ``first`` and the updates queued right behind it, in order, as one write.

        Each update is merged onto the result of the one before (versions N+1, N+2, ...); the last
        state is written once, and every answer waits for that commit. So a device with several
        requests in flight costs one storage write per commit cycle, not one cycle per request.
        Returns True while the write is pending (its callback answers and drains the queue).
        """
        now = self.clock()
        timestamp = int(now)
        shadow = entry.shadow
        version = entry.base_version(now)
        outcomes: list[tuple[_Request, Accepted | ShadowError, Shadow | None]] = []
        queue = entry.queue
        req = first
        try:
            while True:
                assert req.update is not None
                try:
                    accepted = apply_update(shadow, req.update, version, timestamp)
                except ShadowError as err:
                    outcomes.append((req, err, None))
                else:
                    outcomes.append((req, accepted, shadow))
                    shadow, version = accepted.shadow, accepted.shadow.version
                if len(outcomes) >= MAX_UPDATES_PER_WRITE or not queue or queue[0].op != "update":
                    break
                req = queue.popleft()
            if shadow is entry.shadow:  # all refused: nothing to write
                for req, err, _ in outcomes:
                    self._fail(entry, req, err)  # type: ignore[arg-type]
                return False
            assert shadow is not None
            fut = self.storage.put_document(NAMESPACE, entry.key, shadow.to_record())
        except Exception:  # a bug must not leave popped requests unanswered
            log.exception("shadow %s: update failed", entry.key)
            for req, _, _ in outcomes or [(first, None, None)]:
                self._fail(entry, req, ShadowError(500, INTERNAL_FAILURE, req.client_token))
            return False
        final = shadow
        fut.add_done_callback(lambda f: self._updates_committed(entry, outcomes, final, f))
        return True

    def _updates_committed(self, entry: _Entry, outcomes: list[tuple[_Request, Accepted | ShadowError, Shadow | None]],
                           final: Shadow, fut: asyncio.Future[None]) -> None:
        if not self._committed(entry, [req for req, _, _ in outcomes], fut):
            return
        entry.shadow = final
        done = 0
        try:
            if entry.deleted_version:  # re-created: the deletion record is obsolete (a stored shadow wins anyway)
                entry.deleted_version = 0
                _ignore_result(self.storage.delete_document(DELETED_NAMESPACE, entry.key))
            for req, outcome, previous in outcomes:
                if isinstance(outcome, ShadowError):
                    self._fail(entry, req, outcome)
                else:
                    self._accepted(entry, req, outcome, previous)
                done += 1
        except Exception:  # the state is committed; a bug in answering must not wedge the shadow
            log.exception("shadow %s: answering committed updates failed", entry.key)
            for req, _, _ in outcomes[done:]:
                self._fail(entry, req, ShadowError(500, INTERNAL_FAILURE, req.client_token))
        self._drain(entry)

    def _accepted(self, entry: _Entry, req: _Request, accepted: Accepted, previous: Shadow | None) -> None:
        """Publish ``/update/accepted``, ``/update/documents`` and (when out of sync) ``/update/delta``."""
        self.stats.accepted += 1
        prefix = entry.prefix
        shadow, token = accepted.shadow, req.client_token
        now = shadow.timestamp
        response = orjson.dumps(accepted.response)
        self._publish(f"{prefix}/update/accepted", response)
        topic = f"{prefix}/update/documents"
        if self._listened(topic):
            documents: dict[str, Any] = {"current": shadow.snapshot(), "timestamp": now}
            if previous is not None:
                documents = {"previous": previous.snapshot(), **documents}
            if token is not None:
                documents["clientToken"] = token
            self._publish(topic, orjson.dumps(documents))
        topic = f"{prefix}/update/delta"
        if shadow.delta and self._listened(topic):
            self._publish(topic, orjson.dumps(shadow.delta_message(now, token)))
        self._answer(req, response)

    def _listened(self, topic: str) -> bool:
        """Whether any subscriber (client, rule, bus handler) would get a message on ``topic``:
        messages nobody can receive are not built."""
        match = self.broker.router.match(topic)
        return bool(match.targets or match.shared_groups)

    def _do_delete(self, entry: _Entry, req: _Request) -> bool:
        shadow = entry.shadow
        if shadow is None:
            self._fail(entry, req, not_found(entry.thing, entry.name, req.client_token))
            return False
        now = self.clock()
        tomb = orjson.dumps({"version": shadow.version, "deleted_at": now})
        _ignore_result(self.storage.put_document(DELETED_NAMESPACE, entry.key, tomb))
        fut = self.storage.delete_document(NAMESPACE, entry.key)
        fut.add_done_callback(lambda f: self._delete_committed(entry, req, shadow.version, now, f))
        return True

    def _delete_committed(self, entry: _Entry, req: _Request, version: int, now: float,
                          fut: asyncio.Future[None]) -> None:
        if not self._committed(entry, [req], fut):
            return
        entry.shadow = None
        entry.deleted_version, entry.deleted_at = version, now
        self.stats.accepted += 1
        response: dict[str, Any] = {"version": version, "timestamp": int(now)}
        if req.client_token is not None:
            response["clientToken"] = req.client_token
        payload = orjson.dumps(response)
        try:
            self._publish(f"{entry.prefix}/delete/accepted", payload)
        except Exception:  # the deletion is committed; still answer and go on
            log.exception("shadow %s: publishing delete/accepted failed", entry.key)
        self._answer(req, payload)
        self._drain(entry)

    def _committed(self, entry: _Entry, reqs: list[_Request], fut: asyncio.Future[None]) -> bool:
        """False (after answering 500 to every request of the write and moving on) when it did not commit."""
        exc = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
        if exc is None:
            return True
        log.error("shadow %s: %s not committed: %s", entry.key, reqs[0].op, exc)
        self.stats.storage_failures += 1
        for req in reqs:
            self._fail(entry, req, ShadowError(500, INTERNAL_FAILURE, req.client_token))
        self._drain(entry)
        return False

    # -- answers ---------------------------------------------------------------------------------

    def _answer(self, req: _Request, payload: bytes) -> None:
        """Complete a request whose /accepted was published (MQTT) or whose caller waits (REST)."""
        if req.reply is not None:
            if not req.reply.done():
                req.reply.set_result(payload)
        else:
            self._release(req)

    def _fail(self, entry: _Entry, req: _Request, err: ShadowError) -> None:
        """REST callers get the error; MQTT requesters get it on /rejected (REST publishes nothing)."""
        if req.reply is not None:
            self.stats.rejected += 1
            if not req.reply.done():
                req.reply.set_exception(err)
        else:
            self._publish_error(entry.prefix, req.op, err)
            self._release(req)

    def _release(self, req: _Request) -> None:
        client_id = req.client_id
        if client_id is not None:
            count = self._inflight.get(client_id, 1) - 1
            if count > 0:
                self._inflight[client_id] = count
            else:
                self._inflight.pop(client_id, None)


def _ignore_result(fut: asyncio.Future[None]) -> None:
    """A write whose outcome changes nothing for the caller (storage logs failures): retrieve it."""
    fut.add_done_callback(lambda f: None if f.cancelled() else f.exception())
