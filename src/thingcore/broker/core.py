"""The broker core: sessions, routing, retained messages, wills, and the in-process bus.

It knows nothing about sockets (connections call it) and nothing about shadows or rules (they are
bus subscribers). ``publish(message)`` is the one entry point for every message, whoever sent it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import orjson

from thingcore.auth import Action, AuthResult, Identity, allow_all
from thingcore.broker.admission import Admission, PublishRefused, who
from thingcore.broker.flow import DROPPED, PublishHeld
from thingcore.broker.keepalive import KeepAliveWheel
from thingcore.broker.message import Message
from thingcore.broker.retained import RetainedStore
from thingcore.broker.router import Entry, Router
from thingcore.broker.session import NEVER_EXPIRES, Session
from thingcore.mqtt import MQTTError, ReasonCode
from thingcore.mqtt.packets import MQTT_5, Connect, Subscription

if TYPE_CHECKING:
    from thingcore.broker.connection import Connection
    from thingcore.config import Settings
    from thingcore.storage import Storage

log = logging.getLogger("thingcore.broker")

MessageHandler = Callable[[Message], Any]
EventHook = Callable[[str, dict[str, Any]], None]


@dataclass(slots=True)
class Stats:
    connections_total: int = 0
    connects_refused: int = 0
    connect_timeouts: int = 0
    protocol_errors: int = 0
    msgs_in: int = 0
    msgs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped: int = 0
    expired: int = 0
    publishes_refused: int = 0
    slow_consumers: int = 0
    wills_published: int = 0
    retained_refused: int = 0
    subscriptions_refused: int = 0
    sessions_refused: int = 0
    tls_handshakes_refused: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# reserved topics a client may publish to on AWS: shadows, jobs, Device Defender, Basic Ingest, fleet provisioning
_AWS_PUBLISHABLE = ("$aws/things/", "$aws/rules/", "$aws/certificates/create/", "$aws/certificates/create-from-csr/",
                    "$aws/provisioning-templates/")


class BusSubscription:
    """An in-process subscriber (shadow service, rules engine, dashboard feed): the broker's own services,
    trusted to receive what they subscribe to (``identity`` None)."""

    __slots__ = ("client_id", "filter", "handler", "qos")
    identity = None

    def __init__(self, name: str, topic_filter: str, handler: MessageHandler, qos: int) -> None:
        self.client_id = name
        self.filter = topic_filter
        self.handler = handler
        self.qos = qos

    def deliver(self, msg: Message, qos: int, retain: bool, sids: tuple[int, ...],
                cache: dict | None) -> asyncio.Future | None:
        """Call the handler; a future it returns (the rules engine's outbox commit) holds back the PUBACK."""
        try:
            result = self.handler(msg)
        except Exception:
            log.exception("bus subscriber %s failed on %s", self.client_id, msg.topic)
            return None
        if result is None or not isinstance(result, asyncio.Future):
            return None
        return result


async def _allow_anyone(_identity: Identity, _password: bytes | None) -> AuthResult:
    return AuthResult()


class Broker:
    def __init__(
        self,
        settings: Settings,
        storage: Storage | None = None,
        authenticate: Callable[..., Any] | None = None,
        authorize: Callable[[Identity, Action, str | None], int] | None = None,
        *,
        authorize_is_trivial: bool | None = None,
    ) -> None:
        limits = settings.limits
        self.settings = settings
        self.storage = storage
        self.authenticate = authenticate or _allow_anyone
        self.authorize = authorize or allow_all
        self.authorize_all = authorize is None or authorize is allow_all if authorize_is_trivial is None \
            else authorize_is_trivial
        self.aws_profile = settings.profile == "aws"
        self.max_packet_size = limits.max_packet_size
        self.max_inflight = limits.max_inflight
        self.max_queued = limits.max_queued_messages
        # what an MQTT 3.1.1 clean-session-0 connection gets as its session expiry (AWS IoT: 1 hour)
        self.persistent_session_expiry = limits.persistent_session_expiry or NEVER_EXPIRES
        self.queue_qos0 = limits.queue_qos0
        self.connect_timeout = limits.connect_timeout
        self.max_output_buffer = limits.max_output_buffer
        self.output_high_water = max(limits.max_output_buffer // 4, 16384)
        self.slow_consumer_timeout = limits.slow_consumer_timeout
        # back-pressure on QoS 1/2 publishers while an online subscriber's queue is over half full
        self.backpressure_high = max(limits.max_queued_messages // 2, 1)
        self.backpressure_low = limits.max_queued_messages // 4
        self.backpressure_timeout = limits.backpressure_timeout
        self.first_ack_grace = min(limits.backpressure_first_ack, limits.backpressure_timeout)  # broker/stall.py
        self.congested: list[Session] = []
        self.keep_alive_wheel = KeepAliveWheel()  # every connection's keep-alive deadline, one timer
        # online sessions whose queue was full, a hint for publish(hold=True): checked before use (broker/flow.py)
        self.full_sessions: set[Session] = set()
        # set by publish(hold=True) when every subscriber the QoS 1/2 message matched dropped it; the caller clears it
        self.unqueued = False
        self.receive_maximum = limits.receive_maximum
        self.topic_alias_maximum = limits.topic_alias_maximum
        self.max_connections = limits.max_connections
        self.max_client_id = limits.max_client_id_length
        self.max_qos = 1 if self.aws_profile else 2
        self.subscription_identifiers = not self.aws_profile
        self.max_subscriptions = limits.max_subscriptions if limits.max_subscriptions is not None \
            else 50 if self.aws_profile else 1000
        self.max_sessions = limits.max_sessions
        if self.aws_profile:
            self.topic_alias_maximum = min(self.topic_alias_maximum, 8)
            self.max_client_id = min(self.max_client_id, 128)
            self.max_inflight = min(self.max_inflight, 100)
            self.receive_maximum = min(self.receive_maximum, 100)
        self.topic_limits = self._aws_topic_limits if self.aws_profile else None
        self.filter_limits = self._aws_filter_limits if self.aws_profile else None
        self.connack_properties: dict[str, Any] = {
            "receive_maximum": self.receive_maximum,
            "maximum_packet_size": self.max_packet_size,
            "topic_alias_maximum": self.topic_alias_maximum,
        }
        if self.max_qos < 2:
            self.connack_properties["maximum_qos"] = self.max_qos
        if not self.subscription_identifiers:
            self.connack_properties["subscription_identifier_available"] = 0
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        self.router = Router()
        self.retained = RetainedStore(limits.max_retained_messages, limits.max_retained_bytes)
        self.stats = Stats()
        self.hooks: list[EventHook] = []
        # Basic Ingest: the rules engine takes every message on $aws/rules/... before routing (no subscriber
        # ever sees one); None when no rules engine runs
        self.rules_ingest: MessageHandler | None = None
        self._shared_rr: dict[tuple[str, str], int] = {}
        self._bus_seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.admission = Admission(self)  # the one gate: publish(msg, origin) runs its stages

    # -- start and stop --------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.storage is None:
            return
        for _topic, record in await self.storage.load_retained():
            msg, _ = Message.from_record(record)
            self.retained.set(msg)
        now = time.time()
        v311_expiry = self.settings.limits.persistent_session_expiry
        for stored in await self.storage.load_sessions():
            meta = orjson.loads(stored.meta)
            session = Session(self, stored.client_id, meta["expiry"], meta["level"])
            session.disconnected_at = meta.get("disconnected_at") or now
            session.identity = Session.owner_identity(stored.client_id, meta.get("owner"))
            if session.expiry_interval >= NEVER_EXPIRES and session.protocol_level < 5 and v311_expiry:
                # kept forever by an older version (or before the setting): the configured expiry from now on
                session.expiry_interval = v311_expiry
                session.disconnected_at = max(session.disconnected_at, now)
            for key, qos, nl, rap, rh, sid in meta["subs"]:
                from thingcore.mqtt.topics import parse_shared

                group, bare = parse_shared(key)
                self.add_subscription(session, key, Entry(qos, nl, rap, rh, sid), group, bare)
            # only counts: the messages stay on disk until the client is back (Session.pump reads them)
            session.restore(stored.queued, stored.last_seq, stored.inbound_qos2)
            self.sessions[session.client_id] = session
            self._schedule_expiry(session, now)
        log.info("restored %d retained messages and %d sessions (%d messages queued, %d bytes stored)",
                 len(self.retained), len(self.sessions), sum(s.backlog for s in self.sessions.values()),
                 self.storage.queued_bytes)

    async def stop(self, grace: float = 1.0) -> None:
        """Tell every client the server is shutting down (v5 0x8B) and save session state."""
        for conn in list(self.connections):
            conn.disconnect_reason = "SERVER_INITIATED_DISCONNECT"
            conn.close(ReasonCode.SERVER_SHUTTING_DOWN, "server shutting down")
        deadline = time.monotonic() + grace
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        self.keep_alive_wheel.close()
        now = time.time()
        for session in self.sessions.values():
            if session.persistent:
                if session.disconnected_at is None:
                    session.disconnected_at = now
                session.save()
            for handle in (session.expiry_handle, session.will_handle):
                if handle is not None:
                    handle.cancel()
        if self.storage is not None:
            await self.storage.flush()

    # -- connections -----------------------------------------------------------------------------

    def connection_opened(self, conn: Connection) -> None:
        self.connections.add(conn)
        self.stats.connections_total += 1

    def check_connect(self, conn: Connection, packet: Connect, client_id: str) -> tuple[int, str]:
        if len(client_id.encode()) > self.max_client_id:
            return ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, "client id too long"
        if self.aws_profile and packet.client_id.startswith("$"):
            return ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, "client ids starting with $ are reserved"
        if self.max_connections and self.connected_count() >= self.max_connections \
                and client_id not in self.sessions:
            return ReasonCode.QUOTA_EXCEEDED if packet.protocol_level == MQTT_5 else ReasonCode.SERVER_UNAVAILABLE, \
                "connection limit reached"
        if self.max_sessions and client_id not in self.sessions and len(self.sessions) >= self.max_sessions:
            return self._sessions_full(packet)
        will = packet.will
        if will is not None:  # its topic and permission are the gate's, once the client is known (admit_will)
            if will.qos > self.max_qos:
                return ReasonCode.QOS_NOT_SUPPORTED, f"will QoS {will.qos} is not supported"
            if will.properties.get("payload_format_indicator") == 1:
                try:
                    will.payload.decode("utf-8")
                except UnicodeDecodeError:
                    return ReasonCode.PAYLOAD_FORMAT_INVALID, "will payload is not UTF-8"
        return 0, ""

    def admit_will(self, will: Message, identity: Identity) -> tuple[int, str]:
        """A will is a publish the client makes in advance: the gate judges it at CONNECT (and again when due)."""
        try:
            self.admission.admit(will, identity, in_advance=True)
        except PublishRefused as refusal:
            return refusal.reason_code, f"will refused: {refusal.message}"
        return 0, ""

    def check_owner(self, client_id: str, identity: Identity) -> tuple[int, str]:
        """A session belongs to the principal that made it: another principal may not take it over (and with
        it the messages queued for it). Anonymous clients share the one anonymous principal."""
        existing = self.sessions.get(client_id)
        if existing is None or existing.identity is None or existing.identity.principal == identity.principal:
            return 0, ""
        self.admission.log("refused CONNECT of %s as client id %r: the session belongs to another principal",
                           who(identity), client_id)
        return ReasonCode.NOT_AUTHORIZED, "this client id belongs to another principal"

    def _sessions_full(self, packet: Connect) -> tuple[int, str]:
        """A CONNECT that would start a session past max_sessions (connected and offline ones count)."""
        self.stats.sessions_refused += 1
        reason = ReasonCode.QUOTA_EXCEEDED if packet.protocol_level == MQTT_5 else ReasonCode.SERVER_UNAVAILABLE
        return reason, f"session limit reached ({self.max_sessions} sessions)"

    def subscription_refused(self, conn: Connection, topic_filter: str, why: str | None = None,
                             reason: int = ReasonCode.QUOTA_EXCEEDED) -> None:
        """A SUBSCRIBE filter refused (not authorized, invalid, past max_subscriptions): counted and logged with
        the client id and peer (the SUBACK carries the reason code)."""
        self.stats.subscriptions_refused += 1
        if why is None:
            why = f"{self.max_subscriptions} subscriptions is the limit per client"
        self.admission.log("refused a subscription to %r from client %r (%s, %s): %s [0x%02X]", topic_filter[:200],
                           conn.client_id, conn.address, conn.listener, why, int(reason))

    def connected_count(self) -> int:
        return sum(1 for s in self.sessions.values() if s.connection is not None)

    def effective_keep_alive(self, requested: int) -> int:
        if self.aws_profile:
            if requested == 0 or requested > 1200:
                return 1200
            return max(requested, 30)
        limit = self.settings.limits.max_keepalive
        if limit < 65535 and (requested == 0 or requested > limit):
            return limit
        return requested

    def cap_session_expiry(self, expiry: int) -> int:
        cap = self.settings.limits.session_expiry_max
        if cap is not None and expiry > cap:
            return cap
        return expiry

    def attach(self, conn: Connection, client_id: str, clean_start: bool, expiry: int) -> tuple[Session, bool]:
        """Give the connection its session: take over, resume or start fresh."""
        existing = self.sessions.get(client_id)
        if existing is not None and existing.connection is not None:
            old = existing.connection
            old.disconnect_reason = "DUPLICATE_CLIENTID"
            self._connection_ended(old)
            old.close(ReasonCode.SESSION_TAKEN_OVER, "another connection took over this client id")
        if existing is not None and (clean_start or existing.discarded):
            if existing.will_handle is not None:  # the session ends now: a delayed will is due now
                existing.will_handle.cancel()
                self._delayed_will(existing)
            self._discard(existing)
            existing = None
        if existing is None:
            session = Session(self, client_id, expiry, conn.level)
            self.sessions[client_id] = session
            present = False
        else:
            session = existing
            present = True
            for attr in ("expiry_handle", "will_handle"):
                handle = getattr(session, attr)
                if handle is not None:
                    handle.cancel()
                    setattr(session, attr, None)
            session.will_message = None
            if session.persistent and not expiry and self.storage is not None:
                session.end_persistence()
        session.expiry_interval = expiry
        session.protocol_level = conn.level
        session.connection = conn
        session.set_identity(conn.identity)
        session.disconnected_at = None
        if not present or session.persistent:
            session.save()
        return session, present

    def client_connected(self, conn: Connection) -> None:
        self._emit("connected", conn, {})

    def connection_closed(self, conn: Connection, was_connected: bool) -> None:
        self.connections.discard(conn)
        if was_connected:
            self._connection_ended(conn)

    def _connection_ended(self, conn: Connection) -> None:
        session = conn.session
        if session is None or session.connection is not conn:
            return
        session.connection = None
        self.full_sessions.discard(session)
        session.release_publishers()  # an offline queue is bounded by dropping, not by waiting
        now = time.time()
        session.disconnected_at = now
        self._emit("disconnected", conn, {"reason": conn.disconnect_reason, "graceful": conn.graceful})
        will = conn.will
        conn.will = None
        if will is not None:
            delay = min(conn.will_delay, session.expiry_interval)
            if delay <= 0:
                self._publish_will(will, conn.identity)
            else:
                session.will_message = will
                session.will_handle = self._loop.call_later(delay, self._delayed_will, session)
        if not session.persistent:
            self._discard(session)
        else:
            session.save()
            self._schedule_expiry(session, now)

    def _delayed_will(self, session: Session) -> None:
        session.will_handle = None
        will, session.will_message = session.will_message, None
        if will is not None and session.connection is None:
            self._publish_will(will, session.identity)

    def _publish_will(self, will: Message, identity: Identity | None) -> None:
        will.received_at = time.time()
        try:
            self.publish(will, identity)
        except PublishRefused:  # logged by the gate; the client was told at CONNECT if it was refused then
            return
        self.stats.wills_published += 1

    def _schedule_expiry(self, session: Session, now: float) -> None:
        if session.expiry_interval >= NEVER_EXPIRES or self._loop is None:
            return
        left = session.expiry_interval - (now - (session.disconnected_at or now))
        session.expiry_handle = self._loop.call_later(max(left, 0), self._expire, session)

    def _expire(self, session: Session) -> None:
        session.expiry_handle = None
        if session.connection is not None or self.sessions.get(session.client_id) is not session:
            return
        if session.will_handle is not None:  # the will is due no later than the session's end
            session.will_handle.cancel()
            self._delayed_will(session)
        log.info("session %s expired", session.client_id)
        self._discard(session)

    def _discard(self, session: Session) -> None:
        for _key, (_entry, group, bare) in list(session.subscriptions.items()):
            self.router.remove(session, bare, group)
        session.subscriptions.clear()
        session.discarded = True
        self.full_sessions.discard(session)
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        if self.storage is not None:
            self.storage.delete_session(session.client_id)

    # -- subscriptions ---------------------------------------------------------------------------

    def add_subscription(self, session: Session, key: str, entry: Entry, group: str | None, bare: str) -> bool:
        old = session.subscriptions.get(key)
        session.subscriptions[key] = (entry, group, bare)
        self.router.add(session, bare, entry, group)
        return old is None

    def remove_subscription(self, session: Session, key: str) -> bool:
        found = session.subscriptions.pop(key, None)
        if found is None:
            return False
        _entry, group, bare = found
        self.router.remove(session, bare, group)
        return True

    def send_retained(self, session: Session, sub: Subscription, sub_id: int | None) -> None:
        sids = (sub_id,) if sub_id else ()
        now = time.time()
        qos_cap = min(sub.qos, self.max_qos)
        check = not self.authorize_all
        for msg in self.retained.match(sub.filter):
            if msg.expired(now):
                continue
            if check and not session.may_receive(msg.topic):
                continue
            session.deliver(msg, qos_cap, True, sids, None)

    def client_subscribed(self, conn: Connection, filters: list[str]) -> None:
        if filters:
            self._emit("subscribed", conn, {"topics": filters})

    def client_unsubscribed(self, conn: Connection, filters: list[str]) -> None:
        self._emit("unsubscribed", conn, {"topics": filters})

    # -- the bus ---------------------------------------------------------------------------------

    def subscribe(self, topic_filter: str, handler: MessageHandler, *, qos: int = 1,
                  name: str | None = None) -> BusSubscription:
        """Call ``handler(message)`` for every message matching the filter (in the event loop)."""
        self._bus_seq += 1
        return self.add_bus_subscription(BusSubscription(name or f"$bus/{self._bus_seq}", topic_filter, handler, qos))

    def add_bus_subscription(self, sub: BusSubscription) -> BusSubscription:
        """Add a ready-made bus subscription: a subclass may override ``deliver`` (one call less per message)."""
        from thingcore.mqtt.topics import parse_shared, validate_topic_filter

        group, bare = parse_shared(sub.filter)
        validate_topic_filter(bare)
        self.router.add(sub, bare, Entry(sub.qos), group)
        return sub

    def unsubscribe(self, sub: BusSubscription) -> None:
        from thingcore.mqtt.topics import parse_shared

        group, bare = parse_shared(sub.filter)
        self.router.remove(sub, bare, group)

    def publish(self, msg: Message, origin: Identity | None = None, *, hold: bool = False) -> asyncio.Future | None:
        """Admit one message through the gate (when it comes from a client: ``origin``) and route it to every
        matching subscriber that may receive it.

        Raises :class:`~thingcore.broker.admission.PublishRefused` when the gate refuses it. Returns None,
        or a future that resolves once every copy owed to a persistent session (and a retained message, and
        the rules engine's outbox entries) is committed to storage: the publisher's acknowledgement waits
        for it. ``origin`` None is the broker's own services speaking (shadow answers, lifecycle events).

        ``hold``: the caller can wait (an MQTT connection, an HTTP request). A QoS 1/2 message that an online
        subscriber's full queue cannot take then raises :class:`~thingcore.broker.flow.PublishHeld` before
        anything is routed, and ``unqueued`` tells it afterwards when no subscriber could take the message.
        """
        if origin is not None:
            self.admission.admit(msg, origin)
        if self.congested:  # congestion is reported for the latest publish only; in-process publishers ignore it
            self.congested = []
        topic = msg.topic
        if topic.startswith("$aws/rules/") and self.rules_ingest is not None:
            self.stats.msgs_in += 1
            return self.rules_ingest(msg)
        match = self.router.match(topic)
        if self.full_sessions and hold and msg.qos:
            blockers = self._blockers(match, msg)
            if blockers:
                raise PublishHeld(blockers)
        self.stats.msgs_in += 1
        futures: list[asyncio.Future] | None = None
        if msg.retain:
            fut = self._retain(msg)
            if fut is not None and msg.qos:
                futures = [fut]
        cache: dict = {}
        check = not self.authorize_all
        sender = msg.client_id
        drops = skipped = 0
        for t in match.targets:
            sub = t.subscriber
            if t.no_local and sub.client_id == sender:
                skipped += 1
                continue
            if check and sub.identity is not None and not sub.may_receive(topic):
                skipped += 1
                continue
            fut = sub.deliver(msg, t.qos, msg.retain and t.retain_as_published, t.subscription_ids, cache)
            if fut is not None:
                if fut is DROPPED:
                    drops += 1
                elif futures is None:
                    futures = [fut]
                else:
                    futures.append(fut)
        if match.shared_groups:
            for group, members in match.shared_groups:
                fut = self._deliver_shared(msg, group, members, cache, check)
                if fut is not None:
                    if fut is DROPPED:
                        drops += 1
                    elif futures is None:
                        futures = [fut]
                    else:
                        futures.append(fut)
        if drops and hold and msg.qos and not (msg.retain and msg.payload):
            if match.shared_groups:
                self.unqueued = self._nobody_took(match, msg, drops)
            else:
                self.unqueued = drops >= len(match.targets) - skipped
        if futures is None:
            return None
        if len(futures) == 1:
            return futures[0]
        return asyncio.gather(*futures)

    def _blockers(self, match: Any, msg: Message) -> list[Session] | None:
        """The online sessions among a message's QoS 1/2 targets whose full queues it has to wait for: not
        known stuck, not the publisher's own (broker/flow.py). Entries of ``full_sessions`` that are no
        longer full, or offline, are forgotten on the way."""
        full = self.full_sessions
        sender = msg.client_id
        check = not self.authorize_all
        topic = msg.topic
        out: list[Session] | None = None
        for t in match.targets:
            sub = t.subscriber
            if t.qos and sub in full and self._blocks(sub, sender, check, topic):
                if out is None:
                    out = [sub]
                else:
                    out.append(sub)
        for _group, members in match.shared_groups:
            if not any(m in full for m in members):
                continue
            eligible = [(m, e) for m, e in members.items()
                        if not check or m.identity is None or m.may_receive(topic)]
            if eligible and all(e.qos and m in full and self._blocks(m, sender, False, topic) for m, e in eligible):
                out = (out or []) + [m for m, _e in eligible]
        return out

    def _blocks(self, session: Session, sender: str | None, check: bool, topic: str) -> bool:
        if not session.holds_publishers or not session.would_drop():  # stuck, offline, or drained
            self.full_sessions.discard(session)
            return False
        if session.client_id == sender:
            return False
        return not check or session.identity is None or session.may_receive(topic)

    def _nobody_took(self, match: Any, msg: Message, drops: int) -> bool:
        """Every subscriber the message was delivered to dropped it (``drops`` of them): their queues were full."""
        check = not self.authorize_all
        topic = msg.topic
        sender = msg.client_id
        tried = 0
        for t in match.targets:
            sub = t.subscriber
            if t.no_local and sub.client_id == sender:
                continue
            if check and sub.identity is not None and not sub.may_receive(topic):
                continue
            tried += 1
        for _group, members in match.shared_groups:
            if any(not check or m.identity is None or m.may_receive(topic) for m in members):
                tried += 1
        return drops >= tried

    def _deliver_shared(self, msg: Message, group: str, members: dict, cache: dict,
                        check: bool) -> asyncio.Future | None:
        """One member of the group gets the message: round robin over those that may receive it, preferring
        members connected right now whose queue has room; when no member may receive it, nobody does."""
        if not members:
            return None
        items = list(members.items())
        key = (group, id(members))
        start = self._shared_rr.get(key, 0)
        n = len(items)
        chosen = fallback = None
        topic = msg.topic
        full = self.full_sessions
        for i in range(n):
            sub, entry = items[(start + i) % n]
            if check and sub.identity is not None and not sub.may_receive(topic):
                continue
            if getattr(sub, "connection", True) is not None and not (full and sub in full and sub.would_drop()):
                chosen = (sub, entry)
                self._shared_rr[key] = (start + i + 1) % n
                break
            if fallback is None:
                fallback = (sub, entry, i)
        if chosen is None:
            if fallback is None:
                return None
            sub, entry, i = fallback
            chosen = (sub, entry)
            self._shared_rr[key] = (start + i + 1) % n
        sub, entry = chosen
        sids = (entry.subscription_id,) if entry.subscription_id else ()
        return sub.deliver(msg, entry.qos, msg.retain and entry.retain_as_published, sids, cache)

    def _retain(self, msg: Message) -> asyncio.Future | None:
        storage = self.storage
        if not msg.payload:
            if self.retained.delete(msg.topic) and storage is not None:
                return storage.set_retained(msg.topic, None)
            return None
        self.retained.set(msg)
        if storage is not None:
            return storage.set_retained(msg.topic, msg.to_record())
        return None

    # -- events for observers (lifecycle events, admin API) --------------------------------------

    def _emit(self, event: str, conn: Connection, data: dict[str, Any]) -> None:
        if not self.hooks:
            return
        data = {"client_id": conn.client_id, "identity": conn.identity, "address": conn.address, **data}
        for hook in self.hooks:
            try:
                hook(event, data)
            except Exception:
                log.exception("event hook failed for %s", event)

    # -- AWS profile limits ----------------------------------------------------------------------

    @staticmethod
    def _aws_topic_limits(topic: str, payload_len: int, retain: bool) -> int:
        if payload_len > 128 * 1024:
            return ReasonCode.PACKET_TOO_LARGE
        counted = topic
        if topic.startswith("$aws/rules/"):
            parts = topic.split("/", 3)
            counted = parts[3] if len(parts) > 3 else ""
        if len(counted.encode()) > 256 or counted.count("/") > 7:
            return ReasonCode.TOPIC_NAME_INVALID
        if topic.startswith("$"):
            if retain:
                return ReasonCode.RETAIN_NOT_SUPPORTED
            if not topic.startswith(_AWS_PUBLISHABLE):
                return ReasonCode.NOT_AUTHORIZED
        return 0

    @staticmethod
    def _aws_filter_limits(bare: str) -> None:
        if len(bare.encode()) > 256 or bare.count("/") > 7:
            raise MQTTError(ReasonCode.TOPIC_FILTER_INVALID, "topic filter above AWS IoT limits")

    # -- introspection ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.stats.as_dict(),
            "connections": len(self.connections),
            "clients_connected": self.connected_count(),
            "sessions": len(self.sessions),
            "subscriptions": self.router.count,
            "retained": len(self.retained),
            "retained_bytes": self.retained.payload_bytes,
        }
