"""Micro-benchmark of the AWS IoT SQL evaluator: evaluations per second of compiled statements.

    python -m benchmarks.sql [--seconds 2] [--messages 1000]

Each case evaluates a compiled statement against a rotating set of distinct JSON payloads; every
evaluation gets a fresh MessageContext, so the payload is parsed each time, as it is for the first
rule a message meets. The figure to quote is the typical rule,
``SELECT temp, device FROM 'sensors/+' WHERE temp > 30`` (half the payloads pass WHERE); the other
cases show what more elaborate statements cost next to it. Numbers depend on the machine: compare
ratios between cases, not absolute rates across machines.
"""

from __future__ import annotations

import argparse
import time

import orjson

from thingcore.rules.sql import MessageContext, compile_sql, compile_template

CASES = [
    ("typical: SELECT temp, device ... WHERE temp > 30",
     "SELECT temp, device FROM 'sensors/+' WHERE temp > 30"),
    ("SELECT * (no WHERE)", "SELECT * FROM 'sensors/+'"),
    ("functions: topic(2), upper(), round(), timestamp()",
     "SELECT topic(2) AS id, upper(device) AS d, round(temp * 1.8 + 32) AS f, timestamp() AS ts "
     "FROM 'sensors/+' WHERE temp > 30 AND startswith(device, 'dev')"),
    ("nested: SELECT VALUE over an array + CASE",
     "SELECT (SELECT VALUE v FROM readings WHERE v > 2) AS high, CASE mode WHEN 'a' THEN 1 ELSE 0 END AS m "
     "FROM 'sensors/+'"),
]


def payloads(n: int) -> list[bytes]:
    return [orjson.dumps({"temp": 15 + (i % 31), "device": f"dev-{i}", "mode": "a" if i % 2 else "b",
                          "readings": [{"v": j} for j in range(5)]}) for i in range(n)]


def measure(sql: str, data: list[bytes], seconds: float) -> tuple[float, int]:
    query = compile_sql(sql)
    topic = "sensors/dev-1"
    n = len(data)
    done = 0
    matched = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while True:
        for i in range(1000):
            r = query.evaluate(MessageContext(topic, data[(done + i) % n], timestamp_ms=1))
            matched += r.matched
        done += 1000
        if time.perf_counter() >= deadline:
            break
    return done / (time.perf_counter() - start), matched


def measure_template(text: str, data: list[bytes], seconds: float) -> float:
    template = compile_template(text)
    n = len(data)
    done = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        for i in range(1000):
            template.render(MessageContext("sensors/dev-1", data[(done + i) % n]))
        done += 1000
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measurement time per case")
    parser.add_argument("--messages", type=int, default=1000, help="distinct payloads to rotate through")
    args = parser.parse_args()
    data = payloads(args.messages)
    baseline = None
    for label, sql in CASES:
        rate, _ = measure(sql, data, args.seconds)
        baseline = baseline or rate
        print(f"{rate:>12,.0f} evaluations/s  ({rate / baseline:4.2f}x typical)  {label}")
    rate = measure_template("${topic(2)}/${device}/alerts", data, args.seconds)
    print(f"{rate:>12,.0f} renders/s      ({rate / baseline:4.2f}x typical)  template ${{topic(2)}}/${{device}}/alerts")


if __name__ == "__main__":
    main()
