"""The in-process bus: services subscribe and publish next to real MQTT clients, in the broker's loop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from thingcore.broker.message import Message
from thingcore.config import load_settings
from thingcore.server import Server


@pytest.fixture
async def server(tmp_path: Path):
    settings = load_settings(None, host="127.0.0.1", mqtt_port=0, http_port=0, data_dir=tmp_path / "data")
    srv = Server(settings)
    await srv.start()
    yield srv
    await srv.stop()


def _client(client_id: str, protocol: int = mqtt.MQTTv5) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)


async def _connect(client: mqtt.Client, port: int) -> None:
    connected = asyncio.Event()
    loop = asyncio.get_running_loop()
    client.on_connect = lambda *a: loop.call_soon_threadsafe(connected.set)
    client.connect("127.0.0.1", port)
    client.loop_start()
    await asyncio.wait_for(connected.wait(), 5)


async def test_bus_handler_receives_client_publish_with_publisher_identity(server: Server) -> None:
    got: asyncio.Queue[Message] = asyncio.Queue()
    server.broker.subscribe("plant/+/temp", got.put_nowait, name="$test/bus")
    port = server.listeners[0].port
    pub = _client("press-7")
    await _connect(pub, port)
    try:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("unit", "C")]
        props.ContentType = "application/json"
        before = time.time()
        pub.publish("plant/line1/temp", b'{"c": 71.5}', qos=1, properties=props).wait_for_publish(5)
        msg = await asyncio.wait_for(got.get(), 5)
    finally:
        pub.disconnect()
        pub.loop_stop()
    assert msg.topic == "plant/line1/temp"
    assert msg.payload == b'{"c": 71.5}'
    assert msg.qos == 1
    assert msg.client_id == "press-7"
    assert msg.source_address == "127.0.0.1"
    assert before - 1 <= msg.received_at <= time.time()
    assert msg.properties["user_property"] == [("unit", "C")]
    assert msg.properties["content_type"] == "application/json"


async def test_bus_publish_reaches_mqtt_subscribers_of_both_versions(server: Server) -> None:
    port = server.listeners[0].port
    loop = asyncio.get_running_loop()
    received: dict[str, asyncio.Future] = {}
    clients = []
    for name, proto in (("v5-sub", mqtt.MQTTv5), ("v311-sub", mqtt.MQTTv311)):
        fut: asyncio.Future = loop.create_future()
        received[name] = fut
        c = _client(name, proto)
        c.on_message = lambda _c, _u, m, f=fut: loop.call_soon_threadsafe(
            lambda: f.done() or f.set_result((m.topic, m.payload, m.qos, getattr(m, "properties", None))))
        subscribed = asyncio.Event()
        c.on_subscribe = lambda *a, e=subscribed: loop.call_soon_threadsafe(e.set)
        await _connect(c, port)
        c.subscribe("$aws/things/lamp/shadow/update/delta", qos=1)
        await asyncio.wait_for(subscribed.wait(), 5)
        clients.append(c)
    try:
        msg = Message("$aws/things/lamp/shadow/update/delta", b'{"state":{"on":true}}', qos=1,
                      properties={"content_type": "application/json"}, client_id="$shadow")
        server.broker.publish(msg)
        v5 = await asyncio.wait_for(received["v5-sub"], 5)
        v311 = await asyncio.wait_for(received["v311-sub"], 5)
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
    assert v5[:3] == ("$aws/things/lamp/shadow/update/delta", b'{"state":{"on":true}}', 1)
    assert v5[3].ContentType == "application/json"
    assert v311[:3] == v5[:3]


async def test_bus_unsubscribe_stops_delivery_and_handler_errors_are_contained(server: Server) -> None:
    seen: list[str] = []

    def broken(_msg: Message) -> None:
        raise RuntimeError("a service bug")

    server.broker.subscribe("x/#", broken)
    sub = server.broker.subscribe("x/#", lambda m: seen.append(m.topic))
    server.broker.publish(Message("x/1", b"a"))
    server.broker.unsubscribe(sub)
    server.broker.publish(Message("x/2", b"b"))
    await asyncio.sleep(0)
    assert seen == ["x/1"]  # the failing handler did not stop the other one, and unsubscribe took effect


async def test_a_future_returned_by_a_bus_handler_holds_back_the_puback(server: Server) -> None:
    """How the rules engine makes a QoS 1 PUBACK wait until the message's outbox entries are committed."""
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[None] = loop.create_future()
    server.broker.subscribe("gate/#", lambda msg: gate if msg.qos else None)
    server.broker.subscribe("gate/#", lambda msg: 42)  # not a future: ignored
    acked: dict[int, asyncio.Event] = {}
    pub = _client("gated")
    pub.on_publish = lambda _c, _u, mid, *a: loop.call_soon_threadsafe(acked.setdefault(mid, asyncio.Event()).set)
    await _connect(pub, server.listeners[0].port)
    try:
        qos0 = pub.publish("gate/a", b"0", qos=0).mid
        qos1 = pub.publish("gate/b", b"1", qos=1).mid
        await asyncio.wait_for(acked.setdefault(qos0, asyncio.Event()).wait(), 5)
        free = pub.publish("free/c", b"2", qos=1).mid  # no handler holds this one: its PUBACK comes at once,
        await asyncio.wait_for(acked.setdefault(free, asyncio.Event()).wait(), 5)  # after gate/b's, were that sent
        assert not acked.setdefault(qos1, asyncio.Event()).is_set()  # the PUBACK waits for the handler's future
        gate.set_result(None)
        await asyncio.wait_for(acked[qos1].wait(), 5)
    finally:
        pub.disconnect()
        pub.loop_stop()
