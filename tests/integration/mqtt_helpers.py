"""Small synchronous MQTT clients for the integration tests: a paho wrapper and a raw-socket client.

`PahoClient` runs paho-mqtt 2.x (callback API v2) in its background thread and turns every
callback into something a test can wait on with a timeout: CONNACK, SUBACK/UNSUBACK and
PUBACK/PUBCOMP by message id, received messages in a queue, the DISCONNECT. Automatic
reconnection is effectively off (one minute delay), so a connection closed by the broker stays
closed.

`RawClient` speaks MQTT through a plain socket with the repository's own codec, for what paho
hides: reason codes of DISCONNECT, DUP flags, exact SUBACK codes, a client that stops talking.
"""

from __future__ import annotations

import itertools
import queue
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from thingcore.mqtt import Decoder, encode
from thingcore.mqtt import packets as P

HOST = "127.0.0.1"
TIMEOUT = 5.0
QUIET = 0.3  # how long "nothing happens" is watched for where no round trip can show it (e.g. an HTTP answer held)

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
both_protocols = pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])

_counter = itertools.count()


def uid(prefix: str = "t") -> str:
    """A unique client id / topic segment per call (tests share one server per module)."""
    return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


def props(packet_type: int = PacketTypes.PUBLISH, **values: Any) -> Properties:
    """paho Properties from keyword arguments in paho's CamelCase naming (UserProperty=[...])."""
    p = Properties(packet_type)
    for k, v in values.items():
        setattr(p, k, v)
    return p


def proto_name(protocol: int) -> str:
    return "v5" if protocol == V5 else "v311"


@dataclass
class Connected:
    reason_code: int
    session_present: bool
    properties: Any


@dataclass
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int
    properties: Any
    raw: Any = field(repr=False, default=None)

    def prop(self, name: str, default: Any = None) -> Any:
        return getattr(self.properties, name, default) if self.properties is not None else default


class PahoClient:
    def __init__(self, port: int, client_id: str | None = None, *, protocol: int = V5, clean: bool = True,
                 keepalive: int = 60, properties: Properties | None = None, manual_ack: bool = False,
                 will: tuple[str, bytes, int, bool] | None = None, will_properties: Properties | None = None,
                 username: str | None = None) -> None:
        self.port = port
        self.protocol = protocol
        self.v5 = protocol == V5
        self.client_id = client_id if client_id is not None else uid("c")
        self.clean = clean
        self.keepalive = keepalive
        self.connect_properties = properties
        kwargs: dict[str, Any] = {"client_id": self.client_id, "protocol": protocol, "manual_ack": manual_ack}
        if not self.v5:
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, **kwargs)
        self.client.reconnect_delay_set(60, 60)
        if username:
            self.client.username_pw_set(username)
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos, retain, properties=will_properties)
        self.messages: queue.Queue[Received] = queue.Queue()
        self._cond = threading.Condition()
        self._connack: Connected | None = None
        self._acks: dict[int, Any] = {}  # mid -> reason codes (SUBACK/UNSUBACK) or reason code (PUBACK)
        self._published: dict[int, int] = {}
        self.disconnected = threading.Event()
        self.disconnect_reason: int | None = None
        self.disconnect_properties: Any = None
        c = self.client
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_disconnect = self._on_disconnect

    # -- callbacks (paho's thread) ---------------------------------------------------------------

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._cond:
            self._connack = Connected(_rc(reason_code), bool(flags.session_present), properties)
            self._cond.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reason_codes: list, _p: Any) -> None:
        with self._cond:
            self._acks[mid] = [_rc(r) for r in reason_codes]
            self._cond.notify_all()

    def _on_unsubscribe(self, _c: Any, _u: Any, mid: int, reason_codes: Any, _p: Any) -> None:
        with self._cond:
            self._acks[mid] = [_rc(r) for r in reason_codes] if isinstance(reason_codes, list) else reason_codes
            self._cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason_code: Any, _p: Any) -> None:
        with self._cond:
            self._published[mid] = _rc(reason_code)
            self._cond.notify_all()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(Received(msg.topic, msg.payload, msg.qos, bool(msg.retain), bool(msg.dup), msg.mid,
                                   getattr(msg, "properties", None), msg))

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason_code: Any, properties: Any) -> None:
        self.disconnect_reason = _rc(reason_code)
        self.disconnect_properties = properties
        self.disconnected.set()
        with self._cond:
            self._cond.notify_all()

    def _wait(self, predicate: Any, what: str, timeout: float = TIMEOUT) -> Any:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise AssertionError(f"{self.client_id}: timed out after {timeout} s waiting for {what}")
            return predicate()

    # -- actions ---------------------------------------------------------------------------------

    def connect(self, *, clean: bool | None = None, expect: int | None = 0) -> Connected:
        clean = self.clean if clean is None else clean
        self.disconnected.clear()
        with self._cond:
            self._connack = None
        kwargs: dict[str, Any] = {"keepalive": self.keepalive}
        if self.v5:
            kwargs["clean_start"] = clean
            kwargs["properties"] = self.connect_properties
        self.client.connect(HOST, self.port, **kwargs)
        self.client.loop_start()
        ack = self._wait(lambda: self._connack, "CONNACK")
        if expect is not None:
            assert ack.reason_code == expect, f"CONNACK {ack.reason_code:#x}, expected {expect:#x}"
        return ack

    def subscribe(self, topic: str | list, qos: int = 0, *, no_local: bool = False, rap: bool = False,
                  retain_handling: int = 0, sub_id: int | None = None) -> list[int]:
        """Subscribe and wait for the SUBACK; returns its reason codes (granted QoS or errors)."""
        properties = None
        if self.v5:
            opts = SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=rap, retainHandling=retain_handling)
            if sub_id is not None:
                properties = props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=sub_id)
            topics = [(t, opts) for t in topic] if isinstance(topic, list) else [(topic, opts)]
            rc, mid = self.client.subscribe(topics, properties=properties)
        else:
            topics = [(t, qos) for t in topic] if isinstance(topic, list) else [(topic, qos)]
            rc, mid = self.client.subscribe(topics)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe failed locally: {rc}"
        self._wait(lambda: mid in self._acks, f"SUBACK {mid}")
        return self._acks[mid]

    def unsubscribe(self, topic: str) -> Any:
        rc, mid = self.client.unsubscribe(topic)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        self._wait(lambda: mid in self._acks, f"UNSUBACK {mid}")
        return self._acks[mid]

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False,
                properties: Properties | None = None, *, wait: bool = True) -> int:
        """Publish; with wait (default) block until PUBACK/PUBCOMP (or sent, for QoS 0).

        Returns the reason code of the acknowledgement (0 on success and in 3.1.1)."""
        info = self.client.publish(topic, payload, qos, retain, properties=properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish failed locally: {info.rc}"
        if not wait:
            return 0
        self._wait(lambda: info.mid in self._published, f"acknowledgement of publish {info.mid}")
        return self._published[info.mid]

    def ack(self, msg: Received) -> None:
        self.client.ack(msg.mid, msg.qos)

    def expect(self, timeout: float = TIMEOUT) -> Received:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no message within {timeout} s") from None

    def expect_n(self, n: int, timeout: float = TIMEOUT) -> list[Received]:
        deadline = time.monotonic() + timeout
        out = []
        for _ in range(n):
            left = deadline - time.monotonic()
            try:
                out.append(self.messages.get(timeout=max(left, 0.001)))
            except queue.Empty:
                raise AssertionError(f"{self.client_id}: got {len(out)} of {n} messages in {timeout} s") from None
        return out

    def expect_none(self, timeout: float = QUIET) -> None:
        """Nothing is queued here now (after `sync`), or arrives within `timeout`. Without a `sync` first,
        prefer `no_more`: waiting proves nothing about what the broker has not handled yet."""
        try:
            msg = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"{self.client_id}: unexpected message {msg}")

    def sync(self, topic: str | None = None, *, via: PahoClient | None = None, qos: int = 1) -> None:
        """Round-trip a marker through the broker: when it arrives, everything routed to us before it has too.

        The marker is published by `via` (default: this client) after whatever it published before, on the
        same connection, so the broker has handled those first (even QoS 0 ones, which have no ack); the
        broker routes synchronously and writes each client's packets in order, so a message owed to us from
        them is ahead of the marker. `qos=0` lets the marker pass a full receive window (Receive Maximum).
        Messages received before the marker stay in the queue, in order; the marker is removed."""
        marker = topic or f"sync/{uid('s')}"
        self.subscribe(marker, qos)
        (via or self).publish(marker, b"sync", qos)
        held = []
        while True:
            m = self.expect()
            if m.topic == marker:
                break
            held.append(m)
        for m in held:
            self.messages.put(m)
        self.unsubscribe(marker)

    def no_more(self, *, via: PahoClient | None = None, qos: int = 1) -> None:
        """Assert nothing else was delivered: a sync round-trip (see `sync`), then the queue must be empty."""
        self.sync(via=via, qos=qos)
        self.expect_none(0.0)

    def wait_disconnected(self, timeout: float = TIMEOUT) -> int | None:
        assert self.disconnected.wait(timeout), f"{self.client_id}: still connected after {timeout} s"
        return self.disconnect_reason

    def disconnect(self, reason_code: int | None = None, properties: Properties | None = None) -> None:
        if reason_code is not None:
            from paho.mqtt.reasoncodes import ReasonCode as PahoRC

            self.client.disconnect(PahoRC(PacketTypes.DISCONNECT, identifier=reason_code), properties)
        else:
            self.client.disconnect(properties=properties)
        self.disconnected.wait(TIMEOUT)
        self.client.loop_stop()

    def close(self) -> None:
        """Stop everything without caring about state (for finalizers)."""
        try:
            self.client.disconnect()
        except Exception:
            pass
        self.client.loop_stop()

    def drop(self) -> None:
        """Lose the connection without DISCONNECT: close the socket under paho's feet."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def __enter__(self) -> PahoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rc(reason_code: Any) -> int:
    if hasattr(reason_code, "value"):
        return int(reason_code.value)
    return int(reason_code)


# ---------------------------------------------------------------------------------------------
# raw socket client


class RawClient:
    """MQTT over a plain socket with thingcore's codec: send packets, read packets, see the close."""

    def __init__(self, port: int, level: int = 5) -> None:
        self.level = level
        self.sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = Decoder(protocol_level=level)
        self.pending: list[Any] = []
        self.closed = False
        self.closed_at: float | None = None
        self._pid = 0

    def next_pid(self) -> int:
        self._pid = self._pid % 65535 + 1
        return self._pid

    def send(self, packet: Any) -> None:
        self.sock.sendall(encode(packet, self.level))

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, timeout: float = TIMEOUT) -> Any:
        """The next packet; None when the server closed the connection. AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            if self.closed:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no packet within {timeout} s")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"no packet within {timeout} s") from None
            except ConnectionError:
                data = b""
            if not data:
                self.closed = True
                self.closed_at = time.monotonic()
                return None
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    def expect(self, kind: type, timeout: float = TIMEOUT) -> Any:
        packet = self.recv(timeout)
        assert isinstance(packet, kind), f"expected {kind.__name__}, got {packet!r}"
        return packet

    def wait_closed(self, timeout: float = TIMEOUT) -> list[Any]:
        """Read until the server closes; returns the packets received on the way."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            packet = self.recv(max(deadline - time.monotonic(), 0.001))
            if packet is None:
                return got
            got.append(packet)

    def connect(self, client_id: str = "", *, clean: bool = True, keep_alive: int = 60,
                properties: dict | None = None, will: P.Will | None = None, expect: int | None = 0) -> P.Connack:
        self.send(P.Connect(client_id, self.level, "MQTT", clean, keep_alive, None, None, will, properties or {}))
        ack = self.expect(P.Connack)
        if expect is not None:
            assert ack.reason_code == expect, f"CONNACK {ack.reason_code:#x}, expected {expect:#x}"
        return ack

    def subscribe(self, *subs: P.Subscription, properties: dict | None = None) -> list[int]:
        pid = self.next_pid()
        self.send(P.Subscribe(pid, list(subs), properties or {}))
        ack = self.expect(P.Suback)
        assert ack.packet_id == pid
        return ack.reason_codes

    def publish(self, topic: str, payload: bytes = b"", qos: int = 0, retain: bool = False,
                properties: dict | None = None) -> Any:
        """Publish; for QoS 1 returns the PUBACK, for QoS 2 completes the exchange and returns the PUBREC."""
        pid = self.next_pid() if qos else None
        self.send(P.Publish(topic, payload, qos, retain, False, pid, properties or {}))
        if qos == 1:
            ack = self.expect(P.Puback)
            assert ack.packet_id == pid
            return ack
        if qos == 2:
            rec = self.expect(P.Pubrec)
            assert rec.packet_id == pid
            if rec.reason_code < 0x80:
                self.send(P.Pubrel(pid))
                comp = self.expect(P.Pubcomp)
                assert comp.packet_id == pid
            return rec
        return None

    def ping(self) -> None:
        self.send(P.Pingreq())
        self.expect(P.Pingresp)

    def disconnect(self, reason: int = 0, properties: dict | None = None) -> None:
        self.send(P.Disconnect(reason, properties or {}))
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# mosquitto command-line clients


def mosquitto_pub(port: int, topic: str, message: str | None, *, version: str = "mqttv5", qos: int = 0,
                  retain: bool = False, extra: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = ["mosquitto_pub", "-h", HOST, "-p", str(port), "-V", version, "-t", topic, "-q", str(qos),
           "-i", uid("mpub")]
    cmd += ["-n"] if message is None else ["-m", message]  # -n: empty payload
    if retain:
        cmd.append("-r")
    cmd += extra or []
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT * 2, check=False)


def mosquitto_sub(port: int, topics: list[str], *, count: int, version: str = "mqttv5", qos: int = 0,
                  extra: list[str] | None = None, timeout: int = 5) -> subprocess.Popen:
    """Start mosquitto_sub that exits after `count` messages (or `timeout` s: -W); read .stdout after."""
    cmd = ["mosquitto_sub", "-h", HOST, "-p", str(port), "-V", version, "-q", str(qos), "-C", str(count),
           "-W", str(timeout), "-i", uid("msub")]
    for t in topics:
        cmd += ["-t", t]
    cmd += extra or []
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate: Any, timeout: float = TIMEOUT, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll a condition that has no event (server-side counters, a subprocess's subscription)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
