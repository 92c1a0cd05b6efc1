"""``python -m benchmarks.rules``: messages/s through the rules engine next to plain routing.

Three loads, each: QoS 0 publishers -> thingcore -> one subscriber, counted by the subscriber:

- ``plain``: publishers on ``plain/<i>/data``, the subscriber on ``plain/+/data`` (no rule matches);
- ``rule x1``: publishers on ``bench/<i>/data``; one rule
  ``SELECT * FROM 'bench/+/data' WHERE temp > 20`` republishes to ``routed/<i>/out``, where the
  subscriber listens: one message in, one SQL evaluation (JSON parse, WHERE, SELECT), one republish out;
- ``rule x1000``: the same on a second server that also holds 999 more rules with distinct FROM
  filters (``other<k>/+/data``) that this traffic does not match.

Payloads are 64-byte compact JSON objects (``{"temp":25,"pad":"..."}``), so the republished
copy has the same size as the original and the subscriber counts both the same way. Two passes,
each alternating plain, rule x1, rule x1000, plain, ...:

1. **Throughput** (the load generator of ``benchmarks.run``): QoS 0 publishers for a time window,
   delivered msg/s; the best round per load is kept.
2. **CPU per message** (fixed count): ``--messages`` messages published as fast as the broker reads
   them, then waiting until every one arrived; the broker's CPU time over that span divided by the
   count, median over the rounds. No backlog is carried into or out of the measurement, which makes
   this the steadier figure on a shared machine.

Targets: rule x1 >= 0.5x plain; rule x1000 costs less than 10 % more than rule x1.

    python -m benchmarks.rules [--duration 5] [--rounds 3] [--publishers 2]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks import loadgen, wire
from benchmarks.brokers import HOST, Thingcore
from benchmarks.loadgen import ClientSpec
from benchmarks.run import RESULTS_DIR, _throughput_figures, console, machine_note, run_workers, settle

RULE_SQL = "SELECT * FROM 'bench/+/data' WHERE temp > 20"
LOADS = ["plain", "rule x1", "rule x1000"]


def json_payload(size: int = loadgen.PAYLOAD_SIZE) -> bytes:
    """A compact JSON object of exactly ``size`` bytes that the rule's WHERE accepts."""
    base = orjson.dumps({"temp": 25, "pad": ""})
    payload = orjson.dumps({"temp": 25, "pad": "x" * (size - len(base))})
    assert len(payload) == size
    return payload


class JsonQos0Publisher(loadgen.Qos0Publisher):
    """The generator's QoS 0 publisher with a JSON payload (the stock one sends b'ppp...')."""

    def __init__(self, client_id: str, topic: str, batch: int = 256) -> None:
        super().__init__(client_id, topic, batch)
        self.batch = wire.publish(topic, json_payload()) * batch


# The generator processes are forked from this one: they inherit the JSON publisher.
loadgen.Qos0Publisher = JsonQos0Publisher  # type: ignore[misc]


class RulesThingcore(Thingcore):
    """thingcore with its HTTP port known, so rules can be created through the API."""

    def command(self) -> list[str]:
        cmd = super().command()
        self.http_port = int(cmd[cmd.index("--http-port") + 1])
        return cmd

    def create_rules(self, n_extra: int) -> None:
        base = f"http://{HOST}:{self.http_port}"
        with httpx.Client(base_url=base, timeout=30) as http:
            rules = [("bench_rule", RULE_SQL, "routed/${topic(2)}/out")]
            rules += [(f"other_{k}", f"SELECT * FROM 'other{k}/+/data' WHERE temp > 20", f"elsewhere/{k}")
                      for k in range(n_extra)]
            for name, sql, target in rules:
                resp = http.post(f"/rules/{name}", json={
                    "sql": sql, "awsIotSqlVersion": "2016-03-23",
                    "actions": [{"republish": {"topic": target, "roleArn": "arn:aws:iam::123456789012:role/bench"}}]})
                if resp.status_code != 200:
                    raise RuntimeError(f"creating rule {name}: HTTP {resp.status_code} {resp.text}")
            count = len(http.get("/rules", params={"maxResults": 10000}).json()["rules"])
            if count != len(rules):
                raise RuntimeError(f"{count} rules on the server, expected {len(rules)}")


def load(broker: RulesThingcore, name: str, run: str, publishers: int, timing: tuple[float, float]) -> dict:
    prefix, sub_filter = ("plain", "plain/+/data") if name == "plain" else ("bench", "routed/+/out")
    topic_len = len("plain/0/data") if name == "plain" else len("routed/0/out")
    sub = ClientSpec("sub", f"{run}-sub", sub_filter, 0, topic_len=topic_len)
    pubs = [ClientSpec("pub0", f"{run}-pub{i}", f"{prefix}/{i}/data", 0) for i in range(publishers)]
    parts = [{"specs": [sub]}, {"specs": pubs}]
    return _throughput_figures(run_workers(broker, "throughput", parts, timing), acked=False)


def fixed_count(broker: RulesThingcore, name: str, run: str, n: int) -> dict:
    """Publish ``n`` messages as fast as the broker takes them, wait until all ``n`` arrived: broker CPU / n.

    Unlike a time window, this counts every message's whole cost once (no backlog carried in or out)."""
    pub_topic, sub_filter = ("plain/0/data", "plain/+/data") if name == "plain" else ("bench/0/data", "routed/+/out")
    packet = wire.publish(pub_topic, json_payload())
    want = n * len(packet)  # the republished copy has the same length (see json_payload)
    sub = socket.create_connection((HOST, broker.port))
    sub.sendall(wire.connect(f"{run}-sub", 0))
    _read_exact(sub, 4)
    sub.sendall(wire.subscribe(1, sub_filter, 0))
    _read_exact(sub, 5)
    got = [0]

    def reader() -> None:
        sub.settimeout(60)
        while got[0] < want:
            data = sub.recv(1 << 20)
            if not data:
                return
            got[0] += len(data)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    pub = socket.create_connection((HOST, broker.port))
    pub.sendall(wire.connect(f"{run}-pub", 0))
    _read_exact(pub, 4)
    batch = packet * 500
    cpu0, t0 = loadgen.read_cpu_seconds(broker.pid), time.monotonic()
    for _ in range(n // 500):
        pub.sendall(batch)
    thread.join(120)
    cpu1, t1 = loadgen.read_cpu_seconds(broker.pid), time.monotonic()
    pub.close()
    sub.close()
    fig: dict[str, Any] = {"messages": n, "received": got[0] // len(packet),
                           "broker CPU µs/msg": (cpu1 - cpu0) / n * 1e6, "msg/s": n / (t1 - t0)}
    if fig["received"] != n:
        fig["errors"] = [f"{fig['received']} of {n} messages arrived"]
    return fig


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    sock.settimeout(10)
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise RuntimeError("the broker closed the connection during the handshake")
        data += chunk
    return data


def engine_counters(broker: RulesThingcore) -> dict[str, Any]:
    data = httpx.get(f"http://{HOST}:{broker.http_port}/api/v1/rules/bench_rule/metrics", timeout=10).json()
    action = data["actions"][0]
    return {"rule matched": data["matched"], "republished": action["succeeded"], "dropped": action["dropped"]}


def median_cpu(rounds: list[dict]) -> float | None:
    values = sorted(r["broker CPU µs/msg"] for r in rounds if r.get("broker CPU µs/msg"))
    return values[len(values) // 2] if values else None


def best(rounds: list[dict]) -> dict | None:
    ok = [r for r in rounds if r.get("delivered msg/s")]
    return max(ok, key=lambda r: r["delivered msg/s"]) if ok else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.rules", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0, help="measurement window per run, seconds (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="runs per load, alternating (default 3)")
    ap.add_argument("--publishers", type=int, default=2, help="QoS 0 publishers (default 2, at most 10)")
    ap.add_argument("--extra-rules", type=int, default=999, help="non-matching rules of the second server")
    ap.add_argument("--messages", type=int, default=100_000, help="messages per fixed-count CPU run (default 100 000)")
    args = ap.parse_args(argv)
    publishers = max(1, min(args.publishers, 10))
    timing = (1.0, args.duration)

    console.print(f"[bold]rules engine vs plain routing[/bold] — {machine_note()}", soft_wrap=True)
    results: dict[str, list[dict]] = {name: [] for name in LOADS}
    cpu_results: dict[str, list[dict]] = {name: [] for name in LOADS}
    with tempfile.TemporaryDirectory(prefix="thingcore-rules-bench-") as tmp:
        one = RulesThingcore(Path(tmp), label="thingcore-1-rule")
        many = RulesThingcore(Path(tmp), label="thingcore-1000-rules")
        try:
            for broker, extra in ((one, 0), (many, args.extra_rules)):
                broker.start()
                t0 = time.monotonic()
                broker.create_rules(extra)
                console.print(f"{broker.label}: port {broker.port}, {extra + 1} rules created in "
                              f"{time.monotonic() - t0:.1f} s")
            for rnd in range(args.rounds):
                for name, broker in (("plain", one), ("rule x1", one), ("rule x1000", many)):
                    settle(broker)
                    before = engine_counters(broker)
                    fig = load(broker, name, f"{name.replace(' ', '')}-{rnd}", publishers, timing)
                    after = engine_counters(broker)
                    fig.update({k: after[k] - before[k] for k in after})
                    results[name].append(fig)
                    us = fig.get("broker CPU µs/msg")
                    fired = f", rule fired {fig['rule matched']:,}" if name != "plain" else ""
                    console.print(f"round {rnd + 1} {name:>10}: {fig['delivered msg/s']:>10,.0f} msg/s delivered, "
                                  f"{us if us is None else round(us, 1)} broker CPU µs/msg{fired}", soft_wrap=True)
            for rnd in range(args.rounds):
                for name, broker in (("plain", one), ("rule x1", one), ("rule x1000", many)):
                    settle(broker)
                    fig = fixed_count(broker, name, f"n{name.replace(' ', '')}-{rnd}", args.messages)
                    cpu_results[name].append(fig)
                    console.print(f"fixed count {rnd + 1} {name:>10}: {fig['broker CPU µs/msg']:.1f} broker CPU µs/msg "
                                  f"({fig['received']:,} of {args.messages:,} delivered)", soft_wrap=True)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/yellow]")
        except RuntimeError as exc:
            console.print(f"[red]{exc}[/red]")
            return 1
        finally:
            one.stop()
            many.stop()

    chosen = {name: best(rs) for name, rs in results.items()}
    cpu = {name: median_cpu([r for r in rs if not r.get("errors")]) for name, rs in cpu_results.items()}
    console.print("\nper load: best round's delivered msg/s (time window), median broker CPU µs/msg (fixed count)",
                  soft_wrap=True)
    for name in LOADS:
        fig = chosen.get(name)
        if fig is None or cpu[name] is None:
            console.print(f"  {name:>10}: no result")
            continue
        line = f"  {name:>10}: {fig['delivered msg/s']:>9,.0f} msg/s, {cpu[name]:5.1f} µs/msg"
        for ref in ("plain", "rule x1"):
            if ref != name and chosen.get(ref) and cpu.get(ref) and LOADS.index(ref) < LOADS.index(name):
                line += (f"; vs {ref}: {fig['delivered msg/s'] / chosen[ref]['delivered msg/s']:.2f}x throughput, "
                         f"{cpu[name] / cpu[ref]:.2f}x CPU per message")
        console.print(line, soft_wrap=True)
    out = {"timestamp": datetime.now().isoformat(timespec="seconds"), "machine": machine_note(),
           "duration_s": args.duration, "rounds": args.rounds, "publishers": publishers,
           "extra_rules": args.extra_rules, "results": results, "best": chosen,
           "fixed_count": cpu_results, "median_cpu_us_per_msg": cpu}
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"rules-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2))
    console.print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
