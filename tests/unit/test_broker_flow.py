"""Flow control as pure logic (broker/flow.py): what an offline full queue tells the publisher, and how often
its drops are logged. The online cases run against a real server in test_mqtt_pipelined_publishers.py."""

from __future__ import annotations

import asyncio
import logging

import pytest

from thingcore.broker.core import Broker
from thingcore.broker.flow import DROPPED, QueueFullLog
from thingcore.broker.message import Message
from thingcore.broker.router import Entry
from thingcore.broker.session import Session
from thingcore.config import LimitSettings, Settings


def offline_session(broker: Broker, client_id: str, topic_filter: str) -> Session:
    session = Session(broker, client_id, 300, 5)  # persistent, no connection, no storage
    broker.sessions[client_id] = session
    broker.add_subscription(session, topic_filter, Entry(1), None, topic_filter)
    return session


def test_a_message_no_full_queue_could_take_is_reported_to_a_caller_that_can_wait() -> None:
    async def run() -> None:
        broker = Broker(Settings(limits=LimitSettings(max_queued_messages=2)))
        a = offline_session(broker, "a", "t/#")
        for i in range(2):
            broker.publish(Message("t/x", str(i).encode(), 1, False, {}), hold=True)
            assert not broker.unqueued
        assert a.deliver(Message("t/x", b"2", 1, False, {}), 1, False, (), {}) is DROPPED
        broker.publish(Message("t/x", b"3", 1, False, {}), hold=True)
        assert broker.unqueued  # 0x97 for an MQTT 5 publisher, 429 over HTTP
        broker.unqueued = False
        broker.publish(Message("t/x", b"4", 1, False, {}))
        assert not broker.unqueued  # the broker's own services are not told (they cannot be answered)
        broker.publish(Message("t/x", b"5", 0, False, {}), hold=True)
        assert not broker.unqueued  # QoS 0 has no acknowledgement to carry it
        offline_session(broker, "b", "t/x")  # another subscriber with room: someone took it
        broker.publish(Message("t/x", b"6", 1, False, {}), hold=True)
        assert not broker.unqueued
        assert broker.stats.dropped == 4 and len(a.queue) == 2  # 2, 3, 4 and 6 (QoS 0 is not queued offline)

    asyncio.run(run())


def test_queue_full_drops_are_logged_once_a_minute_per_session(caplog: pytest.LogCaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    broker = Broker(Settings())
    one, two = Session(broker, "one", 300, 5), Session(broker, "two", 300, 5)
    now = [1000.0]
    monkeypatch.setattr("thingcore.broker.flow.time.monotonic", lambda: now[0])
    drops = QueueFullLog()
    with caplog.at_level(logging.WARNING, "thingcore.broker"):
        for _ in range(5):
            drops.dropped(one, online=False)
        drops.dropped(two, online=True)
        now[0] += 61
        drops.dropped(one, online=False)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "session one" in lines[0] and "offline" in lines[0] and "1 message(s)" in lines[0]
    assert "session two" in lines[1] and "not keeping up" in lines[1]
    assert "session one" in lines[2] and "5 message(s)" in lines[2]  # the 4 not logged, and this one
