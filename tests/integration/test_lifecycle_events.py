"""Lifecycle events: what a subscriber to $aws/events/... sees when clients connect, subscribe and leave."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.mqtt_helpers import V5, V311, PahoClient, RawClient, both_protocols, uid

pytestmark = pytest.mark.integration


class Watcher:
    """A paho subscriber to every lifecycle event of one client id (`#` does not match `$` topics)."""

    def __init__(self, port: int, client_id: str) -> None:
        self.client = PahoClient(port, uid("watch"))
        self.client.connect()
        self.client.subscribe(f"$aws/events/+/+/{client_id}", 1)

    def next(self) -> tuple[str, dict[str, Any]]:
        msg = self.client.expect()
        return msg.topic, json.loads(msg.payload)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def watch(thingcore) -> Iterator[Any]:
    watchers: list[Watcher] = []

    def make(client_id: str) -> Watcher:
        w = Watcher(thingcore.mqtt_port, client_id)
        watchers.append(w)
        return w

    yield make
    for w in watchers:
        w.close()


def _recent_ms(value: int) -> bool:
    return isinstance(value, int) and abs(value - time.time() * 1000) < 60_000


@both_protocols
def test_connect_subscribe_unsubscribe_and_normal_disconnect(thingcore, watch, protocol: int) -> None:
    cid = uid("dev")
    w = watch(cid)
    dev = PahoClient(thingcore.mqtt_port, cid, protocol=protocol)
    dev.connect()
    topic, connected = w.next()
    assert topic == f"$aws/events/presence/connected/{cid}"
    assert connected["clientId"] == cid
    assert connected["eventType"] == "connected"
    assert connected["ipAddress"] == "127.0.0.1"
    assert connected["versionNumber"] == 0
    assert connected["principalIdentifier"] == "anonymous"
    assert _recent_ms(connected["timestamp"])
    session = connected["sessionIdentifier"]
    assert session

    dev.subscribe([f"{cid}/a", f"{cid}/b/+"], 1)
    topic, subscribed = w.next()
    assert topic == f"$aws/events/subscriptions/subscribed/{cid}"
    assert subscribed["eventType"] == "subscribed"
    assert subscribed["topics"] == [f"{cid}/a", f"{cid}/b/+"]
    assert subscribed["sessionIdentifier"] == session
    assert _recent_ms(subscribed["timestamp"])

    dev.unsubscribe(f"{cid}/a")
    topic, unsubscribed = w.next()
    assert topic == f"$aws/events/subscriptions/unsubscribed/{cid}"
    assert unsubscribed["topics"] == [f"{cid}/a"]

    dev.disconnect()
    topic, gone = w.next()
    assert topic == f"$aws/events/presence/disconnected/{cid}"
    assert gone["eventType"] == "disconnected"
    assert gone["clientInitiatedDisconnect"] is True
    assert gone["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
    assert gone["sessionIdentifier"] == session
    assert gone["versionNumber"] == 0
    assert "ipAddress" not in gone


def test_abrupt_disconnect_is_connection_lost_and_next_connection_gets_next_version(thingcore, watch) -> None:
    cid = uid("dev")
    w = watch(cid)
    raw = RawClient(thingcore.mqtt_port)
    raw.connect(cid)
    _, first = w.next()
    raw.sock.close()  # no DISCONNECT: the network went away
    topic, lost = w.next()
    assert topic == f"$aws/events/presence/disconnected/{cid}"
    assert lost["disconnectReason"] == "CONNECTION_LOST"
    assert lost["clientInitiatedDisconnect"] is False
    assert lost["versionNumber"] == first["versionNumber"] == 0

    again = PahoClient(thingcore.mqtt_port, cid, protocol=V311)
    again.connect()
    _, second = w.next()
    assert second["eventType"] == "connected"
    assert second["versionNumber"] == 1
    assert second["sessionIdentifier"] != first["sessionIdentifier"]
    again.disconnect()
    _, end = w.next()
    assert end["versionNumber"] == 1


def test_takeover_disconnects_the_old_connection_with_duplicate_clientid(thingcore, watch) -> None:
    cid = uid("dev")
    w = watch(cid)
    old = PahoClient(thingcore.mqtt_port, cid)
    old.connect()
    _, c1 = w.next()
    new = PahoClient(thingcore.mqtt_port, cid)
    new.connect()
    _, d1 = w.next()
    _, c2 = w.next()
    assert (d1["eventType"], d1["disconnectReason"], d1["clientInitiatedDisconnect"]) == \
        ("disconnected", "DUPLICATE_CLIENTID", False)
    assert d1["sessionIdentifier"] == c1["sessionIdentifier"]
    assert c2["eventType"] == "connected" and c2["versionNumber"] == c1["versionNumber"] + 1
    old.close()
    new.disconnect()


def test_keep_alive_timeout_is_reported(thingcore, watch) -> None:
    cid = uid("dev")
    w = watch(cid)
    raw = RawClient(thingcore.mqtt_port)
    raw.connect(cid, keep_alive=1)
    w.next()
    # the client says nothing more; the broker gives up after 1.5 x keep-alive
    _, gone = _wait_event(w)
    assert gone["disconnectReason"] == "MQTT_KEEP_ALIVE_TIMEOUT"
    assert gone["clientInitiatedDisconnect"] is False
    raw.close()


def _wait_event(w: Watcher) -> tuple[str, dict[str, Any]]:
    msg = w.client.expect(timeout=10)
    return msg.topic, json.loads(msg.payload)


def test_client_ids_with_wildcard_characters_get_no_events(thingcore) -> None:
    watcher = PahoClient(thingcore.mqtt_port, uid("watch"))
    watcher.connect()
    watcher.subscribe("$aws/events/presence/connected/#", 1)
    try:
        for cid in (uid("a+b"), uid("a#b")):
            odd = PahoClient(thingcore.mqtt_port, cid, protocol=V5)
            odd.connect()
            odd.disconnect()
        marker = uid("marker")
        normal = PahoClient(thingcore.mqtt_port, marker)
        normal.connect()
        # events are published in order: anything for the odd ids would have come first
        first = watcher.expect()
        assert first.topic == f"$aws/events/presence/connected/{marker}"
        normal.disconnect()
    finally:
        watcher.close()


def test_events_are_not_delivered_to_plain_hash_subscribers(thingcore, watch) -> None:
    everything = PahoClient(thingcore.mqtt_port, uid("all"))
    everything.connect()
    everything.subscribe("#", 1)
    try:
        cid = uid("dev")
        w = watch(cid)
        dev = PahoClient(thingcore.mqtt_port, cid)
        dev.connect()
        dev.disconnect()
        assert [w.next()[1]["eventType"] for _ in range(2)] == ["connected", "disconnected"]
        everything.no_more()
    finally:
        everything.close()
