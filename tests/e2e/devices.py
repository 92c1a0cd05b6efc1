"""paho-mqtt devices for the browser tests: publish as a device does, or listen on topics with a queue."""

from __future__ import annotations

import queue
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from tests.server import ThingcoreProcess


class Device:
    """A connected paho client; `messages` receives (topic, payload) of every subscription."""

    def __init__(self, tc: ThingcoreProcess, client_id: str | None = None) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"dev-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.connect(tc.host, tc.mqtt_port)
        self.client.loop_start()

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(5), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def next(self, timeout: float = 5.0) -> tuple[str, bytes]:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def publish(tc: ThingcoreProcess, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
    """One message from a short-lived device, acknowledged by the broker."""
    with Device(tc) as device:
        device.publish(topic, payload, qos=qos, retain=retain)
