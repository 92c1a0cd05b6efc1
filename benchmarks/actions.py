"""``python -m benchmarks.actions``: records/s a rule action writes into each table, stream and queue destination.

For each target a fresh ``thingcore serve`` (tests/server.py) gets one rule ``SELECT * FROM 'bench/+'`` with
one action; ``--messages`` QoS 0 messages (small JSON, distinct hash keys) are written by several raw
MQTT sockets, and the clock stops when the action's ``succeeded`` counter reaches the count (rule
metrics API). The figure is messages / (last delivery - first publish), so it includes the publishers; the
``publish`` row (the same load with a rule that only republishes to an unsubscribed topic) shows that
ceiling. Real engines (PostgreSQL, Redis, NATS JetStream) are started on free ports like the tests do;
a missing one is skipped with its name. Every target's data is checked afterwards (row/record count).

    python -m benchmarks.actions [--messages 20000] [--publishers 4] [--only kinesis-redis ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.engines import Nats, Postgres, Redis
from tests.server import ThingcoreProcess

from benchmarks import wire

ROLE = "arn:aws:iam::123456789012:role/bench"
SQS = "https://sqs.us-east-1.amazonaws.com/123456789012/benchq"
DDB = {"dynamoDB": {"tableName": "BenchTable", "roleArn": ROLE, "hashKeyField": "id", "hashKeyValue": "${id}"}}
KIN = {"kinesis": {"streamName": "benchs", "partitionKey": "${topic(2)}", "roleArn": ROLE}}
FH = {"firehose": {"deliveryStreamName": "benchs", "separator": "\n", "roleArn": ROLE}}
SQS_ACT = {"sqs": {"queueUrl": SQS, "roleArn": ROLE}}
REPUB = {"republish": {"topic": "nobody/listens", "roleArn": ROLE}}

# name -> (action, engine needed, destinations config given the engine)
TARGETS: dict[str, tuple[dict, str | None, Any]] = {
    "publish": (REPUB, None, None),
    "dynamodb-embedded": (DDB, None, None),
    "dynamodb-postgresql": (DDB, "postgres", lambda e: {"tables": {"dsn": e.dsn}}),
    "kinesis-embedded": (KIN, None, None),
    "kinesis-redis": (KIN, "redis", lambda e: {"streams": {"benchs": {"redis": e.url}}}),
    "kinesis-nats": (KIN, "nats", lambda e: {"streams": {"benchs": {"nats": e.url}}}),
    "firehose-embedded": (FH, None, None),
    "sqs-embedded": (SQS_ACT, None, None),
    "sqs-redis": (SQS_ACT, "redis", lambda e: {"queues": {"benchq": {"redis": e.url}}}),
}
ENGINES = {"postgres": Postgres, "redis": Redis, "nats": Nats}


def publish_all(port: int, n: int, publishers: int) -> None:
    """QoS 0 PUBLISH packets written as fast as the sockets take them (benchmarks.wire), then a PINGREQ whose
    PINGRESP shows the broker has read them all: the load generator is never the bottleneck."""

    def run(k: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(wire.connect(f"bench-{k}-{time.time_ns()}"))
        _read(sock, 4)  # CONNACK
        packets = [wire.publish(f"bench/p{k}", json.dumps({"id": f"k{i:08d}", "temp": 25}).encode())
                   for i in range(k, n, publishers)]
        for i in range(0, len(packets), 500):
            sock.sendall(b"".join(packets[i:i + 500]))
        sock.sendall(b"\xc0\x00")  # PINGREQ
        _read(sock, 2)
        sock.close()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(publishers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data


def measure(name: str, engine: Any, messages: int, publishers: int, workdir: Path) -> dict[str, Any]:
    action, _kind, conf = TARGETS[name]
    config: dict[str, Any] = {"rules": {"action_queue_size": messages + 1000}}
    if conf is not None:
        config["destinations"] = conf(engine)
    with ThingcoreProcess(workdir / name, config) as tc:
        base = f"http://127.0.0.1:{tc.http_port}"
        resp = httpx.post(f"{base}/rules/bench", json={"sql": "SELECT * FROM 'bench/+'", "actions": [action]})
        resp.raise_for_status()
        start = time.perf_counter()
        publish_all(tc.mqtt_port, messages, publishers)
        published = time.perf_counter() - start
        while True:
            m = httpx.get(f"{base}/api/v1/rules/bench/metrics").json()["actions"][0]
            if m["succeeded"] + m["failed"] + m["dropped"] >= messages:
                break
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        stored = count(name, engine, base)
    return {"target": name, "messages": messages, "succeeded": m["succeeded"], "failed": m["failed"],
            "dropped": m["dropped"], "stored": stored, "seconds": round(elapsed, 3),
            "records_per_s": round(m["succeeded"] / elapsed), "publish_s": round(published, 3)}


def count(name: str, engine: Any, base: str) -> int | None:
    """What the destination holds afterwards: the figure counts only data that arrived."""
    if name.startswith("dynamodb"):
        n, token = 0, None
        while True:
            page = httpx.get(f"{base}/api/v1/tables/BenchTable/items", params={"limit": 1000, "nextToken": token},
                             timeout=30).json()
            n += len(page["items"])
            token = page.get("nextToken")
            if not token:
                return n
    if name in ("kinesis-embedded", "firehose-embedded"):
        n, frm = 0, 1
        while True:
            page = httpx.get(f"{base}/api/v1/streams/benchs/records", params={"from": frm, "limit": 10000},
                             timeout=30).json()
            if not page["records"]:
                return n
            n += len(page["records"])
            frm = page["next"]
    if name == "sqs-embedded":
        return len(httpx.post(f"{base}/api/v1/queues/benchq/receive", params={"max": 1000, "delete": "false"})
                   .json()["messages"])  # at most 1000: a presence check
    if name in ("kinesis-redis", "sqs-redis"):
        import redis

        r = redis.Redis.from_url(engine.url)
        return r.xlen("benchs") if name == "kinesis-redis" else r.llen("benchq")
    if name == "kinesis-nats":
        import nats

        async def info() -> int:
            nc = await nats.connect(engine.url)
            try:
                return (await nc.jetstream().stream_info("benchs")).state.messages
            finally:
                await nc.close()

        return asyncio.run(info())
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--only", action="append", default=[], choices=list(TARGETS))
    args = parser.parse_args(argv)
    names = args.only or list(TARGETS)
    engines: dict[str, Any] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-actions-") as tmp:
        try:
            for name in names:
                kind = TARGETS[name][1]
                if kind is not None and kind not in engines:
                    try:
                        engines[kind] = ENGINES[kind]().start()
                    except pytest.skip.Exception as exc:
                        print(f"{name}: skipped ({exc})")
                        engines[kind] = None
                if kind is not None and engines[kind] is None:
                    continue
                row = measure(name, engines.get(kind) if kind else None, args.messages, args.publishers, Path(tmp))
                rows.append(row)
                print(json.dumps(row))
        finally:
            for e in engines.values():
                if e is not None:
                    e.close()
    print()
    print("| target | records/s | seconds | stored | failed/dropped |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['target']} | {r['records_per_s']} | {r['seconds']} | {r['stored']} "
              f"| {r['failed']}/{r['dropped']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
