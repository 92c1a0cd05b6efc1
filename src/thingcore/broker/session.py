"""A client's session: subscriptions, in-flight and queued outbound messages, QoS 2 inbound ids.

The session outlives its connection when it is persistent (3.1.1 clean session 0, or an MQTT 5
session expiry interval above 0). Every QoS 1/2 message handed to a persistent session is written
to storage, and the publisher's acknowledgement waits for that commit, so what the broker
acknowledged survives a crash. A message is stored once however many sessions it is queued for
(its body under ``Message.store_id``, each session's row holding only its delivery state).

After a restart a session's stored messages stay on disk (its ``backlog``) until its client is back;
they are then read a page at a time while it drains, so memory does not grow with what is queued.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import orjson

from thingcore.auth import Action, Identity
from thingcore.broker.flow import DROPPED, Dropped, QueueFullLog
from thingcore.broker.message import Message
from thingcore.broker.router import Entry
from thingcore.broker.stall import StallWatch

if TYPE_CHECKING:
    from thingcore.broker.connection import Connection
    from thingcore.broker.core import Broker
    from thingcore.storage import Storage, StoredMessage

log = logging.getLogger("thingcore.broker")

NEVER_EXPIRES = 0xFFFFFFFF
RECEIVE_CACHE_SIZE = 1024  # topics whose receive verdict a session remembers (the authorizer caches more)

#: A page of stored messages read for a reconnected session: at most this many, and it ends with the message
#: that brings it to PAGE_BYTES. The next page is read once a quarter of the last one is left.
PAGE_MESSAGES = 256
PAGE_BYTES = 4 * 1024 * 1024

QUEUED, SENT, RELEASED = 0, 1, 2  # Outgoing.state: waiting, PUBLISH sent, PUBREL sent (QoS 2)


@dataclass(slots=True)
class Outgoing:
    seq: int
    message: Message
    qos: int
    retain: bool
    subscription_ids: tuple[int, ...]
    packet_id: int = 0
    state: int = QUEUED

    def delivery_record(self) -> bytes:
        """This session's state of the delivery; the message itself is stored apart, once."""
        return orjson.dumps((self.qos, self.retain, self.subscription_ids, self.packet_id, self.state))

    @classmethod
    def from_stored(cls, row: StoredMessage) -> Outgoing:
        msg, legacy = Message.from_record(row.body)
        msg.store_id = row.message_id
        if row.delivery:
            qos, retain, sids, pid, st = orjson.loads(row.delivery)
        else:  # migrated from schema 2, where the record carried the delivery state
            qos, retain, sids, pid, st = legacy["qos"], legacy["retain"], legacy["sids"], legacy["pid"], legacy["st"]
        return cls(row.seq, msg, qos, retain, tuple(sids), pid, st)


class _DropLog:
    """One log line per interval for messages dropped over ``max_queued_bytes``, with the count since the last."""

    interval = 10.0

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0

    def dropped(self, client_id: str, limit: int) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.interval:
            log.warning("offline queues are at max_queued_bytes (%d): dropped %d message(s) for offline sessions,"
                        " latest for %s", limit, self.count, client_id)
            self.count, self.last = 0, now


_drop_log = _DropLog()
_queue_full_log = QueueFullLog()


_NO_VERDICTS: Mapping[str, bool] = MappingProxyType({})  # every session's receive cache until its first verdict


class Session:
    """State of one client id; delivers to its connection or keeps messages while offline."""

    # Slots, and what an idle session does not need made on first use (its queue, sets, receive cache): an
    # idle client costs its broker about half of what it did (docs/benchmarks.md, idle-memory). A new
    # attribute must be named here.
    __slots__ = (
        "_drop_stored",
        "_inbound_qos2",
        "_last_page",
        "_next_pid",
        "_next_seq",
        "_page",
        "_read_after",
        "_read_until",
        "_reader",
        "_receive_cache",
        "_waiting",
        "backlog",
        "broker",
        "client_id",
        "connection",
        "discarded",
        "disconnected_at",
        "expiry_handle",
        "expiry_interval",
        "identity",
        "inflight",
        "protocol_level",
        "queue",
        "stall_watch",
        "subscriptions",
        "will_handle",
        "will_message",
    )

    def __init__(self, broker: Broker, client_id: str, expiry_interval: int, protocol_level: int) -> None:
        self.broker = broker
        self.client_id = client_id
        self.expiry_interval = expiry_interval
        self.protocol_level = protocol_level
        self.connection: Connection | None = None
        # key: the filter as subscribed (with any $share/ prefix) -> (entry, share group, bare filter)
        self.subscriptions: dict[str, tuple[Entry, str | None, str]] = {}
        self.inflight: dict[int, Outgoing] = {}
        # waiting to be sent: a deque (760 bytes) once something waits (see _queue), () for every idle session
        self.queue: deque[Outgoing] | tuple[()] = ()
        self._inbound_qos2: set[int] | None = None  # made on first use (see inbound_qos2)
        self.disconnected_at: float | None = None
        # who owns the session: the connected client's identity, or (restored from storage) its owner's
        self.identity: Identity | None = None
        self._receive_cache: Mapping[str, bool] = _NO_VERDICTS  # a dict of its own from the first verdict
        self.expiry_handle: asyncio.TimerHandle | None = None
        self.will_handle: asyncio.TimerHandle | None = None
        self.will_message: Message | None = None
        self._next_pid = 1
        self._next_seq = 1
        self.discarded = False
        self._waiting: set[Connection] | None = None  # made on first use (see waiting_publishers)
        # Stored messages not in self.queue (a restart left them on disk): they come before it, in seq order.
        self.backlog = 0  # how many are still on disk
        # read from disk, not yet sent: a deque (760 bytes) only once a page was read, () for every idle session
        self._page: deque[Outgoing] | tuple[()] = ()
        self._read_after = 0  # seq of the last one read
        self._read_until = 0  # seq of the last one; later seqs are in self.queue
        self._last_page = 0
        self._reader: asyncio.Task | None = None
        self._drop_stored = False  # forget the stored session once it is read (it stopped being persistent)
        self.stall_watch: StallWatch | None = None  # only while the client holds a backlog (broker/stall.py)

    def __repr__(self) -> str:
        return f"<Session {self.client_id!r} persistent={self.persistent}>"

    @property
    def persistent(self) -> bool:
        return self.expiry_interval > 0

    # -- made on first use: an idle session needs none of them ----------------------------------

    @property
    def inbound_qos2(self) -> set[int]:
        """Packet ids of QoS 2 publishes received from the client and not yet released (PUBREL)."""
        ids = self._inbound_qos2
        if ids is None:
            ids = self._inbound_qos2 = set()
        return ids

    @property
    def waiting_publishers(self) -> set[Connection]:
        """Publishers paused until this session's queue drains (back-pressure)."""
        waiting = self._waiting
        if waiting is None:
            waiting = self._waiting = set()
        return waiting

    def _queue(self) -> deque[Outgoing]:
        """The queue, to append to: made on the first message that has to wait."""
        queue = self.queue
        if queue.__class__ is tuple:
            queue = self.queue = deque()
        return queue  # type: ignore[return-value]  # a deque: made above when it was still ()

    # -- who may receive what --------------------------------------------------------------------

    def set_identity(self, identity: Identity) -> None:
        self.identity = identity
        self._receive_cache = _NO_VERDICTS

    def may_receive(self, topic: str) -> bool:
        """The gate's RECEIVE verdict for this session's owner on ``topic``, remembered per topic."""
        allowed = self._receive_cache.get(topic)
        if allowed is None:
            identity = self.identity
            allowed = identity is None or not self.broker.authorize(identity, Action.RECEIVE, topic)
            cache = self._receive_cache
            if len(cache) >= RECEIVE_CACHE_SIZE or cache is _NO_VERDICTS:
                cache = self._receive_cache = {}
            cache[topic] = allowed  # type: ignore[index]  # a dict: made above when it was still shared
        return allowed

    def owner_record(self) -> dict[str, Any] | None:
        identity = self.identity
        if identity is None:
            return None
        return {"principal": identity.principal, "username": identity.username, "anonymous": identity.anonymous}

    @staticmethod
    def owner_identity(client_id: str, owner: dict[str, Any] | None) -> Identity | None:
        """The owner of a stored session, enough for access rules while its client is away."""
        if not owner:
            return None
        return Identity(client_id=client_id, username=owner.get("username"), principal=owner.get("principal"),
                        listener="", address="", anonymous=bool(owner.get("anonymous", True)))

    @property
    def queued_count(self) -> int:
        """Messages waiting to be sent: in memory and still on disk."""
        return len(self.queue) + len(self._page) + self.backlog

    # -- delivery --------------------------------------------------------------------------------

    def deliver(self, msg: Message, qos: int, retain: bool, sids: tuple[int, ...],
                cache: dict) -> asyncio.Future | Dropped | None:
        """Send now, keep in flight, or queue; returns a storage future the publisher's ack waits on, or
        DROPPED when the queue was full (broker/flow.py)."""
        conn = self.connection
        if qos > msg.qos:
            qos = msg.qos
        broker = self.broker
        if qos == 0:
            if conn is not None:
                conn.send_publish(msg, 0, retain, sids, 0, False, cache)
            elif self.persistent and broker.queue_qos0:
                if len(self.queue) + self.backlog >= broker.max_queued:
                    return self._drop(conn)
                self._queue().append(Outgoing(0, msg, 0, retain, sids))
            return None
        storage = broker.storage if self.persistent else None
        if conn is None and storage is not None and not msg.store_id and self._over_bytes(storage, msg):
            return DROPPED
        out = Outgoing(self._next_seq, msg, qos, retain, sids)
        self._next_seq += 1
        if conn is not None and not self.queue and not self.backlog and not self._page \
                and len(self.inflight) < conn.send_quota:
            out.packet_id = self._allocate_pid()
            out.state = SENT
            self.inflight[out.packet_id] = out
            conn.send_publish(msg, qos, retain, sids, out.packet_id, False, cache)
        else:
            if conn is not None and self.stall_watch is None and not conn.closing:
                self.stall_watch = StallWatch(self, conn)
            queued = len(self.queue) + self.backlog + len(self._page)
            if queued >= broker.max_queued:
                return self._drop(conn)
            self._queue().append(out)
            if conn is not None:
                queued += 1
                if queued >= broker.backpressure_high and self.worth_waiting_for:
                    broker.congested.append(self)
                if queued >= broker.max_queued and self.holds_publishers:  # the next publish waits (broker/flow.py)
                    broker.full_sessions.add(self)
        if storage is not None:
            return self._store(storage, out)
        return None

    def _drop(self, conn: Connection | None) -> Dropped:
        """The queue is full: the message is dropped for this session, counted and logged (once a minute)."""
        broker = self.broker
        broker.stats.dropped += 1
        if conn is not None and self.holds_publishers:
            broker.full_sessions.add(self)
        _queue_full_log.dropped(self, conn is not None)
        return DROPPED

    def would_drop(self) -> bool:
        """The next QoS 1/2 message for this session would be dropped: its queue is at max_queued_messages."""
        queued = len(self.queue) + self.backlog + len(self._page)
        if queued < self.broker.max_queued:
            return False
        conn = self.connection
        return queued > 0 or conn is None or len(self.inflight) >= conn.send_quota

    @property
    def holds_publishers(self) -> bool:
        """A publish its full queue cannot take waits for room instead of being dropped for it: the client is
        online and watched, and not known stuck (broker/stall.py); a watch stopped for a client being
        disconnected holds nobody either."""
        watch = self.stall_watch
        return watch is not None and not watch.stuck and self.connection is not None

    def _over_bytes(self, storage: Storage, msg: Message) -> bool:
        """A message not stored yet, for an offline session, beyond ``max_queued_bytes``: it is dropped."""
        limit = self.broker.settings.limits.max_queued_bytes
        if limit and storage.queued_bytes + len(msg.payload) > limit:
            self.broker.stats.dropped += 1
            _drop_log.dropped(self.client_id, limit)
            return True
        return False

    def _store(self, storage: Storage, out: Outgoing) -> asyncio.Future:
        """Queue ``out`` in storage; its message body goes along once per fan-out (the first session stores it)."""
        msg = out.message
        mid = msg.store_id
        body = None
        if not mid:
            mid = msg.store_id = storage.next_message_id()
            body = (mid, msg.to_record(), len(msg.payload))
        elif not storage.recently_put(mid):  # e.g. a retained message delivered again: its body may be gone
            body = (mid, msg.to_record(), len(msg.payload))
        return storage.add_messages(self.client_id, [(out.seq, mid, out.delivery_record())], body)

    def _allocate_pid(self) -> int:
        pid = self._next_pid
        inflight = self.inflight
        while pid in inflight:
            pid = pid + 1 if pid < 65535 else 1
        self._next_pid = pid + 1 if pid < 65535 else 1
        return pid

    def pump(self) -> None:
        """Move queued messages into flight while the client's receive window allows."""
        conn = self.connection
        if conn is None:
            return
        if self.backlog or self._page:  # stored messages first, read from disk a page at a time
            if self._page:
                self._send_from(self._page, conn)  # type: ignore[arg-type]  # non-empty: a deque
            if self.backlog and self._reader is None and len(self._page) <= self._last_page // 4:
                self._read_page()
        if not (self.backlog or self._page):
            self._send_from(self.queue, conn)
        if self._waiting and self.queued_count <= self.broker.backpressure_low:
            self.release_publishers()
        if self.stall_watch is None and self.has_backlog(conn):  # e.g. resumed with messages waiting
            self.stall_watch = StallWatch(self, conn)

    def _send_from(self, queue: deque[Outgoing], conn: Connection) -> None:
        storage = self.broker.storage if self.persistent else None
        now = time.time()
        while queue and len(self.inflight) < conn.send_quota:
            out = queue.popleft()
            if out.message.expired(now):
                if storage is not None and out.qos:
                    storage.remove_messages(self.client_id, [out.seq], [out.message.store_id])
                continue
            if out.qos == 0:
                conn.send_publish(out.message, 0, out.retain, out.subscription_ids, 0, False, None)
                continue
            out.packet_id = self._allocate_pid()
            out.state = SENT
            self.inflight[out.packet_id] = out
            conn.send_publish(out.message, out.qos, out.retain, out.subscription_ids, out.packet_id, False, None)
            if storage is not None:
                storage.replace_message(self.client_id, out.seq, out.delivery_record())

    def release_publishers(self) -> None:
        """The queue drained (or the client went away, or is stuck): publishers waiting for it go on."""
        self.broker.full_sessions.discard(self)
        for publisher in list(self._waiting or ()):
            publisher.release()

    # -- stuck subscribers (broker/stall.py) -----------------------------------------------------

    @property
    def stuck(self) -> bool:
        """Known not to acknowledge: publishers are not paused for it."""
        watch = self.stall_watch
        return watch is not None and watch.stuck

    @property
    def worth_waiting_for(self) -> bool:
        """Publishers are paused only for a subscriber that shows progress: it acknowledged something since
        its backlog began and is not known stuck. One that acknowledged nothing (a client that subscribes
        and never reads) costs nobody a pause, however often it reconnects."""
        watch = self.stall_watch
        return watch is not None and watch.acks > 0 and not watch.stuck

    def has_backlog(self, conn: Connection) -> bool:
        return bool(self.queue or self._page or self.backlog) or len(self.inflight) >= conn.send_quota

    def waited_too_long(self) -> None:
        """A publisher waited backpressure_timeout for this session's queue to drain, in vain: it is stuck."""
        conn = self.connection
        if conn is None or self.queued_count <= self.broker.backpressure_low:
            return
        if self.stall_watch is None:
            self.stall_watch = StallWatch(self, conn)
        self.stall_watch.mark_stuck("its queue did not drain while a publisher waited")

    def resend_inflight(self) -> None:
        """After a reconnect: every unacknowledged PUBLISH again with DUP set, PUBRELs again, in order."""
        conn = self.connection
        if conn is None:
            return
        if self.stall_watch is not None:  # a new connection is judged afresh (pump starts a watch if needed)
            self.stall_watch.stop()
        if self.would_drop():  # publishers wait for it to drain (broker/flow.py)
            self.broker.full_sessions.add(self)
        for out in list(self.inflight.values()):
            if out.state == RELEASED:
                conn.send_pubrel(out.packet_id)
            else:
                conn.send_publish(out.message, out.qos, out.retain, out.subscription_ids, out.packet_id, True, None)

    # -- acknowledgements from the client --------------------------------------------------------

    def acknowledge(self, packet_id: int, expect_qos: int) -> bool:
        """PUBACK (QoS 1) or PUBCOMP (QoS 2) or a failing PUBREC: the message is done."""
        out = self.inflight.get(packet_id)
        if out is None or out.qos != expect_qos:
            return False
        del self.inflight[packet_id]
        if self.persistent and self.broker.storage is not None:
            self.broker.storage.remove_messages(self.client_id, [out.seq], [out.message.store_id])
        self.pump()
        if self.stall_watch is not None:
            self.stall_watch.acked()
        return True

    def received(self, packet_id: int) -> bool:
        """PUBREC: the QoS 2 message reached the client; PUBREL follows."""
        out = self.inflight.get(packet_id)
        if out is None or out.qos != 2:
            return False
        out.state = RELEASED
        if self.persistent and self.broker.storage is not None:
            self.broker.storage.replace_message(self.client_id, out.seq, out.delivery_record())
        if self.stall_watch is not None:
            self.stall_watch.acked()
        return True

    # -- persistence -----------------------------------------------------------------------------

    def meta_record(self) -> bytes:
        subs = [
            [key, e.qos, e.no_local, e.retain_as_published, e.retain_handling, e.subscription_id]
            for key, (e, _group, _bare) in self.subscriptions.items()
        ]
        return orjson.dumps({
            "expiry": self.expiry_interval, "level": self.protocol_level, "subs": subs,
            "disconnected_at": self.disconnected_at, "owner": self.owner_record(),
        })

    def save(self) -> asyncio.Future | None:
        if self.persistent and self.broker.storage is not None:
            return self.broker.storage.save_session(self.client_id, self.meta_record())
        return None

    def restore(self, queued: int, last_seq: int, inbound_qos2: list[int]) -> None:
        """Take over a session from storage at start: its ``queued`` messages (up to seq ``last_seq``) stay
        on disk until its client is back, and are read then (in-flight ones first, as they precede the rest)."""
        self.backlog = queued
        self._read_until = last_seq
        self._next_seq = max(self._next_seq, last_seq + 1)
        if inbound_qos2:
            self.inbound_qos2.update(inbound_qos2)

    def end_persistence(self) -> None:
        """The stored session resumes without persistence (MQTT 5 session expiry 0): storage forgets it, once
        its stored messages are read into memory (the connection still owes them to the client)."""
        storage = self.broker.storage
        if storage is None:
            return
        if self.backlog:
            self._drop_stored = True
            if self._reader is None:
                self._read_page()
        else:
            storage.delete_session(self.client_id)

    def _read_page(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        storage = self.broker.storage
        assert storage is not None
        try:
            rows = await storage.load_messages(self.client_id, self._read_after, PAGE_MESSAGES, PAGE_BYTES)
        except Exception:
            log.exception("cannot read the stored messages of session %s; retrying", self.client_id)
            await asyncio.sleep(1.0)
            self._reader = None
            if not self.discarded:
                self.pump()
            return
        self._reader = None
        if self.discarded:
            return
        self._take_page(rows)
        if self._drop_stored:
            if self.backlog:
                self._read_page()
                return
            self._drop_stored = False
            if not self.persistent:
                storage.delete_session(self.client_id)
        self.pump()

    def _take_page(self, rows: list[StoredMessage]) -> None:
        """Rows in flight before the restart go back in flight (and are resent if the client is here); the
        others queue up in ``_page`` before everything that arrived since."""
        conn = self.connection
        until = self._read_until
        ended = not rows
        self._last_page = len(rows)
        for row in rows:
            if row.seq > until:  # arrived after the restart: already in self.queue
                ended = True
                break
            out = Outgoing.from_stored(row)
            self._read_after = row.seq
            self.backlog -= 1
            if out.state != QUEUED and out.packet_id and out.packet_id not in self.inflight:
                self.inflight[out.packet_id] = out
                if conn is not None:
                    if out.state == RELEASED:
                        conn.send_pubrel(out.packet_id)
                    else:
                        conn.send_publish(out.message, out.qos, out.retain, out.subscription_ids, out.packet_id,
                                          True, None)
            else:
                out.state = QUEUED
                out.packet_id = 0
                if not isinstance(self._page, deque):
                    self._page = deque()
                self._page.append(out)
        if ended or self._read_after >= until or self.backlog <= 0:
            self.backlog = 0
