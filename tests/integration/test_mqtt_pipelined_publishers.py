"""Publishers that pipeline QoS 1 publishes without waiting for PUBACKs (issue 13, section 1).

Before: four MQTT 3.1.1 publishers writing 50 000 QoS 1 publishes each into one online QoS 1 subscriber
were all acknowledged, and the subscriber got about 15 000 of them; the rest were counted in
``thingcore_messages_dropped_total``. Back-pressure paused a publisher between socket reads, but one read
carries thousands of publishes. Now a connection stops handling its buffer at the first publish that a
subscriber's queue cannot take, and carries on once that queue has drained: a PUBACK means the message was
queued. An offline persistent session whose queue is full still loses what does not fit (counted, logged
once a minute), and an MQTT 5 publisher hears PUBACK/PUBREC 0x97 when no subscriber could take its message.

The clients here are raw sockets (TCP, or WebSocket frames written by hand), so nothing waits for a PUBACK
unless the test says so: MQTT 3.1.1 has no Receive Maximum and writes everything at once; an MQTT 5 client
keeps the broker's Receive Maximum (100) in flight, so more publishers are needed to fill a queue.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.integration.mqtt_helpers import HOST, uid
from tests.integration.rawmqtt import RawClient
from tests.integration.wsclients import BINARY, CLOSE, RawWS
from tests.server import ThingcoreProcess

from thingcore.mqtt import Decoder, encode
from thingcore.mqtt.packets import (
    Connack,
    Connect,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
)

pytestmark = pytest.mark.integration

RECEIVE_MAXIMUM = 100  # the broker's default, announced in an MQTT 5 CONNACK
SETTLE = 60.0  # seconds a run may take to be acknowledged and delivered in full on a busy machine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    """Default settings: the queue bound, the receive windows and the back-pressure timeout as shipped."""
    with ThingcoreProcess(tmp_path_factory.mktemp("pipelined")) as tc:
        yield tc


# -- a byte stream to the broker: TCP, or MQTT in WebSocket frames ---------------------------------


class TcpWire:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=SETTLE)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> bytes:
        try:
            return self.sock.recv(1 << 16)
        except OSError:
            return b""

    def close(self) -> None:
        _shut(self.sock)


class WsWire:
    """MQTT over a WebSocket: the handshake from RawWS, then masked binary frames of up to 60 KB."""

    def __init__(self, port: int) -> None:
        self.ws = RawWS(port, subprotocols=["mqtt"])
        assert self.ws.status == 101, self.ws.body

    def send(self, data: bytes) -> None:
        for i in range(0, len(data), 60_000):
            self.ws.sock.sendall(_masked_frame(data[i:i + 60_000]))

    def recv(self) -> bytes:
        try:
            frame = self.ws.recv_frame(SETTLE)
        except (AssertionError, OSError):
            return b""
        if frame is None or frame[0] == CLOSE:
            return b""
        return frame[1]

    def close(self) -> None:
        _shut(self.ws.sock)


def _shut(sock: socket.socket) -> None:
    """Close a socket another thread may be blocked reading (close alone does not wake it)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _masked_frame(payload: bytes) -> bytes:
    n = len(payload)
    head = struct.pack("!BB", 0x80 | BINARY, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x80 | BINARY, 0xFE, n)
    key = os.urandom(4)
    stream = (key * (n // 4 + 1))[:n]
    return head + key + (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


WIRES: dict[str, Callable[[int], Any]] = {"tcp": TcpWire, "ws": WsWire}


def _port(server: ThingcoreProcess, transport: str) -> int:
    return server.mqtt_port if transport == "tcp" else server.http_port


def _handshake(wire: Any, level: int, client_id: str, **connect: Any) -> tuple[Decoder, list[Any]]:
    """CONNECT and wait for the CONNACK; returns the decoder and any packets read after it."""
    wire.send(encode(Connect(client_id, level, **connect), level))
    decoder = Decoder(protocol_level=level)
    packets: list[Any] = []
    while not packets:
        data = wire.recv()
        assert data, "the broker closed the connection before its CONNACK"
        packets = decoder.feed(data)
    assert isinstance(packets[0], Connack) and packets[0].reason_code == 0, packets[0]
    return decoder, packets[1:]


# -- the clients ------------------------------------------------------------------------------------


class Subscriber:
    """A QoS 1 subscriber that reads as fast as it can and acknowledges everything it reads."""

    def __init__(self, server: ThingcoreProcess, topic_filter: str, level: int, transport: str = "tcp") -> None:
        self.wire = WIRES[transport](_port(server, transport))
        self.level = level
        self.decoder, early = _handshake(self.wire, level, uid("sub"))
        self.wire.send(encode(Subscribe(1, [Subscription(topic_filter, 1)]), level))
        while not any(isinstance(p, Suback) for p in early):
            early += self.decoder.feed(self.wire.recv())
        assert next(p for p in early if isinstance(p, Suback)).reason_codes == [1]
        self.received: list[bytes] = []
        self.closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            data = self.wire.recv()
            if not data:
                self.closed = True
                return
            acks = []
            for p in self.decoder.feed(data):
                if isinstance(p, Publish):
                    self.received.append(p.payload)
                    if p.qos:
                        acks.append(encode(Puback(p.packet_id), self.level))
            if acks:
                self.wire.send(b"".join(acks))

    def close(self) -> None:
        self.wire.close()
        self._thread.join(5)


class Pipeliner:
    """A QoS 1 publisher that writes ``count`` publishes without waiting for their PUBACKs: all at once in
    MQTT 3.1.1, with up to the broker's Receive Maximum unacknowledged in MQTT 5. The payload is the
    publisher's number and the sequence number; the packet id is the sequence number + 1."""

    def __init__(self, server: ThingcoreProcess, topic: str, level: int, index: int, count: int,
                 transport: str = "tcp") -> None:
        assert count < 65535
        self.wire = WIRES[transport](_port(server, transport))
        self.level = level
        self.index = index
        self.count = count
        self.topic = topic
        self.decoder, early = _handshake(self.wire, level, uid(f"pub{index}"))
        assert not early
        self.acked: dict[int, int] = {}  # sequence number -> reason code
        self.closed = False
        self._window = threading.Semaphore(RECEIVE_MAXIMUM) if level == 5 else None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._writer = threading.Thread(target=self._write, daemon=True)

    def start(self) -> None:
        self._reader.start()
        self._writer.start()

    def payload(self, seq: int) -> bytes:
        return struct.pack(">HI", self.index, seq)

    def _packet(self, seq: int) -> bytes:
        return encode(Publish(self.topic, self.payload(seq), 1, False, False, seq + 1, {}), self.level)

    def _write(self) -> None:
        window = self._window
        if window is None:  # 3.1.1: everything, in 64 KB writes
            batch: list[bytes] = []
            size = 0
            for seq in range(self.count):
                data = self._packet(seq)
                batch.append(data)
                size += len(data)
                if size >= 1 << 16:
                    self.wire.send(b"".join(batch))
                    batch, size = [], 0
            if batch:
                self.wire.send(b"".join(batch))
            return
        seq = 0
        while seq < self.count and not self.closed:  # 5: as many as the window allows, in one write
            if not window.acquire(timeout=SETTLE):
                return
            batch = [self._packet(seq)]
            seq += 1
            while seq < self.count and window.acquire(blocking=False):
                batch.append(self._packet(seq))
                seq += 1
            self.wire.send(b"".join(batch))

    def _read(self) -> None:
        while True:
            data = self.wire.recv()
            if not data:
                self.closed = True
                return
            for p in self.decoder.feed(data):
                if isinstance(p, Puback):
                    self.acked[p.packet_id - 1] = p.reason_code
                    if self._window is not None:
                        self._window.release()

    def close(self) -> None:
        self.closed = True
        self.wire.close()
        self._reader.join(5)
        self._writer.join(5)


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def run_fan_in(server: ThingcoreProcess, *, level: int, publishers: int, count: int, transport: str,
               subscriber_transport: str = "tcp") -> None:
    """``publishers`` pipelining publishers, one online subscriber: every PUBACKed message is delivered."""
    topic = f"pipelined/{uid()}"
    dropped = server.metrics()["thingcore_messages_dropped_total"]
    sub = Subscriber(server, topic, level, subscriber_transport)
    pubs = [Pipeliner(server, topic, level, i, count, transport) for i in range(publishers)]
    total = publishers * count
    try:
        started = time.monotonic()
        for p in pubs:
            p.start()
        _wait(lambda: sum(len(p.acked) for p in pubs) >= total or any(p.closed for p in pubs), SETTLE)
        acked = {p.payload(seq) for p in pubs for seq, code in list(p.acked.items()) if code == 0}
        _wait(lambda: acked <= set(sub.received), SETTLE)
        elapsed = time.monotonic() - started
        delivered = set(sub.received)
        lost = acked - delivered
        assert not lost, (f"{len(lost)} of {len(acked)} acknowledged messages never reached the subscriber "
                          f"({len(delivered)} delivered of {total} sent)")
        assert not any(p.closed for p in pubs), "the broker closed a publisher"
        assert len(acked) == total, f"only {len(acked)} of {total} publishes were acknowledged in {elapsed:.1f} s"
        assert len(sub.received) == total, "messages were delivered twice"
        for p in pubs:  # and in order, per publisher
            seqs = [struct.unpack(">HI", m)[1] for m in sub.received if m[:2] == struct.pack(">H", p.index)]
            assert seqs == list(range(count))
        assert server.metrics()["thingcore_messages_dropped_total"] == dropped
    finally:
        for p in pubs:
            p.close()
        sub.close()


@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_pipelining_mqtt311_publishers_lose_nothing_they_were_acknowledged_for(server: ThingcoreProcess,
                                                                               transport: str) -> None:
    run_fan_in(server, level=4, publishers=4, count=5000, transport=transport)


@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_mqtt5_publishers_at_their_receive_maximum_lose_nothing(server: ThingcoreProcess, transport: str) -> None:
    """Twelve MQTT 5 publishers with 100 publishes in flight each: more than the subscriber's window (100)
    and queue (1000) hold together."""
    run_fan_in(server, level=5, publishers=12, count=1500, transport=transport)


def test_a_websocket_subscriber_behind_tcp_publishers(server: ThingcoreProcess) -> None:
    run_fan_in(server, level=4, publishers=4, count=3000, transport="tcp", subscriber_transport="ws")


def test_four_times_fifty_thousand(server: ThingcoreProcess) -> None:
    """The case as reported: 4 x 50 000 pipelined MQTT 3.1.1 QoS 1 publishes into one QoS 1 subscriber."""
    run_fan_in(server, level=4, publishers=4, count=50_000, transport="tcp")


# -- an offline persistent session whose queue is full ---------------------------------------------

MAX_QUEUED = 20


@pytest.fixture(scope="module")
def small_queues(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    limits = {"max_queued_messages": MAX_QUEUED}
    with ThingcoreProcess(tmp_path_factory.mktemp("small-queues"), {"limits": limits}) as tc:
        yield tc


def _offline_subscriber(server: ThingcoreProcess, topic: str) -> str:
    client_id = uid("away")
    with RawClient(server.host, server.mqtt_port, level=5) as c:
        assert c.connect(client_id, properties={"session_expiry_interval": 300}).reason_code == 0
        assert c.subscribe(topic, 1).reason_codes == [1]
        c.disconnect()
    return client_id


def _publish_all(server: ThingcoreProcess, level: int, topic: str, qos: int, n: int) -> list[int]:
    """``n`` publishes, each waited for; the reason code of each PUBACK (QoS 1) or PUBREC (QoS 2)."""
    codes = []
    with RawClient(server.host, server.mqtt_port, level=level) as pub:
        assert pub.connect(uid("pub")).reason_code == 0
        for i in range(n):
            pub.publish(topic, str(i).encode(), qos, i + 1)
            ack = pub.expect(Puback if qos == 1 else Pubrec)
            assert ack.packet_id == i + 1
            codes.append(ack.reason_code)
            if qos == 2 and ack.reason_code < 0x80:
                pub.send(Pubrel(i + 1))
                pub.expect(Pubcomp)
    return codes


def _drained(server: ThingcoreProcess, client_id: str) -> list[bytes]:
    """What the offline session kept: its client back, every message acknowledged."""
    got = []
    with RawClient(server.host, server.mqtt_port, level=5) as c:
        assert c.connect(client_id, clean_start=False, properties={"session_expiry_interval": 300}).session_present
        while True:
            try:
                p = c.expect(Publish, 1.0)
            except TimeoutError:
                return got
            got.append(p.payload)
            c.send(Puback(p.packet_id) if p.qos == 1 else Pubrec(p.packet_id))
            if p.qos == 2:
                c.expect(Pubrel)
                c.send(Pubcomp(p.packet_id))


@pytest.mark.parametrize("qos", [1, 2])
def test_mqtt5_publisher_hears_quota_exceeded_when_the_only_subscriber_is_offline_and_full(
        small_queues: ThingcoreProcess, qos: int) -> None:
    topic = f"offline/full/{uid()}"
    client_id = _offline_subscriber(small_queues, topic)
    dropped = small_queues.metrics()["thingcore_messages_dropped_total"]
    extra = 7
    codes = _publish_all(small_queues, 5, topic, qos, MAX_QUEUED + extra)
    assert codes == [0] * MAX_QUEUED + [0x97] * extra
    assert small_queues.metrics()["thingcore_messages_dropped_total"] == dropped + extra
    assert _drained(small_queues, client_id) == [str(i).encode() for i in range(MAX_QUEUED)]
    lines = [line for line in small_queues.log().splitlines() if client_id in line and "dropped" in line]
    assert len(lines) == 1, lines  # once per session per minute, however many were dropped
    assert re.search(r"queue is full", lines[0]), lines[0]


def test_mqtt311_publisher_keeps_todays_drop_and_the_subscriber_that_took_it_decides(
        small_queues: ThingcoreProcess) -> None:
    """MQTT 3.1.1 cannot say no: acknowledged, dropped and counted, as before. An MQTT 5 publisher whose
    message reached an online subscriber hears success even though an offline one lost it."""
    topic = f"offline/full311/{uid()}"
    client_id = _offline_subscriber(small_queues, topic)
    dropped = small_queues.metrics()["thingcore_messages_dropped_total"]
    assert _publish_all(small_queues, 4, topic, 1, MAX_QUEUED + 3) == [0] * (MAX_QUEUED + 3)
    assert small_queues.metrics()["thingcore_messages_dropped_total"] == dropped + 3
    with RawClient(small_queues.host, small_queues.mqtt_port, level=5) as online:
        assert online.connect(uid("online")).reason_code == 0
        assert online.subscribe(topic, 0).reason_codes == [0]
        assert _publish_all(small_queues, 5, topic, 1, 2) == [0, 0]
        assert [online.expect(Publish).payload for _ in range(2)] == [b"0", b"1"]
    assert small_queues.metrics()["thingcore_messages_dropped_total"] == dropped + 5
    assert len(_drained(small_queues, client_id)) == MAX_QUEUED
