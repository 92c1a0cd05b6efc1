"""A small raw-socket MQTT client for tests, built on thingcore's own codec.

    c = RawClient(tc.host, tc.mqtt_port, level=5)
    c.connect("dev-1")                       # -> Connack (asserts nothing)
    c.send_raw(b"\\x30\\xff\\xff\\xff\\xff\\x7f")  # anything, byte for byte
    packets, closed = c.read_until_closed(3)  # what the server said before it hung up

It never hides what the server sends: every packet is decoded and returned, and a closed socket
is reported as such (``Closed``), so tests can assert on reason codes and on the socket closing.

``PahoPair`` is a paho publisher and subscriber pair that tests keep running next to the abuse,
to prove that other clients are unaffected.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from thingcore.mqtt import Decoder, encode
from thingcore.mqtt.packets import (
    Connack,
    Connect,
    Disconnect,
    Publish,
    Suback,
    Subscribe,
    Subscription,
)


class Closed(Exception):
    """The server closed the connection."""


class RawClient:
    def __init__(self, host: str, port: int, *, level: int = 5, timeout: float = 5.0,
                 ssl_context: ssl.SSLContext | None = None, server_hostname: str | None = None) -> None:
        self.level = level
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname or host)
        self.sock = sock
        self.decoder = Decoder(protocol_level=level)
        self.pending: list[Any] = []
        self.closed = False

    # -- sending ---------------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, packet: Any) -> None:
        self.sock.sendall(encode(packet, self.level))

    def connect(self, client_id: str, *, clean_start: bool = True, keep_alive: int = 60,
                properties: dict[str, Any] | None = None, username: str | None = None,
                timeout: float = 5.0) -> Connack:
        self.send(Connect(client_id, self.level, "MQTT", clean_start, keep_alive, username, None, None,
                          properties or {}))
        return self.expect(Connack, timeout)

    def subscribe(self, topic_filter: str, qos: int = 1, packet_id: int = 1) -> Suback:
        self.send(Subscribe(packet_id, [Subscription(topic_filter, qos)]))
        return self.expect(Suback)

    def publish(self, topic: str, payload: bytes, qos: int = 0, packet_id: int | None = None,
                retain: bool = False) -> None:
        self.send(Publish(topic, payload, qos, retain, False, packet_id if qos else None, {}))

    def disconnect(self, reason: int = 0) -> None:
        self.send(Disconnect(reason))
        self.sock.close()

    # -- receiving -------------------------------------------------------------------------------

    def recv(self, timeout: float = 5.0) -> Any:
        """The next packet; ``Closed`` when the server hangs up, ``TimeoutError`` when nothing comes."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            if self.closed:
                raise Closed()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no packet within {timeout} s")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError(f"no packet within {timeout} s") from None
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                data = b""
            if not data:
                self.closed = True
                continue
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    def expect(self, kind: type, timeout: float = 5.0) -> Any:
        packet = self.recv(timeout)
        assert isinstance(packet, kind), f"expected {kind.__name__}, got {packet!r}"
        return packet

    def read_until_closed(self, timeout: float = 5.0) -> tuple[list[Any], bool]:
        """Every packet until the server closes the socket: (packets, closed within the timeout)."""
        packets: list[Any] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return packets, False
            try:
                packets.append(self.recv(left))
            except Closed:
                return packets, True
            except TimeoutError:
                return packets, False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



class PahoPair:
    """A paho subscriber and publisher on one unique topic; ``check()`` proves they still work.

    ``start_stream()`` makes the publisher send QoS 1 messages continuously from a thread;
    ``stop_stream()`` returns (acknowledged by the broker, received by the subscriber) so a test
    can assert that nothing the broker acknowledged was lost.
    """

    def __init__(self, host: str, port: int, *, protocol: int = paho.MQTTv5) -> None:
        self.host, self.port = host, port
        self.topic = f"pair/{uuid.uuid4().hex}"
        self.received: list[bytes] = []
        self.cond = threading.Condition()
        self.sub = self._client(f"pair-sub-{uuid.uuid4().hex[:8]}", protocol)
        self.pub = self._client(f"pair-pub-{uuid.uuid4().hex[:8]}", protocol)
        subscribed = threading.Event()
        self.sub.on_message = self._on_message
        self.sub.on_subscribe = lambda *a: subscribed.set()
        self.sub.subscribe(self.topic, qos=1)
        assert subscribed.wait(10), "pair subscriber got no SUBACK"
        self._stream: threading.Thread | None = None
        self._stop = threading.Event()
        self.acked: list[bytes] = []
        self._seq = 0

    def _client(self, client_id: str, protocol: int) -> paho.Client:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        connected = threading.Event()
        c.on_connect = lambda *a: connected.set()
        c.connect(self.host, self.port, keepalive=60)
        c.loop_start()
        assert connected.wait(10), f"{client_id} did not connect"
        return c

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self.cond:
            self.received.append(msg.payload)
            self.cond.notify_all()

    def _publish(self, payload: bytes, timeout: float = 10.0) -> None:
        info = self.pub.publish(self.topic, payload, qos=1)
        info.wait_for_publish(timeout)
        assert info.is_published(), f"pair publish {payload!r} not acknowledged"

    def wait_for(self, payloads: list[bytes], timeout: float = 10.0) -> bool:
        want = set(payloads)
        deadline = time.monotonic() + timeout
        with self.cond:
            while not want.issubset(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def check(self, n: int = 5, timeout: float = 10.0) -> None:
        """Publish n QoS 1 messages and wait for all of them at the subscriber."""
        batch = [f"check-{uuid.uuid4().hex}-{i}".encode() for i in range(n)]
        for p in batch:
            self._publish(p, timeout)
        assert self.wait_for(batch, timeout), "the paho pair stopped exchanging messages"

    def start_stream(self, interval: float = 0.005) -> None:
        def run() -> None:
            while not self._stop.is_set():
                self._seq += 1
                payload = f"stream-{self._seq}".encode()
                info = self.pub.publish(self.topic, payload, qos=1)
                info.wait_for_publish(30)
                if info.is_published():
                    self.acked.append(payload)
                self._stop.wait(interval)

        self._stop.clear()
        self._stream = threading.Thread(target=run, daemon=True)
        self._stream.start()

    def stop_stream(self, timeout: float = 15.0) -> tuple[list[bytes], bool]:
        """Stop streaming: (acknowledged payloads, all of them received within the timeout)."""
        self._stop.set()
        if self._stream is not None:
            self._stream.join(timeout)
        acked = list(self.acked)
        return acked, self.wait_for(acked, timeout)

    def close(self) -> None:
        self._stop.set()
        for c in (self.pub, self.sub):
            c.disconnect()
            c.loop_stop()
