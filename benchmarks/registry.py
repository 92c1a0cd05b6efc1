"""Thing registry throughput over the AWS ``iot`` HTTP paths, with keep-alive connections.

    python -m benchmarks.registry [--things 2000] [--concurrency 16] [--no-persistence]

Starts ``thingcore serve`` (SQLite by default, as deployed) on free loopback ports and measures
CreateThing, DescribeThing, UpdateThing (attribute merge), full ListThings paging (250 per page) and
one filtered ListThings scan that matches 1% of the things. Every write is durably committed before
its response, so creates and updates measure group commit under concurrent requests. Figures depend
on the machine; compare runs on one machine, not across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.brokers import free_port


def start_server(workdir: Path, persistence: bool) -> tuple[subprocess.Popen, str]:
    http_port = free_port()
    cmd = [sys.executable, "-m", "thingcore", "serve", "--host", "127.0.0.1", "--mqtt-port", str(free_port()),
           "--http-port", str(http_port), "--data-dir", str(workdir / "data"), "--log-level", "WARNING"]
    if not persistence:
        cmd.append("--no-persistence")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("thingcore did not start")


async def run_requests(client: httpx.AsyncClient, requests: list[tuple[str, str, dict | None]],
                       concurrency: int) -> float:
    """Send all requests with ``concurrency`` workers; returns requests per second."""
    queue = list(reversed(requests))

    async def worker() -> None:
        while queue:
            method, path, body = queue.pop()
            resp = await client.request(method, path, json=body)
            if resp.status_code != 200:
                raise SystemExit(f"{method} {path}: {resp.status_code} {resp.text}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(requests) / (time.perf_counter() - start)


async def bench(base: str, n: int, concurrency: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    out: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        names = [f"bench-{i:06d}" for i in range(n)]
        creates = [("POST", f"/things/{nm}", {"attributePayload": {"attributes": {
            "model": "m1", "group": "rare" if i % 100 == 0 else "common"}}}) for i, nm in enumerate(names)]
        out["CreateThing/s"] = await run_requests(client, creates, concurrency)
        rnd = random.Random(1)
        describes = [("GET", f"/things/{rnd.choice(names)}", None) for _ in range(n)]
        out["DescribeThing/s"] = await run_requests(client, describes, concurrency)
        updates = [("PATCH", f"/things/{rnd.choice(names)}",
                    {"attributePayload": {"attributes": {"fw": str(i)}, "merge": True}}) for i in range(n)]
        out["UpdateThing (merge)/s"] = await run_requests(client, updates, concurrency)

        start = time.perf_counter()
        token, seen = None, 0
        while True:
            params = {"maxResults": 250, **({"nextToken": token} if token else {})}
            page = (await client.get("/things", params=params)).json()
            seen += len(page["things"])
            token = page.get("nextToken")
            if not token:
                break
        assert seen == n, seen
        out["ListThings things/s (250 per page)"] = n / (time.perf_counter() - start)

        start = time.perf_counter()
        page = (await client.get("/things", params={"attributeName": "group", "attributeValue": "rare",
                                                    "maxResults": 250})).json()
        out["filtered ListThings scan (ms)"] = (time.perf_counter() - start) * 1000
        assert len(page["things"]) == (n + 99) // 100
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--things", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-persistence", action="store_true", help="memory storage instead of SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_server(Path(tmp), not args.no_persistence)
        try:
            results = asyncio.run(bench(base, args.things, args.concurrency))
        finally:
            proc.terminate()
            proc.wait(15)
    storage = "memory" if args.no_persistence else "SQLite"
    print(f"thing registry, {args.things} things, {args.concurrency} concurrent keep-alive connections, {storage}")
    for label, value in results.items():
        print(f"  {label:40s} {value:10.1f}")


if __name__ == "__main__":
    main()
