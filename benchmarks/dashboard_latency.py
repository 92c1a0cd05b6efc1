"""``python -m benchmarks.dashboard_latency``: device-to-screen latency of the dashboard's live view.

A paho-mqtt publisher sends QoS 0 JSON messages at a fixed rate, each stamped with the wall-clock time
(epoch ms) just before it is handed to the socket. The dashboard runs in headless Chromium (Debian's
``chromium``, driven by Playwright) on the same machine, subscribed to the topic in its Live view; the
view calls ``window.thingcoreProbe(message, now)`` right after the message's list item is in the DOM,
with ``now = performance.timeOrigin + performance.now()`` — the same clock. Latency = now - stamp:
broker routing, the WebSocket, MQTT.js decoding, the wait for the next animation frame and the DOM
insertion. The first second of each rate is a warm-up and not counted. Target: p99 < 50 ms at 100 msg/s.

Also shown: "handler", the same latency taken when MQTT.js hands the message to the page (before any
drawing), which separates the broker, the browser's network path and the machine's scheduling delays
from the page's own work; and "shown": the Live view draws at most 60 new items per frame (the newest),
so past that rate not every message gets its own list item (all are counted).

Then the Charts view: 100 msg/s over 4 topics with 4 numeric fields each (16 series, 6 drawn), reporting the
page's animation frames per second (60 is smooth) and the handler latency while it charts.

    python -m benchmarks.dashboard_latency [--rates 100 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from tests.e2e.browser import CHROMIUM, chromium_context

from benchmarks.brokers import HOST, Thingcore

WARMUP_S = 1.0
PROBE = """topic => {
  window.shown = []; window.arrived = [];
  const text = new TextDecoder();
  const stamp = (m) => { const b = JSON.parse(text.decode(m.payload)); return b.warm === false ? b.t : null; };
  window.thingcoreProbe = (m, now) => { const t = stamp(m); if (t !== null) window.shown.push(now - t); };
  if (window.unprobe) window.unprobe();
  window.unprobe = window.thingcore.conn.subscribe(topic, (m) => {
    const t = stamp(m); if (t !== null) window.arrived.push(m.received - t);
  });
}"""


def wait_healthy(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("thingcore's HTTP port did not become healthy")


def publish_at(client: mqtt.Client, topic: str, rate: int, seconds: float) -> int:
    """Paced QoS 0 publishes; returns how many counted (after the warm-up)."""
    interval = 1.0 / rate
    total = int(rate * (seconds + WARMUP_S))
    counted = 0
    start = time.perf_counter()
    for i in range(total):
        due = start + i * interval
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        warm = i < rate * WARMUP_S
        counted += not warm
        payload = json.dumps({"t": time.time() * 1000, "warm": warm, "seq": i, "temp": 20 + i % 7})
        client.publish(topic, payload, qos=0)
    return counted


CHART_PROBE = """filter => {
  window.arrived = []; window.frames = 0;
  const tick = () => { window.frames++; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  window.thingcore.conn.subscribe(filter, (m) => {
    const b = JSON.parse(new TextDecoder().decode(m.payload)); window.arrived.push(m.received - b.t);
  });
}"""


def chart_pass(page: Any, client: mqtt.Client, seconds: float, rate: int = 100) -> dict[str, Any]:
    """Charts view at `rate` msg/s over 4 topics: frames/s and handler latency while it draws."""
    prefix = f"bench/chart{uuid.uuid4().hex[:6]}"
    page.click("nav a[data-view=charts]")
    page.wait_for_selector("#view-charts[data-ready]")
    page.fill("#chart-form [name=filter]", f"{prefix}/+")
    page.click("#chart-form button[type=submit]")
    page.wait_for_function("f => window.thingcore.conn.acked.has(f)", arg=f"{prefix}/+")
    page.evaluate(CHART_PROBE, f"{prefix}/+")
    count = int(rate * seconds)
    start = time.perf_counter()
    for i in range(count):
        pause = start + i / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        payload = {"t": time.time() * 1000, "temp": 20 + (i % 50) / 10, "hum": 50 + i % 7, "v": {"a": i % 3}, "n": i}
        client.publish(f"{prefix}/{i % 4}", json.dumps(payload), qos=0)
    elapsed = time.perf_counter() - start
    page.wait_for_timeout(300)
    arrived, frames, points = page.evaluate(
        "() => [window.arrived, window.frames, Number(document.querySelector('#chart').dataset.points)]")
    return {"rate": rate, "sent": count, "arrived": len(arrived), "points": points,
            "frames_per_s": frames / elapsed, **figures("handler", arrived)}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def figures(name: str, values: list[float]) -> dict[str, float]:
    if not values:
        return {f"{name}_p50": float("nan"), f"{name}_p99": float("nan"), f"{name}_max": float("nan")}
    return {f"{name}_p50": statistics.median(values), f"{name}_p99": percentile(values, 99),
            f"{name}_max": max(values)}


def run(rates: list[int], seconds: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="thingcore-dash-bench-") as work:
        broker = Thingcore(Path(work))
        broker.start()
        try:
            wait_healthy(broker.ws_port)
            with chromium_context() as context:
                page = context.new_page()
                topic = f"bench/latency/{uuid.uuid4().hex[:6]}"
                page.goto(f"http://{HOST}:{broker.ws_port}/?filter={topic}#live")
                page.wait_for_selector("#status[data-state='connected']")
                page.wait_for_function("f => window.thingcore.conn.acked.has(f)", arg=topic)
                client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="latency-publisher")
                client.connect(HOST, broker.port)
                client.loop_start()
                try:
                    for rate in rates:
                        page.evaluate(PROBE, topic)
                        sent = publish_at(client, topic, rate, seconds)
                        try:  # QoS 0: wait for everything sent, or until nothing more comes
                            page.wait_for_function("n => window.arrived.length >= n", arg=sent, timeout=10_000)
                        except PlaywrightTimeout:
                            pass
                        page.wait_for_timeout(500)  # the last frame
                        shown, arrived = page.evaluate("() => [window.shown, window.arrived]")
                        results.append({"rate": rate, "sent": sent, "arrived": len(arrived), "shown": len(shown),
                                        **figures("handler", arrived), **figures("screen", shown)})
                    chart = chart_pass(page, client, seconds)
                finally:
                    client.disconnect()
                    client.loop_stop()
        finally:
            broker.stop()
    return results, chart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[100, 1000], help="messages per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per rate (after 1 s warm-up)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is absent: install the Debian package chromium")
    load = os.getloadavg()[0]
    results, chart = run(args.rates, args.seconds)
    print(f"load average before the run: {load:.2f} on {os.cpu_count()} cores")
    print("| rate | arrived / sent | shown | handler p50 / p99 ms | on screen p50 / p99 / max ms |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['rate']} msg/s | {r['arrived']}/{r['sent']} | {r['shown']} | {r['handler_p50']:.1f} / "
              f"{r['handler_p99']:.1f} | {r['screen_p50']:.1f} / {r['screen_p99']:.1f} / {r['screen_max']:.1f} |")
    print(f"Charts view at {chart['rate']} msg/s (4 topics x 4 fields): {chart['frames_per_s']:.0f} frames/s, "
          f"{chart['arrived']}/{chart['sent']} arrived, {chart['points']} points in the window, handler p50 / p99 "
          f"{chart['handler_p50']:.1f} / {chart['handler_p99']:.1f} ms")
    target = next((r for r in results if r["rate"] == 100), None)
    if target is not None:
        print(f"target p99 < 50 ms at 100 msg/s: {'met' if target['screen_p99'] < 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
