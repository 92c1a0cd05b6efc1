"""One MQTT connection: bytes in, packets decoded, handled, bytes out.

`Connection` is an ``asyncio.Protocol`` so TCP and TLS listeners use it directly; other transports
(WebSocket) drive it through the same ``connection_made / data_received / connection_lost`` calls
with any object that has ``write``, ``close``, ``abort``, ``get_extra_info``, ``pause_reading``,
``resume_reading`` and ``get_write_buffer_size``. All writes of one loop turn are coalesced into
one ``write`` call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

from thingcore.auth import Action, Identity, login_name
from thingcore.broker.admission import PublishRefused
from thingcore.broker.flow import PublishHeld
from thingcore.broker.handshake import TLS_HELLO, plain_port_hint
from thingcore.broker.message import Message
from thingcore.broker.router import Entry
from thingcore.mqtt import (
    Decoder,
    MQTTError,
    ReasonCode,
    encode,
    encode_publish_template,
)
from thingcore.mqtt.packets import (
    MQTT_5,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from thingcore.mqtt.reason_codes import connack_code_311
from thingcore.mqtt.topics import parse_shared, validate_topic_filter

if TYPE_CHECKING:
    from thingcore.broker.core import Broker
    from thingcore.broker.session import Session

log = logging.getLogger("thingcore.broker")

_NEW, _CONNECTING, _CONNECTED, _CLOSING = range(4)
_PID = [i.to_bytes(2, "big") for i in range(65536)]
_WRITE_CHUNK = 256 * 1024
_RESET_LINGER = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST and drops unsent data
_CLOSE_GRACE = 1.0  # seconds a disconnected slow consumer has to take its DISCONNECT before the socket is reset


class _Paused(Exception):
    """A handler stopped reading for back-pressure: the packets after it wait (``again``: it too)."""

    def __init__(self, again: bool) -> None:
        self.again = again


class Connection(asyncio.Protocol):
    # Slots, not an instance dict: with 40-odd attributes the dict alone cost 1.6 KB per connection. A new
    # attribute must be named here. What only some connections need (topic aliases, back-pressure) is made on
    # first use, behind the properties below.
    __slots__ = (
        "_backpressure_timer",
        "_congested_since",
        "_flush_pending",
        "_in_aliases",
        "_keep_alive_tick",
        "_loop",
        "_out",
        "_out_aliases",
        "_out_size",
        "_paused",
        "_pending_packets",
        "_timer",
        "address",
        "broker",
        "bytes_in",
        "bytes_out",
        "cert_fingerprint",
        "client_alias_max",
        "client_id",
        "client_max_packet",
        "congested",
        "connected_at",
        "decoder",
        "disconnect_reason",
        "graceful",
        "identity",
        "inbound_pending",
        "keep_alive",
        "last_rx",
        "level",
        "listener",
        "msgs_in",
        "msgs_out",
        "port",
        "principal",
        "problem_info",
        "send_quota",
        "session",
        "state",
        "transport",
        "v5",
        "will",
        "will_delay",
    )

    def __init__(self, broker: Broker, listener: str) -> None:
        self.broker = broker
        self.listener = listener
        self.transport: Any = None
        self.decoder = Decoder(max_packet_size=broker.max_packet_size)
        self.state = _NEW
        self.level = 4
        self.v5 = False
        self.session: Session | None = None
        self.identity: Identity | None = None
        self.client_id = ""
        self.address = ""
        self.port = 0
        self.keep_alive = 0
        self.last_rx = 0.0
        self.send_quota = broker.max_inflight
        self.client_max_packet = 268_435_460
        self.client_alias_max = 0
        self._out_aliases: dict[str, int] | None = None  # made on first use (MQTT 5 topic aliases)
        self._in_aliases: dict[int, str] | None = None
        self.inbound_pending = 0  # QoS 1 awaiting commit + QoS 2 awaiting PUBREL
        self.problem_info = True
        self.will: Message | None = None
        self.will_delay = 0
        self.graceful = False
        self.disconnect_reason = "CONNECTION_LOST"
        self.connected_at = 0.0
        self.bytes_in = 0
        self.bytes_out = 0
        self.msgs_in = 0
        self.msgs_out = 0
        self._out: list[bytes] = []
        self._out_size = 0
        self._flush_pending = False
        self._pending_packets: list[Any] = []  # what came behind CONNECT while it is checked; () after
        self._timer: asyncio.TimerHandle | None = None  # the CONNECT timeout
        self._keep_alive_tick = -1  # where the keep-alive deadline sits in broker.keep_alive_wheel (-1: none)
        self._loop = asyncio.get_running_loop()
        self.principal: str | None = None
        self.cert_fingerprint: str | None = None
        self.congested = False  # the transport's buffer is above high water: QoS 0 is dropped
        self._congested_since = 0.0
        self._paused: set[Session] | None = None  # back-pressure: sessions whose queues we wait on (on first use)
        self._backpressure_timer: asyncio.TimerHandle | None = None

    # -- made on first use: most connections never need them --------------------------------------

    @property
    def out_aliases(self) -> dict[str, int]:
        """Topic -> alias for what we send (MQTT 5, when the client allows aliases)."""
        aliases = self._out_aliases
        if aliases is None:
            aliases = self._out_aliases = {}
        return aliases

    @property
    def in_aliases(self) -> dict[int, str]:
        """Alias -> topic for what the client sends (MQTT 5)."""
        aliases = self._in_aliases
        if aliases is None:
            aliases = self._in_aliases = {}
        return aliases

    @property
    def _paused_by(self) -> set[Session]:
        """Back-pressure: the sessions whose queues this publisher waits on."""
        paused = self._paused
        if paused is None:
            paused = self._paused = set()
        return paused

    @property
    def closing(self) -> bool:
        """Closed, or being closed (e.g. a slow consumer given a moment to read its DISCONNECT)."""
        return self.state == _CLOSING

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        try:
            transport.set_write_buffer_limits(high=self.broker.output_high_water)
        except (AttributeError, NotImplementedError):
            pass
        peer = transport.get_extra_info("peername")
        if peer:  # one string per peer address, not per connection (devices behind one NAT share it)
            self.address, self.port = sys.intern(str(peer[0])), int(peer[1])
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            from thingcore.broker.tls import peer_identity

            self.principal, self.cert_fingerprint = peer_identity(ssl_object)
        self.last_rx = self._loop.time()
        self.broker.connection_opened(self)
        self._timer = self._loop.call_later(self.broker.connect_timeout, self._connect_timeout)

    def data_received(self, data: bytes) -> None:
        self.last_rx = self._loop.time()
        self.bytes_in += len(data)
        self.broker.stats.bytes_in += len(data)
        if self.state == _CLOSING:
            return
        try:
            packets = self.decoder.feed(data)
        except MQTTError as exc:
            before = getattr(exc, "packets", None)
            if before and self.state == _CONNECTED and not self._pending_packets \
                    and self._backpressure_timer is None:  # what came before the bad bytes still counts
                self._handle_packets(before)
            if self.state == _NEW and getattr(exc, "protocol_level", None) == MQTT_5:
                self.level, self.v5 = MQTT_5, True  # a v5 CONNECT we refuse is answered in v5
            if self.state == _NEW and data[:2] == TLS_HELLO and self.transport.get_extra_info("ssl_object") is None:
                exc.message = self._tls_hint()
            self.protocol_error(exc.reason_code, exc.message)
            return
        if self.state == _CONNECTING or self._pending_packets or self._backpressure_timer is not None:
            self._held().extend(packets)  # after what waits already (CONNECT, back-pressure)
            return
        self._handle_packets(packets)

    def _held(self) -> list[Any]:
        """The packets waiting to be handled (behind CONNECT, or held by back-pressure): a list only while some
        wait, () otherwise, so an idle connection keeps none."""
        held = self._pending_packets
        if held.__class__ is tuple:
            held = self._pending_packets = []
        return held

    def _tls_hint(self) -> str:
        settings = self.broker.settings
        sock = self.transport.get_extra_info("sockname")
        tls_port = settings.mqtts_port if settings.tls.enabled else None
        return plain_port_hint("MQTT", sock[1] if sock else None, tls_port, "[tls]")

    def _handle_packets(self, packets: list[Any]) -> None:
        """Handle packets in order; back-pressure (``_Paused``) keeps the rest for when it ends."""
        it = iter(packets)
        packet = None
        try:
            for packet in it:
                if self.state == _CLOSING:
                    return
                if self.state == _CONNECTING:  # a CONNECT in this batch is still being authenticated
                    self._held().append(packet)
                    continue
                if self.state == _NEW and type(packet) is not Connect:
                    raise MQTTError(ReasonCode.PROTOCOL_ERROR, "the first packet must be CONNECT")
                handler = _HANDLERS.get(type(packet))
                if handler is None:
                    raise MQTTError(ReasonCode.PROTOCOL_ERROR, f"unexpected {type(packet).__name__} from client")
                handler(self, packet)
        except _Paused as paused:
            rest = list(it)
            if paused.again:
                rest.insert(0, packet)
            self._held()[:0] = rest
        except MQTTError as exc:
            self.protocol_error(exc.reason_code, exc.message)
        except Exception:  # a bug must cost one connection, never the broker
            log.exception("internal error handling a packet from %s", self.client_id or self.address)
            self.protocol_error(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR, "internal error")

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._keep_alive_tick >= 0:
            self.broker.keep_alive_wheel.cancel(self, self._keep_alive_tick)
            self._keep_alive_tick = -1
        previous = self.state
        self.state = _CLOSING
        connected = previous in (_CONNECTED, _CLOSING) and self.session is not None
        self.broker.connection_closed(self, was_connected=connected)

    def pause_writing(self) -> None:
        """The client reads slower than we write: drop QoS 0 for it until it catches up."""
        self.congested = True
        self._congested_since = self._loop.time()

    def resume_writing(self) -> None:
        self.congested = False

    # -- output ----------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= _WRITE_CHUNK:  # one loop turn can read megabytes: hand them on as we go
            self._flush()
        elif not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def send_packet(self, packet: Any) -> None:
        self.send(encode(packet, self.level))

    def _flush(self) -> None:
        self._flush_pending = False
        out = self._out
        if not out or self.transport is None:
            return
        self._out = []
        self._out_size = 0
        data = out[0] if len(out) == 1 else b"".join(out)
        self.bytes_out += len(data)
        self.broker.stats.bytes_out += len(data)
        if self.transport.is_closing():
            return
        self.transport.write(data)
        self._check_slow_consumer()

    def _check_slow_consumer(self) -> None:
        if self.congested and self.state != _CLOSING and self.transport is not None:
            broker = self.broker
            stuck = self._loop.time() - self._congested_since > broker.slow_consumer_timeout
            if stuck or self.transport.get_write_buffer_size() > broker.max_output_buffer:
                self.drop_slow_consumer(f"{self.transport.get_write_buffer_size()} bytes waiting", abort=True)

    def drop_slow_consumer(self, detail: str, *, abort: bool = False) -> None:
        """Disconnect a client that stopped reading (its output buffer stays full) or acknowledging (its
        receive window stays full, broker/stall.py): 0x97, lifecycle reason THROTTLED, counted, logged."""
        if self.state == _CLOSING or self.transport is None:
            return
        self.broker.stats.slow_consumers += 1
        log.warning("client %s is not reading its messages (%s); disconnecting", self.client_id, detail)
        self.disconnect_reason = "THROTTLED"
        if abort or not self.v5:  # nothing could tell a 3.1.1 client why: reset at once
            self.state = _CLOSING
            self._abort()
            return
        # The DISCONNECT goes out if the client reads it (and then it closes); the socket stays ours until
        # then, because a socket closed with unsent data towards a peer that does not read keeps that peer
        # connected in the kernel's hands: after the grace it is reset, whatever the client did.
        self.send_packet(Disconnect(int(ReasonCode.QUOTA_EXCEEDED), self._reason_props(
            "client is not reading its messages")))
        self.state = _CLOSING
        self._flush()
        self._loop.call_later(_CLOSE_GRACE, self._abort)

    def _abort(self) -> None:
        """Reset the connection: what the kernel still holds for a client that does not read is dropped too
        (a plain close would leave it retrying, and the client connected, for minutes)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_LINGER)
        transport.abort()

    def send_publish(self, msg: Message, qos: int, retain: bool, sids: tuple[int, ...], pid: int,
                     dup: bool, cache: dict | None) -> None:
        if qos == 0 and self.congested:
            self.broker.stats.dropped += 1
            self._check_slow_consumer()  # dropping must not keep a reader that is stuck for good
            return
        v5 = self.v5
        if not v5:
            sids = ()
        if v5 and self.client_alias_max and not dup:
            data = self._encode_with_alias(msg, qos, retain, sids, pid)
        else:
            key = (self.level, qos, retain, sids, dup)
            tpl = cache.get(key) if cache is not None else None
            if tpl is None:
                props = _outgoing_properties(msg, sids) if v5 else {}
                if props is None:  # expired while waiting
                    self.broker.stats.expired += 1
                    self._forget_inflight(pid, qos)
                    return
                packet = Publish(msg.topic, msg.payload, qos, retain, dup, None, props)
                tpl = encode_publish_template(packet, self.level)
                if cache is not None:
                    cache[key] = tpl
            data = tpl[0] + _PID[pid] + tpl[1] if qos else tpl[0] + tpl[1]
        if len(data) > self.client_max_packet:
            self.broker.stats.dropped += 1  # MQTT 5 4.13: act as if it was sent
            self._forget_inflight(pid, qos)
            return
        self.msgs_out += 1
        self.broker.stats.msgs_out += 1
        self.send(data)

    def _forget_inflight(self, pid: int, qos: int) -> None:
        """A QoS 1/2 message that will never be sent: free its in-flight slot and its stored copy."""
        session = self.session
        if not qos or session is None:
            return
        out = session.inflight.pop(pid, None)
        if out is not None and session.persistent and self.broker.storage is not None:
            self.broker.storage.remove_messages(session.client_id, [out.seq])

    def _encode_with_alias(self, msg: Message, qos: int, retain: bool, sids: tuple[int, ...], pid: int) -> bytes:
        props = _outgoing_properties(msg, sids)
        if props is None:
            props = {}
        topic = msg.topic
        alias = self.out_aliases.get(topic)
        if alias is not None:
            props["topic_alias"] = alias
            topic = ""
        elif len(self.out_aliases) < self.client_alias_max:
            alias = len(self.out_aliases) + 1
            self.out_aliases[topic] = alias
            props["topic_alias"] = alias
        return encode(Publish(topic, msg.payload, qos, retain, False, pid or None, props), self.level)

    def send_pubrel(self, pid: int) -> None:
        self.send_packet(Pubrel(pid))

    def close(self, reason: int | None = None, reason_string: str | None = None, *, abort: bool = False) -> None:
        """Close the connection, telling an MQTT 5 client why when a reason is given."""
        if self.state == _CLOSING or self.transport is None:
            return
        if reason is not None and self.v5 and self.state == _CONNECTED:
            props = {"reason_string": reason_string} if reason_string and self.problem_info else {}
            self.send_packet(Disconnect(int(reason), props))
        self.state = _CLOSING
        self._flush()
        if abort:
            self.transport.abort()
        else:
            self.transport.close()

    def protocol_error(self, reason: int, message: str) -> None:
        """A malformed or forbidden packet: reason code to the client (v5), will published, closed."""
        self.broker.stats.protocol_errors += 1
        self.disconnect_reason = "CLIENT_ERROR"
        if log.isEnabledFor(logging.INFO):
            log.info("closing %s (%s): %s [0x%02X]", self.client_id or self.address, self.listener, message, reason)
        if self.state in (_NEW, _CONNECTING) and self.transport is not None:
            if reason == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION:
                self.send(encode(Connack(False, 1), 4))  # answered in 3.1.1 form: the only one we know they read
            elif self.v5:
                props = {"reason_string": message}
                self.send(encode(Connack(False, int(reason), props), 5))
            self.state = _CLOSING
            self._flush()
            self.transport.close()
            return
        self.close(reason, message)

    # -- timers ----------------------------------------------------------------------------------

    def _connect_timeout(self) -> None:
        self._timer = None
        if self.state == _NEW:
            self.broker.stats.connect_timeouts += 1
            log.info("no CONNECT from %s within %.0f s; closing", self.address, self.broker.connect_timeout)
            self.state = _CLOSING
            self.transport.close()

    def keep_alive_due(self) -> None:
        """The keep-alive wheel (broker/keepalive.py) reached this connection's deadline."""
        self._keep_alive_tick = -1
        if self.state != _CONNECTED:
            return
        limit = self.keep_alive * 1.5
        idle = self._loop.time() - self.last_rx
        if idle >= limit:
            self.disconnect_reason = "MQTT_KEEP_ALIVE_TIMEOUT"
            log.info("keep-alive timeout for %s after %.1f s", self.client_id, idle)
            self.close(ReasonCode.KEEP_ALIVE_TIMEOUT, "keep-alive timeout")
        else:
            self._keep_alive_tick = self.broker.keep_alive_wheel.schedule(self, self.last_rx + limit)

    # -- CONNECT ---------------------------------------------------------------------------------

    def _on_connect(self, packet: Connect) -> None:
        if self.state != _NEW:
            raise MQTTError(ReasonCode.PROTOCOL_ERROR, "second CONNECT on one connection")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.level = packet.protocol_level
        self.v5 = packet.protocol_level == MQTT_5
        self.state = _CONNECTING
        self.transport.pause_reading()
        task = self._loop.create_task(self._connect(packet))
        task.add_done_callback(_log_task_error)

    async def _connect(self, packet: Connect) -> None:
        broker = self.broker
        props = packet.properties
        ack_props: dict[str, Any] = {}
        client_id = packet.client_id
        if not client_id:
            if self.v5 or packet.clean_start:
                client_id = "auto-" + uuid.uuid4().hex
                if self.v5:
                    ack_props["assigned_client_identifier"] = client_id
            else:
                return self._refuse(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, "empty client id needs clean session")
        self.client_id = client_id
        reason, text = broker.check_connect(self, packet, client_id)
        if reason:
            return self._refuse(reason, text)
        if "authentication_method" in props:
            return self._refuse(ReasonCode.BAD_AUTHENTICATION_METHOD, "enhanced authentication is not supported")
        self.identity = Identity(
            client_id=client_id, username=login_name(packet.username) or None, principal=self.principal,
            listener=self.listener, address=self.address, port=self.port, cert_fingerprint=self.cert_fingerprint,
            anonymous=self.principal is None,
        )
        try:
            result = await broker.authenticate(self.identity, packet.password)
        except Exception:
            log.exception("authenticator failed for %s", client_id)
            return self._refuse(ReasonCode.SERVER_UNAVAILABLE, "authentication service failed")
        if self.state != _CONNECTING:  # the socket went away while we waited
            return None
        if result.reason_code:
            self.disconnect_reason = "AUTH_ERROR"
            return self._refuse(result.reason_code, result.reason_string or "not authorized")
        self.identity.accept(result)  # rules and %u see whom the client proved to be, not what it claims
        verdict = broker.authorize(self.identity, Action.CONNECT, None)
        if verdict:
            self.disconnect_reason = "AUTH_ERROR"
            return self._refuse(verdict, "not authorized to connect")
        verdict, text = broker.check_owner(client_id, self.identity)
        if verdict:
            self.disconnect_reason = "AUTH_ERROR"
            return self._refuse(verdict, text)

        # keep-alive, limits, session expiry
        keep_alive = broker.effective_keep_alive(packet.keep_alive)
        if keep_alive != packet.keep_alive and self.v5:
            ack_props["server_keep_alive"] = keep_alive
        self.keep_alive = keep_alive
        if self.v5:
            expiry = props.get("session_expiry_interval", 0)
            self.send_quota = min(broker.max_inflight, props.get("receive_maximum", 65535))
            self.client_max_packet = props.get("maximum_packet_size", 268_435_460)
            self.client_alias_max = props.get("topic_alias_maximum", 0)
            self.problem_info = props.get("request_problem_information", 1) == 1
            if props.get("request_response_information") == 1:
                ack_props["response_information"] = f"thingcore/response/{client_id}"
        else:
            expiry = 0 if packet.clean_start else broker.persistent_session_expiry
        capped = broker.cap_session_expiry(expiry)
        if capped != expiry and self.v5:
            ack_props["session_expiry_interval"] = capped
        if packet.will is not None:
            w = packet.will
            will = Message.from_publish_properties(
                w.topic, w.payload, w.qos, w.retain, w.properties, client_id=client_id,
                principal=self.identity.principal, source_address=self.address,
            )
            verdict, text = broker.admit_will(will, self.identity)
            if verdict:
                return self._refuse(verdict, text)
            self.will = will
            self.will_delay = w.properties.get("will_delay_interval", 0) if self.v5 else 0

        session, present = broker.attach(self, client_id, packet.clean_start, capped)
        self.session = session
        if self.v5:
            ack_props.update(broker.connack_properties)
        self.state = _CONNECTED
        self.connected_at = time.time()
        self.send_packet(Connack(present, 0, ack_props))
        if keep_alive:
            self._keep_alive_tick = broker.keep_alive_wheel.schedule(self, self._loop.time() + keep_alive * 1.5)
        broker.client_connected(self)
        session.resend_inflight()
        session.pump()
        pending, self._pending_packets = self._pending_packets, ()  # type: ignore[assignment]  # no list after
        self.transport.resume_reading()
        if pending:
            self._handle_packets(pending)
        return None

    def _refuse(self, reason: int, text: str) -> None:
        self.broker.stats.connects_refused += 1
        self.broker.admission.log("refused CONNECT from client %r (%s, %s): %s [0x%02X]", self.client_id or "?",
                                  self.address, self.listener, text, int(reason))
        if self.v5:
            props = {"reason_string": text}
            self.send(encode(Connack(False, int(reason), props), 5))
        else:
            self.send(encode(Connack(False, connack_code_311(reason)), 4))
        self.state = _CLOSING
        self._flush()
        if self.transport is not None:
            self.transport.close()

    # -- PUBLISH and its acknowledgements ---------------------------------------------------------

    def _on_publish(self, p: Publish) -> None:
        broker = self.broker
        self.msgs_in += 1
        topic = p.topic
        props = p.properties
        if props and self.v5:
            alias = props.get("topic_alias")
            if alias is not None:
                if alias > broker.topic_alias_maximum:
                    raise MQTTError(ReasonCode.TOPIC_ALIAS_INVALID, f"topic alias {alias} above the maximum")
                if topic:
                    self.in_aliases[alias] = topic
                else:
                    topic = self.in_aliases.get(alias)
                    if topic is None:
                        raise MQTTError(ReasonCode.PROTOCOL_ERROR, f"unknown topic alias {alias}")
                p.topic = topic
            if props.get("payload_format_indicator") == 1:
                try:
                    p.payload.decode("utf-8")
                except UnicodeDecodeError:
                    self.broker.stats.publishes_refused += 1
                    self.broker.admission.log("refused a publish to %r from client %r (%s, %s): payload is not "
                                              "UTF-8 [0x99]", (topic or "")[:200], self.client_id, self.address,
                                              self.listener)
                    return self._reject_publish(p, ReasonCode.PAYLOAD_FORMAT_INVALID, "payload is not UTF-8")
            if "subscription_identifier" in props:
                raise MQTTError(ReasonCode.PROTOCOL_ERROR, "subscription identifier in a client PUBLISH")
        if not topic or "+" in topic or "#" in topic:  # malformed: a protocol error, not a refusal
            raise MQTTError(ReasonCode.TOPIC_NAME_INVALID, f"invalid topic name {topic!r}")
        qos = p.qos
        if qos > broker.max_qos:
            raise MQTTError(ReasonCode.QOS_NOT_SUPPORTED, f"QoS {qos} is not supported")
        if qos == 2 and p.packet_id in self.session.inbound_qos2:
            self.send_packet(Pubrec(p.packet_id))  # a resend before PUBREL: already published once
            return None
        if qos and self.inbound_pending >= broker.receive_maximum:
            raise MQTTError(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, "too many unacknowledged QoS 1/2 publishes")
        msg = Message(topic, p.payload, qos, p.retain, {}, self.client_id, self.identity.principal, self.address)
        if props:
            msg.properties = {k: props[k] for k in _FORWARDED if k in props}
            interval = props.get("message_expiry_interval")
            if interval is not None:
                msg.expires_at = msg.received_at + interval
        try:
            commit = broker.publish(msg, self.identity, hold=True)
        except PublishRefused as refusal:
            if refusal.reason_code == ReasonCode.PACKET_TOO_LARGE:
                raise MQTTError(refusal.reason_code, refusal.message) from None
            return self._reject_publish(p, refusal.reason_code, refusal.message)
        except PublishHeld as held:  # nothing was routed: this publish is handled again once there is room
            self.msgs_in -= 1
            self._apply_backpressure(held.sessions, again=True)
            return None  # not reached while connected
        if broker.unqueued:  # every subscriber's queue was full: dropped (counted), and said so if we can
            broker.unqueued = False
            if self.v5 and qos:
                return self._reject_publish(p, ReasonCode.QUOTA_EXCEEDED,
                                            "no subscriber could take the message: their queues are full")
        if qos:
            self.inbound_pending += 1
            if qos == 2:
                self.session.inbound_qos2.add(p.packet_id)
                if self.session.persistent and broker.storage is not None:
                    broker.storage.add_inbound_qos2(self.client_id, p.packet_id)
            if commit is None:
                self._ack_publish(p.packet_id, qos, 0)
            else:
                commit.add_done_callback(lambda f, pid=p.packet_id, q=qos: self._ack_after_commit(f, pid, q))
        if broker.congested:  # queued, past half a subscriber's queue: read nothing more until it drains
            sessions, broker.congested = broker.congested, []
            self._apply_backpressure(sessions, again=False)
        return None

    def _apply_backpressure(self, sessions: list[Session], *, again: bool) -> None:
        """Subscribers' queues are full or filling: stop handling and reading this publisher until one of them
        drains (or backpressure_timeout), keeping the packets not handled yet (``again``: this one too)."""
        if self.state != _CONNECTED:
            return
        for session in sessions:
            if session is not self.session:  # never wait on ourselves: we could not read our own acks
                session.waiting_publishers.add(self)
                self._paused_by.add(session)
        if not self._paused_by:
            return
        if self._backpressure_timer is None:
            self.transport.pause_reading()
            self._backpressure_timer = self._loop.call_later(self.broker.backpressure_timeout,
                                                             self._backpressure_expired)
        raise _Paused(again)

    def _backpressure_expired(self) -> None:
        """We waited backpressure_timeout: subscribers that did not drain in that time are not waited for again
        (broker/stall.py); a publish held for one of them is then dropped for it, counted (broker/flow.py)."""
        for session in list(self._paused_by):
            session.waited_too_long()
        self.release()

    def release(self) -> None:
        """End back-pressure: the subscriber drained, went away, or we waited long enough."""
        if self._backpressure_timer is None:
            return
        self._backpressure_timer.cancel()
        self._backpressure_timer = None
        for session in self._paused_by:
            session.waiting_publishers.discard(self)
        self._paused_by.clear()
        if self.state == _CONNECTED:
            self._loop.call_soon(self._resume)  # not from inside the subscriber's acknowledgement

    def _resume(self) -> None:
        """Handle what back-pressure held back, then read again (unless it stops us again)."""
        if self.state != _CONNECTED or self._backpressure_timer is not None:
            return
        if self._pending_packets:
            self.last_rx = self._loop.time()  # the client did send them: keep-alive counts from now
            pending, self._pending_packets = self._pending_packets, ()  # type: ignore[assignment]
            self._handle_packets(pending)
        if self.state == _CONNECTED and self._backpressure_timer is None:
            self.transport.resume_reading()

    def _ack_after_commit(self, fut: asyncio.Future, pid: int, qos: int) -> None:
        if self.state == _CLOSING:
            return
        if fut.exception() is not None:
            self._ack_publish(pid, qos, ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)
        else:
            self._ack_publish(pid, qos, 0)

    def _ack_publish(self, pid: int, qos: int, reason: int) -> None:
        if qos == 1:
            self.inbound_pending -= 1
            self.send_packet(Puback(pid, reason) if self.v5 else Puback(pid))
        else:
            self.send_packet(Pubrec(pid, reason) if self.v5 else Pubrec(pid))
            if reason >= 0x80 and self.session is not None:
                self.session.inbound_qos2.discard(pid)
                self.inbound_pending -= 1

    def _reject_publish(self, p: Publish, reason: int, text: str) -> None:
        if not self.v5:
            if self.broker.aws_profile:  # AWS IoT Core hangs up on a 3.1.1 publish it refuses
                raise MQTTError(reason, text)
            if p.qos:  # as mosquitto: acknowledged and dropped, 3.1.1 has no way to say no
                self.send_packet(Puback(p.packet_id) if p.qos == 1 else Pubrec(p.packet_id))
                if p.qos == 2:
                    self.session.inbound_qos2.add(p.packet_id)
            return
        if p.qos == 1:
            self.send_packet(Puback(p.packet_id, int(reason), self._reason_props(text)))
        elif p.qos == 2:
            self.send_packet(Pubrec(p.packet_id, int(reason), self._reason_props(text)))

    def _reason_props(self, text: str) -> dict[str, Any]:
        return {"reason_string": text} if self.problem_info else {}

    def _on_puback(self, p: Puback) -> None:
        self.session.acknowledge(p.packet_id, 1)

    def _on_pubrec(self, p: Pubrec) -> None:
        session = self.session
        if p.reason_code >= 0x80:
            session.acknowledge(p.packet_id, 2)
        elif session.received(p.packet_id):
            self.send_pubrel(p.packet_id)
        else:
            self.send_packet(Pubrel(p.packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND) if self.v5
                             else Pubrel(p.packet_id))

    def _on_pubrel(self, p: Pubrel) -> None:
        session = self.session
        if p.packet_id in session.inbound_qos2:
            session.inbound_qos2.discard(p.packet_id)
            self.inbound_pending = max(0, self.inbound_pending - 1)
            if session.persistent and self.broker.storage is not None:
                self.broker.storage.remove_inbound_qos2(self.client_id, p.packet_id)
            self.send_packet(Pubcomp(p.packet_id))
        else:
            self.send_packet(Pubcomp(p.packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND) if self.v5
                             else Pubcomp(p.packet_id))

    def _on_pubcomp(self, p: Pubcomp) -> None:
        self.session.acknowledge(p.packet_id, 2)

    # -- SUBSCRIBE / UNSUBSCRIBE -----------------------------------------------------------------

    def _on_subscribe(self, p: Subscribe) -> None:
        broker = self.broker
        sub_id = p.properties.get("subscription_identifier") if self.v5 else None
        if sub_id is not None and not broker.subscription_identifiers:
            raise MQTTError(ReasonCode.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED, "subscription identifiers are off")
        codes: list[int] = []
        granted_subs = []
        for s in p.subscriptions:
            code = self._subscribe_one(s, sub_id, granted_subs)
            codes.append(code)
        self.send_packet(Suback(p.packet_id, codes))
        session = self.session
        session.save()
        broker.client_subscribed(self, [g[0].filter for g in granted_subs])
        # retained messages after the SUBACK, as the spec orders it
        for s, new in granted_subs_with_new(granted_subs):
            if s.retain_handling == 2 or (s.retain_handling == 1 and not new):
                continue
            broker.send_retained(session, s, sub_id)

    def _subscribe_one(self, s: Any, sub_id: int | None, granted: list) -> int:
        broker = self.broker
        topic_filter = s.filter
        try:
            group, bare = parse_shared(topic_filter)
            validate_topic_filter(bare)
            if broker.filter_limits is not None:
                broker.filter_limits(bare)
        except MQTTError as exc:
            broker.subscription_refused(self, topic_filter, exc.message, exc.reason_code)
            if not self.v5:
                return 0x80
            return exc.reason_code
        if group is not None and s.no_local and self.v5:
            raise MQTTError(ReasonCode.PROTOCOL_ERROR, "no local on a shared subscription")
        if not broker.authorize_all:
            verdict = broker.authorize(self.identity, Action.SUBSCRIBE, topic_filter)
            if verdict:
                broker.subscription_refused(self, topic_filter, "not authorized to subscribe", verdict)
                if not self.v5:
                    if broker.aws_profile:
                        raise MQTTError(ReasonCode.NOT_AUTHORIZED, "not authorized to subscribe")
                    return 0x80
                return verdict
        if broker.max_subscriptions and topic_filter not in self.session.subscriptions \
                and len(self.session.subscriptions) >= broker.max_subscriptions:
            broker.subscription_refused(self, topic_filter)
            return 0x80 if not self.v5 else ReasonCode.QUOTA_EXCEEDED
        qos = min(s.qos, broker.max_qos)
        entry = Entry(qos, s.no_local, s.retain_as_published, s.retain_handling, sub_id)
        new = broker.add_subscription(self.session, topic_filter, entry, group, bare)
        granted.append((s, new, group))
        return qos

    def _on_unsubscribe(self, p: Unsubscribe) -> None:
        codes = []
        for topic_filter in p.filters:
            existed = self.broker.remove_subscription(self.session, topic_filter)
            codes.append(ReasonCode.SUCCESS if existed else ReasonCode.NO_SUBSCRIPTION_EXISTED)
        self.send_packet(Unsuback(p.packet_id, [int(c) for c in codes]))
        self.session.save()
        self.broker.client_unsubscribed(self, list(p.filters))

    # -- the rest --------------------------------------------------------------------------------

    def _on_pingreq(self, _p: Pingreq) -> None:
        self.send_packet(Pingresp())

    def _on_disconnect(self, p: Disconnect) -> None:
        session = self.session
        if self.v5 and "session_expiry_interval" in p.properties:
            new_expiry = p.properties["session_expiry_interval"]
            if session.expiry_interval == 0 and new_expiry:
                raise MQTTError(ReasonCode.PROTOCOL_ERROR, "session expiry set on DISCONNECT after 0 at CONNECT")
            session.expiry_interval = self.broker.cap_session_expiry(new_expiry)
        if p.reason_code != ReasonCode.DISCONNECT_WITH_WILL:
            self.will = None
        self.graceful = True
        self.disconnect_reason = "CLIENT_INITIATED_DISCONNECT"
        self.state = _CLOSING
        self._flush()
        self.transport.close()

    def _on_auth(self, _p: Auth) -> None:
        raise MQTTError(ReasonCode.PROTOCOL_ERROR, "AUTH without an authentication method")

    def _on_server_packet(self, p: Any) -> None:
        raise MQTTError(ReasonCode.PROTOCOL_ERROR, f"{type(p).__name__} is sent by servers, not clients")

    # -- introspection (admin API, metrics) ------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id, "address": self.address, "port": self.port, "listener": self.listener,
            "protocol": "5.0" if self.v5 else ("3.1.1" if self.level == 4 else "3.1"),
            "username": self.identity.username if self.identity else None,
            "principal": self.identity.principal if self.identity else None, "keep_alive": self.keep_alive,
            "connected_at": self.connected_at, "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
            "messages_in": self.msgs_in, "messages_out": self.msgs_out,
            "inflight": len(self.session.inflight) if self.session else 0,
            "queued": self.session.queued_count if self.session else 0,
        }


_FORWARDED = ("payload_format_indicator", "content_type", "response_topic", "correlation_data", "user_property")


def granted_subs_with_new(granted: list) -> list[tuple[Any, bool]]:
    """Shared subscriptions never receive retained messages (MQTT 5 4.8.2)."""
    return [(s, new) for s, new, group in granted if group is None]


def _outgoing_properties(msg: Message, sids: tuple[int, ...]) -> dict[str, Any] | None:
    props = dict(msg.properties) if msg.properties else {}
    if msg.expires_at is not None:
        remaining = msg.remaining_expiry()
        if remaining is not None and remaining <= 0:
            return None
        props["message_expiry_interval"] = remaining
    if sids:
        props["subscription_identifier"] = list(sids)
    return props


def _log_task_error(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("connection task failed", exc_info=task.exception())


_HANDLERS = {
    Connect: Connection._on_connect,
    Publish: Connection._on_publish,
    Puback: Connection._on_puback,
    Pubrec: Connection._on_pubrec,
    Pubrel: Connection._on_pubrel,
    Pubcomp: Connection._on_pubcomp,
    Subscribe: Connection._on_subscribe,
    Unsubscribe: Connection._on_unsubscribe,
    Pingreq: Connection._on_pingreq,
    Disconnect: Connection._on_disconnect,
    Auth: Connection._on_auth,
    Connack: Connection._on_server_packet,
    Suback: Connection._on_server_packet,
    Unsuback: Connection._on_server_packet,
    Pingresp: Connection._on_server_packet,
}
