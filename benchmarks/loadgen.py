"""The load generator: MQTT clients on asyncio Protocols (uvloop), run in worker processes.

Each worker process runs a list of clients, reports ``ready`` to the parent once they are all
connected (and subscribed), receives a timing plan (absolute ``time.monotonic()`` instants that
all processes share) and reports its counts for the measurement window. Packets are encoded once
before a load starts; publishers write many packets per ``write`` and stop only when the
transport's write buffer is full (the broker is not reading fast enough).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks import wire
from benchmarks.wsframe import WebSocketClient

CONNECT_TIMEOUT = 15.0
PAYLOAD_SIZE = 64


class BrokerError(Exception):
    """The broker answered something unexpected (or nothing)."""


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    target = min(max(target, soft), 1 << 20)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def read_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BrokerError(f"no VmRSS for pid {pid}")


def read_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Client(asyncio.Protocol):
    """CONNECT / SUBSCRIBE handshake with the generic parser, then a load-specific hot path."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.transport: asyncio.Transport | None = None
        self.parser = wire.Parser()
        self.waiting: dict[int, asyncio.Future] = {}
        self.count = 0
        self.closed = asyncio.get_running_loop().create_future()
        self.on_data = self.handshake_data

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(BrokerError(f"{self.client_id}: connection closed by broker ({exc})"))
        if not self.closed.done():
            self.closed.set_result(exc)

    def handshake_data(self, data: bytes) -> None:
        for first, body in self.parser.feed(data):
            kind = first & 0xF0
            fut = self.waiting.pop(kind, None)
            if fut is None:
                self.unexpected(first, body)
            elif not fut.done():
                fut.set_result(body)

    def unexpected(self, first: int, body: bytes) -> None:
        pass

    async def request(self, packet: bytes, reply_kind: int, what: str) -> bytes:
        fut = asyncio.get_running_loop().create_future()
        self.waiting[reply_kind] = fut
        assert self.transport is not None
        self.transport.write(packet)
        try:
            return await asyncio.wait_for(fut, CONNECT_TIMEOUT)
        except TimeoutError:
            raise BrokerError(f"{self.client_id}: no {what} within {CONNECT_TIMEOUT:.0f} s") from None

    async def mqtt_connect(self, keepalive: int = 0, username: str | None = None,
                           password: str | None = None) -> None:
        packet = wire.connect(self.client_id, keepalive, username=username, password=password)
        body = await self.request(packet, wire.CONNACK, "CONNACK")
        if len(body) != 2 or body[1] != 0:
            raise BrokerError(f"{self.client_id}: CONNACK refused or malformed: {body.hex()}")

    async def mqtt_subscribe(self, topic_filter: str, qos: int) -> None:
        body = await self.request(wire.subscribe(1, topic_filter, qos), wire.SUBACK, "SUBACK")
        if len(body) != 3 or body[:2] != b"\x00\x01" or body[2] != qos:
            raise BrokerError(f"{self.client_id}: SUBACK for {topic_filter!r} QoS {qos}: {body.hex()}")

    def leftover(self) -> bytes:
        data, self.parser.buf = self.parser.buf, b""
        return data

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(Exception):
                self.transport.write(wire.DISCONNECT_PACKET)
            self.transport.close()


class Subscriber(Client):
    """Counts received PUBLISH packets of a known size; PUBACKs QoS 1 ones."""

    def __init__(self, client_id: str, topic_len: int, qos: int) -> None:
        super().__init__(client_id)
        self.qos = qos
        self.counter = wire.StrideCounter(topic_len, PAYLOAD_SIZE, qos)
        self.pids: list[bytes] = []

    def start(self) -> None:
        self.on_data = self.hot_qos1 if self.qos else self.hot_qos0
        rest = self.leftover()
        if rest:
            self.on_data(rest)

    def hot_qos0(self, data: bytes) -> None:
        counter = self.counter
        counter.feed(data)
        self.count = counter.count

    def hot_qos1(self, data: bytes) -> None:
        counter = self.counter
        pids = self.pids
        counter.feed(data, pids)
        self.count = counter.count
        if pids:
            self.transport.write(b"\x40\x02" + b"\x40\x02".join(pids))  # type: ignore[union-attr]
            pids.clear()


class Qos0Publisher(Client):
    """Writes pre-encoded batches of QoS 0 PUBLISH packets whenever the transport accepts them."""

    def __init__(self, client_id: str, topic: str, batch: int = 256) -> None:
        super().__init__(client_id)
        self.batch_count = batch
        self.batch = wire.publish(topic, b"p" * PAYLOAD_SIZE) * batch
        self.paused = False
        self.running = False

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.running:
            self.pump()

    def start(self) -> None:
        assert self.transport is not None
        self.transport.set_write_buffer_limits(high=1 << 18)
        self.on_data = lambda data: None
        self.running = True
        self.pump()

    def stop(self) -> None:
        self.running = False

    def pump(self) -> None:
        transport = self.transport
        batch = self.batch
        n = self.batch_count
        # A bounded number of writes per call so timers keep running when the kernel takes all.
        for _ in range(32):
            if self.paused or not self.running or transport.is_closing():  # type: ignore[union-attr]
                return
            transport.write(batch)  # type: ignore[union-attr]
            self.count += n
        asyncio.get_running_loop().call_soon(self.pump)


class Qos1Publisher(Client):
    """Keeps ``window`` QoS 1 publishes in flight; ``count`` is the number acknowledged."""

    def __init__(self, client_id: str, topic: str, window: int) -> None:
        super().__init__(client_id)
        self.window = window
        self.packets = wire.publish_qos1_batch(topic, b"q" * PAYLOAD_SIZE)
        self.next_pid = 1
        self.inflight = 0
        self.running = False
        self.tail = b""

    def start(self) -> None:
        self.on_data = self.hot
        self.running = True
        self.refill()
        rest = self.leftover()
        if rest:
            self.hot(rest)

    def stop(self) -> None:
        self.running = False

    def refill(self) -> None:
        n = self.window - self.inflight
        if n <= 0 or not self.running:
            return
        pid = self.next_pid
        end = pid + n
        if end <= 65536:
            out = b"".join(self.packets[pid:end])
            self.next_pid = end if end < 65536 else 1
        else:
            over = end - 65536
            out = b"".join(self.packets[pid:]) + b"".join(self.packets[1 : 1 + over])
            self.next_pid = 1 + over
        self.inflight += n
        self.transport.write(out)  # type: ignore[union-attr]

    def hot(self, data: bytes) -> None:
        buf = self.tail + data if self.tail else data
        whole = len(buf) - len(buf) % 4
        k = whole // 4
        if buf[0:whole:4].count(0x40) == k and buf[1:whole:4].count(2) == k:
            acked = k
            self.tail = buf[whole:]
        else:  # not only PUBACKs: parse properly
            self.parser.buf = b""
            acked = 0
            for first, _body in self.parser.feed(buf):
                if first & 0xF0 == wire.PUBACK:
                    acked += 1
            self.tail = self.parser.buf
            self.parser.buf = b""
        self.count += acked
        self.inflight -= acked
        self.refill()


# ---------------------------------------------------------------- worker processes


@dataclass
class Plan:
    start: float
    t0: float
    t1: float
    end: float
    broker_pid: int = 0


@dataclass
class ClientSpec:
    role: str  # "sub", "pub0", "pub1"
    client_id: str
    topic: str = ""
    qos: int = 0
    topic_len: int = 0
    window: int = 100
    username: str | None = None  # with a password: CONNECT with credentials (the auth comparison)
    password: str | None = None


@dataclass
class ThroughputResult:
    received: int = 0
    published: int = 0
    elapsed: float = 0.0
    broker_cpu: float | None = None
    own_cpu: float = 0.0
    errors: list[str] = field(default_factory=list)


def _install_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass


async def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def _connect(host: str, port: int, factory: Any, ws_path: str | None = None) -> Client:
    """A connected client: over TCP, or over a WebSocket upgraded at ``ws_path``."""
    loop = asyncio.get_running_loop()
    try:
        if ws_path is None:
            _, proto = await asyncio.wait_for(loop.create_connection(factory, host, port), CONNECT_TIMEOUT)
            return proto
        inner = factory()
        _, outer = await asyncio.wait_for(
            loop.create_connection(lambda: WebSocketClient(inner, host, port, ws_path), host, port), CONNECT_TIMEOUT)
        await asyncio.wait_for(outer.upgraded, CONNECT_TIMEOUT)
        return inner
    except (OSError, TimeoutError) as exc:
        what = "TCP connect" if ws_path is None else f"WebSocket connect (ws://{host}:{port}{ws_path})"
        raise BrokerError(f"{what} to {host}:{port} failed: {exc!r}") from None


async def _throughput(host: str, port: int, specs: list[ClientSpec], conn: Any,
                      ws_path: str | None = None) -> ThroughputResult:
    loop = asyncio.get_running_loop()
    clients: list[Client] = []
    try:
        for spec in specs:
            if spec.role == "sub":
                client: Client = await _connect(host, port, lambda s=spec: Subscriber(s.client_id, s.topic_len, s.qos),
                                                 ws_path)
                await client.mqtt_connect(0, spec.username, spec.password)
                await client.mqtt_subscribe(spec.topic, spec.qos)
                client.start()  # type: ignore[attr-defined]
            elif spec.role == "pub0":
                client = await _connect(host, port, lambda s=spec: Qos0Publisher(s.client_id, s.topic), ws_path)
                await client.mqtt_connect(0, spec.username, spec.password)
            else:
                client = await _connect(host, port, lambda s=spec: Qos1Publisher(s.client_id, s.topic, s.window),
                                        ws_path)
                await client.mqtt_connect(0, spec.username, spec.password)
            clients.append(client)
        conn.send(("ready", None))
        plan: Plan = await loop.run_in_executor(None, conn.recv)
        subs = [c for c in clients if isinstance(c, Subscriber)]
        pubs = [c for c in clients if not isinstance(c, Subscriber)]
        await _sleep_until(plan.start)
        for p in pubs:
            p.start()  # type: ignore[attr-defined]
        await _sleep_until(plan.t0)
        a0, r0, p0 = time.monotonic(), sum(c.count for c in subs), sum(c.count for c in pubs)
        cpu0 = read_cpu_seconds(plan.broker_pid) if plan.broker_pid else None
        own0 = time.process_time()
        await _sleep_until(plan.t1)
        a1, r1, p1 = time.monotonic(), sum(c.count for c in subs), sum(c.count for c in pubs)
        cpu1 = read_cpu_seconds(plan.broker_pid) if plan.broker_pid else None
        own1 = time.process_time()
        broker_cpu = (cpu1 - cpu0) / (a1 - a0) if cpu0 is not None and cpu1 is not None else None
        res = ThroughputResult(received=r1 - r0, published=p1 - p0, elapsed=a1 - a0, broker_cpu=broker_cpu)
        res.own_cpu = (own1 - own0) / (a1 - a0)
        for c in clients:
            if c.closed.done():
                res.errors.append(f"{c.client_id}: connection closed by the broker during the load")
            for first, body in getattr(getattr(c, "counter", None), "others", []):
                res.errors.append(f"{c.client_id}: unexpected packet 0x{first:02x} {body[:16].hex()}")
                break
        for p in pubs:
            p.stop()  # type: ignore[attr-defined]
        await _sleep_until(plan.end)
        return res
    finally:
        for c in clients:
            c.close()


@dataclass
class LatencyResult:
    sent: int = 0
    received: int = 0
    latencies_us: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class LatencySubscriber(Client):
    def __init__(self, client_id: str) -> None:
        super().__init__(client_id)
        self.window = (0, 0)
        self.samples: list[int] = []
        self.received = 0

    def start(self) -> None:
        self.on_data = self.hot
        rest = self.leftover()
        if rest:
            self.hot(rest)

    def hot(self, data: bytes) -> None:
        now = time.monotonic_ns()
        lo, hi = self.window
        for first, body in self.parser.feed(data):
            if first & 0xF0 != wire.PUBLISH:
                continue
            _topic, _pid, payload = wire.publish_fields(first, body)
            (ts,) = struct.unpack_from(">Q", payload)
            if lo <= ts < hi:
                self.received += 1
                self.samples.append(now - ts)


async def _latency(host: str, port: int, rate: int, conn: Any) -> LatencyResult:
    loop = asyncio.get_running_loop()
    topic = "bench/latency"
    sub = await _connect(host, port, lambda: LatencySubscriber("bench-lat-sub"))
    pub = await _connect(host, port, lambda: Client("bench-lat-pub"))
    try:
        await sub.mqtt_connect()
        await sub.mqtt_subscribe(topic, 0)
        sub.start()  # type: ignore[attr-defined]
        await pub.mqtt_connect()
        conn.send(("ready", None))
        plan: Plan = await loop.run_in_executor(None, conn.recv)
        header = wire.publish(topic, b"\0" * PAYLOAD_SIZE)[:-PAYLOAD_SIZE]
        pad = b"l" * (PAYLOAD_SIZE - 8)
        t0_ns, t1_ns = int(plan.t0 * 1e9), int(plan.t1 * 1e9)
        sub.window = (t0_ns, t1_ns)  # type: ignore[attr-defined]
        pack = struct.Struct(">Q").pack
        await _sleep_until(plan.start)
        start_ns = time.monotonic_ns()
        sent_total = 0
        sent_in_window = 0
        transport = pub.transport
        assert transport is not None
        tick = 0.002  # small bursts: 2 ms worth of messages at a time
        while True:
            now = time.monotonic_ns()
            if now >= plan.end * 1e9:
                break
            due = (now - start_ns) * rate // 1_000_000_000 - sent_total
            if due > 0:
                out = []
                for _ in range(due):
                    ts = time.monotonic_ns()
                    out.append(header + pack(ts) + pad)
                    if t0_ns <= ts < t1_ns:
                        sent_in_window += 1
                transport.write(b"".join(out))
                sent_total += due
            await asyncio.sleep(tick)
        await asyncio.sleep(0.5)  # let the last messages arrive
        res = LatencyResult(sent=sent_in_window, received=sub.received, latencies_us=[])  # type: ignore[attr-defined]
        res.latencies_us = [s // 1000 for s in sub.samples]  # type: ignore[attr-defined]
        for c in (sub, pub):
            if c.closed.done():
                res.errors.append(f"{c.client_id}: connection closed by the broker during the load")
        return res
    finally:
        sub.close()
        pub.close()


@dataclass
class MemoryResult:
    rss_start_kb: int = 0  # before the warm-up logins
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    connected: int = 0
    errors: list[str] = field(default_factory=list)


async def _idle_connections(host: str, port: int, n: int, broker_pid: int, conn: Any,
                            credentials: list[tuple[str, str]] | None = None) -> MemoryResult:
    """``n`` idle clients; with ``credentials``, client i logs in as ``credentials[i % len]``.

    Before the "before" reading each distinct login (or one anonymous client) connects and leaves
    once, one at a time: what a broker spends once on its first login (a password hash's working
    memory, caches) is then in ``rss_before_kb - rss_start_kb``, not in the per-connection figure.
    """
    limit = raise_nofile()
    res = MemoryResult()
    if limit < n + 64:
        res.errors.append(f"RLIMIT_NOFILE is {limit}, too low for {n} connections")
        return res
    await asyncio.sleep(0.5)
    res.rss_start_kb = read_rss_kb(broker_pid)
    for k, (user, password) in enumerate(dict.fromkeys(credentials or [(None, None)])):
        c = await _connect(host, port, lambda k=k: Client(f"bench-idle-warm-{k}"))
        try:
            await c.mqtt_connect(0, user, password)
        finally:
            c.close()
    await asyncio.sleep(0.5)
    res.rss_before_kb = read_rss_kb(broker_pid)
    clients: list[Client] = []
    sem = asyncio.Semaphore(256)
    failures: list[str] = []

    async def one(i: int) -> None:
        async with sem:
            try:
                c = await _connect(host, port, lambda: Client(f"bench-idle-{i}"))
                clients.append(c)
                user, password = credentials[i % len(credentials)] if credentials else (None, None)
                await c.mqtt_connect(0, user, password)
            except BrokerError as exc:
                failures.append(str(exc))

    try:
        await asyncio.gather(*(one(i) for i in range(n)))
        await asyncio.sleep(1.0)
        res.rss_after_kb = read_rss_kb(broker_pid)
        res.connected = sum(1 for c in clients if not c.closed.done())
        if failures:
            res.errors.append(f"{len(failures)} of {n} connections failed; first: {failures[0]}")
        if res.connected < n and not failures:
            res.errors.append(f"only {res.connected} of {n} connections still open after CONNACK")
        return res
    finally:
        for c in clients:
            c.transport.close()  # type: ignore[union-attr]


def worker(kind: str, host: str, port: int, args: dict, conn: Any) -> None:
    """Process entry point: run one part of a load and send ``("result", ...)`` or ``("error", ...)``."""
    _install_uvloop()
    raise_nofile()
    try:
        if kind == "throughput":
            coro = _throughput(host, port, args["specs"], conn, args.get("ws_path"))
        elif kind == "latency":
            coro = _latency(host, port, args["rate"], conn)
        elif kind == "memory":
            coro = _idle_connections(host, port, args["n"], args["broker_pid"], conn, args.get("credentials"))
        else:
            raise ValueError(kind)
        result = asyncio.run(coro)
        conn.send(("result", result))
    except BrokerError as exc:
        conn.send(("error", str(exc)))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()
