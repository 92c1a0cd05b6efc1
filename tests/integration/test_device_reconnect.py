"""Devices outlive a broker restart: they reconnect by themselves, restore their subscriptions, and
send what was published while the broker was away, in order. One restart serves every transport
(devices run side by side), so the module stays fast.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from tests.integration.device_helpers import TIMEOUT, Inbox, device, uid
from tests.server import ThingcoreProcess

from thingcore.device import Connected, Device, Disconnected

pytestmark = pytest.mark.integration

QUEUED = 25  # QoS 1 publishes made while the broker is down, per device


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    with ThingcoreProcess(tmp_path_factory.mktemp("device-reconnect")) as tc:
        yield tc


class Subject:
    """A device subscribed to its own topic, recording connection events and what it receives."""

    def __init__(self, tc: ThingcoreProcess, transport: str, protocol: int, **options: Any) -> None:
        self.name = f"{transport}-v{protocol}"
        self.topic = uid(f"rc/{self.name}")
        self.events = Inbox(f"{self.name} events")
        self.inbox = Inbox(f"{self.name} messages")
        self.dev: Device = device(tc, transport, protocol=protocol, on_connect=self.events,
                                  on_disconnect=self.events, **options)
        self.dev.connect()
        assert isinstance(self.events.get(), Connected)
        self.dev.subscribe(self.topic, self.inbox, qos=1)

    def wait_down(self) -> None:
        down = self.events.until(lambda e: isinstance(e, Disconnected))
        assert down.will_reconnect, f"{self.name}: the device gave up"

    def wait_up(self) -> Connected:
        return self.events.until(lambda e: isinstance(e, Connected))


def _restart(tc: ThingcoreProcess, kill: bool) -> None:
    if kill:
        tc.kill()
    else:
        tc.stop()


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_devices_come_back_after_a_broker_restart(server: ThingcoreProcess, kill: bool) -> None:
    subjects = [Subject(server, t, p) for t, p in (("mqtt", 5), ("mqtt", 4), ("websockets", 5), ("websockets", 4))]
    http = device(server, "http")
    http.connect()
    retained_topic = uid("rc/http")
    try:
        _restart(server, kill)
        for s in subjects:
            s.wait_down()
            assert not s.dev.connected
        queued = {s.name: [s.dev.publish(s.topic, {"n": i}, qos=1) for i in range(QUEUED)] for s in subjects}
        # HTTP has no connection: a QoS 1 publish is retried until the server answers
        http_delivery = http.publish(retained_topic, {"via": "http"}, qos=1, retain=True)
        for s in subjects:
            assert s.dev.pending == QUEUED, f"{s.name}: the publishes were not queued"
        server.start()
        for s in subjects:
            up = s.wait_up()
            assert up.reconnect and not up.session_present, s.name
            for d in queued[s.name]:
                d.wait(TIMEOUT)
            # the device's subscription was restored before its queue was sent: it gets all, in order
            got = [m.json()["n"] for m in s.inbox.take(QUEUED)]
            assert got == list(range(QUEUED)), f"{s.name}: {got}"
        http_delivery.wait(TIMEOUT)
        status, body = server.http_get(f"/retainedMessage/{retained_topic.replace('/', '%2F')}")
        assert status == 200
        assert orjson.loads(base64.b64decode(orjson.loads(body)["payload"])) == {"via": "http"}
    finally:
        for s in subjects:
            s.dev.disconnect()
        http.disconnect()


def test_persistent_session_resumes_without_resubscribing(server: ThingcoreProcess) -> None:
    """clean_session=False: the broker keeps the session across its clean restart; the device sees
    session_present and, without subscribing again, receives on the kept subscription."""
    topic = uid("rc/persistent")
    events, inbox = Inbox("events"), Inbox("messages")
    dev = device(server, "mqtt", client_id=uid("persistent"), clean_session=False, on_connect=events,
                 on_disconnect=events)
    other = device(server, "mqtt")
    try:
        dev.connect()
        assert events.get().session_present is False
        dev.subscribe(topic, inbox, qos=1)
        server.stop()
        events.until(lambda e: isinstance(e, Disconnected))
        server.start()
        assert events.until(lambda e: isinstance(e, Connected)).session_present is True
        other.connect()
        other.publish(topic, "while resumed", qos=1).wait(TIMEOUT)
        assert inbox.get().text == "while resumed"
    finally:
        dev.disconnect()
        other.disconnect()
