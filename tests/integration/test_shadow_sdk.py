"""The AWS IoT Device SDK v2's shadow clients against thingcore, unchanged, over plain TCP.

A device (``IotShadowClient`` on an MQTT 3.1.1 connection) and a back end (``IotShadowClient`` on
an MQTT 5 client) run AWS's classic flow: the device finds no shadow, the back end sets desired,
the device gets the delta, reports, the delta is gone and ``/update/documents`` carries previous
and current. The same for a named shadow, and the request-response ``IotShadowClientV2``.

"No delta after the report" is checked without waiting for silence: responses for one shadow
leave in order, so the next delta the device receives must carry the version after the report.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from tests.server import ThingcoreProcess

try:
    from awscrt import mqtt, mqtt5, mqtt_request_response
    from awsiot import V2ServiceException, iotshadow
except ImportError as exc:  # pragma: no cover - the test extra installs awsiotsdk
    pytest.skip(f"awsiotsdk / awscrt cannot be imported ({exc}); install the awsiotsdk package",
                allow_module_level=True)

pytestmark = pytest.mark.integration

TIMEOUT = 10
QOS = mqtt.QoS.AT_LEAST_ONCE


class Streams:
    """One queue per shadow topic the SDK delivers to (SDK callbacks run on CRT threads)."""

    def __init__(self) -> None:
        self._queues: dict[str, queue.Queue[Any]] = {}
        self._lock = threading.Lock()

    def _queue(self, name: str) -> queue.Queue[Any]:
        with self._lock:
            return self._queues.setdefault(name, queue.Queue())

    def callback(self, name: str) -> Any:
        return lambda response: self._queue(name).put(response)

    def next(self, name: str) -> Any:
        try:
            return self._queue(name).get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"nothing on {name} within {TIMEOUT} s") from None

    def empty(self, name: str) -> bool:
        return self._queue(name).empty()


@pytest.fixture
def device(thingcore: ThingcoreProcess) -> Iterator[mqtt.Connection]:
    conn = mqtt.Connection(client=mqtt.Client(None, None), host_name=thingcore.host, port=thingcore.mqtt_port,
                           client_id=f"shadow-device-{uuid.uuid4().hex[:6]}", clean_session=True, keep_alive_secs=30)
    conn.connect().result(TIMEOUT)
    yield conn
    conn.disconnect().result(TIMEOUT)


@pytest.fixture
def backend(thingcore: ThingcoreProcess) -> Iterator[mqtt5.Client]:
    connected: Future = Future()
    stopped = threading.Event()
    client = mqtt5.Client(mqtt5.ClientOptions(
        thingcore.host, thingcore.mqtt_port,
        connect_options=mqtt5.ConnectPacket(client_id=f"shadow-app-{uuid.uuid4().hex[:6]}", keep_alive_interval_sec=30),
        on_lifecycle_event_connection_success_fn=lambda d: connected.done() or connected.set_result(d),
        on_lifecycle_event_stopped_fn=lambda _d: stopped.set(),
    ))
    client.start()
    connected.result(TIMEOUT)
    yield client
    client.stop()
    stopped.wait(TIMEOUT)


def _thing() -> str:
    return f"sdk-thing-{uuid.uuid4().hex[:8]}"


def test_classic_shadow_flow(device: mqtt.Connection, backend: mqtt5.Client) -> None:
    thing = _thing()
    dev, app = iotshadow.IotShadowClient(device), iotshadow.IotShadowClient(backend)
    s = Streams()
    subs = [
        dev.subscribe_to_get_shadow_accepted(iotshadow.GetShadowSubscriptionRequest(thing_name=thing), QOS,
                                             s.callback("get/accepted")),
        dev.subscribe_to_get_shadow_rejected(iotshadow.GetShadowSubscriptionRequest(thing_name=thing), QOS,
                                             s.callback("get/rejected")),
        dev.subscribe_to_shadow_delta_updated_events(
            iotshadow.ShadowDeltaUpdatedSubscriptionRequest(thing_name=thing), QOS, s.callback("delta")),
        dev.subscribe_to_update_shadow_accepted(iotshadow.UpdateShadowSubscriptionRequest(thing_name=thing), QOS,
                                                s.callback("dev/update/accepted")),
        dev.subscribe_to_shadow_updated_events(iotshadow.ShadowUpdatedSubscriptionRequest(thing_name=thing), QOS,
                                               s.callback("documents")),
        app.subscribe_to_update_shadow_accepted(iotshadow.UpdateShadowSubscriptionRequest(thing_name=thing), QOS,
                                                s.callback("app/update/accepted")),
        dev.subscribe_to_delete_shadow_accepted(iotshadow.DeleteShadowSubscriptionRequest(thing_name=thing), QOS,
                                                s.callback("delete/accepted")),
    ]
    for future, _ in subs:
        future.result(TIMEOUT)

    # the device starts: no shadow yet
    dev.publish_get_shadow(iotshadow.GetShadowRequest(thing_name=thing, client_token="g1"), QOS).result(TIMEOUT)
    err = s.next("get/rejected")
    assert (err.code, err.message, err.client_token) == (404, f"No shadow exists with name: '{thing}'", "g1")

    # the back end asks for a colour
    app.publish_update_shadow(iotshadow.UpdateShadowRequest(
        thing_name=thing, state=iotshadow.ShadowState(desired={"color": "red", "power": {"on": True}}),
        client_token="app-1"), QOS).result(TIMEOUT)
    accepted = s.next("app/update/accepted")
    assert accepted.version == 1 and accepted.state.desired == {"color": "red", "power": {"on": True}}
    assert set(accepted.metadata.desired) == {"color", "power"} and accepted.client_token == "app-1"
    delta = s.next("delta")
    assert delta.state == {"color": "red", "power": {"on": True}} and delta.version == 1
    assert delta.metadata["color"]["timestamp"] == accepted.metadata.desired["color"]["timestamp"]
    created = s.next("documents")
    assert created.previous is None and created.current.version == 1
    assert s.next("dev/update/accepted").version == 1, "every subscriber sees the accepted document"

    # the device applies the delta and reports it
    dev.publish_update_shadow(iotshadow.UpdateShadowRequest(
        thing_name=thing, state=iotshadow.ShadowState(reported=delta.state), client_token="dev-1"),
        QOS).result(TIMEOUT)
    reported = s.next("dev/update/accepted")
    assert reported.version == 2 and reported.state.reported == {"color": "red", "power": {"on": True}}
    assert reported.state.desired is None
    docs = s.next("documents")
    assert docs.previous.version == 1 and docs.previous.state.reported is None
    assert docs.current.version == 2 and docs.current.state.reported == docs.current.state.desired

    dev.publish_get_shadow(iotshadow.GetShadowRequest(thing_name=thing, client_token="g2"), QOS).result(TIMEOUT)
    full = s.next("get/accepted")
    assert full.version == 2 and full.state.delta is None and full.client_token == "g2"
    assert full.state.desired == full.state.reported == {"color": "red", "power": {"on": True}}

    # the next delta the device sees is the one for version 3: none was sent for the report (version 2)
    app.publish_update_shadow(iotshadow.UpdateShadowRequest(
        thing_name=thing, state=iotshadow.ShadowState(desired={"power": {"on": False}})), QOS).result(TIMEOUT)
    delta = s.next("delta")
    assert (delta.version, delta.state) == (3, {"power": {"on": False}})

    dev.publish_delete_shadow(iotshadow.DeleteShadowRequest(thing_name=thing, client_token="d1"), QOS).result(TIMEOUT)
    deleted = s.next("delete/accepted")
    assert (deleted.version, deleted.client_token) == (3, "d1")


def test_named_shadow_flow(device: mqtt.Connection, backend: mqtt5.Client) -> None:
    thing, name = _thing(), "config"
    dev, app = iotshadow.IotShadowClient(device), iotshadow.IotShadowClient(backend)
    s = Streams()
    subs = [
        dev.subscribe_to_named_shadow_delta_updated_events(iotshadow.NamedShadowDeltaUpdatedSubscriptionRequest(
            thing_name=thing, shadow_name=name), QOS, s.callback("delta")),
        dev.subscribe_to_update_named_shadow_accepted(iotshadow.UpdateNamedShadowSubscriptionRequest(
            thing_name=thing, shadow_name=name), QOS, s.callback("update/accepted")),
        dev.subscribe_to_update_named_shadow_rejected(iotshadow.UpdateNamedShadowSubscriptionRequest(
            thing_name=thing, shadow_name=name), QOS, s.callback("update/rejected")),
        dev.subscribe_to_named_shadow_updated_events(iotshadow.NamedShadowUpdatedSubscriptionRequest(
            thing_name=thing, shadow_name=name), QOS, s.callback("documents")),
        dev.subscribe_to_get_named_shadow_accepted(iotshadow.GetNamedShadowSubscriptionRequest(
            thing_name=thing, shadow_name=name), QOS, s.callback("get/accepted")),
        dev.subscribe_to_get_named_shadow_rejected(iotshadow.GetNamedShadowSubscriptionRequest(
            thing_name=thing, shadow_name=name), QOS, s.callback("get/rejected")),
        dev.subscribe_to_delete_named_shadow_accepted(iotshadow.DeleteNamedShadowSubscriptionRequest(
            thing_name=thing, shadow_name=name), QOS, s.callback("delete/accepted")),
        # the classic shadow of the same thing stays untouched
        dev.subscribe_to_shadow_updated_events(iotshadow.ShadowUpdatedSubscriptionRequest(thing_name=thing), QOS,
                                               s.callback("classic/documents")),
    ]
    for future, _ in subs:
        future.result(TIMEOUT)

    dev.publish_get_named_shadow(iotshadow.GetNamedShadowRequest(thing_name=thing, shadow_name=name,
                                                                 client_token="g"), QOS).result(TIMEOUT)
    assert s.next("get/rejected").message == "No shadow exists with name: 'config'"

    app.publish_update_named_shadow(iotshadow.UpdateNamedShadowRequest(
        thing_name=thing, shadow_name=name, state=iotshadow.ShadowState(desired={"interval": 30})), QOS).result(TIMEOUT)
    delta = s.next("delta")
    assert (delta.state, delta.version) == ({"interval": 30}, 1)
    assert s.next("update/accepted").version == 1 and s.next("documents").previous is None

    dev.publish_update_named_shadow(iotshadow.UpdateNamedShadowRequest(
        thing_name=thing, shadow_name=name, state=iotshadow.ShadowState(reported={"interval": 30}), version=1),
        QOS).result(TIMEOUT)
    assert s.next("update/accepted").version == 2
    assert s.next("documents").current.state.reported == {"interval": 30}

    # optimistic locking: a stale version is refused on /update/rejected
    dev.publish_update_named_shadow(iotshadow.UpdateNamedShadowRequest(
        thing_name=thing, shadow_name=name, state=iotshadow.ShadowState(reported={"interval": 5}), version=1,
        client_token="stale"), QOS).result(TIMEOUT)
    err = s.next("update/rejected")
    assert (err.code, err.message, err.client_token) == (409, "Version conflict", "stale")

    app.publish_update_named_shadow(iotshadow.UpdateNamedShadowRequest(
        thing_name=thing, shadow_name=name, state=iotshadow.ShadowState(desired={"interval": 60})), QOS).result(TIMEOUT)
    delta = s.next("delta")
    assert (delta.state, delta.version) == ({"interval": 60}, 3), "no delta was sent once in sync"

    dev.publish_get_named_shadow(iotshadow.GetNamedShadowRequest(thing_name=thing, shadow_name=name),
                                 QOS).result(TIMEOUT)
    full = s.next("get/accepted")
    assert full.state.delta == {"interval": 60} and full.state.reported == {"interval": 30}

    dev.publish_delete_named_shadow(iotshadow.DeleteNamedShadowRequest(thing_name=thing, shadow_name=name),
                                    QOS).result(TIMEOUT)
    assert s.next("delete/accepted").version == 3
    assert s.empty("classic/documents"), "updates of a named shadow never touch the classic one"


def test_request_response_client_v2(backend: mqtt5.Client) -> None:
    """The SDK's newer client subscribes to .../get/+ and matches answers by clientToken."""
    thing = _thing()
    client = iotshadow.IotShadowClientV2(backend, mqtt_request_response.ClientOptions(
        max_request_response_subscriptions=4, max_streaming_subscriptions=2, operation_timeout_in_seconds=TIMEOUT))
    with pytest.raises(V2ServiceException) as info:
        client.get_shadow(iotshadow.GetShadowRequest(thing_name=thing)).result(TIMEOUT)
    assert info.value.modeled_error.code == 404
    updated = client.update_shadow(iotshadow.UpdateShadowRequest(
        thing_name=thing, state=iotshadow.ShadowState(reported={"temp": 21.5}))).result(TIMEOUT)
    assert updated.version == 1 and updated.state.reported == {"temp": 21.5}
    got = client.get_named_shadow(iotshadow.GetNamedShadowRequest(thing_name=thing, shadow_name="none"))
    with pytest.raises(V2ServiceException):
        got.result(TIMEOUT)
    full = client.get_shadow(iotshadow.GetShadowRequest(thing_name=thing)).result(TIMEOUT)
    assert full.state.reported == {"temp": 21.5} and full.version == 1
    deleted = client.delete_shadow(iotshadow.DeleteShadowRequest(thing_name=thing)).result(TIMEOUT)
    assert deleted.version == 1
