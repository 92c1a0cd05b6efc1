"""Micro-benchmark of the AWS IoT SQL evaluator: evaluations per second of compiled statements.

    python -m benchmarks.sql [--seconds 2] [--rounds 5] [--messages 1000]

Each case evaluates a compiled statement against a rotating set of distinct JSON payloads; every
evaluation gets a fresh MessageContext, so the payload is parsed each time, as it is for the first
rule a message meets. The figure to quote is the typical rule,
``SELECT temp, device FROM 'sensors/+' WHERE temp > 30`` (half the payloads pass WHERE); the other
cases show what more elaborate statements cost next to it.

Shared machines are noisy: each case runs ``--rounds`` rounds and reports the best one, and every
rate is also given relative to a bare ``orjson.loads`` of the same payloads (the floor any
evaluator that parses JSON pays), which travels between machines better than the absolute rates.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

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


def best_rate(step: Callable[[bytes], object], data: list[bytes], seconds: float, rounds: int) -> float:
    """Calls per second of ``step`` over the payloads: the best of ``rounds`` rounds."""
    n = len(data)
    best = 0.0
    for _ in range(rounds):
        done = 0
        deadline = time.perf_counter() + seconds / rounds
        start = time.perf_counter()
        while True:
            for i in range(1000):
                step(data[(done + i) % n])
            done += 1000
            if time.perf_counter() >= deadline:
                break
        best = max(best, done / (time.perf_counter() - start))
    return best


def evaluation(sql: str) -> Callable[[bytes], object]:
    query = compile_sql(sql)
    return lambda payload: query.evaluate(MessageContext("sensors/dev-1", payload, timestamp_ms=1))


def rendering(text: str) -> Callable[[bytes], object]:
    template = compile_template(text)
    return lambda payload: template.render(MessageContext("sensors/dev-1", payload))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measurement time per case")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per case; the best is reported")
    parser.add_argument("--messages", type=int, default=1000, help="distinct payloads to rotate through")
    args = parser.parse_args()
    data = payloads(args.messages)
    floor = best_rate(orjson.loads, data, args.seconds, args.rounds)
    print(f"{floor:>12,.0f} parses/s       (1.00x)  orjson.loads alone, for reference")
    for label, sql in CASES:
        rate = best_rate(evaluation(sql), data, args.seconds, args.rounds)
        print(f"{rate:>12,.0f} evaluations/s  ({rate / floor:4.2f}x)  {label}")
    rate = best_rate(rendering("${topic(2)}/${device}/alerts"), data, args.seconds, args.rounds)
    print(f"{rate:>12,.0f} renders/s      ({rate / floor:4.2f}x)  template ${{topic(2)}}/${{device}}/alerts")


if __name__ == "__main__":
    main()
