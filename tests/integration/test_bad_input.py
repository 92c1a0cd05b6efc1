"""Hostile and broken clients cost only their own connection, with the right reason code.

Every test runs a paho publisher/subscriber pair next to the abuse and checks afterwards that it
still exchanges messages.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.rawmqtt import Closed, PahoPair, RawClient
from tests.server import ThingcoreProcess

from thingcore.mqtt import Decoder, encode
from thingcore.mqtt.packets import Connack, Connect, Disconnect, Publish, Suback
from thingcore.mqtt.properties import encode_varint

pytestmark = pytest.mark.integration

MAX_PACKET = 16 * 1024
LIMITS = {"max_packet_size": MAX_PACKET, "connect_timeout": 1, "max_output_buffer": 65536,
          "slow_consumer_timeout": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    with ThingcoreProcess(tmp_path_factory.mktemp("bad-input"), {"limits": LIMITS}) as tc:
        yield tc


@pytest.fixture
def pair(server: ThingcoreProcess) -> Iterator[PahoPair]:
    p = PahoPair(server.host, server.mqtt_port)
    p.check()
    yield p
    p.check()  # the other clients still work after the abuse
    p.close()


def frame(b0: int, body: bytes) -> bytes:
    return bytes((b0,)) + encode_varint(len(body)) + body


def utf8(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


# (name, bytes sent after a successful CONNECT, level -> expected v5 DISCONNECT reason)
MALFORMED_V5 = [
    # remaining length with a fifth continuation byte
    ("remaining length over 4 bytes", b"\x30\xff\xff\xff\xff\x7f", 0x81),
    # SUBSCRIBE must have flags 0b0010
    ("reserved flag bits", frame(0x80, b"\x00\x01" + b"\x00" + utf8(b"a/b") + b"\x01"), 0x81),
    ("PINGREQ with flags", b"\xc1\x00", 0x81),
    ("invalid UTF-8 topic", frame(0x30, utf8(b"a/\xff\xfe") + b"\x00" + b"x"), 0x81),
    ("invalid UTF-8 topic, QoS 1", frame(0x32, utf8(b"a/\xc3\x28") + b"\x00\x05\x00x"), 0x81),
    ("QoS 3", frame(0x36, utf8(b"a/b") + b"\x00\x05" + b"\x00" + b"x"), 0x81),
    ("unknown property id", frame(0x30, utf8(b"a/b") + b"\x02\x7f\x00" + b"x"), 0x81),
    ("property not allowed in PUBLISH", frame(0x30, utf8(b"a/b") + b"\x05\x11\x00\x00\x00\x0a" + b"x"), 0x81),
    ("reserved packet type 0", b"\x00\x00", 0x81),
    ("property length beyond the packet", frame(0x30, utf8(b"a/b") + b"\x20\x01"), 0x81),
    # a property that may appear once, twice: a protocol error (MQTT 5 2.2.2.2)
    ("duplicate property", frame(0x30, utf8(b"a/b") + b"\x04\x01\x00\x01\x01" + b"x"), 0x82),
    ("second CONNECT", encode(Connect("again", 5), 5), 0x82),
    ("server packet CONNACK from a client", encode(Connack(False, 0), 5), 0x82),
    ("wildcard in a PUBLISH topic", frame(0x30, utf8(b"a/+") + b"\x00" + b"x"), 0x90),
    ("unknown topic alias", frame(0x30, utf8(b"") + b"\x03\x23\x00\x05" + b"x"), 0x82),
]

MALFORMED_311 = [
    ("remaining length over 4 bytes", b"\x30\xff\xff\xff\xff\x7f"),
    ("reserved flag bits", frame(0x80, b"\x00\x01" + utf8(b"a/b") + b"\x01")),
    ("invalid UTF-8 topic", frame(0x30, utf8(b"a/\xff\xfe") + b"x")),
    ("QoS 3", frame(0x36, utf8(b"a/b") + b"\x00\x05" + b"x")),
    ("reserved packet type 15", b"\xf0\x00"),
    ("second CONNECT", encode(Connect("again", 4), 4)),
    ("null character in topic", frame(0x30, utf8(b"a/\x00b") + b"x")),
]


@pytest.mark.parametrize(("name", "data", "reason"), MALFORMED_V5, ids=[m[0] for m in MALFORMED_V5])
def test_v5_malformed_gets_disconnect_reason(server: ThingcoreProcess, pair: PahoPair, name: str,
                                             data: bytes, reason: int) -> None:
    before = server.metrics()["thingcore_protocol_errors_total"]
    with RawClient(server.host, server.mqtt_port, level=5) as c:
        assert c.connect(f"bad-{abs(hash(name))}").reason_code == 0
        c.send_raw(data)
        packets, closed = c.read_until_closed(5)
    assert closed, f"{name}: the server did not close the connection"
    disconnects = [p for p in packets if isinstance(p, Disconnect)]
    assert [d.reason_code for d in disconnects] == [reason], f"{name}: got {packets!r}"
    assert server.metrics()["thingcore_protocol_errors_total"] >= before + 1


@pytest.mark.parametrize(("name", "data"), MALFORMED_311, ids=[m[0] for m in MALFORMED_311])
def test_311_malformed_closes_socket(server: ThingcoreProcess, pair: PahoPair, name: str, data: bytes) -> None:
    with RawClient(server.host, server.mqtt_port, level=4) as c:
        assert c.connect(f"bad311-{abs(hash(name))}").reason_code == 0
        c.send_raw(data)
        packets, closed = c.read_until_closed(5)
    assert closed, f"{name}: the server did not close the connection"
    assert packets == [], f"{name}: a 3.1.1 client gets no reason, only a closed socket: {packets!r}"


def test_v5_connect_with_unknown_property_gets_connack_0x81(server: ThingcoreProcess, pair: PahoPair) -> None:
    props = b"\x7f\x00"  # identifier 0x7F does not exist
    body = utf8(b"MQTT") + b"\x05\x02\x00\x3c" + encode_varint(len(props)) + props + utf8(b"badprops")
    with RawClient(server.host, server.mqtt_port, level=5) as c:
        c.send_raw(frame(0x10, body))
        packets, closed = c.read_until_closed(5)
    assert closed
    assert [(type(p), p.reason_code) for p in packets] == [(Connack, 0x81)]


def test_first_packet_not_connect_is_closed(server: ThingcoreProcess, pair: PahoPair) -> None:
    with RawClient(server.host, server.mqtt_port, level=5) as c:
        c.publish("a/b", b"x")
        packets, closed = c.read_until_closed(5)
    assert closed and packets == []


def test_valid_packets_before_a_malformed_one_are_handled(server: ThingcoreProcess, pair: PahoPair) -> None:
    """One TCP segment: a good SUBSCRIBE, then garbage. The SUBACK comes, then DISCONNECT 0x81."""
    with RawClient(server.host, server.mqtt_port, level=5) as c:
        assert c.connect("before-bad").reason_code == 0
        sub = frame(0x82, b"\x00\x07" + b"\x00" + utf8(b"x/y") + b"\x01")
        c.send_raw(sub + b"\x30\xff\xff\xff\xff\x7f")
        packets, closed = c.read_until_closed(5)
    assert closed
    assert [type(p) for p in packets] == [Suback, Disconnect]
    assert packets[1].reason_code == 0x81


@pytest.mark.parametrize("level", [5, 4])
def test_oversize_packet(server: ThingcoreProcess, pair: PahoPair, level: int) -> None:
    with RawClient(server.host, server.mqtt_port, level=level) as c:
        ack = c.connect(f"big-{level}")
        assert ack.reason_code == 0
        if level == 5:
            assert ack.properties.get("maximum_packet_size") == MAX_PACKET
        # the fixed header alone announces the size: the server must not wait for the body
        c.send(Publish("big/topic", b"x" * (MAX_PACKET + 1), 0, False, False, None, {}))
        packets, closed = c.read_until_closed(5)
    assert closed
    if level == 5:
        assert [(type(p), p.reason_code) for p in packets] == [(Disconnect, 0x95)]
    else:
        assert packets == []


def test_oversize_announced_only(server: ThingcoreProcess, pair: PahoPair) -> None:
    """Only a fixed header announcing 200 MB: refused at once, not after buffering."""
    with RawClient(server.host, server.mqtt_port, level=5) as c:
        assert c.connect("big-header").reason_code == 0
        c.send_raw(b"\x30" + encode_varint(200_000_000))
        packets, closed = c.read_until_closed(5)
    assert closed
    assert [(type(p), p.reason_code) for p in packets] == [(Disconnect, 0x95)]


@pytest.mark.parametrize("send", [b"", b"\x10", b"\x10\x20\x00\x04MQ"], ids=["nothing", "one byte", "partial"])
def test_connect_timeout(server: ThingcoreProcess, pair: PahoPair, send: bytes) -> None:
    before = server.metrics()["thingcore_connect_timeouts_total"]
    start = time.monotonic()
    with RawClient(server.host, server.mqtt_port) as c:
        if send:
            c.send_raw(send)
        packets, closed = c.read_until_closed(5)
    took = time.monotonic() - start
    assert closed and packets == []
    assert 0.5 <= took <= 3.0, f"closed after {took:.2f} s with connect_timeout = 1"
    assert server.metrics()["thingcore_connect_timeouts_total"] == before + 1


def test_slow_consumer_is_disconnected(server: ThingcoreProcess, pair: PahoPair) -> None:
    """A subscriber that stops reading: QoS 0 to it is dropped (counted) while its buffer is full,
    and once it has stayed full for slow_consumer_timeout (1 s here) it is disconnected."""
    before = server.metrics()["thingcore_slow_consumers_total"]
    dropped_before = server.metrics()["thingcore_messages_dropped_total"]
    topic = "slow/consumer"
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # keep the kernel from hiding the backlog
    slow.connect((server.host, server.mqtt_port))
    slow.settimeout(5)
    slow.sendall(encode(Connect("slow-reader", 5), 5))
    dec = Decoder(protocol_level=5)
    got: list = []
    while not any(isinstance(p, Suback) for p in got):
        got += dec.feed(slow.recv(4096))
        if not got:
            continue
        if isinstance(got[-1], Connack):
            assert got[-1].reason_code == 0
            slow.sendall(frame(0x82, b"\x00\x01" + b"\x00" + utf8(topic.encode()) + b"\x00"))
    # from here on the slow client reads nothing
    payload = b"p" * 8000
    with RawClient(server.host, server.mqtt_port, level=5) as pub:
        assert pub.connect("slow-feeder").reason_code == 0
        deadline = time.monotonic() + 30
        sent = 0
        while time.monotonic() < deadline:
            for _ in range(100):
                pub.publish(topic, payload)
            sent += 100
            if server.metrics()["thingcore_slow_consumers_total"] > before:
                break
        else:
            pytest.fail(f"no slow consumer detected after {sent} messages of {len(payload)} bytes")
        pair.check()  # the publisher of the flood and the pair keep working
        pub.publish("slow/other", b"ok", 1, 9)
        assert pub.recv().packet_id == 9
    # the slow client's socket is closed (reset) once we read what the kernel holds
    slow.settimeout(10)
    closed = False
    try:
        while True:
            data = slow.recv(1 << 20)
            if not data:
                closed = True
                break
    except (ConnectionResetError, TimeoutError) as exc:
        closed = isinstance(exc, ConnectionResetError)
    finally:
        slow.close()
    assert closed, "the slow consumer's socket was not closed"
    m = server.metrics()
    assert m["thingcore_slow_consumers_total"] == before + 1
    assert m["thingcore_messages_dropped_total"] > dropped_before


# -- a burst of connections ----------------------------------------------------------------------

BURST = 5000


def _raise_nofile(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the {want} descriptors this test needs")


GARBAGE = [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00\x00", b"\x30\xff\xff\xff\xff\x7f",
           b"\x10\x0c\x00\x04MQTT\x09\x02\x00\x3c\x00\x00", b"\xff" * 64]


async def _one(host: str, port: int, i: int) -> str:
    """'ok' when the connection ended as it must; otherwise a description of what went wrong."""
    for attempt in range(3):
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 20)
            break
        except (ConnectionRefusedError, TimeoutError, ConnectionResetError) as exc:
            if attempt == 2:
                return f"{i}: connect failed: {exc!r}"
            await asyncio.sleep(0.2)
    try:
        if i % 2:  # garbage: the server must close without a CONNACK 0
            writer.write(GARBAGE[i % len(GARBAGE)])
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 30)
            if data.startswith(b"\x20") and len(data) >= 4 and data[3] == 0:
                return f"{i}: garbage accepted: {data!r}"
            return "ok"
        level = 5 if i % 4 == 0 else 4
        writer.write(encode(Connect(f"burst-{i}", level), level))
        await writer.drain()
        dec = Decoder(protocol_level=level)
        packets: list = []
        while not packets:
            chunk = await asyncio.wait_for(reader.read(4096), 30)
            if not chunk:
                return f"{i}: closed before CONNACK"
            packets = dec.feed(chunk)
        ack = packets[0]
        if not isinstance(ack, Connack) or ack.reason_code != 0:
            return f"{i}: expected CONNACK 0, got {ack!r}"
        writer.write(encode(Disconnect(0), level))
        await writer.drain()
        rest = await asyncio.wait_for(reader.read(), 30)
        return "ok" if rest == b"" else f"{i}: data after DISCONNECT: {rest!r}"
    except (TimeoutError, ConnectionResetError, BrokenPipeError) as exc:
        if i % 2 and isinstance(exc, ConnectionResetError | BrokenPipeError):
            return "ok"  # garbage answered with a reset is a close too
        return f"{i}: {exc!r}"
    finally:
        writer.close()


def test_connection_burst(tmp_path: Path) -> None:
    _raise_nofile(BURST + 1000)
    with ThingcoreProcess(tmp_path) as tc:  # default connect timeout: the burst may queue a while
        pair = PahoPair(tc.host, tc.mqtt_port)
        pair.check()
        pair.start_stream()

        async def burst() -> list[str]:
            return await asyncio.gather(*(_one(tc.host, tc.mqtt_port, i) for i in range(BURST)))

        started = time.monotonic()
        results = asyncio.run(burst())
        took = time.monotonic() - started
        acked, all_received = pair.stop_stream()
        failures = [r for r in results if r != "ok"]
        assert not failures, f"{len(failures)} of {BURST} ended wrongly, e.g. {failures[:5]}"
        assert len(acked) > 10, f"the pair published only {len(acked)} messages in {took:.1f} s"
        assert all_received, f"QoS 1 messages lost during the burst: {sorted(set(acked) - set(pair.received))[:5]}"
        pair.check()
        m = tc.metrics()
        assert m["thingcore_connections_accepted_total"] >= BURST
        deadline = time.monotonic() + 10
        while tc.metrics()["thingcore_connections"] > 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tc.metrics()["thingcore_connections"] == 2  # only the pair is left
        pair.close()


def test_closed_raw_client_reports_closed(server: ThingcoreProcess) -> None:
    """The helper itself: a server-closed socket is `Closed`, not a hang."""
    with RawClient(server.host, server.mqtt_port, level=5) as c:
        c.send_raw(b"\x00\x00")
        with pytest.raises(Closed):
            while True:
                c.recv(5)
