"""A client's session: subscriptions, in-flight and queued outbound messages, QoS 2 inbound ids.

The session outlives its connection when it is persistent (3.1.1 clean session 0, or an MQTT 5
session expiry interval above 0). Every QoS 1/2 message handed to a persistent session is written
to storage, and the publisher's acknowledgement waits for that commit, so what the broker
acknowledged survives a crash.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from thingcore.auth import Action, Identity
from thingcore.broker.message import Message
from thingcore.broker.router import Entry
from thingcore.broker.stall import StallWatch

if TYPE_CHECKING:
    from thingcore.broker.connection import Connection
    from thingcore.broker.core import Broker

NEVER_EXPIRES = 0xFFFFFFFF
RECEIVE_CACHE_SIZE = 1024  # topics whose receive verdict a session remembers (the authorizer caches more)

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

    def to_record(self) -> bytes:
        return self.message.to_record(
            qos=self.qos, retain=self.retain, sids=list(self.subscription_ids), pid=self.packet_id, st=self.state
        )

    @classmethod
    def from_record(cls, seq: int, record: bytes) -> Outgoing:
        msg, e = Message.from_record(record)
        return cls(seq, msg, e["qos"], e["retain"], tuple(e["sids"]), e["pid"], e["st"])


class Session:
    """State of one client id; delivers to its connection or keeps messages while offline."""

    def __init__(self, broker: Broker, client_id: str, expiry_interval: int, protocol_level: int) -> None:
        self.broker = broker
        self.client_id = client_id
        self.expiry_interval = expiry_interval
        self.protocol_level = protocol_level
        self.connection: Connection | None = None
        # key: the filter as subscribed (with any $share/ prefix) -> (entry, share group, bare filter)
        self.subscriptions: dict[str, tuple[Entry, str | None, str]] = {}
        self.inflight: dict[int, Outgoing] = {}
        self.queue: deque[Outgoing] = deque()
        self.inbound_qos2: set[int] = set()
        self.disconnected_at: float | None = None
        # who owns the session: the connected client's identity, or (restored from storage) its owner's
        self.identity: Identity | None = None
        self._receive_cache: dict[str, bool] = {}
        self.expiry_handle: asyncio.TimerHandle | None = None
        self.will_handle: asyncio.TimerHandle | None = None
        self.will_message: Message | None = None
        self._next_pid = 1
        self._next_seq = 1
        self.discarded = False
        self.waiting_publishers: set[Connection] = set()
        self.stall_watch: StallWatch | None = None  # only while the client holds a backlog (broker/stall.py)

    def __repr__(self) -> str:
        return f"<Session {self.client_id!r} persistent={self.persistent}>"

    @property
    def persistent(self) -> bool:
        return self.expiry_interval > 0

    # -- who may receive what --------------------------------------------------------------------

    def set_identity(self, identity: Identity) -> None:
        self.identity = identity
        self._receive_cache.clear()

    def may_receive(self, topic: str) -> bool:
        """The gate's RECEIVE verdict for this session's owner on ``topic``, remembered per topic."""
        allowed = self._receive_cache.get(topic)
        if allowed is None:
            identity = self.identity
            allowed = identity is None or not self.broker.authorize(identity, Action.RECEIVE, topic)
            cache = self._receive_cache
            if len(cache) >= RECEIVE_CACHE_SIZE:
                cache.clear()
            cache[topic] = allowed
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

    # -- delivery --------------------------------------------------------------------------------

    def deliver(self, msg: Message, qos: int, retain: bool, sids: tuple[int, ...],
                cache: dict) -> asyncio.Future | None:
        """Send now, keep in flight, or queue; returns a storage future the publisher's ack waits on."""
        conn = self.connection
        if qos > msg.qos:
            qos = msg.qos
        broker = self.broker
        if qos == 0:
            if conn is not None:
                conn.send_publish(msg, 0, retain, sids, 0, False, cache)
            elif self.persistent and broker.queue_qos0:
                if len(self.queue) >= broker.max_queued:
                    broker.stats.dropped += 1
                else:
                    self.queue.append(Outgoing(0, msg, 0, retain, sids))
            return None
        out = Outgoing(self._next_seq, msg, qos, retain, sids)
        self._next_seq += 1
        if conn is not None and not self.queue and len(self.inflight) < conn.send_quota:
            out.packet_id = self._allocate_pid()
            out.state = SENT
            self.inflight[out.packet_id] = out
            conn.send_publish(msg, qos, retain, sids, out.packet_id, False, cache)
        else:
            if conn is not None and self.stall_watch is None:
                self.stall_watch = StallWatch(self, conn)
            if len(self.queue) >= broker.max_queued:
                broker.stats.dropped += 1
                return None
            self.queue.append(out)
            if conn is not None and len(self.queue) >= broker.backpressure_high and not self.stuck:
                broker.congested.append(self)
        if self.persistent and broker.storage is not None:
            return broker.storage.add_messages(self.client_id, [(out.seq, out.to_record())])
        return None

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
        queue = self.queue
        storage = self.broker.storage if self.persistent else None
        now = time.time()
        while queue and len(self.inflight) < conn.send_quota:
            out = queue.popleft()
            if out.message.expired(now):
                if storage is not None and out.qos:
                    storage.remove_messages(self.client_id, [out.seq])
                continue
            if out.qos == 0:
                conn.send_publish(out.message, 0, out.retain, out.subscription_ids, 0, False, None)
                continue
            out.packet_id = self._allocate_pid()
            out.state = SENT
            self.inflight[out.packet_id] = out
            conn.send_publish(out.message, out.qos, out.retain, out.subscription_ids, out.packet_id, False, None)
            if storage is not None:
                storage.replace_message(self.client_id, out.seq, out.to_record())
        if self.waiting_publishers and len(queue) <= self.broker.backpressure_low:
            self.release_publishers()
        if queue and self.stall_watch is None:  # resumed with a backlog
            self.stall_watch = StallWatch(self, conn)

    def release_publishers(self) -> None:
        for publisher in list(self.waiting_publishers):
            publisher.release()

    # -- stuck subscribers (broker/stall.py) -----------------------------------------------------

    @property
    def stuck(self) -> bool:
        """Known not to acknowledge: publishers are not paused for it."""
        watch = self.stall_watch
        return watch is not None and watch.stuck

    def has_backlog(self, conn: Connection) -> bool:
        return bool(self.queue) or len(self.inflight) >= conn.send_quota

    def waited_too_long(self) -> None:
        """A publisher waited backpressure_timeout for this session's queue to drain, in vain: it is stuck."""
        conn = self.connection
        if conn is None or len(self.queue) <= self.broker.backpressure_low:
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
            self.broker.storage.remove_messages(self.client_id, [out.seq])
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
            self.broker.storage.replace_message(self.client_id, out.seq, out.to_record())
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

    def restore(self, messages: list[tuple[int, bytes]], inbound_qos2: list[int]) -> None:
        for seq, record in messages:
            out = Outgoing.from_record(seq, record)
            if out.state != QUEUED and out.packet_id and out.packet_id not in self.inflight:
                self.inflight[out.packet_id] = out
            else:
                out.state = QUEUED
                out.packet_id = 0
                self.queue.append(out)
            self._next_seq = max(self._next_seq, seq + 1)
        self.inbound_qos2.update(inbound_qos2)
