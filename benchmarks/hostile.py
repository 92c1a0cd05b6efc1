"""``python -m benchmarks.hostile``: does a good client keep its QoS 1 throughput beside 300 hostile connections?

One ``thingcore serve`` (default settings, loopback) and one good pair: a QoS 1 publisher writing sequence
numbers to ``good/pair`` and a QoS 1 subscriber on it, each in its own process. Two phases, one after the
other: *quiet* (the pair alone), then *attack* (the pair again, beside the hostile connections of a third
process). The figure is the pair's delivered QoS 1 msg/s under attack as a ratio of the quiet one (target
>= 0.8x), and whether any message the broker acknowledged never reached the subscriber (sequence numbers).
See docs/benchmarks.md for the attack's parts and how the figures are computed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import os
import signal
import socket
import struct
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import loadgen, wire
from benchmarks.brokers import Thingcore, thingcore_available
from benchmarks.loadgen import Client, Plan
from benchmarks.run import RESULTS_DIR, LoadError, machine_note, run_workers, settle

console = Console(highlight=False, width=None if sys.stdout.isatty() else 132)

GOOD_TOPIC = "good/pair"
GOOD_FILTER = "good/#"
PAYLOAD = 64  # bytes of a good message: 8-byte sequence number + padding
DRAIN_QUIET = 2.0  # the subscriber stops after this long without a message once the publisher stopped
DRAIN_MAX = 10.0

# The hostile mix for 300 connections; --connections scales it (each kind keeps at least one).
MIX: dict[str, int] = {
    "garbage-mqtt": 25,  # random bytes to the MQTT port, again and again
    "garbage-http": 25,  # random bytes to the HTTP port
    "slow-reader": 49,  # QoS 0 subscriber on hostile/slow/# reading 1 KB/s
    "slow-reader-good": 1,  # the same on the good pair's topic
    "stuck-qos1": 49,  # QoS 1 subscriber on hostile/stuck/# that never reads after its SUBACK
    "stuck-qos1-good": 1,  # the same on the good pair's topic (finding 16)
    "big-body": 10,  # POST /topics/... with Content-Length: 100 MB, sending 128 KB/s
    "big-body-chunked": 10,  # the same 100 MB with Transfer-Encoding: chunked (no length to refuse up front)
    "idle-http": 63,  # connects to the HTTP port and sends nothing
    "half-open-mqtt": 65,  # connects to the MQTT port and never sends CONNECT
    "feeder": 2,  # the attacker's own publishers feeding its slow readers (QoS 0) and stuck subscribers (QoS 1)
}
FEED_RATE = 50  # msg/s of each feeder
FEED_PAYLOAD = 4096
BODY_DECLARED = 100 * 1024 * 1024
BODY_CHUNK = 64 * 1024
BODY_INTERVAL = 0.5  # one chunk per interval: 128 KB/s per connection
SLOW_READ = 256  # bytes per read of a slow reader, 4 reads a second
GARBAGE_BYTES = 2048
RECONNECT_PAUSE = 1.0  # seconds before a hostile slot opens its next connection


# ---------------------------------------------------------------- the good pair


class GoodPublisher(Client):
    """QoS 1 publishes with sequence numbers, ``window`` unacknowledged at a time, at most ``rate`` msg/s."""

    def __init__(self, client_id: str, window: int, rate: int) -> None:
        super().__init__(client_id)
        self.window = window
        self.rate = rate
        self.head = bytes([0x32]) + wire.varint(2 + len(GOOD_TOPIC) + 2 + PAYLOAD) + wire.utf8(GOOD_TOPIC)
        self.pad = b"g" * (PAYLOAD - 8)
        self.seq = 0  # sequence numbers sent: 0 .. seq - 1
        self.pending: dict[int, int] = {}  # packet id -> sequence number
        self.next_pid = 1
        self.acked = bytearray()  # acked[seq] = 1 once the broker acknowledged it
        self.count = 0  # PUBACKs received
        self.running = False
        self.tokens = 0.0
        self.last_tick = 0.0

    def start(self) -> None:
        self.on_data = self.hot
        self.running = True
        self.last_tick = time.monotonic()
        self.fill()
        rest = self.leftover()
        if rest:
            self.hot(rest)

    def allowed(self) -> int:
        """How many more may go out now: the window, and with a rate what is due.

        Paced, the publisher earns ``rate`` messages a second but keeps at most 50 ms of them: time
        the broker made it wait is lost, not caught up with a burst afterwards.
        """
        n = self.window - len(self.pending)
        if self.rate:
            now = time.monotonic()
            self.tokens = min(self.tokens + (now - self.last_tick) * self.rate, max(1.0, self.rate * 0.05))
            self.last_tick = now
            n = min(n, int(self.tokens))
        return n

    def fill(self) -> None:
        if not self.running or self.transport is None or self.transport.is_closing():
            return
        if self.rate:  # paced: a 2 ms timer sends what is due
            asyncio.get_running_loop().call_later(0.002, self.fill)
        n = self.allowed()
        if n <= 0:
            return
        out = []
        pack = struct.pack
        for _ in range(n):
            pid = self.next_pid
            while pid in self.pending:
                pid = pid % 65535 + 1
            self.next_pid = pid % 65535 + 1
            self.pending[pid] = self.seq
            out.append(self.head + pack(">HQ", pid, self.seq) + self.pad)
            self.seq += 1
        self.tokens -= n
        self.acked.extend(bytes(n))
        self.transport.write(b"".join(out))

    def hot(self, data: bytes) -> None:
        acked = 0
        for first, body in self.parser.feed(data):
            if first & 0xF0 == wire.PUBACK and len(body) >= 2:
                seq = self.pending.pop((body[0] << 8) | body[1], None)
                if seq is not None:
                    self.acked[seq] = 1
                    acked += 1
        self.count += acked
        if acked and not self.rate:
            self.fill()


class GoodSubscriber(Client):
    """Records each sequence number received (and duplicates), PUBACKs everything, times the gaps."""

    def __init__(self, client_id: str) -> None:
        super().__init__(client_id)
        self.seen = bytearray()
        self.count = 0  # PUBLISH packets received (duplicates included)
        self.duplicates = 0
        self.last = 0.0
        self.window = (0.0, 0.0)
        self.max_gap = 0.0

    def start(self) -> None:
        self.on_data = self.hot
        self.last = time.monotonic()
        rest = self.leftover()
        if rest:
            self.hot(rest)

    def hot(self, data: bytes) -> None:
        acks = []
        got = 0
        for first, body in self.parser.feed(data):
            if first & 0xF0 != wire.PUBLISH:
                continue
            _topic, pid, payload = wire.publish_fields(first, body)
            if pid:
                acks.append(wire.puback(pid))
            if len(payload) < 8:
                continue
            (seq,) = struct.unpack_from(">Q", payload)
            if seq >= len(self.seen):
                self.seen.extend(bytes(seq + 1 - len(self.seen) + 4096))
            if self.seen[seq]:
                self.duplicates += 1
            self.seen[seq] = 1
            got += 1
        if acks:
            self.transport.write(b"".join(acks))  # type: ignore[union-attr]
        if got:
            self.count += got
            now = time.monotonic()
            lo, hi = self.window
            if lo <= now <= hi:
                self.max_gap = max(self.max_gap, now - max(self.last, lo))
            self.last = now


@dataclass
class PairSide:
    """What one side of the good pair reports for a phase."""

    role: str
    count: int = 0  # in the window: PUBACKs (publisher) or deliveries (subscriber)
    elapsed: float = 0.0
    marks: bytes = b""  # acked (publisher) or seen (subscriber) flag per sequence number
    sent: int = 0
    unacked: int = 0
    duplicates: int = 0
    max_gap: float = 0.0
    broker_cpu: float | None = None
    errors: list[str] = field(default_factory=list)


async def _good(host: str, port: int, role: str, args: dict, conn: Any) -> PairSide:
    loop = asyncio.get_running_loop()
    client_id = f"{args['run']}-{role}"
    if role == "pub":
        client: Client = await loadgen._connect(host, port, lambda: GoodPublisher(client_id, args["window"],
                                                                                 args["rate"]))
        await client.mqtt_connect()
    else:
        client = await loadgen._connect(host, port, lambda: GoodSubscriber(client_id))
        await client.mqtt_connect()
        await client.mqtt_subscribe(GOOD_TOPIC, 1)
    res = PairSide(role)
    try:
        conn.send(("ready", None))
        plan: Plan = await loop.run_in_executor(None, conn.recv)
        if isinstance(client, GoodSubscriber):
            client.window = (plan.t0, plan.t1)
            client.start()
        await loadgen._sleep_until(plan.start)
        if isinstance(client, GoodPublisher):
            client.start()
        await loadgen._sleep_until(plan.t0)
        a0, c0 = time.monotonic(), client.count
        cpu0 = loadgen.read_cpu_seconds(plan.broker_pid) if plan.broker_pid else None
        await loadgen._sleep_until(plan.t1)
        a1, c1 = time.monotonic(), client.count
        if isinstance(client, GoodSubscriber):  # a silence that lasts to the window's end is a gap too
            client.max_gap = max(client.max_gap, a1 - max(client.last, plan.t0))
        cpu1 = loadgen.read_cpu_seconds(plan.broker_pid) if plan.broker_pid else None
        res.count, res.elapsed = c1 - c0, a1 - a0
        if cpu0 is not None and cpu1 is not None:
            res.broker_cpu = (cpu1 - cpu0) / (a1 - a0)
        if isinstance(client, GoodPublisher):
            client.running = False
            deadline = time.monotonic() + DRAIN_MAX
            while client.pending and time.monotonic() < deadline and not client.closed.done():
                await asyncio.sleep(0.05)
            res.sent, res.unacked, res.marks = client.seq, len(client.pending), bytes(client.acked)
        else:
            assert isinstance(client, GoodSubscriber)
            res.max_gap = client.max_gap
            deadline = time.monotonic() + DRAIN_MAX
            while time.monotonic() < deadline and (time.monotonic() < plan.end + DRAIN_QUIET
                                                   or time.monotonic() - client.last < DRAIN_QUIET):
                await asyncio.sleep(0.1)
            res.duplicates, res.marks = client.duplicates, bytes(client.seen)
        if client.closed.done():
            res.errors.append(f"{client_id}: connection closed by the broker ({client.closed.result()})")
        return res
    finally:
        client.close()


# ---------------------------------------------------------------- the attack


@dataclass
class KindStats:
    opened: int = 0
    connect_failed: int = 0
    closed_by_server: int = 0  # EOF or reset from the broker
    held_to_end: int = 0  # still open when the phase ended
    answered: dict[str, int] = field(default_factory=dict)  # HTTP status lines received (big bodies)
    lifetimes: list[float] = field(default_factory=list)  # seconds until the broker closed it
    bytes_sent: int = 0


@dataclass
class AttackResult:
    kinds: dict[str, KindStats] = field(default_factory=dict)
    probe_ms: list[float] = field(default_factory=list)  # CONNACK times of a fresh client, once a second
    probe_failures: list[str] = field(default_factory=list)
    broker_fds: int | None = None  # open file descriptors of the broker at the window's end
    broker_rss_kb: int | None = None
    own_cpu: float = 0.0
    errors: list[str] = field(default_factory=list)


class Closed(Exception):
    """The broker closed (or reset) a hostile connection."""


class ConnectFailed(Exception):
    """A hostile connection could not be opened (refused, or no answer within 5 s)."""


def _small_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    return sock


def _peer_closed(sock: socket.socket | None) -> bool:
    """Whether the broker has closed a socket we do not read from (TCP state CLOSE_WAIT/CLOSE)."""
    if sock is None:
        return True
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    except OSError:
        return True
    return state in (7, 8)  # TCP_CLOSE, TCP_CLOSE_WAIT


class Attack:
    def __init__(self, host: str, mqtt_port: int, http_port: int, run: str) -> None:
        self.host, self.mqtt_port, self.http_port, self.run = host, mqtt_port, http_port, run
        self.stats: dict[str, KindStats] = {}
        self.garbage = os.urandom(64 * 1024)
        self.body_chunk = b"x" * BODY_CHUNK
        self.feeding = asyncio.Event()  # set at plan.start: feeders begin
        self.stop_at = 0.0
        self.errors: list[str] = []

    async def open(self, port: int, small: bool = False) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        sock = _small_socket() if small else None
        try:
            if sock is not None:
                await asyncio.wait_for(loop.sock_connect(sock, (self.host, port)), 5)
                return await asyncio.open_connection(sock=sock, limit=1024)
            return await asyncio.wait_for(asyncio.open_connection(self.host, port, limit=4096), 5)
        except (OSError, TimeoutError) as exc:
            if sock is not None:
                sock.close()
            raise ConnectFailed(repr(exc)) from None
        except BaseException:
            if sock is not None:
                sock.close()
            raise

    async def mqtt_login(self, kind: str, i: int, n: int, small: bool = False,
                         topic_filter: str | None = None, qos: int = 0) -> tuple[asyncio.StreamReader,
                                                                                 asyncio.StreamWriter]:
        r, w = await self.open(self.mqtt_port, small)
        packet = wire.connect(f"{self.run}-{kind}-{i}-{n}", 0)
        if topic_filter is not None:
            packet += wire.subscribe(1, topic_filter, qos)
        w.write(packet)
        want = 4 + (5 if topic_filter is not None else 0)  # CONNACK (+ SUBACK)
        try:
            got = await asyncio.wait_for(r.readexactly(want), 10)
        except asyncio.IncompleteReadError:
            w.close()
            raise Closed from None
        except BaseException:
            w.close()
            raise
        if got[0] != wire.CONNACK or got[3] != 0:
            w.close()
            raise Closed
        return r, w

    # -- one connection of each kind; each returns when the broker closes it (raise Closed) --------

    async def wait_closed(self, r: asyncio.StreamReader) -> None:
        while True:
            if not await r.read(4096):
                raise Closed

    async def half_open(self, kind: str, i: int, n: int) -> None:
        r, w = await self.open(self.mqtt_port)
        await self._hold(w, self.wait_closed(r))

    async def idle_http(self, kind: str, i: int, n: int) -> None:
        r, w = await self.open(self.http_port)
        await self._hold(w, self.wait_closed(r))

    async def garbage_to(self, kind: str, i: int, n: int) -> None:
        port = self.mqtt_port if kind == "garbage-mqtt" else self.http_port
        r, w = await self.open(port)

        async def spray() -> None:
            k = (i * 7919 + n * 104729) % (len(self.garbage) - GARBAGE_BYTES)
            reader = asyncio.ensure_future(self.wait_closed(r))
            try:
                for _ in range(25):  # at most 5 s, then a new connection
                    w.write(self.garbage[k:k + GARBAGE_BYTES])
                    self.stats[kind].bytes_sent += GARBAGE_BYTES
                    k = (k + 4099) % (len(self.garbage) - GARBAGE_BYTES)
                    done, _ = await asyncio.wait({reader}, timeout=0.2)
                    if done:
                        reader.result()  # raises Closed (or the reset)
            finally:
                reader.cancel()

        await self._hold(w, spray())

    async def slow_reader(self, kind: str, i: int, n: int) -> None:
        topic_filter = GOOD_FILTER if kind.endswith("-good") else "hostile/slow/#"
        r, w = await self.mqtt_login(kind, i, n, small=True, topic_filter=topic_filter, qos=0)

        async def crawl() -> None:
            while True:
                if not await r.read(SLOW_READ):
                    raise Closed
                await asyncio.sleep(0.25)

        await self._hold(w, crawl())

    async def stuck(self, kind: str, i: int, n: int) -> None:
        topic_filter = GOOD_FILTER if kind.endswith("-good") else "hostile/stuck/#"
        _r, w = await self.mqtt_login(kind, i, n, small=True, topic_filter=topic_filter, qos=1)
        w.transport.pause_reading()  # never reads again: the broker's window and queue fill up
        sock = w.get_extra_info("socket")

        async def watch() -> None:
            while not _peer_closed(sock):
                await asyncio.sleep(0.5)
            raise Closed

        await self._hold(w, watch())

    async def big_body(self, kind: str, i: int, n: int) -> None:
        r, w = await self.open(self.http_port)
        chunked = kind.endswith("-chunked")
        length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BODY_DECLARED}"
        head = (f"POST /topics/hostile/body/{i}?qos=1 HTTP/1.1\r\nHost: {self.host}:{self.http_port}\r\n"
                f"Content-Type: application/octet-stream\r\n{length}\r\n\r\n").encode()
        w.write(head)
        chunk = f"{BODY_CHUNK:x}\r\n".encode() + self.body_chunk + b"\r\n" if chunked else self.body_chunk

        async def trickle() -> None:
            answer = asyncio.ensure_future(r.read(4096))
            try:
                sent = 0
                while sent < BODY_DECLARED:
                    done, _ = await asyncio.wait({answer}, timeout=BODY_INTERVAL)
                    if done:
                        data = answer.result()
                        if data:
                            line = data.split(b"\r\n", 1)[0].decode(errors="replace")
                            status = "HTTP " + (line.split(" ")[1] if line.count(" ") >= 1 else line[:20])
                            s = self.stats[kind]
                            s.answered[status] = s.answered.get(status, 0) + 1
                        raise Closed
                    w.write(chunk)
                    sent += BODY_CHUNK
                    self.stats[kind].bytes_sent += BODY_CHUNK
                    if w.transport.get_write_buffer_size() > 4 * BODY_CHUNK:
                        await asyncio.sleep(BODY_INTERVAL)  # the broker stopped reading: do not queue more
            finally:
                answer.cancel()

        await self._hold(w, trickle())

    async def feeder(self, kind: str, i: int, n: int) -> None:
        qos = i % 2  # the first feeds the slow readers at QoS 0, the second the stuck subscribers at QoS 1
        r, w = await self.mqtt_login(kind, i, n)
        topic = "hostile/stuck/feed" if qos else "hostile/slow/feed"
        payload = b"h" * FEED_PAYLOAD
        parser = wire.Parser()
        unacked = 0

        async def read_acks() -> None:
            nonlocal unacked
            while True:
                data = await r.read(65536)
                if not data:
                    raise Closed
                unacked -= sum(1 for first, _ in parser.feed(data) if first & 0xF0 == wire.PUBACK)

        async def feed() -> None:
            nonlocal unacked
            await self.feeding.wait()
            reader = asyncio.ensure_future(read_acks())
            pid = 0
            tick = 0.05
            per_tick = max(1, int(FEED_RATE * tick))
            try:
                while True:
                    done, _ = await asyncio.wait({reader}, timeout=tick)
                    if done:
                        reader.result()  # raises Closed (or the reset)
                    if w.transport.get_write_buffer_size() > 256 * 1024:
                        continue  # the broker is not reading us: do not pile up more
                    out = []
                    for _ in range(per_tick):
                        if qos and unacked >= 50:
                            break
                        pid = pid % 65535 + 1
                        out.append(wire.publish(topic, payload, qos, pid if qos else 0))
                        unacked += qos
                    if out:
                        w.write(b"".join(out))
            finally:
                reader.cancel()

        await self._hold(w, feed())

    async def _hold(self, w: asyncio.StreamWriter, body: Any) -> None:
        try:
            await body
        finally:
            w.close()

    # -- slots: one hostile connection at a time each, reopened whenever the broker closes it ------

    async def slot(self, kind: str, i: int) -> None:
        attack = {
            "garbage-mqtt": self.garbage_to, "garbage-http": self.garbage_to,
            "slow-reader": self.slow_reader, "slow-reader-good": self.slow_reader,
            "stuck-qos1": self.stuck, "stuck-qos1-good": self.stuck,
            "big-body": self.big_body, "big-body-chunked": self.big_body, "idle-http": self.idle_http,
            "half-open-mqtt": self.half_open, "feeder": self.feeder,
        }[kind]
        s = self.stats.setdefault(kind, KindStats())
        n = 0
        while self.stop_at == 0.0 or time.monotonic() < self.stop_at:
            n += 1
            opened = time.monotonic()
            s.opened += 1
            task = asyncio.ensure_future(attack(kind, i, n))
            try:
                await task  # returning normally: the slot gave up itself (garbage: after 5 s)
            except ConnectFailed:
                s.connect_failed += 1
            except (Closed, OSError, asyncio.IncompleteReadError, TimeoutError):
                s.closed_by_server += 1  # EOF, a reset, or (login) no CONNACK within 10 s
                s.lifetimes.append(time.monotonic() - opened)
            except Exception as exc:  # a bug of ours: note it, keep the slot going
                self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            except asyncio.CancelledError:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                s.held_to_end += 1
                raise
            await asyncio.sleep(RECONNECT_PAUSE)


async def _probe(host: str, port: int, res: AttackResult, stop_at: float) -> None:
    """A fresh MQTT client once a second: how long until its CONNACK, with the attack going on."""
    k = 0
    while time.monotonic() < stop_at:
        k += 1
        t = time.monotonic()
        c: Client | None = None
        try:
            c = await loadgen._connect(host, port, lambda k=k: Client(f"hostile-probe-{k}"))
            await c.mqtt_connect()
            res.probe_ms.append((time.monotonic() - t) * 1000)
        except (loadgen.BrokerError, OSError) as exc:
            res.probe_failures.append(str(exc)[:120])
        finally:
            if c is not None:
                c.close()
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t)))


async def _attack(host: str, mqtt_port: int, args: dict, conn: Any) -> AttackResult:
    loop = asyncio.get_running_loop()
    attack = Attack(host, mqtt_port, args["http_port"], args["run"])
    res = AttackResult()
    tasks: list[asyncio.Task] = []
    try:
        for kind, count in args["mix"].items():
            for i in range(count):
                tasks.append(asyncio.ensure_future(attack.slot(kind, i)))
                if len(tasks) % 25 == 0:
                    await asyncio.sleep(0.05)  # open them in small steps
        await asyncio.sleep(1.0)
        conn.send(("ready", None))
        plan: Plan = await loop.run_in_executor(None, conn.recv)
        attack.stop_at = plan.end
        await loadgen._sleep_until(plan.start)
        attack.feeding.set()
        probe = asyncio.ensure_future(_probe(host, mqtt_port, res, plan.t1))
        tasks.append(probe)
        await loadgen._sleep_until(plan.t0)
        own0 = time.process_time()
        await loadgen._sleep_until(plan.t1)
        res.own_cpu = (time.process_time() - own0) / (plan.t1 - plan.t0)
        if args.get("broker_pid"):
            with contextlib.suppress(OSError):
                res.broker_fds = len(os.listdir(f"/proc/{args['broker_pid']}/fd"))
                res.broker_rss_kb = loadgen.read_rss_kb(args["broker_pid"])
        await loadgen._sleep_until(plan.end)
    finally:
        for t in tasks:
            t.cancel()
        _done, stuck = await asyncio.wait(tasks, timeout=5) if tasks else (set(), set())
        if stuck:
            res.errors.append(f"{len(stuck)} hostile slots did not stop within 5 s of the phase's end")
    res.kinds = attack.stats
    res.errors = attack.errors[:10]
    return res


def worker(kind: str, host: str, port: int, args: dict, conn: Any) -> None:
    """Process entry point (``run.run_workers``' target): one side of the good pair, or the attack."""
    loadgen._install_uvloop()
    loadgen.raise_nofile()
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid>: where is a worker stuck
    try:
        if kind == "attack":
            result: Any = asyncio.run(_attack(host, port, args, conn))
        else:
            result = asyncio.run(_good(host, port, kind, args, conn))
        conn.send(("result", result))
    except loadgen.BrokerError as exc:
        conn.send(("error", str(exc)))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


# ---------------------------------------------------------------- phases and the report


def scaled_mix(total: int) -> dict[str, int]:
    base = sum(MIX.values())
    mix = {k: max(1, round(v * total / base)) for k, v in MIX.items()}
    mix["feeder"] = 2
    return mix


def run_phase(broker: Thingcore, name: str, mix: dict[str, int] | None, timing: tuple[float, float],
              window: int, rate: int) -> dict[str, Any]:
    """One phase: the good pair (and with ``mix`` the attack) for ``timing`` = (warm-up, window) seconds."""
    settle(broker)
    run = f"{name}-{int(time.time())}"
    good = {"run": run, "window": window, "rate": rate}
    parts: list[dict] = [good, good]
    kinds = ["pub", "sub"]  # run_workers gives the first part the broker's pid (CPU use)
    if mix:
        parts.append({"run": run, "mix": mix, "http_port": broker.ws_port, "broker_pid": broker.pid})
        kinds.append("attack")
    rss0 = loadgen.read_rss_kb(broker.pid)
    results = _run_parts(broker, kinds, parts, timing)
    pub, sub = results[0], results[1]
    attack: AttackResult | None = results[2] if mix else None
    acked, seen = pub.marks, sub.marks
    lost = sum(1 for s, a in enumerate(acked) if a and (s >= len(seen) or not seen[s]))
    fig: dict[str, Any] = {
        "delivered msg/s": sub.count / sub.elapsed if sub.elapsed else 0.0,
        "acked msg/s": pub.count / pub.elapsed if pub.elapsed else 0.0,
        "sent": pub.sent,
        "acked": sum(acked),
        "lost (acked, never delivered)": lost,
        "unacked at end": pub.unacked,
        "duplicates": sub.duplicates,
        "longest gap ms": sub.max_gap * 1000,
        "broker CPU %": pub.broker_cpu * 100 if pub.broker_cpu is not None else None,
        "broker RSS MB before": rss0 / 1024,
        "broker RSS MB after": loadgen.read_rss_kb(broker.pid) / 1024 if broker.alive() else None,
        "errors": sub.errors + pub.errors + (attack.errors if attack else []),
    }
    if attack is not None:
        fig["attack"] = attack
    return fig


def _run_parts(broker: Thingcore, kinds: list[str], parts: list[dict], timing: tuple[float, float]) -> list[Any]:
    """``run.run_workers`` with one kind per part (it passes one kind to all parts)."""
    it = iter(kinds)

    def target(_kind: str, host: str, port: int, args: dict, conn: Any) -> None:
        worker(args["kind"], host, port, args, conn)

    parts = [{**p, "kind": next(it)} for p in parts]
    return run_workers(broker, "hostile", parts, timing, target=target)


def fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def render(quiet: dict, attack: dict) -> Table:
    t = Table(title="the good pair (QoS 1 publisher -> QoS 1 subscriber), quiet and under attack")
    t.add_column("figure")
    t.add_column("quiet", justify="right")
    t.add_column("attack", justify="right")
    t.add_column("ratio", justify="right")
    for key in ("delivered msg/s", "acked msg/s", "sent", "acked", "lost (acked, never delivered)", "unacked at end",
                "duplicates", "longest gap ms", "broker CPU %", "broker RSS MB before", "broker RSS MB after"):
        a, b = quiet.get(key), attack.get(key)
        ratio = f"{b / a:.2f}" if key.endswith("msg/s") and a else ""
        t.add_row(key, fmt(a), fmt(b), ratio)
    return t


def render_attack(res: AttackResult, duration: float, mix: dict[str, int]) -> Table:
    t = Table(title=f"the hostile connections (during the attack phase, {duration:.0f} s window)")
    t.add_column("kind")
    t.add_column("slots", justify="right")
    t.add_column("opened", justify="right")
    t.add_column("closed by broker", justify="right")
    t.add_column("median life s", justify="right")
    t.add_column("held to end", justify="right")
    t.add_column("connect failed", justify="right")
    t.add_column("notes")
    for kind, s in res.kinds.items():
        life = sorted(s.lifetimes)
        median = f"{life[len(life) // 2]:.1f}" if life else "—"
        notes = []
        if s.answered:
            notes.append(", ".join(f"{k} x{v}" for k, v in s.answered.items()))
        if s.bytes_sent:
            notes.append(f"{s.bytes_sent / 1e6:.1f} MB sent")
        t.add_row(kind, str(mix.get(kind, "")), str(s.opened), str(s.closed_by_server), median,
                  str(s.held_to_end), str(s.connect_failed), "; ".join(notes))
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.hostile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="hostile mix for 300 connections: " + ", ".join(f"{k} {v}" for k, v in MIX.items()),
    )
    ap.add_argument("--duration", type=float, default=20.0, help="measurement window of each phase, s (default 20)")
    ap.add_argument("--warmup", type=float, default=3.0,
                    help="seconds between the start of a phase's load and its window (default 3)")
    ap.add_argument("--connections", type=int, default=300,
                    help="hostile connections held open at once, split as in the mix below (default 300)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="quiet/attack pairs of phases, alternating; the best round of each is compared (default 1)")
    ap.add_argument("--window", type=int, default=100, help="the good publisher's QoS 1 messages in flight (100)")
    ap.add_argument("--kinds", help=f"only these hostile kinds, comma-separated (of: {', '.join(MIX)}); "
                    "to find which one hurts")
    ap.add_argument("--rate", type=int, default=0,
                    help="pace the good publisher at this many msg/s (default 0: as fast as --window allows)")
    args = ap.parse_args(argv)
    if (args.duration <= 0 or args.warmup < 0 or args.connections < 10 or args.window < 1 or args.rate < 0
            or args.rounds < 1):
        ap.error("--duration > 0, --warmup >= 0, --connections >= 10, --rounds >= 1, --window >= 1, --rate >= 0")
    ok, why = thingcore_available()
    if not ok:
        console.print(f"[red]`python -m thingcore serve` is not available: {why}[/red]")
        return 2
    mix = scaled_mix(args.connections)
    if args.kinds:
        chosen = [k.strip() for k in args.kinds.split(",") if k.strip()]
        unknown = [k for k in chosen if k not in MIX]
        if unknown:
            ap.error(f"unknown kind(s) {', '.join(unknown)}; choose from {', '.join(MIX)}")
        mix = {k: v for k, v in mix.items() if k in chosen}
    timing = (args.warmup, args.duration)
    console.print(f"[bold]thingcore under a hostile load[/bold] — {machine_note()}")
    console.print(f"{sum(mix.values())} hostile connections: " + ", ".join(f"{k} {v}" for k, v in mix.items()))
    pace = f"{args.rate} msg/s" if args.rate else "as fast as the broker acknowledges"
    console.print(f"good pair: QoS 1, {args.window} in flight, {pace}; phases: quiet, then attack, {args.rounds}x; "
                  f"{args.warmup:g} s warm-up + {args.duration:g} s window each\n")
    phases: dict[str, list[dict[str, Any]]] = {"quiet": [], "attack": []}
    with tempfile.TemporaryDirectory(prefix="thingcore-hostile-") as tmp:
        broker = Thingcore(Path(tmp))
        try:
            broker.start()
            console.print(f"thingcore {broker.version()} on MQTT port {broker.port}, HTTP port {broker.ws_port} "
                          f"(pid {broker.pid})")
            for rnd, (name, m) in enumerate([("quiet", None), ("attack", mix)] * args.rounds):
                try:
                    f = run_phase(broker, name, m, timing, args.window, args.rate)
                except (LoadError, OSError) as exc:
                    f = {"failed": str(exc)}
                if not broker.alive():
                    f.setdefault("errors", []).append(f"thingcore died:\n{broker.log_tail()}")
                    f.setdefault("failed", "thingcore died")
                    broker.start()
                phases[name].append(f)
                summary = (f"[red]FAILED[/red] {f['failed']}" if "failed" in f else
                           f"{fmt(f['delivered msg/s'])} msg/s delivered, {f['lost (acked, never delivered)']} lost")
                console.print(f"  round {rnd // 2 + 1} {name}: {summary}")
                for err in f.get("errors", []):
                    console.print(f"    [red]{err}[/red]")
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/yellow]")
        except RuntimeError as exc:
            console.print(f"[red]{exc}[/red]")
            return 1
        finally:
            log_tail = broker.log_tail(40)
            broker.stop()

    # each phase's best round (highest delivered rate), as benchmarks.run picks
    ok_q = [f for f in phases["quiet"] if "failed" not in f]
    ok_a = [f for f in phases["attack"] if "failed" not in f]
    if not ok_q or not ok_a:
        return 1
    quiet = max(ok_q, key=lambda f: f["delivered msg/s"])
    attack = max(ok_a, key=lambda f: f["delivered msg/s"])
    if args.rounds > 1:
        console.print(f"best of {args.rounds} rounds per phase (highest delivered msg/s); losses count every round")
    console.print(render(quiet, attack))
    res: AttackResult = attack["attack"]
    console.print(render_attack(res, args.duration, mix))
    probes = sorted(res.probe_ms)
    if probes:
        console.print(f"a fresh MQTT client once a second during the attack: CONNACK p50 "
                      f"{probes[len(probes) // 2]:.1f} ms, max {probes[-1]:.1f} ms, {len(res.probe_failures)} failed"
                      + (f" (first: {res.probe_failures[0]})" if res.probe_failures else ""))
    elif res.probe_failures:
        console.print(f"[red]a fresh MQTT client never got a CONNACK during the attack[/red]: {res.probe_failures[0]}")
    console.print(f"broker at the window's end: {fmt(res.broker_fds)} open files, RSS "
                  f"{fmt((res.broker_rss_kb or 0) / 1024)} MB; attack process CPU {res.own_cpu * 100:.0f} %")
    ratio = attack["delivered msg/s"] / quiet["delivered msg/s"] if quiet["delivered msg/s"] else 0.0
    lost = sum(f["lost (acked, never delivered)"] for f in ok_q + ok_a)
    ok_ratio, ok_loss = ratio >= 0.8, lost == 0
    console.print(f"\nthroughput under attack: {ratio:.2f}x the quiet figure (target >= 0.80x) "
                  + ("[green]met[/green]" if ok_ratio else "[red]NOT met[/red]"))
    console.print("messages lost: " + ("[green]none[/green]" if ok_loss else f"[red]{lost}[/red]"))
    out = {
        "timestamp": datetime.now().isoformat(timespec="seconds"),
        "machine": machine_note(),
        "args": vars(args),
        "mix": mix,
        "ratio": ratio,
        "lost": lost,
        "phases": phases,
        "broker_log_tail": log_tail,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"hostile-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2, default=_json_default))
    console.print(f"results written to {path}")
    return 0 if ok_ratio and ok_loss else 3


def _json_default(o: Any) -> Any:
    try:
        return asdict(o)
    except TypeError:
        return str(o)


if __name__ == "__main__":
    sys.exit(main())
