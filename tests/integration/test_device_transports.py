"""The device SDK against a real thingcore over each transport: MQTT over TCP (MQTT 5 and 3.1.1),
MQTT over WebSockets at /mqtt, and HTTP publish; the threaded Device and the asyncio AsyncDevice;
what a caller sees when something is refused, full or offline.

One server for the module: it has a password file and access rules, so refusals are real.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.device_helpers import FAST, TIMEOUT, Inbox, device, port_for, uid, wait_until
from tests.server import ThingcoreProcess, free_port

from thingcore.auth import PasswordFile
from thingcore.device import (
    AsyncDevice,
    ConnectError,
    ConnectTimeout,
    Device,
    Message,
    MessageDropped,
    NotConnected,
    PublishError,
    QueueFull,
    SubscribeError,
    UnsupportedOperation,
)

pytestmark = pytest.mark.integration

TRANSPORTS = [("mqtt", 5), ("mqtt", 4), ("websockets", 5), ("websockets", 4), ("http", 5)]
TRANSPORT_IDS = ["mqtt-v5", "mqtt-v311", "ws-v5", "ws-v311", "http"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    d = tmp_path_factory.mktemp("device-transports")
    pw = PasswordFile(d / "passwd")
    pw.set("sensor", "right-password")
    pw.save()
    config = {"auth": {"password_file": d / "passwd", "acl": [
        {"effect": "deny", "action": "subscribe", "topic": "forbidden/#"},
        {"effect": "deny", "action": "publish", "topic": "readonly/#"},
    ]}}
    with ThingcoreProcess(d, config) as tc:
        yield tc


@pytest.fixture
def listener(server: ThingcoreProcess) -> Iterator[tuple[Device, Inbox, str]]:
    """An MQTT 5 device subscribed to a fresh topic tree, and what it receives."""
    base = uid("tr")
    inbox = Inbox("listener")
    with device(server, "mqtt") as dev:
        dev.subscribe(f"{base}/#", inbox, qos=1)
        yield dev, inbox, base


@pytest.mark.parametrize(("transport", "protocol"), TRANSPORTS, ids=TRANSPORT_IDS)
def test_publish_reaches_a_subscriber(server: ThingcoreProcess, listener: tuple[Device, Inbox, str],
                                      transport: str, protocol: int, caplog: pytest.LogCaptureFixture) -> None:
    """JSON, text and bytes payloads at QoS 0 and 1 arrive as sent; MQTT 5 properties travel over
    MQTT 5 and HTTP, and are dropped (with a warning) on MQTT 3.1.1."""
    _dev, inbox, base = listener
    caplog.set_level(logging.WARNING, logger="thingcore.device")
    with device(server, transport, protocol=protocol) as pub:
        first = pub.publish(f"{base}/json", {"celsius": 21.5, "ok": True}, qos=1,
                            content_type="application/json", user_properties={"site": "lab"})
        first.wait(TIMEOUT)
        assert first.delivered
        pub.publish(f"{base}/text", "héllo", qos=0).wait(TIMEOUT)
        pub.publish(f"{base}/bytes", b"\x00\xff", qos=1).wait(TIMEOUT)
    got = {m.topic.rsplit("/", 1)[1]: m for m in inbox.take(3)}
    assert got["json"].json() == {"celsius": 21.5, "ok": True}
    assert got["json"].qos == 1
    assert got["text"].text == "héllo"
    assert got["bytes"].payload == b"\x00\xff"
    if protocol == 5:
        assert got["json"].properties["content_type"] == "application/json"
        assert got["json"].user_properties == [("site", "lab")]
    else:
        assert "content_type" not in got["json"].properties
        assert "MQTT 3.1.1 has no message properties" in caplog.text


@pytest.mark.parametrize(("transport", "protocol"), TRANSPORTS[:4], ids=TRANSPORT_IDS[:4])
def test_subscribe_retained_and_unsubscribe(server: ThingcoreProcess, transport: str, protocol: int) -> None:
    base = uid("sub")
    with device(server, transport, protocol=protocol) as dev:
        dev.publish(f"{base}/config", {"interval": 5}, qos=1, retain=True).wait(TIMEOUT)
        a, b = Inbox("a"), Inbox("b")
        assert dev.subscribe(f"{base}/config", a, qos=1) == 1
        retained = a.get()
        assert (retained.json(), retained.retain) == ({"interval": 5}, True)
        dev.subscribe(f"{base}/+/b", b, qos=0)
        dev.unsubscribe(f"{base}/config")
        dev.publish(f"{base}/config", "after unsubscribe", qos=1).wait(TIMEOUT)
        dev.publish(f"{base}/x/b", "to b", qos=1).wait(TIMEOUT)
        assert b.get().text == "to b"
        assert a.empty(), "a message arrived for a filter that was unsubscribed"
        dev.publish(f"{base}/config", b"", qos=1, retain=True).wait(TIMEOUT)  # clear the retained message


def test_shared_subscription_reaches_its_callback(server: ThingcoreProcess) -> None:
    base = uid("share")
    inbox = Inbox()
    with device(server) as dev:
        dev.subscribe(f"$share/workers/{base}/jobs/+", inbox)
        dev.publish(f"{base}/jobs/1", "job", qos=1).wait(TIMEOUT)
        assert inbox.get().topic == f"{base}/jobs/1"


async def test_async_device_is_the_same_api(server: ThingcoreProcess) -> None:
    """AsyncDevice: awaitable publish, coroutine callbacks, async context manager."""
    base = uid("aio")
    seen: list[Message] = []
    import asyncio

    arrived = asyncio.Event()

    async def on_message(message: Message) -> None:
        seen.append(message)
        if len(seen) == 2:
            arrived.set()

    for transport in ("mqtt", "websockets"):
        seen.clear()
        arrived.clear()
        async with AsyncDevice(server.host, uid("aio"), transport=transport,
                               port=port_for(server, transport)) as dev:
            assert await dev.subscribe(f"{base}/{transport}/#", on_message) == 1
            await dev.publish(f"{base}/{transport}/1", {"n": 1}, qos=1)
            await dev.publish(f"{base}/{transport}/2", {"n": 2}, qos=0)
            await asyncio.wait_for(arrived.wait(), TIMEOUT)
            assert [m.json()["n"] for m in seen] == [1, 2]
            assert dev.stats.delivered == 2
    async with AsyncDevice(server.host, uid("aio-http"), transport="http", port=server.http_port) as http:
        await http.publish(f"{base}/http", "x", qos=1)
        with pytest.raises(UnsupportedOperation):
            await http.subscribe(f"{base}/#")


def test_connect_and_disconnect_callbacks(server: ThingcoreProcess) -> None:
    events = Inbox("events")
    dev = device(server, on_connect=events, on_disconnect=events)
    dev.connect()
    up = events.get()
    assert (up.session_present, up.reconnect) == (False, False)
    dev.disconnect()
    down = events.get()
    assert down.will_reconnect is False
    with pytest.raises(NotConnected):
        dev.publish("after/close", "x")


@pytest.mark.parametrize("transport", ["mqtt", "websockets", "http"])
def test_publishes_before_connect_wait_in_order(server: ThingcoreProcess, listener: tuple[Device, Inbox, str],
                                                transport: str) -> None:
    """QoS 1 made offline are queued and sent in order once connected; QoS 0 offline is dropped (MQTT)."""
    _dev, inbox, base = listener
    dev = device(server, transport)
    try:
        if transport != "http":
            dropped = dev.publish(f"{base}/q0", "lost", qos=0)
            assert isinstance(dropped.exception(), NotConnected)
        queued = [dev.publish(f"{base}/q1", str(i), qos=1) for i in range(20)]
        assert dev.pending == 20
        dev.connect()
        for d in queued:
            d.wait(TIMEOUT)
        assert [m.text for m in inbox.take(20)] == [str(i) for i in range(20)]
        assert dev.stats.dropped == (0 if transport == "http" else 1)
    finally:
        dev.disconnect()


@pytest.mark.parametrize("policy", ["error", "drop_oldest", "drop_new"])
def test_full_queue_policy(server: ThingcoreProcess, listener: tuple[Device, Inbox, str], policy: str) -> None:
    _dev, inbox, base = listener
    dev = device(server, queue_size=3, queue_full=policy)
    try:
        deliveries = [dev.publish(f"{base}/p", str(i), qos=1) for i in range(3)]
        if policy == "error":
            with pytest.raises(QueueFull):
                dev.publish(f"{base}/p", "3", qos=1)
            expected = ["0", "1", "2"]
        else:
            deliveries.append(dev.publish(f"{base}/p", "3", qos=1))
            lost = deliveries.pop(0 if policy == "drop_oldest" else 3)
            assert isinstance(lost.exception(), MessageDropped)
            expected = ["1", "2", "3"] if policy == "drop_oldest" else ["0", "1", "2"]
        dev.connect()
        for d in deliveries:
            d.wait(TIMEOUT)
        assert [m.text for m in inbox.take(3)] == expected
    finally:
        dev.disconnect()


def test_bad_topics_are_refused_before_sending(server: ThingcoreProcess) -> None:
    with device(server) as dev:
        for topic in ("a/+/b", "a/#", ""):
            with pytest.raises(ValueError, match="invalid topic"):
                dev.publish(topic, "x")
        with pytest.raises(ValueError, match="invalid topic filter"):
            dev.subscribe("a/#/b", Inbox())
        with pytest.raises(TypeError, match="JSON"):
            dev.publish("a/b", object())
        dev.publish(uid("still/ok"), "x", qos=1).wait(TIMEOUT)  # the connection is untouched
        assert dev.connected


@pytest.mark.parametrize("protocol", [5, 4], ids=["v5", "v311"])
def test_wrong_password_is_refused_at_once(server: ThingcoreProcess, protocol: int) -> None:
    dev = device(server, protocol=protocol, username="sensor", password="wrong")
    with pytest.raises(ConnectError) as info:
        dev.connect(timeout=None)  # refusals are not retried, so this returns without a timeout
    assert info.value.reason_code in (0x86, 0x87)
    assert not isinstance(info.value, ConnectTimeout)
    dev.disconnect()
    with device(server, protocol=protocol, username="sensor", password="right-password") as ok:
        assert ok.connected


def test_connect_timeout_names_the_last_error() -> None:
    dev = Device("127.0.0.1", uid("nobody"), port=free_port(), backoff=FAST)
    with pytest.raises(ConnectTimeout, match="Connection refused"):
        dev.connect(timeout=1.0)
    dev.disconnect()


def test_refused_subscription_and_publish(server: ThingcoreProcess) -> None:
    """SUBACK and MQTT 5 PUBACK failure codes become exceptions; the connection stays usable."""
    with device(server) as dev:
        with pytest.raises(SubscribeError) as sub:
            dev.subscribe("forbidden/x", Inbox())
        assert sub.value.reason_code == 0x87
        refused = dev.publish("readonly/x", "x", qos=1)
        with pytest.raises(PublishError) as pub:
            refused.wait(TIMEOUT)
        assert pub.value.reason_code == 0x87
        dev.publish(uid("fine"), "x", qos=1).wait(TIMEOUT)


def test_http_refusals_are_publish_errors(server: ThingcoreProcess) -> None:
    with device(server, "http") as dev:
        refused = dev.publish("readonly/x", "x", qos=1)
        with pytest.raises(PublishError) as info:
            refused.wait(TIMEOUT)
        assert info.value.status == 403
        assert info.value.error_type == "ForbiddenException"
        with pytest.raises(UnsupportedOperation, match="publish-only"):
            dev.subscribe("a/b", Inbox())
        with pytest.raises(UnsupportedOperation):
            dev.shadow().on_delta(Inbox())


def test_callbacks_run_off_the_network_thread(server: ThingcoreProcess) -> None:
    """A callback may block and call the device (publish and wait) without deadlocking it."""
    base = uid("cb")
    replies = Inbox("replies")
    with device(server) as dev:
        def echo(message: Message) -> Any:
            dev.publish(f"{base}/reply", message.payload, qos=1).wait(TIMEOUT)

        dev.subscribe(f"{base}/reply", replies)
        dev.subscribe(f"{base}/ask", echo)
        dev.publish(f"{base}/ask", "ping", qos=1)
        assert replies.get().text == "ping"


def test_slow_callbacks_hold_back_reading_and_lose_nothing(server: ThingcoreProcess) -> None:
    """Callbacks more than max_backlog behind: the device stops reading its socket (TCP pushes back on
    the broker, which queues) instead of piling messages up in memory; released, it gets them all."""
    base = uid("slow")
    gate = threading.Event()
    got: list[str] = []

    def slow(message: Message) -> None:
        gate.wait(TIMEOUT)
        got.append(message.text)

    with device(server, max_backlog=5) as dev, device(server) as pub:
        dev.subscribe(f"{base}/m", slow)
        for i in range(200):
            pub.publish(f"{base}/m", str(i), qos=1)
        assert pub.flush(TIMEOUT)
        wait_until(lambda: dev.stats.reading_paused >= 1, "reading paused")
        held = dev.stats.received
        gate.set()
        wait_until(lambda: len(got) == 200, "all 200 messages after the release")
        assert got == [str(i) for i in range(200)]
        assert held < 200
