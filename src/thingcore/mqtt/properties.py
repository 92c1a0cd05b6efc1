"""MQTT 5 properties: the table (identifier, name, data type, where allowed) and the codec.

A property block is a variable byte integer length followed by ``identifier, value`` pairs.
Decoded properties are a plain ``dict`` keyed by the snake_case names below. ``user_property``
is a list of ``(key, value)`` string pairs (order kept); ``subscription_identifier`` is a
``list[int]`` in a PUBLISH (it may repeat there) and an ``int`` in a SUBSCRIBE. Any other
property appearing twice is a Protocol Error, as is a property that the packet may not carry;
an unknown identifier makes the packet malformed.
"""

from __future__ import annotations

from typing import Any

from .reason_codes import MalformedPacket, ProtocolError

# Data types (MQTT 5 section 1.5).
BYTE = 1
TWO_BYTE_INT = 2
FOUR_BYTE_INT = 3
VARINT = 4
UTF8_STRING = 5
BINARY = 6
STRING_PAIR = 7

# Where a property may appear: the packet type numbers (1 = CONNECT ... 15 = AUTH) and WILL for
# the will properties inside a CONNECT payload.
WILL = 0
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH = 8, 9, 10, 11, 14, 15

_MSG = frozenset({PUBLISH, WILL})
_ACKS_ETC = frozenset({CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH})

# id: (name, type, allowed packet types)
PROPERTIES: dict[int, tuple[str, int, frozenset[int]]] = {
    0x01: ("payload_format_indicator", BYTE, _MSG),
    0x02: ("message_expiry_interval", FOUR_BYTE_INT, _MSG),
    0x03: ("content_type", UTF8_STRING, _MSG),
    0x08: ("response_topic", UTF8_STRING, _MSG),
    0x09: ("correlation_data", BINARY, _MSG),
    0x0B: ("subscription_identifier", VARINT, frozenset({PUBLISH, SUBSCRIBE})),
    0x11: ("session_expiry_interval", FOUR_BYTE_INT, frozenset({CONNECT, CONNACK, DISCONNECT})),
    0x12: ("assigned_client_identifier", UTF8_STRING, frozenset({CONNACK})),
    0x13: ("server_keep_alive", TWO_BYTE_INT, frozenset({CONNACK})),
    0x15: ("authentication_method", UTF8_STRING, frozenset({CONNECT, CONNACK, AUTH})),
    0x16: ("authentication_data", BINARY, frozenset({CONNECT, CONNACK, AUTH})),
    0x17: ("request_problem_information", BYTE, frozenset({CONNECT})),
    0x18: ("will_delay_interval", FOUR_BYTE_INT, frozenset({WILL})),
    0x19: ("request_response_information", BYTE, frozenset({CONNECT})),
    0x1A: ("response_information", UTF8_STRING, frozenset({CONNACK})),
    0x1C: ("server_reference", UTF8_STRING, frozenset({CONNACK, DISCONNECT})),
    0x1F: ("reason_string", UTF8_STRING, _ACKS_ETC),
    0x21: ("receive_maximum", TWO_BYTE_INT, frozenset({CONNECT, CONNACK})),
    0x22: ("topic_alias_maximum", TWO_BYTE_INT, frozenset({CONNECT, CONNACK})),
    0x23: ("topic_alias", TWO_BYTE_INT, frozenset({PUBLISH})),
    0x24: ("maximum_qos", BYTE, frozenset({CONNACK})),
    0x25: ("retain_available", BYTE, frozenset({CONNACK})),
    0x26: (
        "user_property",
        STRING_PAIR,
        frozenset(
            {CONNECT, CONNACK, PUBLISH, WILL, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK,
             UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH}
        ),
    ),
    0x27: ("maximum_packet_size", FOUR_BYTE_INT, frozenset({CONNECT, CONNACK})),
    0x28: ("wildcard_subscription_available", BYTE, frozenset({CONNACK})),
    0x29: ("subscription_identifier_available", BYTE, frozenset({CONNACK})),
    0x2A: ("shared_subscription_available", BYTE, frozenset({CONNACK})),
}

BY_NAME: dict[str, tuple[int, int]] = {name: (pid, kind) for pid, (name, kind, _) in PROPERTIES.items()}
"""name -> (identifier, data type)"""

_ZERO_ONE = {
    "payload_format_indicator",
    "request_problem_information",
    "request_response_information",
    "maximum_qos",
    "retain_available",
    "wildcard_subscription_available",
    "subscription_identifier_available",
    "shared_subscription_available",
}
_NONZERO = {"receive_maximum", "maximum_packet_size", "topic_alias", "subscription_identifier"}


def _check(name: str, value: int) -> None:
    if name in _ZERO_ONE:
        if value > 1:
            raise ProtocolError(f"property {name} must be 0 or 1, got {value}")
    elif name in _NONZERO and value == 0:
        raise ProtocolError(f"property {name} must not be 0")


def decode_properties(buf: bytes, p: int, end: int, packet_type: int) -> tuple[dict[str, Any], int]:
    """Decode the property block starting at ``buf[p]`` (its length varint) within ``end``.

    Returns ``(properties, position after the block)``. Raises MalformedPacket or ProtocolError.
    """
    if p >= end:
        raise MalformedPacket("missing property length")
    b = buf[p]
    p += 1
    if b < 0x80:
        length = b
    else:
        length = b & 0x7F
        shift = 7
        while True:
            if p >= end or shift > 21:
                raise MalformedPacket("bad property length")
            b = buf[p]
            p += 1
            length |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
    if length == 0:
        return {}, p
    pend = p + length
    if pend > end:
        raise MalformedPacket("property length exceeds packet")
    props: dict[str, Any] = {}
    while p < pend:
        pid = buf[p]
        p += 1
        entry = PROPERTIES.get(pid)
        if entry is None:
            raise MalformedPacket(f"unknown property identifier 0x{pid:02X}")
        name, kind, allowed = entry
        if packet_type not in allowed:  # MQTT 5 2.2.2.2: "not valid for its packet type" is malformed
            raise MalformedPacket(f"property {name} not allowed in packet type {packet_type}")
        if kind >= UTF8_STRING:  # UTF8_STRING, BINARY, STRING_PAIR
            if p + 2 > pend:
                raise MalformedPacket(f"truncated property {name}")
            n = (buf[p] << 8) | buf[p + 1]
            p += 2
            e = p + n
            if e > pend:
                raise MalformedPacket(f"truncated property {name}")
            if kind == BINARY:
                value: Any = bytes(buf[p:e])
            else:
                value = _utf8(buf, p, e, name)
            p = e
            if kind == STRING_PAIR:
                if p + 2 > pend:
                    raise MalformedPacket(f"truncated property {name}")
                n = (buf[p] << 8) | buf[p + 1]
                p += 2
                e = p + n
                if e > pend:
                    raise MalformedPacket(f"truncated property {name}")
                value = (value, _utf8(buf, p, e, name))
                p = e
                pairs = props.get("user_property")
                if pairs is None:
                    props["user_property"] = [value]
                else:
                    pairs.append(value)
                continue
        elif kind == BYTE:
            if p >= pend:
                raise MalformedPacket(f"truncated property {name}")
            value = buf[p]
            p += 1
            _check(name, value)
        elif kind == TWO_BYTE_INT:
            if p + 2 > pend:
                raise MalformedPacket(f"truncated property {name}")
            value = (buf[p] << 8) | buf[p + 1]
            p += 2
            _check(name, value)
        elif kind == FOUR_BYTE_INT:
            if p + 4 > pend:
                raise MalformedPacket(f"truncated property {name}")
            value = int.from_bytes(buf[p : p + 4], "big")
            p += 4
            _check(name, value)
        else:  # VARINT: only subscription_identifier
            value = 0
            shift = 0
            while True:
                if p >= pend or shift > 21:
                    raise MalformedPacket(f"bad variable byte integer in {name}")
                b = buf[p]
                p += 1
                value |= (b & 0x7F) << shift
                if b < 0x80:
                    break
                shift += 7
            _check(name, value)
            if packet_type == PUBLISH:
                ids = props.get(name)
                if ids is None:
                    props[name] = [value]
                else:
                    ids.append(value)
                continue
        if name in props:
            raise ProtocolError(f"duplicate property {name}")
        props[name] = value
    if p != pend:
        raise MalformedPacket("property overruns its block")
    return props, p


def _utf8(buf: bytes, p: int, e: int, name: str) -> str:
    try:
        s = buf[p:e].decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket(f"property {name} is not valid UTF-8") from None
    if "\x00" in s:
        raise MalformedPacket(f"property {name} contains U+0000")
    return s


def encode_varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n > 268_435_455 or n < 0:
        raise ValueError(f"variable byte integer out of range: {n}")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _enc_str(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    if len(b) > 0xFFFF:
        raise ValueError("string or binary data longer than 65535 bytes")
    return len(b).to_bytes(2, "big") + b


def encode_properties(props: dict[str, Any] | None) -> bytes:
    """Encode a property dict as a block (length varint + properties). ``{}`` -> ``b"\\x00"``."""
    if not props:
        return b"\x00"
    parts: list[bytes] = []
    for name, value in props.items():
        try:
            pid, kind = BY_NAME[name]
        except KeyError:
            raise ValueError(f"unknown MQTT 5 property {name!r}") from None
        if kind == STRING_PAIR:
            for k, v in value:
                parts.append(b"\x26" + _enc_str(k) + _enc_str(v))
        elif kind == VARINT:
            for v in value if isinstance(value, list | tuple) else (value,):
                parts.append(b"\x0b" + encode_varint(v))
        elif kind == BYTE:
            parts.append(bytes((pid, int(value))))
        elif kind == TWO_BYTE_INT:
            parts.append(bytes((pid,)) + int(value).to_bytes(2, "big"))
        elif kind == FOUR_BYTE_INT:
            parts.append(bytes((pid,)) + int(value).to_bytes(4, "big"))
        else:  # UTF8_STRING, BINARY
            parts.append(bytes((pid,)) + _enc_str(value))
    body = b"".join(parts)
    return encode_varint(len(body)) + body
