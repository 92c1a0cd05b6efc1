"""``python -m benchmarks.http_publish``: HTTP publishes per second into thingcore over keep-alive connections.

Several generator processes each keep C keep-alive HTTP/1.1 connections busy with
``POST /topics/bench%2F<p>%2Fdata?qos=Q`` (64-byte body, one request in flight per connection, the
next one sent as soon as the answer arrives); one MQTT subscriber on ``bench/+/data`` counts what
the broker delivers. As a reference the same number of MQTT connections publish QoS 1 with one
publish in flight each (the same request/answer rhythm, over the native protocol). mosquitto has no
HTTP publish, so the reference is thingcore's own MQTT. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks import loadgen
from benchmarks.brokers import HOST, Thingcore, thingcore_available
from benchmarks.loadgen import ClientSpec, Plan, ThroughputResult
from benchmarks.run import RESULTS_DIR, LoadError, console, fmt, machine_note, run_workers, settle

PAYLOAD = b"h" * loadgen.PAYLOAD_SIZE


class HTTPPublisher(asyncio.Protocol):
    """One keep-alive connection: send the request, read the answer, send it again."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.ok = 0
        self.failed = 0
        self.first_failure = ""
        self.running = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def start(self) -> None:
        self.running = True
        self.transport.write(self.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].lower()
            length = 0
            i = head.find(b"content-length:")
            if i >= 0:
                j = head.find(b"\r\n", i)
                length = int(head[i + 15:j if j >= 0 else len(head)])
            total = end + 4 + length
            if len(buf) < total:
                break
            if head.startswith(b"http/1.1 200"):
                self.ok += 1
            else:
                self.failed += 1
                if not self.first_failure:
                    self.first_failure = buf[:total].decode("latin-1", "replace")[:300]
            buf = buf[total:]
            if self.running:
                self.transport.write(self.request)  # type: ignore[union-attr]
        self.buf = buf

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True


def request(port: int, topic: str, qos: int) -> bytes:
    path = "/topics/" + topic.replace("/", "%2F") + f"?qos={qos}"
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(PAYLOAD)}\r\n\r\n").encode() + PAYLOAD


async def _http_load(host: str, port: int, args: dict, conn: Any) -> ThroughputResult:
    loop = asyncio.get_running_loop()
    req = request(port, args["topic"], args["qos"])
    clients: list[HTTPPublisher] = []
    try:
        for _ in range(args["connections"]):
            _, proto = await asyncio.wait_for(loop.create_connection(lambda: HTTPPublisher(req), host, port), 15)
            clients.append(proto)
        conn.send(("ready", None))
        plan: Plan = await loop.run_in_executor(None, conn.recv)
        await loadgen._sleep_until(plan.start)
        for c in clients:
            c.start()
        await loadgen._sleep_until(plan.t0)
        a0, n0 = time.monotonic(), sum(c.ok for c in clients)
        cpu0 = loadgen.read_cpu_seconds(plan.broker_pid) if plan.broker_pid else None
        own0 = time.process_time()
        await loadgen._sleep_until(plan.t1)
        a1, n1 = time.monotonic(), sum(c.ok for c in clients)
        cpu1 = loadgen.read_cpu_seconds(plan.broker_pid) if plan.broker_pid else None
        res = ThroughputResult(published=n1 - n0, elapsed=a1 - a0, own_cpu=(time.process_time() - own0) / (a1 - a0))
        if cpu0 is not None and cpu1 is not None:
            res.broker_cpu = (cpu1 - cpu0) / (a1 - a0)
        failed = sum(c.failed for c in clients)
        if failed:
            first = next(c.first_failure for c in clients if c.first_failure)
            res.errors.append(f"{failed} requests failed; first answer: {first!r}")
        if any(c.closed for c in clients):
            res.errors.append("a connection was closed by the server during the load")
        for c in clients:
            c.running = False
        await loadgen._sleep_until(plan.end)
        return res
    finally:
        for c in clients:
            if c.transport is not None:
                c.transport.close()


def worker(kind: str, host: str, port: int, args: dict, conn: Any) -> None:
    """Process entry point: an HTTP publisher process, or loadgen's MQTT clients."""
    if kind != "http":
        loadgen.worker(kind, host, args.get("port", port), args, conn)
        return
    loadgen._install_uvloop()
    loadgen.raise_nofile()
    try:
        conn.send(("result", asyncio.run(_http_load(host, port, args, conn))))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def load_http(tc: Thingcore, run: str, qos: int, processes: int, connections: int,
              timing: tuple[float, float]) -> dict:
    topic_len = len("bench/0/data")
    sub = ClientSpec("sub", f"{run}-sub", "bench/+/data", qos, topic_len=topic_len)
    parts: list[dict] = [{"specs": [sub]}]
    parts += [{"topic": f"bench/{i}/data", "qos": qos, "connections": connections} for i in range(processes)]
    # the first part (the subscriber) measures the broker's CPU; run_workers gives the pid to part 0 only
    results = _run(tc, parts, timing, kinds=["throughput"] + ["http"] * processes)
    sub_res, http_res = results[0], results[1:]
    published = sum(r.published / r.elapsed for r in http_res if r.elapsed)
    delivered = sub_res.received / sub_res.elapsed if sub_res.elapsed else 0.0
    return _figures("HTTP publishes/s", published, delivered, sub_res, results)


def load_mqtt_reference(tc: Thingcore, run: str, processes: int, connections: int,
                        timing: tuple[float, float]) -> dict:
    sub = ClientSpec("sub", f"{run}-sub", "bench/+/data", 1, topic_len=len("bench/0/data"))
    parts: list[dict] = [{"specs": [sub]}]
    for i in range(processes):
        parts.append({"specs": [ClientSpec("pub1", f"{run}-p{i}-{j}", f"bench/{i}/data", 1, window=1)
                                for j in range(connections)]})
    results = _run(tc, parts, timing, kinds=["throughput"] * (processes + 1))
    published = sum(r.published / r.elapsed for r in results[1:] if r.elapsed)
    delivered = results[0].received / results[0].elapsed if results[0].elapsed else 0.0
    return _figures("MQTT QoS 1 publishes/s", published, delivered, results[0], results)


def _run(tc: Thingcore, parts: list[dict], timing: tuple[float, float], kinds: list[str]) -> list[Any]:
    """run_workers with one kind per part (the kind travels in the part's args)."""
    for part, kind in zip(parts, kinds, strict=True):
        part["_kind"] = kind
        if kind != "http":
            part.setdefault("port", tc.port)  # MQTT clients: the MQTT port; HTTP ones get the HTTP port
    return run_workers(tc, "mixed", parts, timing, port=tc.ws_port, target=_dispatch)


def _dispatch(_kind: str, host: str, port: int, args: dict, conn: Any) -> None:
    worker(args["_kind"], host, port, args, conn)


def _figures(name: str, published: float, delivered: float, sub_res: Any, results: list[Any]) -> dict:
    fig: dict[str, Any] = {name: published, "delivered msg/s": delivered}
    if sub_res.broker_cpu is not None:
        fig["broker CPU %"] = sub_res.broker_cpu * 100
        fig["broker CPU µs/publish"] = sub_res.broker_cpu * 1e6 / published if published else None
    fig["generator CPU % per process"] = [round(r.own_cpu * 100, 1) for r in results]
    errors = [e for r in results for e in r.errors]
    if errors:
        fig["errors"] = errors
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.http_publish", description=__doc__)
    ap.add_argument("--processes", type=int, default=2, help="HTTP generator processes (default 2)")
    ap.add_argument("--connections", type=int, default=16, help="keep-alive connections per process (default 16)")
    ap.add_argument("--duration", type=float, default=5.0, help="measurement window, seconds (default 5)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds per load; the best is shown (default 2)")
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s")
    args = ap.parse_args(argv)
    duration, rounds = (2.0, 1) if args.quick else (args.duration, args.rounds)
    timing = (0.5 if args.quick else 1.5, duration)
    ok, why = thingcore_available()
    if not ok:
        console.print(f"[red]`python -m thingcore serve` is not available: {why}[/red]")
        return 2
    console.print(f"[bold]thingcore HTTP publish[/bold] — {machine_note()}")
    console.print(f"{args.processes} processes x {args.connections} keep-alive connections, one request in flight "
                  f"each; best of {rounds} round(s) of {duration:.0f} s. Shared machine: compare rows, not runs.")
    loads = {"http-qos0": lambda t, r: load_http(t, r, 0, args.processes, args.connections, timing),
             "http-qos1": lambda t, r: load_http(t, r, 1, args.processes, args.connections, timing),
             "mqtt-qos1-window1": lambda t, r: load_mqtt_reference(t, r, args.processes, args.connections, timing)}
    results: dict[str, list[dict]] = {name: [] for name in loads}
    with tempfile.TemporaryDirectory(prefix="thingcore-bench-http-") as tmp:
        tc = Thingcore(Path(tmp))
        try:
            tc.start()
            for rnd in range(rounds):
                for name, load in loads.items():
                    settle(tc)
                    try:
                        fig = load(tc, f"{name}-{rnd}")
                    except (LoadError, RuntimeError, OSError) as exc:
                        fig = {"failed": str(exc)}
                    results[name].append(fig)
                    main_key = next(iter(fig))
                    console.print(f"  {name} round {rnd + 1}: {main_key} = {fmt(fig.get(main_key))}"
                                  + "".join(f"\n    [red]{e}[/red]" for e in fig.get("errors", [])))
        finally:
            tc.stop()
    best = {name: max((r for r in rs if "failed" not in r), key=lambda r: next(iter(r.values())), default=None)
            for name, rs in results.items()}
    console.print()
    for name, fig in best.items():
        if fig is None:
            console.print(f"{name:>18}: failed")
            continue
        shown = ", ".join(f"{k} {fmt(v)}" for k, v in fig.items() if isinstance(v, int | float))
        console.print(f"{name:>18}: {shown}")
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"http-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"timestamp": datetime.now().isoformat(timespec="seconds"), "machine": machine_note(),
                                "processes": args.processes, "connections": args.connections,
                                "duration_s": duration, "results": results, "best": best}, indent=2, default=str))
    console.print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
