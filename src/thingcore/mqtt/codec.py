"""Pure MQTT 3.1.1 / 5.0 codec: bytes in, packets out, and back. No I/O.

``Decoder.feed`` returns every complete packet in the input seen so far and raises only
:class:`~thingcore.mqtt.reason_codes.MQTTError` subclasses. ``encode`` writes any packet in either
protocol version; ``encode_publish_template`` builds a PUBLISH once per fan-out with a hole for
each subscriber's packet identifier.
"""

from __future__ import annotations

import struct
from typing import Any

from .packets import (
    MQTT_5,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)
from .properties import WILL, decode_properties, encode_properties, encode_varint
from .reason_codes import (
    MalformedPacket,
    MQTTError,
    PacketTooLarge,
    ProtocolError,
    UnsupportedProtocolVersion,
)

MAX_REMAINING_LENGTH = 268_435_455

__all__ = [
    "MAX_REMAINING_LENGTH",
    "Decoder",
    "encode",
    "encode_publish_template",
    "packet_size",
]

# Required fixed-header flags per packet type (None: reserved type; PUBLISH checked separately).
_FLAGS = (None, 0, 0, None, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0)

# Reason codes each MQTT 5 packet may carry.
_RC_PUBACK = frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99})
_RC_PUBREL = frozenset({0x00, 0x92})
_RC_SUBACK = frozenset({0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2})
_RC_SUBACK_311 = frozenset({0x00, 0x01, 0x02, 0x80})
_RC_UNSUBACK = frozenset({0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91})
_RC_CONNACK = frozenset(
    {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
     0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F}
)
_RC_DISCONNECT = frozenset(
    {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
     0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2}
)
_RC_AUTH = frozenset({0x00, 0x18, 0x19})

_SUPPORTED = {("MQTT", 4), ("MQTT", 5), ("MQIsdp", 3)}

# Exceptions that can only come from hostile input hitting a gap in the explicit checks.
_WRAPPED = (IndexError, ValueError, UnicodeDecodeError, struct.error, OverflowError)


# ---------------------------------------------------------------------------------------------
# decoding helpers (buf is bytes; p the position; end the end of the packet)


def _u16(buf: bytes, p: int, end: int) -> int:
    if p + 2 > end:
        raise MalformedPacket("packet ends inside a two-byte integer")
    return (buf[p] << 8) | buf[p + 1]


def _string(buf: bytes, p: int, end: int, what: str) -> tuple[str, int]:
    if p + 2 > end:
        raise MalformedPacket(f"packet ends before {what}")
    e = p + 2 + ((buf[p] << 8) | buf[p + 1])
    if e > end:
        raise MalformedPacket(f"{what} overruns the packet")
    try:
        s = buf[p + 2 : e].decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket(f"{what} is not valid UTF-8") from None
    if "\x00" in s:
        raise MalformedPacket(f"{what} contains U+0000")
    return s, e


def _binary(buf: bytes, p: int, end: int, what: str) -> tuple[bytes, int]:
    if p + 2 > end:
        raise MalformedPacket(f"packet ends before {what}")
    e = p + 2 + ((buf[p] << 8) | buf[p + 1])
    if e > end:
        raise MalformedPacket(f"{what} overruns the packet")
    return buf[p + 2 : e], e


def _packet_id(buf: bytes, p: int, end: int) -> int:
    if p + 2 > end:
        raise MalformedPacket("packet ends before the packet identifier")
    pid = (buf[p] << 8) | buf[p + 1]
    if pid == 0:
        raise ProtocolError("packet identifier 0")
    return pid


def _trailing(p: int, end: int, what: str) -> None:
    if p != end:
        raise MalformedPacket(f"{end - p} unexpected trailing byte(s) in {what}")


# ---------------------------------------------------------------------------------------------
# one function per packet type: (buf, start of variable header, end, flags, level) -> packet


def _d_connect(buf: bytes, p: int, end: int, flags: int, level: int) -> Connect:
    raise AssertionError("CONNECT is decoded by Decoder._connect")  # pragma: no cover


def _d_connack(buf: bytes, p: int, end: int, flags: int, level: int) -> Connack:
    if end - p < 2:
        raise MalformedPacket("CONNACK too short")
    ack = buf[p]
    if ack & 0xFE:
        raise MalformedPacket("CONNACK reserved acknowledge flags set")
    rc = buf[p + 1]
    p += 2
    props: dict[str, Any] = {}
    if level == MQTT_5:
        if rc not in _RC_CONNACK:
            raise ProtocolError(f"invalid CONNACK reason code 0x{rc:02X}")
        if p < end:
            props, p = decode_properties(buf, p, end, 2)
    _trailing(p, end, "CONNACK")
    return Connack(bool(ack & 1), rc, props)


def _d_publish(buf: bytes, p: int, end: int, flags: int, level: int) -> Publish:
    qos = (flags >> 1) & 3
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")
    if flags & 8 and not qos:
        raise MalformedPacket("PUBLISH with DUP set on QoS 0")
    if p + 2 > end:
        raise MalformedPacket("PUBLISH too short")
    e = p + 2 + ((buf[p] << 8) | buf[p + 1])
    if e > end:
        raise MalformedPacket("PUBLISH topic overruns the packet")
    try:
        topic = buf[p + 2 : e].decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket("PUBLISH topic is not valid UTF-8") from None
    if "\x00" in topic:
        raise MalformedPacket("PUBLISH topic contains U+0000")
    p = e
    pid = None
    if qos:
        if p + 2 > end:
            raise MalformedPacket("PUBLISH ends before the packet identifier")
        pid = (buf[p] << 8) | buf[p + 1]
        if pid == 0:
            raise ProtocolError("PUBLISH with packet identifier 0")
        p += 2
    if level == MQTT_5:
        if p < end and buf[p] == 0:
            props: dict[str, Any] = {}
            p += 1
        else:
            props, p = decode_properties(buf, p, end, 3)
        return Publish(topic, buf[p:end], qos, flags & 1 == 1, flags & 8 == 8, pid, props)
    return Publish(topic, buf[p:end], qos, flags & 1 == 1, flags & 8 == 8, pid, {})


def _d_ack(cls: type, ptype: int, name: str, allowed: frozenset[int]):  # type: ignore[no-untyped-def]
    def decode(buf: bytes, p: int, end: int, flags: int, level: int):  # type: ignore[no-untyped-def]
        pid = _packet_id(buf, p, end)
        p += 2
        rc = 0
        props: dict[str, Any] = {}
        if level == MQTT_5 and p < end:
            rc = buf[p]
            p += 1
            if rc not in allowed:
                raise ProtocolError(f"invalid {name} reason code 0x{rc:02X}")
            if p < end:
                props, p = decode_properties(buf, p, end, ptype)
        _trailing(p, end, name)
        return cls(pid, rc, props)

    return decode


def _d_subscribe(buf: bytes, p: int, end: int, flags: int, level: int) -> Subscribe:
    pid = _packet_id(buf, p, end)
    p += 2
    props: dict[str, Any] = {}
    v5 = level == MQTT_5
    if v5:
        props, p = decode_properties(buf, p, end, 8)
    subs: list[Subscription] = []
    while p < end:
        f, p = _string(buf, p, end, "topic filter")
        if p >= end:
            raise MalformedPacket("SUBSCRIBE ends before the subscription options")
        o = buf[p]
        p += 1
        qos = o & 3
        if qos == 3:
            raise MalformedPacket("SUBSCRIBE with QoS 3")
        if v5:
            if o & 0xC0:
                raise MalformedPacket("SUBSCRIBE reserved option bits set")
            rh = (o >> 4) & 3
            if rh == 3:
                raise ProtocolError("SUBSCRIBE with retain handling 3")
            subs.append(Subscription(f, qos, bool(o & 4), bool(o & 8), rh))
        else:
            if o & 0xFC:
                raise MalformedPacket("SUBSCRIBE reserved bits of requested QoS set")
            subs.append(Subscription(f, qos))
    if not subs:
        raise ProtocolError("SUBSCRIBE with no topic filters")
    return Subscribe(pid, subs, props)


def _d_suback(buf: bytes, p: int, end: int, flags: int, level: int) -> Suback:
    pid = _packet_id(buf, p, end)
    p += 2
    props: dict[str, Any] = {}
    allowed = _RC_SUBACK_311
    if level == MQTT_5:
        props, p = decode_properties(buf, p, end, 9)
        allowed = _RC_SUBACK
    codes = list(buf[p:end])
    for rc in codes:
        if rc not in allowed:
            raise ProtocolError(f"invalid SUBACK reason code 0x{rc:02X}")
    return Suback(pid, codes, props)


def _d_unsubscribe(buf: bytes, p: int, end: int, flags: int, level: int) -> Unsubscribe:
    pid = _packet_id(buf, p, end)
    p += 2
    props: dict[str, Any] = {}
    if level == MQTT_5:
        props, p = decode_properties(buf, p, end, 10)
    filters: list[str] = []
    while p < end:
        f, p = _string(buf, p, end, "topic filter")
        filters.append(f)
    if not filters:
        raise ProtocolError("UNSUBSCRIBE with no topic filters")
    return Unsubscribe(pid, filters, props)


def _d_unsuback(buf: bytes, p: int, end: int, flags: int, level: int) -> Unsuback:
    pid = _packet_id(buf, p, end)
    p += 2
    if level != MQTT_5:
        _trailing(p, end, "UNSUBACK")
        return Unsuback(pid)
    props, p = decode_properties(buf, p, end, 11)
    codes = list(buf[p:end])
    for rc in codes:
        if rc not in _RC_UNSUBACK:
            raise ProtocolError(f"invalid UNSUBACK reason code 0x{rc:02X}")
    return Unsuback(pid, codes, props)


def _d_ping(cls: type, name: str):  # type: ignore[no-untyped-def]
    def decode(buf: bytes, p: int, end: int, flags: int, level: int):  # type: ignore[no-untyped-def]
        _trailing(p, end, name)
        return cls()

    return decode


def _d_reason_props(cls: type, ptype: int, name: str, allowed: frozenset[int]):  # type: ignore[no-untyped-def]
    def decode(buf: bytes, p: int, end: int, flags: int, level: int):  # type: ignore[no-untyped-def]
        if level != MQTT_5:
            if ptype == 15:
                raise MalformedPacket("AUTH packet in MQTT 3.1.1")
            _trailing(p, end, name)
            return cls()
        rc = 0
        props: dict[str, Any] = {}
        if p < end:
            rc = buf[p]
            p += 1
            if rc not in allowed:
                raise ProtocolError(f"invalid {name} reason code 0x{rc:02X}")
            if p < end:
                props, p = decode_properties(buf, p, end, ptype)
        _trailing(p, end, name)
        return cls(rc, props)

    return decode


_DECODERS = (
    None,
    _d_connect,
    _d_connack,
    _d_publish,
    _d_ack(Puback, 4, "PUBACK", _RC_PUBACK),
    _d_ack(Pubrec, 5, "PUBREC", _RC_PUBACK),
    _d_ack(Pubrel, 6, "PUBREL", _RC_PUBREL),
    _d_ack(Pubcomp, 7, "PUBCOMP", _RC_PUBREL),
    _d_subscribe,
    _d_suback,
    _d_unsubscribe,
    _d_unsuback,
    _d_ping(Pingreq, "PINGREQ"),
    _d_ping(Pingresp, "PINGRESP"),
    _d_reason_props(Disconnect, 14, "DISCONNECT", _RC_DISCONNECT),
    _d_reason_props(Auth, 15, "AUTH", _RC_AUTH),
)


class Decoder:
    """Stream decoder: ``feed`` bytes, get back every complete packet.

    ``protocol_level`` is None until a CONNECT has been decoded (packets before it decode as
    3.1.1); a client passes the level it connected with. As soon as a CONNECT's protocol level
    is read and supported, ``protocol_level`` is set, even if the rest of that CONNECT then turns
    out to be invalid, so the server can answer a bad MQTT 5 CONNECT with an MQTT 5 CONNACK.

    Errors: only :class:`MQTTError` subclasses. The exception carries ``packets``: the packets
    decoded from the same ``feed`` call before the bad one. After an error the decoder is
    unusable (its buffer is dropped); the connection is expected to close.
    """

    __slots__ = ("_chunks", "_have", "_need", "max_packet_size", "protocol_level")

    def __init__(
        self, max_packet_size: int = MAX_REMAINING_LENGTH, protocol_level: int | None = None
    ) -> None:
        self.max_packet_size = max_packet_size
        self.protocol_level = protocol_level
        self._chunks: list[bytes] = []  # the undecoded tail, then chunks fed since
        self._have = 0  # total bytes in _chunks
        self._need = 0  # bytes needed for the next packet (0: its fixed header is not complete)

    @property
    def buffered(self) -> int:
        """Bytes received but not yet decoded (an incomplete packet)."""
        return self._have

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        if not data:
            return []
        if type(data) is not bytes:
            data = bytes(data)
        if self._chunks:
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            buf = b"".join(self._chunks)
            self._chunks = []
            self._have = 0
        else:
            buf = data
        out: list[Packet] = []
        pos = 0
        n = len(buf)
        maxsize = self.max_packet_size
        decoders = _DECODERS
        try:
            while True:
                if n - pos < 2:
                    self._need = 0
                    break
                b0 = buf[pos]
                b = buf[pos + 1]
                if b < 0x80:
                    hp = pos + 2
                    rl = b
                else:
                    rl = b & 0x7F
                    hp = pos + 2
                    shift = 7
                    while True:
                        if hp >= n:
                            rl = -1
                            break
                        b = buf[hp]
                        hp += 1
                        rl |= (b & 0x7F) << shift
                        if b < 0x80:
                            break
                        if shift == 21:
                            raise MalformedPacket("remaining length longer than 4 bytes")
                        shift += 7
                    if rl < 0:
                        self._need = 0  # fixed header not complete yet
                        break
                end = hp + rl
                if end - pos > maxsize:
                    raise PacketTooLarge(f"packet of {end - pos} bytes exceeds the maximum of {maxsize}")
                if end > n:
                    self._need = end - pos
                    break
                t = b0 >> 4
                flags = b0 & 0x0F
                if t == 3:
                    # Fast path: QoS 0 PUBLISH without properties (the bulk of the traffic).
                    if flags < 2 and end - hp >= 2:
                        e = hp + 2 + ((buf[hp] << 8) | buf[hp + 1])
                        if self.protocol_level == 5:
                            if e < end and buf[e] == 0:
                                try:
                                    topic = buf[hp + 2 : e].decode("utf-8")
                                except UnicodeDecodeError:
                                    raise MalformedPacket("PUBLISH topic is not valid UTF-8") from None
                                if "\x00" not in topic:
                                    payload = buf[e + 1 : end]
                                    out.append(Publish(topic, payload, 0, flags == 1, False, None, {}))
                                    pos = end
                                    continue
                        elif e <= end:
                            try:
                                topic = buf[hp + 2 : e].decode("utf-8")
                            except UnicodeDecodeError:
                                raise MalformedPacket("PUBLISH topic is not valid UTF-8") from None
                            if "\x00" not in topic:
                                out.append(Publish(topic, buf[e:end], 0, flags == 1, False, None, {}))
                                pos = end
                                continue
                    out.append(_d_publish(buf, hp, end, flags, self.protocol_level or 4))
                else:
                    if flags != _FLAGS[t]:
                        if t == 0:
                            raise MalformedPacket("reserved packet type 0")
                        raise MalformedPacket(f"invalid fixed header flags 0x{flags:X} for packet type {t}")
                    if t == 1:
                        out.append(self._connect(buf, hp, end))
                    else:
                        out.append(decoders[t](buf, hp, end, flags, self.protocol_level or 4))
                pos = end
        except MQTTError as exc:
            self._reset()
            exc.packets = out  # type: ignore[attr-defined]
            raise
        except _WRAPPED as exc:
            self._reset()
            err = MalformedPacket(f"malformed packet ({type(exc).__name__}: {exc})")
            err.packets = out  # type: ignore[attr-defined]
            raise err from exc
        if pos < n:
            tail = buf[pos:] if pos else buf
            self._chunks = [tail]
            self._have = len(tail)
        return out

    def _reset(self) -> None:
        self._chunks = []
        self._have = 0
        self._need = 0

    def _connect(self, buf: bytes, p: int, end: int) -> Connect:
        name, p = _string(buf, p, end, "protocol name")
        if p >= end:
            raise UnsupportedProtocolVersion("CONNECT ends before the protocol level", None, name)
        level = buf[p]
        if (name, level) not in _SUPPORTED:
            raise UnsupportedProtocolVersion(f"unsupported protocol {name!r} level {level}", level, name)
        self.protocol_level = level
        try:
            return _decode_connect_body(buf, p + 1, end, name, level)
        except MQTTError as exc:
            exc.protocol_level = level  # type: ignore[attr-defined]
            raise


def _decode_connect_body(buf: bytes, p: int, end: int, name: str, level: int) -> Connect:
    if p + 3 > end:
        raise MalformedPacket("CONNECT too short")
    cf = buf[p]
    keep_alive = (buf[p + 1] << 8) | buf[p + 2]
    p += 3
    if cf & 0x01:
        raise MalformedPacket("CONNECT reserved flag set")
    will_flag = cf & 0x04
    will_qos = (cf >> 3) & 3
    will_retain = bool(cf & 0x20)
    if not will_flag and (will_qos or will_retain):
        raise MalformedPacket("CONNECT will QoS/retain set without the will flag")
    if will_qos == 3:
        raise MalformedPacket("CONNECT will QoS 3")
    has_user = cf & 0x80
    has_pass = cf & 0x40
    v5 = level == MQTT_5
    if has_pass and not has_user and not v5:
        raise ProtocolError("CONNECT password flag without user name flag")
    props: dict[str, Any] = {}
    if v5:
        props, p = decode_properties(buf, p, end, 1)
    client_id, p = _string(buf, p, end, "client identifier")
    will = None
    if will_flag:
        wprops: dict[str, Any] = {}
        if v5:
            wprops, p = decode_properties(buf, p, end, WILL)
        wtopic, p = _string(buf, p, end, "will topic")
        wpayload, p = _binary(buf, p, end, "will payload")
        will = Will(wtopic, wpayload, will_qos, will_retain, wprops)
    username = password = None
    if has_user:
        username, p = _string(buf, p, end, "user name")
    if has_pass:
        password, p = _binary(buf, p, end, "password")
    _trailing(p, end, "CONNECT")
    return Connect(client_id, level, name, bool(cf & 0x02), keep_alive, username, password, will, props)


# ---------------------------------------------------------------------------------------------
# encoding


def _s(s: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return len(b).to_bytes(2, "big") + b


def _b(b: bytes) -> bytes:
    if len(b) > 0xFFFF:
        raise ValueError("binary data longer than 65535 bytes")
    return len(b).to_bytes(2, "big") + bytes(b)


def _frame(b0: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes((b0, n)) + body
    return bytes((b0,)) + encode_varint(n) + body


def _e_connect(pk: Connect, level: int) -> bytes:
    v5 = level == MQTT_5
    name = "MQIsdp" if level == 3 else "MQTT"
    flags = 0x02 if pk.clean_start else 0
    w = pk.will
    if w is not None:
        flags |= 0x04 | (w.qos << 3) | (0x20 if w.retain else 0)
    if pk.username is not None:
        flags |= 0x80
    if pk.password is not None:
        flags |= 0x40
    parts = [_s(name), bytes((level, flags)), pk.keep_alive.to_bytes(2, "big")]
    if v5:
        parts.append(encode_properties(pk.properties))
    parts.append(_s(pk.client_id))
    if w is not None:
        if v5:
            parts.append(encode_properties(w.properties))
        parts.append(_s(w.topic))
        parts.append(_b(w.payload))
    if pk.username is not None:
        parts.append(_s(pk.username))
    if pk.password is not None:
        parts.append(_b(pk.password))
    return _frame(0x10, b"".join(parts))


def _e_connack(pk: Connack, level: int) -> bytes:
    body = bytes((1 if pk.session_present else 0, pk.reason_code))
    if level == MQTT_5:
        body += encode_properties(pk.properties)
    return _frame(0x20, body)


def _publish_b0(pk: Publish) -> int:
    return 0x30 | (0x08 if pk.dup else 0) | (pk.qos << 1) | (0x01 if pk.retain else 0)


def _e_publish(pk: Publish, level: int) -> bytes:
    head, tail = encode_publish_template(pk, level)
    if pk.qos:
        if not pk.packet_id:
            raise ValueError("PUBLISH with QoS > 0 needs a non-zero packet_id")
        return head + pk.packet_id.to_bytes(2, "big") + tail
    return head + tail


def encode_publish_template(publish: Publish, protocol_level: int) -> tuple[bytes, bytes]:
    """``(head, tail)``: the packet is ``head + packet_id (2 bytes) + tail`` for QoS > 0,
    ``head + tail`` for QoS 0. ``publish.packet_id`` is ignored."""
    topic = publish.topic.encode("utf-8")
    if len(topic) > 0xFFFF:
        raise ValueError("topic longer than 65535 bytes")
    payload = publish.payload
    if protocol_level == MQTT_5:
        props = publish.properties
        tail = (encode_properties(props) + payload) if props else (b"\x00" + payload)
    else:
        tail = bytes(payload)
    rl = 2 + len(topic) + len(tail) + (2 if publish.qos else 0)
    if rl < 0x80:
        head = bytes((_publish_b0(publish), rl)) + len(topic).to_bytes(2, "big") + topic
    else:
        head = bytes((_publish_b0(publish),)) + encode_varint(rl) + len(topic).to_bytes(2, "big") + topic
    return head, tail


def _e_ack(b0: int):  # type: ignore[no-untyped-def]
    def enc(pk: Puback | Pubrec | Pubrel | Pubcomp, level: int) -> bytes:
        pid = pk.packet_id.to_bytes(2, "big")
        if level != MQTT_5 or (pk.reason_code == 0 and not pk.properties):
            return bytes((b0, 2)) + pid
        if not pk.properties:
            return bytes((b0, 3)) + pid + bytes((pk.reason_code,))
        return _frame(b0, pid + bytes((pk.reason_code,)) + encode_properties(pk.properties))

    return enc


def _e_subscribe(pk: Subscribe, level: int) -> bytes:
    v5 = level == MQTT_5
    parts = [pk.packet_id.to_bytes(2, "big")]
    if v5:
        parts.append(encode_properties(pk.properties))
    for s in pk.subscriptions:
        parts.append(_s(s.filter))
        if v5:
            o = s.qos | (s.retain_handling << 4)
            if s.no_local:
                o |= 4
            if s.retain_as_published:
                o |= 8
        else:
            o = s.qos
        parts.append(bytes((o,)))
    return _frame(0x82, b"".join(parts))


def _e_suback(pk: Suback, level: int) -> bytes:
    body = pk.packet_id.to_bytes(2, "big")
    if level == MQTT_5:
        body += encode_properties(pk.properties)
    return _frame(0x90, body + bytes(pk.reason_codes))


def _e_unsubscribe(pk: Unsubscribe, level: int) -> bytes:
    parts = [pk.packet_id.to_bytes(2, "big")]
    if level == MQTT_5:
        parts.append(encode_properties(pk.properties))
    parts.extend(_s(f) for f in pk.filters)
    return _frame(0xA2, b"".join(parts))


def _e_unsuback(pk: Unsuback, level: int) -> bytes:
    body = pk.packet_id.to_bytes(2, "big")
    if level == MQTT_5:
        body += encode_properties(pk.properties) + bytes(pk.reason_codes)
    return _frame(0xB0, body)


def _e_pingreq(pk: Pingreq, level: int) -> bytes:
    return b"\xc0\x00"


def _e_pingresp(pk: Pingresp, level: int) -> bytes:
    return b"\xd0\x00"


def _e_disconnect(pk: Disconnect, level: int) -> bytes:
    if level != MQTT_5 or (pk.reason_code == 0 and not pk.properties):
        return b"\xe0\x00"
    if not pk.properties:
        return bytes((0xE0, 1, pk.reason_code))
    return _frame(0xE0, bytes((pk.reason_code,)) + encode_properties(pk.properties))


def _e_auth(pk: Auth, level: int) -> bytes:
    if level != MQTT_5:
        raise ValueError("AUTH exists only in MQTT 5")
    if pk.reason_code == 0 and not pk.properties:
        return b"\xf0\x00"
    if not pk.properties:
        return bytes((0xF0, 1, pk.reason_code))
    return _frame(0xF0, bytes((pk.reason_code,)) + encode_properties(pk.properties))


_ENCODERS: dict[type, Any] = {
    Connect: _e_connect,
    Connack: _e_connack,
    Publish: _e_publish,
    Puback: _e_ack(0x40),
    Pubrec: _e_ack(0x50),
    Pubrel: _e_ack(0x62),
    Pubcomp: _e_ack(0x70),
    Subscribe: _e_subscribe,
    Suback: _e_suback,
    Unsubscribe: _e_unsubscribe,
    Unsuback: _e_unsuback,
    Pingreq: _e_pingreq,
    Pingresp: _e_pingresp,
    Disconnect: _e_disconnect,
    Auth: _e_auth,
}


def encode(packet: Packet, protocol_level: int) -> bytes:
    """The wire bytes of ``packet`` for ``protocol_level`` (3, 4 or 5).

    For 3.1.1 properties and MQTT 5-only reason codes are dropped (PUBACK & co. are just the
    packet identifier, UNSUBACK has no payload); SUBACK return codes and the CONNACK return code
    are written as given. Raises ValueError for a packet that cannot be encoded.
    """
    try:
        enc = _ENCODERS[type(packet)]
    except KeyError:
        raise TypeError(f"not an MQTT packet: {packet!r}") from None
    return enc(packet, protocol_level)


def packet_size(packet: Packet, protocol_level: int) -> int:
    """Total encoded size in bytes (for checking a client's Maximum Packet Size)."""
    return len(encode(packet, protocol_level))
