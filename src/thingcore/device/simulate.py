"""A fleet of simulated thermostats on one event loop: the quickest way to put load, telemetry and
shadow traffic on a broker (thingcore or AWS IoT).

Each thermostat is an :class:`AsyncDevice` whose thing name is its client id. It reports its state
to its classic shadow, follows ``desired.setpoint`` from shadow deltas (and reports the new
setpoint back), and publishes telemetry ``{"temperature", "setpoint", "heating", "ts"}`` at a
fixed rate; the temperature drifts toward the setpoint with noise. Every device shares the one
loop, so a thousand of them need a thousand sockets, not a thousand threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from thingcore.device.aio import AsyncDevice
from thingcore.device.errors import DeviceError, ShadowNotFound
from thingcore.device.options import Backoff
from thingcore.device.shadow import Delta

log = logging.getLogger("thingcore.simulate")


@dataclass(slots=True)
class SimConfig:
    devices: int = 10
    rate: float = 1.0  # telemetry messages per second per device
    endpoint: str = "localhost"
    port: int | None = None
    transport: str = "mqtt"
    protocol: int = 5
    qos: int = 1
    duration: float = 0.0  # seconds; 0 runs until stopped
    prefix: str = "thermostat"
    topic: str = "sim/{thing}/telemetry"
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    username: str | None = None
    password: str | None = None
    connect_concurrency: int = 50  # connections being set up at once
    poll_interval: float = 5.0  # HTTP transport: how often a thermostat reads its shadow for a delta
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ValueError("--devices must be at least 1")
        if self.rate <= 0:
            raise ValueError("--rate must be above 0")
        if self.qos not in (0, 1):
            raise ValueError("--qos must be 0 or 1")
        if self.duration < 0:
            raise ValueError("--duration must be 0 (until stopped) or more")
        if "{thing}" not in self.topic:
            raise ValueError("--topic must contain {thing}")


@dataclass(slots=True)
class SimStats:
    devices: int = 0
    connected: int = 0  # now
    ever_connected: int = 0
    sent: int = 0  # telemetry messages acknowledged (QoS 1) or written (QoS 0)
    deltas: int = 0  # setpoint changes received and reported back
    reports: int = 0  # shadow updates accepted
    reconnects: int = 0
    errors: int = 0
    last_error: str = ""
    elapsed: float = 0.0
    all_connected_after: float | None = None  # seconds from the start until every device was connected
    errors_by_kind: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str, exc: BaseException | str) -> None:
        self.errors += 1
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1
        self.last_error = f"{kind}: {exc}"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["messages_per_second"] = round(self.sent / self.elapsed, 1) if self.elapsed else 0.0
        return out


class Thermostat:
    """One simulated device: telemetry at ``rate``, shadow reports, setpoint from deltas."""

    def __init__(self, device: AsyncDevice, config: SimConfig, stats: SimStats, rng: random.Random) -> None:
        self.device = device
        self.config = config
        self.stats = stats
        self.rng = rng
        self.thing = device.client_id
        self.topic = config.topic.format(thing=self.thing)
        self.temperature = round(rng.uniform(16.0, 24.0), 2)
        self.setpoint = 21.0
        self.shadow = device.shadow()
        self.was_connected = False

    @property
    def heating(self) -> bool:
        return self.temperature < self.setpoint - 0.2

    def step(self, dt: float) -> None:
        """Move toward the setpoint (faster while heating) with sensor noise."""
        pull = 0.08 if self.heating else 0.03
        self.temperature += (self.setpoint - self.temperature) * min(1.0, pull * dt) + self.rng.gauss(0, 0.05)
        self.temperature = round(self.temperature, 2)

    def telemetry(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "setpoint": self.setpoint, "heating": self.heating,
                "ts": int(time.time() * 1000)}

    async def start(self) -> None:
        """Subscribe to deltas, catch up with a desired setpoint set while we were away, report."""
        if self.device.transport != "http":
            await self.shadow.on_delta(self._on_delta)
        try:
            doc = await self.shadow.get()
        except ShadowNotFound:
            doc = {}
        desired = (doc.get("state") or {}).get("desired") or {}
        if isinstance(desired.get("setpoint"), int | float):
            self.setpoint = float(desired["setpoint"])
        await self._report()

    async def _report(self) -> None:
        try:
            await self.shadow.report(temperature=self.temperature, setpoint=self.setpoint, mode="heat")
            self.stats.reports += 1
        except DeviceError as exc:
            self.stats.error("shadow", exc)

    def _on_delta(self, delta: Delta) -> Any:
        value = delta.state.get("setpoint")
        if not isinstance(value, int | float) or isinstance(value, bool):
            return None
        self.setpoint = float(value)
        self.stats.deltas += 1
        return self._report()  # a coroutine: the device runs it as a task

    async def poll(self) -> None:
        """HTTP has no deltas: read the shadow and follow state.delta.setpoint."""
        try:
            doc = await self.shadow.get()
        except DeviceError as exc:
            self.stats.error("shadow", exc)
            return
        delta = (doc.get("state") or {}).get("delta") or {}
        if "setpoint" in delta:
            await self._on_delta(Delta(delta, doc.get("version"), doc.get("timestamp"), {}, None, doc))

    def publish(self) -> None:
        try:
            delivery = self.device.publish(self.topic, self.telemetry(), qos=self.config.qos)
        except DeviceError as exc:
            self.stats.error("publish", exc)
            return
        delivery.add_done_callback(self._delivered)

    def _delivered(self, delivery: Any) -> None:
        exc = delivery.exception()
        if exc is None:
            self.stats.sent += 1
        elif self.device.connected or self.config.qos:  # QoS 0 lost while offline is expected
            self.stats.error("publish", exc)

    async def run(self, stop: asyncio.Event) -> None:
        config = self.config
        interval = 1.0 / config.rate
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.rng.uniform(0, interval)  # spread the fleet over the period
        next_poll = loop.time() + config.poll_interval
        while not stop.is_set():
            delay = next_at - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    break
            next_at += interval
            self.step(interval)
            self.publish()
            if self.device.transport == "http" and loop.time() >= next_poll:
                next_poll += config.poll_interval
                await self.poll()


class Fleet:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats = SimStats(devices=config.devices)
        self.rng = random.Random(config.seed)
        self.stop = asyncio.Event()
        self.thermostats: list[Thermostat] = []
        self._started = 0.0

    def _device(self, index: int) -> AsyncDevice:
        c = self.config
        return AsyncDevice(
            c.endpoint, f"{c.prefix}-{index:04d}", transport=c.transport, port=c.port, protocol=c.protocol,
            ca=c.ca, cert=c.cert, key=c.key, username=c.username, password=c.password,
            backoff=Backoff(initial=0.5, maximum=30.0), queue_size=1000, queue_full="drop_oldest",
            connect_timeout=30.0, operation_timeout=30.0,
            on_connect=self._on_connect, on_disconnect=self._on_disconnect,
        )

    def _on_connect(self, info: Any) -> None:
        self._count_up(info.reconnect)

    def _count_up(self, reconnect: bool) -> None:
        self.stats.connected += 1
        if reconnect:
            self.stats.reconnects += 1
        else:
            self.stats.ever_connected += 1
        if self.stats.all_connected_after is None and self.stats.connected == self.config.devices:
            self.stats.all_connected_after = round(time.monotonic() - self._started, 2)

    def _on_disconnect(self, _info: Any) -> None:
        self.stats.connected -= 1

    async def _bring_up(self, thermostat: Thermostat, slots: asyncio.Semaphore) -> bool:
        async with slots:
            if self.stop.is_set():
                return False
            try:
                await thermostat.device.connect(timeout=None if not self.config.duration else self.config.duration)
            except DeviceError as exc:
                self.stats.error("connect", exc)
                return False
        if thermostat.device.transport == "http":
            self._count_up(False)  # HTTP has no connection events; "connected" means it can publish
        try:
            await thermostat.start()
        except DeviceError as exc:
            self.stats.error("shadow", exc)
        return True

    async def _device_main(self, thermostat: Thermostat, slots: asyncio.Semaphore) -> None:
        if await self._bring_up(thermostat, slots):
            await thermostat.run(self.stop)

    async def run(self, progress: Callable[[SimStats], None] | None = None, interval: float = 0.5) -> SimStats:
        """Run until ``duration`` passes or :meth:`request_stop`; ``progress(stats)`` every ``interval``."""
        raise_fd_limit(self.config.devices)
        self._started = time.monotonic()
        self.thermostats = [Thermostat(self._device(i), self.config, self.stats, random.Random(self.rng.random()))
                            for i in range(self.config.devices)]
        slots = asyncio.Semaphore(self.config.connect_concurrency)
        tasks = [asyncio.create_task(self._device_main(t, slots)) for t in self.thermostats]
        deadline = self._started + self.config.duration if self.config.duration else None
        try:
            while not self.stop.is_set():
                self.stats.elapsed = round(time.monotonic() - self._started, 2)
                if progress is not None:
                    progress(self.stats)
                if deadline is not None and time.monotonic() >= deadline:
                    break
                wait = interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), wait)
        finally:
            self.stop.set()
            self.stats.elapsed = round(time.monotonic() - self._started, 2)
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(t.device.disconnect(drain=1.0) for t in self.thermostats),
                                 return_exceptions=True)
            # no more events: what is left in "connected" is exact again after the disconnects
            self.stats.connected = sum(t.device.connected for t in self.thermostats)
        return self.stats

    def request_stop(self) -> None:
        self.stop.set()


def raise_fd_limit(devices: int) -> None:
    """Each device is a socket: lift the soft RLIMIT_NOFILE to the hard limit (warn if still short)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < devices + 64:
        log.warning("the open-file limit (%d) is below %d devices plus overhead; raise `ulimit -n`", soft, devices)
