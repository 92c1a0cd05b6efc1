"""The few MQTT 3.1.1 packets the load generator needs, hand-encoded, and a tiny incremental parser.

Everything here is pure (bytes in, bytes out) so packets can be encoded once, before a load
starts, and written many at a time.
"""

from __future__ import annotations

import struct

CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBACK = 0x90
PINGRESP = 0xD0

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


def varint(n: int) -> bytes:
    """MQTT variable byte integer (remaining length)."""
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def utf8(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def connect(client_id: str, keepalive: int = 0, clean: bool = True,
            username: str | None = None, password: str | None = None) -> bytes:
    flags = 0x02 if clean else 0x00
    tail = b""
    if username is not None:
        flags |= 0x80
        tail += utf8(username)
        if password is not None:
            flags |= 0x40
            tail += utf8(password)
    body = utf8("MQTT") + bytes([4, flags]) + struct.pack(">H", keepalive) + utf8(client_id) + tail
    return bytes([0x10]) + varint(len(body)) + body


def subscribe(packet_id: int, topic_filter: str, qos: int) -> bytes:
    body = struct.pack(">H", packet_id) + utf8(topic_filter) + bytes([qos])
    return bytes([0x82]) + varint(len(body)) + body


def publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 0, retain: bool = False) -> bytes:
    body = utf8(topic)
    if qos:
        body += struct.pack(">H", packet_id)
    body += payload
    return bytes([PUBLISH | (qos << 1) | int(retain)]) + varint(len(body)) + body


def puback(packet_id: int) -> bytes:
    return b"\x40\x02" + struct.pack(">H", packet_id)


def publish_qos1_batch(topic: str, payload: bytes) -> list[bytes]:
    """One pre-encoded QoS 1 PUBLISH per packet id; index 0 is unused (id 0 is invalid)."""
    head = utf8(topic)
    rl = varint(len(head) + 2 + len(payload))
    first = bytes([0x32]) + rl + head
    return [b""] + [first + struct.pack(">H", pid) + payload for pid in range(1, 65536)]


class Parser:
    """Incremental parser: feed bytes, get ``(first_byte, body)`` for each complete packet.

    ``body`` is a memoryview-free ``bytes`` slice of the variable header + payload.
    """

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buf + data if self.buf else data
        out = []
        pos = 0
        n = len(buf)
        while True:
            if n - pos < 2:
                break
            first = buf[pos]
            # remaining length, up to 4 bytes
            mult = 1
            rl = 0
            i = pos + 1
            while True:
                if i >= n:
                    rl = -1
                    break
                b = buf[i]
                rl += (b & 0x7F) * mult
                i += 1
                if not b & 0x80:
                    break
                mult *= 128
                if mult > 128**3:
                    raise ValueError("malformed remaining length")
            if rl < 0 or i + rl > n:
                break
            out.append((first, buf[i : i + rl]))
            pos = i + rl
        self.buf = buf[pos:]
        return out


def publish_fields(first: int, body: bytes) -> tuple[str, int, bytes]:
    """(topic, packet_id or 0, payload) of an incoming PUBLISH body."""
    tlen = (body[0] << 8) | body[1]
    topic = body[2 : 2 + tlen]
    pos = 2 + tlen
    pid = 0
    if first & 0x06:
        pid = (body[pos] << 8) | body[pos + 1]
        pos += 2
    return topic.decode(), pid, body[pos:]


class StrideCounter:
    """Counts incoming PUBLISH packets of one known encoded length quickly.

    Brokers forward our fixed-size packets unchanged in size, so a chunk of the stream that is
    a whole number of packets can be checked at C speed with stride slices (every packet's first
    byte and remaining-length byte) instead of a Python loop per packet. Anything unexpected
    (other packet types, split packets, other sizes) falls back to :class:`Parser`.

    ``on_publish_ids`` (optional) receives the list of packet ids of QoS 1/2 publishes, for
    acknowledging them.
    """

    __slots__ = ("count", "first", "length", "others", "parser", "pid_off", "rl_bytes")

    def __init__(self, topic_len: int, payload_len: int, qos: int) -> None:
        rl = 2 + topic_len + (2 if qos else 0) + payload_len
        self.rl_bytes = varint(rl)
        self.first = PUBLISH | (qos << 1)
        self.length = 1 + len(self.rl_bytes) + rl
        self.pid_off = 1 + len(self.rl_bytes) + 2 + topic_len
        self.count = 0
        self.parser = Parser()
        self.others: list[tuple[int, bytes]] = []

    def feed(self, data: bytes, pids: list[bytes] | None = None) -> None:
        """Count publishes in ``data``; append the 2-byte packet ids to ``pids`` when given."""
        L = self.length
        buf = self.parser.buf + data if self.parser.buf else data
        whole = len(buf) - len(buf) % L
        if whole:
            k = whole // L
            if buf[0:whole:L].count(self.first) == k and buf[1:whole:L].count(self.rl_bytes[0]) == k:
                self.count += k
                if pids is not None:
                    pids.extend(buf[p : p + 2] for p in range(self.pid_off, whole, L))
                self.parser.buf = buf[whole:]
                return
        self.parser.buf = b""
        for first, body in self.parser.feed(buf):
            if first & 0xF0 == PUBLISH:
                self.count += 1
                if pids is not None and first & 0x06:
                    tlen = (body[0] << 8) | body[1]
                    pids.append(body[2 + tlen : 4 + tlen])
            else:
                self.others.append((first, body))
