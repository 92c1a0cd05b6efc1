"""Accepted, durable shadow updates per second over MQTT, with many devices at once.

    python -m benchmarks.shadow [--devices 50] [--window 10] [--duration 10] [--rounds 1] [--qos 1]
                                [--no-persistence | --fsync]

Starts ``thingcore serve`` with its defaults (SQLite in WAL mode with group commit) on free
loopback ports. Each device is an MQTT 3.1.1 client (raw sockets, asyncio + uvloop, in this
process) that subscribes to its own classic shadow's ``update/accepted`` and ``update/rejected``
and keeps ``--window`` update requests in flight (AWS allows 10 per connection): every answer
triggers the next request. Each request reports two changing values, so every update changes the
document. An ``update/accepted`` is published only once the new version is committed, so the
figure counts durable updates. After the run, every device's shadow version is read back over the
HTTP API and must equal the number of updates it saw accepted (none lost, none duplicated).

mosquitto has no shadow service, so there is no side-by-side run: the figure to compare is the
plain QoS 1 fan-in of ``python -m benchmarks.run`` on the same machine. The machine is shared:
compare runs on one machine, not across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import wire
from benchmarks.brokers import HOST, Thingcore, free_port
from benchmarks.loadgen import Client, _connect, _install_uvloop, raise_nofile, read_cpu_seconds


class Device(Client):
    """Keeps ``window`` shadow updates in flight; counts accepted and rejected answers."""

    def __init__(self, client_id: str, thing: str, window: int, qos: int) -> None:
        super().__init__(client_id)
        self.thing = thing
        self.window = window
        self.qos = qos
        self.topic = f"$aws/things/{thing}/shadow/update"
        self.accepted = 0
        self.rejected: dict[int, int] = {}
        self.seq = 0
        self.next_pid = 1
        self.running = False

    def start(self) -> None:
        self.on_data = self.hot
        self.running = True
        self.send(self.window)
        rest = self.leftover()
        if rest:
            self.hot(rest)

    def send(self, n: int) -> None:
        if not self.running or n <= 0:
            return
        out = []
        for _ in range(n):
            self.seq += 1
            payload = b'{"state":{"reported":{"temperature":%d,"seq":%d}}}' % (self.seq % 50, self.seq)
            pid = 0
            if self.qos:
                pid = self.next_pid
                self.next_pid = pid + 1 if pid < 65535 else 1
            out.append(wire.publish(self.topic, payload, self.qos, pid))
        self.transport.write(b"".join(out))  # type: ignore[union-attr]

    def hot(self, data: bytes) -> None:
        answers = 0
        acks = []
        for first, body in self.parser.feed(data):
            if first & 0xF0 != wire.PUBLISH:
                continue  # PUBACKs of our requests
            topic, pid, payload = wire.publish_fields(first, body)
            if pid:
                acks.append(wire.puback(pid))
            answers += 1
            if topic.endswith("/accepted"):
                self.accepted += 1
            else:
                code = json.loads(payload).get("code", 0)
                self.rejected[code] = self.rejected.get(code, 0) + 1
        if acks:
            self.transport.write(b"".join(acks))  # type: ignore[union-attr]
        self.send(answers)


async def run_devices(port: int, devices: int, window: int, qos: int, warmup: float, duration: float,
                      broker_pid: int) -> dict:
    clients: list[Device] = []
    for i in range(devices):
        thing = f"bench-device-{i:04d}"
        dev: Device = await _connect(HOST, port, lambda t=thing: Device(f"{t}-client", t, window, qos))
        await dev.mqtt_connect()
        await dev.mqtt_subscribe(f"$aws/things/{thing}/shadow/update/accepted", qos)
        await dev.mqtt_subscribe(f"$aws/things/{thing}/shadow/update/rejected", qos)
        clients.append(dev)
    for dev in clients:
        dev.start()
    await asyncio.sleep(warmup)
    a0 = sum(d.accepted for d in clients)
    cpu0, own0, t0 = read_cpu_seconds(broker_pid), time.process_time(), time.perf_counter()
    await asyncio.sleep(duration)
    a1 = sum(d.accepted for d in clients)
    cpu1, own1, t1 = read_cpu_seconds(broker_pid), time.process_time(), time.perf_counter()
    for dev in clients:
        dev.running = False
    await asyncio.sleep(1.0)  # let the last answers arrive before checking the versions
    rejected: dict[int, int] = {}
    for dev in clients:
        for code, n in dev.rejected.items():
            rejected[code] = rejected.get(code, 0) + n
    accepted = a1 - a0
    result = {
        "accepted_per_s": accepted / (t1 - t0),
        "broker_cpu_us_per_update": (cpu1 - cpu0) / accepted * 1e6 if accepted else None,
        "broker_cpu_share": (cpu1 - cpu0) / (t1 - t0),
        "generator_cpu_share": (own1 - own0) / (t1 - t0),
        "rejected": rejected,
        "accepted_by_device": {d.thing: d.accepted for d in clients},
    }
    for dev in clients:
        dev.close()
    return result


def check_versions(http_port: int, accepted_by_device: dict[str, int]) -> list[str]:
    problems = []
    with httpx.Client(base_url=f"http://{HOST}:{http_port}", timeout=30) as client:
        for thing, accepted in accepted_by_device.items():
            version = client.get(f"/things/{thing}/shadow").json().get("version")
            if version != accepted:
                problems.append(f"{thing}: version {version} but {accepted} updates accepted")
    return problems


class ShadowServer(Thingcore):
    """thingcore as the benchmarks start it, plus a known HTTP port and storage options."""

    def __init__(self, workdir: Path, persistence: bool, fsync: bool) -> None:
        super().__init__(workdir)
        self.http_port = free_port()
        self.persistence = persistence
        self.fsync = fsync

    def command(self) -> list[str]:
        cmd = super().command()
        cmd[cmd.index("--http-port") + 1] = str(self.http_port)
        return cmd + ([] if self.persistence else ["--no-persistence"]) + ["--log-level", "WARNING"]

    def env(self) -> dict[str, str] | None:
        env = super().env() or dict(os.environ)
        if self.fsync:
            env["THINGCORE_SQLITE_SYNCHRONOUS"] = "FULL"
        return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50, help="concurrent devices, one shadow each")
    parser.add_argument("--window", type=int, default=10, help="update requests in flight per device (AWS: 10)")
    parser.add_argument("--duration", type=float, default=10.0, help="measurement window, seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before the window")
    parser.add_argument("--rounds", type=int, default=1, help="repeat with a fresh server; prints best and median")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1, help="QoS of requests and subscriptions")
    storage = parser.add_mutually_exclusive_group()
    storage.add_argument("--no-persistence", action="store_true", help="memory storage instead of SQLite")
    storage.add_argument("--fsync", action="store_true", help="SQLite synchronous=FULL (survives power loss)")
    parser.add_argument("--server", metavar="MQTT_PORT:HTTP_PORT:PID",
                        help="measure an already running thingcore on 127.0.0.1 instead of starting one")
    args = parser.parse_args()
    raise_nofile()
    _install_uvloop()
    if args.server:
        mqtt_port, http_port, pid = (int(x) for x in args.server.split(":"))
        result = asyncio.run(run_devices(mqtt_port, args.devices, args.window, args.qos, args.warmup,
                                         args.duration, pid))
        if not report(args, result, check_versions(http_port, result["accepted_by_device"]), "as configured"):
            raise SystemExit(1)
        return
    kind = "memory" if args.no_persistence else ("SQLite, synchronous=FULL" if args.fsync else "SQLite (WAL, NORMAL)")
    rates = []
    failed = False
    for round_no in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory() as tmp:
            server = ShadowServer(Path(tmp), not args.no_persistence, args.fsync)
            server.start()
            try:
                result = asyncio.run(run_devices(server.port, args.devices, args.window, args.qos, args.warmup,
                                                 args.duration, server.pid))
                problems = check_versions(server.http_port, result["accepted_by_device"])
            finally:
                server.stop()
        if args.rounds > 1:
            print(f"round {round_no} of {args.rounds}")
        failed |= not report(args, result, problems, kind)
        rates.append(result["accepted_per_s"])
    if args.rounds > 1:
        rates.sort()
        median = rates[len(rates) // 2]
        print(f"accepted updates/s over {args.rounds} rounds: best {rates[-1]:.0f}, median {median:.0f}, "
              f"worst {rates[0]:.0f}")
    if failed:
        raise SystemExit(1)


def report(args: argparse.Namespace, result: dict, problems: list[str], kind: str) -> bool:
    """Print one run's figures; False when an update was rejected or a version does not match."""
    print(f"shadow updates over MQTT: {args.devices} devices x {args.window} in flight, QoS {args.qos}, {kind}, "
          f"{args.duration:.0f} s window on {os.cpu_count()} CPUs")
    print(f"  accepted updates/s           {result['accepted_per_s']:10.0f}")
    if result["broker_cpu_us_per_update"] is not None:
        print(f"  broker CPU µs per update     {result['broker_cpu_us_per_update']:10.1f}")
    print(f"  broker CPU (cores busy)      {result['broker_cpu_share']:10.2f}")
    print(f"  generator CPU (cores busy)   {result['generator_cpu_share']:10.2f}")
    print(f"  rejected                     {result['rejected'] or 'none'}")
    print(f"  versions read back           {'all match' if not problems else '; '.join(problems[:5])}")
    return not (problems or result["rejected"])


if __name__ == "__main__":
    main()
