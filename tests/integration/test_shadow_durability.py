"""Shadows are durable and never lose a write: kill -9 after accepted updates, and MQTT and HTTP
writers updating one shadow at the same time."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from tests.integration.mqtt_helpers import PahoClient
from tests.server import ThingcoreProcess

pytestmark = pytest.mark.integration

WINDOW = 10  # AWS allows 10 in-flight shadow requests per connection


def update_over_mqtt(c: PahoClient, things: list[str], rounds: int, tag: str) -> list[dict[str, Any]]:
    """Send `rounds` updates to every thing, at most WINDOW in flight; return every accepted document."""
    for t in things:
        c.subscribe([f"$aws/things/{t}/shadow/update/accepted", f"$aws/things/{t}/shadow/update/rejected"], 1)
    requests = [(t, i) for i in range(rounds) for t in things]
    accepted: list[dict[str, Any]] = []
    for start in range(0, len(requests), WINDOW):
        batch = requests[start:start + WINDOW]
        tokens = set()
        for t, i in batch:
            token = f"{tag}-{t}-{i}"
            tokens.add(token)
            c.publish(f"$aws/things/{t}/shadow/update", json.dumps(
                {"state": {"desired": {token: i}, "reported": {"last": token}}, "clientToken": token}), 1, wait=False)
        while tokens:
            msg = c.expect()
            doc = json.loads(msg.payload)
            if doc.get("clientToken") not in tokens:
                continue
            assert msg.topic.endswith("/update/accepted"), doc
            tokens.discard(doc["clientToken"])
            accepted.append(doc)
    return accepted


def test_accepted_updates_survive_kill_9(thingcore_factory: Callable[..., ThingcoreProcess]) -> None:
    tc = thingcore_factory()
    http = f"http://127.0.0.1:{tc.http_port}"
    # a named shadow deleted over REST: the deletion and its version must survive too
    for _ in range(3):
        httpx.post(f"{http}/things/durable-0/shadow?name=gone", content=b'{"state":{"reported":{"x":1}}}')
    assert httpx.delete(f"{http}/things/durable-0/shadow?name=gone").json()["version"] == 3
    things = [f"durable-{i}" for i in range(5)]
    c = PahoClient(tc.mqtt_port)
    c.connect()
    try:
        accepted = update_over_mqtt(c, things, 20, "k")
    finally:
        c.client.loop_stop()
    tc.kill()  # at once after the last /accepted: what was acknowledged must be on disk
    tc.start()
    assert len(accepted) == 100
    for t in things:
        doc = httpx.get(f"{http}/things/{t}/shadow").json()
        assert doc["version"] == 20
        assert doc["state"]["desired"] == {f"k-{t}-{i}": i for i in range(20)}
        assert doc["state"]["reported"] == {"last": f"k-{t}-19"}
        assert set(doc["metadata"]["desired"]) == set(doc["state"]["desired"])
    assert httpx.get(f"{http}/things/durable-0/shadow?name=gone").status_code == 404
    recreated = httpx.post(f"{http}/things/durable-0/shadow?name=gone", content=b'{"state":{}}').json()
    assert recreated["version"] == 4


def test_concurrent_mqtt_and_http_updates_of_one_shadow_lose_nothing(thingcore: ThingcoreProcess) -> None:
    thing = f"busy-{uuid.uuid4().hex[:8]}"
    url = f"http://127.0.0.1:{thingcore.http_port}/things/{thing}/shadow"
    rounds = 40
    versions: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def mqtt_writer(n: int) -> None:
        c = PahoClient(thingcore.mqtt_port)
        try:
            c.connect()
            docs = update_over_mqtt(c, [thing], rounds, f"m{n}")
            with lock:
                versions.extend(d["version"] for d in docs)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            c.client.disconnect()
            c.client.loop_stop()

    def http_writer(n: int) -> None:
        try:
            with httpx.Client(timeout=30) as client:
                for i in range(rounds):
                    body = {"state": {"desired": {f"h{n}-{thing}-{i}": i}}}
                    resp = client.post(url, content=json.dumps(body))
                    resp.raise_for_status()
                    with lock:
                        versions.append(resp.json()["version"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=mqtt_writer, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=http_writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    total = 6 * rounds
    assert sorted(versions) == list(range(1, total + 1)), "every update got its own version"
    doc = httpx.get(url).json()
    assert doc["version"] == total
    desired = doc["state"]["desired"]
    assert len(desired) == total
    assert all(f"m{n}-{thing}-{i}" in desired and f"h{n}-{thing}-{i}" in desired
               for n in range(3) for i in range(rounds))
