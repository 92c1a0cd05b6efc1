"""Lifecycle event payloads and versionNumber rules, through an in-process broker and its bus."""

from __future__ import annotations

import asyncio

import orjson

from thingcore.auth import Identity
from thingcore.broker.core import Broker
from thingcore.broker.lifecycle import LifecycleEvents
from thingcore.config import Settings


async def _setup(reset_after: float = 3600.0) -> tuple[Broker, LifecycleEvents, list[tuple[str, dict]]]:
    broker = Broker(Settings())
    await broker.start()
    events = LifecycleEvents(broker, reset_after=reset_after)
    events.start()
    seen: list[tuple[str, dict]] = []
    broker.subscribe("$aws/events/#", lambda m: seen.append((m.topic, orjson.loads(m.payload))))
    return broker, events, seen


def _data(client_id: str, **extra: object) -> dict:
    identity = Identity(client_id=client_id, username="u", principal="u", listener="mqtt", address="10.0.0.5")
    return {"client_id": client_id, "identity": identity, "address": "10.0.0.5", **extra}


async def _settle() -> None:
    await asyncio.sleep(0)


async def test_versions_follow_connections_and_reset_after_the_quiet_period() -> None:
    _broker, events, seen = await _setup()
    for _ in range(2):
        events.on_event("connected", _data("dev"))
        events.on_event("disconnected", _data("dev", reason="CONNECTION_LOST", graceful=False))
    await _settle()
    assert [(p["eventType"], p["versionNumber"]) for _, p in seen] == [
        ("connected", 0), ("disconnected", 0), ("connected", 1), ("disconnected", 1)]
    assert seen[0][1]["sessionIdentifier"] == seen[1][1]["sessionIdentifier"] != seen[2][1]["sessionIdentifier"]
    assert seen[0][1]["principalIdentifier"] == "u" and seen[0][1]["ipAddress"] == "10.0.0.5"
    events.stop()

    _broker, events, seen = await _setup(reset_after=0)
    events.on_event("connected", _data("dev"))
    events.on_event("disconnected", _data("dev", reason="CLIENT_INITIATED_DISCONNECT", graceful=True))
    events.on_event("connected", _data("dev"))
    await _settle()
    assert [p["versionNumber"] for _, p in seen] == [0, 0, 0]
    assert seen[1][1]["clientInitiatedDisconnect"] is True
    events.stop()


async def test_wildcard_client_ids_unknown_events_and_a_stopped_observer_publish_nothing() -> None:
    _broker, events, seen = await _setup()
    events.on_event("connected", _data("a+b"))
    events.on_event("connected", _data("a#b"))
    events.on_event("renamed", _data("dev"))
    events.on_event("subscribed", _data("dev", topics=["x/y"]))
    await _settle()
    assert [(t, p["topics"]) for t, p in seen] == [("$aws/events/subscriptions/subscribed/dev", ["x/y"])]
    events.on_event("connected", _data("late"))
    events.stop()
    await _settle()
    assert len(seen) == 1
