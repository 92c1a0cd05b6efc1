"""``python -m benchmarks.outputs``: records/s a rule action writes into each embedded default of #6 part B.

For each target a fresh ``thingcore serve`` (tests/server.py) gets one rule ``SELECT * FROM 'bench/+'`` with
one action. One raw MQTT socket sends ``--messages`` QoS 1 messages (small JSON, distinct ids) in windows of
``--window`` unacknowledged publishes, and the clock stops when the action's ``succeeded`` counter (rule
metrics API) reaches the count: records / (last delivery - first publish). The ``publish`` row (a rule that
republishes to a topic nobody reads) is the same load's ceiling. Each target's data is counted afterwards.

    python -m benchmarks.outputs [--messages 10000] [--only s3 logs ...]
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from tests.server import ThingcoreProcess

from benchmarks import wire

ROLE = "arn:aws:iam::123456789012:role/bench"
ES = "https://search-bench.us-east-1.es.amazonaws.com"
TARGETS: dict[str, dict[str, Any]] = {
    "publish": {"republish": {"topic": "nobody/listens", "roleArn": ROLE}},
    "s3": {"s3": {"bucketName": "bench", "key": "${topic(2)}/${id}.json", "roleArn": ROLE}},
    "cloudwatchMetric": {"cloudwatchMetric": {"metricNamespace": "Bench", "metricName": "v", "metricValue": "${v}",
                                              "metricUnit": "Count", "roleArn": ROLE}},
    "cloudwatchAlarm": {"cloudwatchAlarm": {"alarmName": "bench", "stateReason": "v=${v}",
                                            "stateValue": "${CASE v % 2 WHEN 0 THEN 'OK' ELSE 'ALARM' END}",
                                            "roleArn": ROLE}},
    "cloudwatchLogs": {"cloudwatchLogs": {"logGroupName": "bench", "roleArn": ROLE}},
    "elasticsearch": {"elasticsearch": {"endpoint": ES, "index": "bench", "type": "r", "id": "${id}",
                                        "roleArn": ROLE}},
}


def _publish_all(port: int, n: int, window: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(wire.connect("bench-outputs"))
    sock.recv(4)  # CONNACK
    acked = sent = 0
    buf = b""
    while acked < n:
        batch = []
        while sent < n and sent - acked < window:
            sent += 1
            payload = json.dumps({"id": f"m{sent}", "v": sent, "text": f"reading {sent} from bench"}).encode()
            batch.append(wire.publish(f"bench/d{sent % 16}", payload, qos=1, packet_id=(sent % 65535) + 1))
        if batch:
            sock.sendall(b"".join(batch))
        buf += sock.recv(65536)
        while len(buf) >= 4 and buf[0] == wire.PUBACK:
            buf = buf[4:]
            acked += 1
    sock.sendall(wire.DISCONNECT_PACKET)
    sock.close()


def _count(tc: ThingcoreProcess, name: str, n: int) -> int:
    data = tc.data_dir
    if name == "s3":
        return sum(1 for p in (data / "objects" / "bench").rglob("*.json"))
    if name == "cloudwatchLogs":
        return len((data / "logs" / "bench.jsonl").read_bytes().splitlines())
    if name == "elasticsearch":
        docs = httpx.get(f"http://127.0.0.1:{tc.http_port}/api/v1/search").json()["indexes"]
        return next(d["documents"] for d in docs if d["index"] == "bench")
    return n  # gauges and the alarm keep only the latest value


def run(name: str, n: int, window: int, base: Path) -> dict[str, Any]:
    with ThingcoreProcess(base / name, {"rules": {"action_queue_size": n + 10}}) as tc:
        api = f"http://127.0.0.1:{tc.http_port}"
        resp = httpx.post(f"{api}/rules/bench", json={"sql": "SELECT * FROM 'bench/+'", "actions": [TARGETS[name]]})
        resp.raise_for_status()
        start = time.perf_counter()
        _publish_all(tc.mqtt_port, n, window)
        while True:
            action = httpx.get(f"{api}/api/v1/rules/bench/metrics").json()["actions"][0]
            if action["succeeded"] + action["failed"] + action["dropped"] >= n:
                break
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        return {"target": name, "messages": n, "succeeded": action["succeeded"], "failed": action["failed"],
                "dropped": action["dropped"], "seconds": round(elapsed, 3), "records_per_s": round(n / elapsed),
                "stored": _count(tc, name, n)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=100, help="QoS 1 publishes in flight")
    parser.add_argument("--only", nargs="*", choices=sorted(TARGETS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-outputs-") as tmp:
        for name in args.only or TARGETS:
            print(json.dumps(run(name, args.messages, args.window, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
