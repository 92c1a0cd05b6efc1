"""The same shadow flow run twice against thingcore: once by the AWS IoT Device SDK v2
(``awsiot.iotshadow`` on awscrt connections), once by thingcore's SDK. A third client watches every
message under each thing's shadow topics; after normalising the thing name, timestamps and client
tokens, the two runs must have put exactly the same requests and documents on the wire, in the
same order, and both SDKs must hand their callers the same values.

The flow is AWS's: the device finds no shadow, reports, the back end sets desired, the device gets
the delta and reports it back, reads the shadow in sync, the back end removes a desired key, the
device deletes the shadow.
"""

from __future__ import annotations

import queue
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from tests.integration.device_helpers import Inbox, device
from tests.integration.mqtt_helpers import PahoClient
from tests.server import ThingcoreProcess

from thingcore.device import ShadowNotFound

try:
    from awscrt import mqtt
    from awsiot import iotshadow
except ImportError as exc:  # pragma: no cover - the test extra installs awsiotsdk
    pytest.skip(f"awsiotsdk / awscrt cannot be imported ({exc}); install the awsiotsdk package",
                allow_module_level=True)

pytestmark = pytest.mark.integration

TIMEOUT = 10
QOS = mqtt.QoS.AT_LEAST_ONCE
REPORTED = {"color": "green", "brightness": 40}
DESIRED = {"color": "red", "power": {"on": True}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    with ThingcoreProcess(tmp_path_factory.mktemp("device-awsiot")) as tc:
        yield tc


def _normalize(value: Any, thing: str) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "timestamp" and isinstance(v, int):
                out[k] = "<timestamp>"
            elif k == "clientToken":
                out[k] = "<token>"
            else:
                out[k] = _normalize(v, thing)
        return out
    if isinstance(value, list):
        return [_normalize(v, thing) for v in value]
    if isinstance(value, str):
        return value.replace(thing, "<thing>")
    return value


class Wire:
    """Everything published under one thing's shadow topics, as an independent paho client saw it."""

    def __init__(self, tc: ThingcoreProcess, thing: str) -> None:
        self.thing = thing
        self.client = PahoClient(tc.mqtt_port)
        self.client.connect()
        self.client.subscribe(f"$aws/things/{thing}/shadow/#", 1)

    def transcript(self) -> list[tuple[str, Any]]:
        self.client.sync()
        out = []
        while True:
            try:
                m = self.client.messages.get_nowait()
            except queue.Empty:
                break
            out.append((m.topic.replace(self.thing, "<thing>"), _normalize(orjson.loads(m.payload), self.thing)))
        self.client.close()
        return out


class Streams:
    """awscrt callbacks (on CRT threads) into queues; ``next`` skips answers to other clients' requests."""

    def __init__(self) -> None:
        self.queues: dict[str, queue.Queue[Any]] = {}

    def callback(self, name: str) -> Callable[[Any], None]:
        q = self.queues.setdefault(name, queue.Queue())
        return q.put

    def next(self, name: str, token: str | None = None) -> Any:
        while True:
            try:
                item = self.queues[name].get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"nothing on {name} within {TIMEOUT} s") from None
            if token is None or getattr(item, "client_token", None) == token:
                return item


def _aws_connection(tc: ThingcoreProcess, client_id: str) -> mqtt.Connection:
    conn = mqtt.Connection(client=mqtt.Client(None, None), host_name=tc.host, port=tc.mqtt_port,
                           client_id=client_id, clean_session=True, keep_alive_secs=30)
    conn.connect().result(TIMEOUT)
    return conn


def _flow_with_aws_sdk(tc: ThingcoreProcess, thing: str) -> list[Any]:
    dev_conn, app_conn = _aws_connection(tc, thing), _aws_connection(tc, f"app-{thing}")
    dev, app = iotshadow.IotShadowClient(dev_conn), iotshadow.IotShadowClient(app_conn)
    s = Streams()
    subscriptions = [
        dev.subscribe_to_get_shadow_accepted(iotshadow.GetShadowSubscriptionRequest(thing_name=thing), QOS,
                                             s.callback("get/accepted")),
        dev.subscribe_to_get_shadow_rejected(iotshadow.GetShadowSubscriptionRequest(thing_name=thing), QOS,
                                             s.callback("get/rejected")),
        dev.subscribe_to_update_shadow_accepted(iotshadow.UpdateShadowSubscriptionRequest(thing_name=thing), QOS,
                                                s.callback("dev/update/accepted")),
        dev.subscribe_to_shadow_delta_updated_events(
            iotshadow.ShadowDeltaUpdatedSubscriptionRequest(thing_name=thing), QOS, s.callback("delta")),
        dev.subscribe_to_delete_shadow_accepted(iotshadow.DeleteShadowSubscriptionRequest(thing_name=thing), QOS,
                                                s.callback("delete/accepted")),
        app.subscribe_to_update_shadow_accepted(iotshadow.UpdateShadowSubscriptionRequest(thing_name=thing), QOS,
                                                s.callback("app/update/accepted")),
    ]
    for future, _topic in subscriptions:
        future.result(TIMEOUT)
    results: list[Any] = []
    try:
        token = uuid.uuid4().hex
        dev.publish_get_shadow(iotshadow.GetShadowRequest(thing_name=thing, client_token=token), QOS).result(TIMEOUT)
        err = s.next("get/rejected", token)
        results.append(("get", err.code, err.message.replace(thing, "<thing>")))

        token = uuid.uuid4().hex
        dev.publish_update_shadow(iotshadow.UpdateShadowRequest(
            thing_name=thing, state=iotshadow.ShadowState(reported=REPORTED), client_token=token), QOS).result(TIMEOUT)
        results.append(("report", s.next("dev/update/accepted", token).version))

        token = uuid.uuid4().hex
        app.publish_update_shadow(iotshadow.UpdateShadowRequest(
            thing_name=thing, state=iotshadow.ShadowState(desired=DESIRED), client_token=token), QOS).result(TIMEOUT)
        results.append(("desire", s.next("app/update/accepted", token).version))
        delta = s.next("delta")
        results.append(("delta", delta.version, delta.state))

        token = uuid.uuid4().hex
        dev.publish_update_shadow(iotshadow.UpdateShadowRequest(
            thing_name=thing, state=iotshadow.ShadowState(reported=delta.state), client_token=token),
            QOS).result(TIMEOUT)
        results.append(("report", s.next("dev/update/accepted", token).version))

        token = uuid.uuid4().hex
        dev.publish_get_shadow(iotshadow.GetShadowRequest(thing_name=thing, client_token=token), QOS).result(TIMEOUT)
        full = s.next("get/accepted", token)
        results.append(("get", full.version, full.state.desired, full.state.reported, full.state.delta))

        token = uuid.uuid4().hex
        app.publish_update_shadow(iotshadow.UpdateShadowRequest(
            thing_name=thing, state=iotshadow.ShadowState(desired={"power": None}), client_token=token),
            QOS).result(TIMEOUT)
        results.append(("desire", s.next("app/update/accepted", token).version))

        token = uuid.uuid4().hex
        dev.publish_delete_shadow(iotshadow.DeleteShadowRequest(thing_name=thing, client_token=token),
                                  QOS).result(TIMEOUT)
        results.append(("delete", s.next("delete/accepted", token).version))
    finally:
        dev_conn.disconnect().result(TIMEOUT)
        app_conn.disconnect().result(TIMEOUT)
    return results


def _flow_with_thingcore_sdk(tc: ThingcoreProcess, thing: str) -> list[Any]:
    results: list[Any] = []
    deltas = Inbox("deltas")
    with device(tc, protocol=4, client_id=thing) as dev, device(tc, protocol=4, client_id=f"app-{thing}") as app:
        shadow, remote = dev.shadow(), app.shadow(thing=thing)
        shadow.on_delta(deltas)
        with pytest.raises(ShadowNotFound) as err:
            shadow.get()
        results.append(("get", err.value.code, err.value.message.replace(thing, "<thing>")))
        results.append(("report", shadow.report(REPORTED)["version"]))
        results.append(("desire", remote.update(desired=DESIRED)["version"]))
        delta = deltas.get()
        results.append(("delta", delta.version, delta.state))
        results.append(("report", shadow.report(delta.state)["version"]))
        full = shadow.get()
        state = full["state"]
        results.append(("get", full["version"], state.get("desired"), state.get("reported"), state.get("delta")))
        results.append(("desire", remote.update(desired={"power": None})["version"]))
        results.append(("delete", shadow.delete()["version"]))
    return results


def test_aws_sdk_and_thingcore_sdk_produce_the_same_documents(server: ThingcoreProcess) -> None:
    aws_thing, our_thing = f"aws-{uuid.uuid4().hex[:8]}", f"ours-{uuid.uuid4().hex[:8]}"
    aws_wire, our_wire = Wire(server, aws_thing), Wire(server, our_thing)
    aws_results = _flow_with_aws_sdk(server, aws_thing)
    our_results = _flow_with_thingcore_sdk(server, our_thing)

    assert our_results == aws_results
    assert aws_results[0] == ("get", 404, "No shadow exists with name: '<thing>'")
    assert aws_results[3] == ("delta", 2, DESIRED)
    assert aws_results[5] == ("get", 3, DESIRED, {**REPORTED, **DESIRED}, None)

    aws_transcript, our_transcript = aws_wire.transcript(), our_wire.transcript()
    topics = [topic.rsplit("/shadow/", 1)[1] for topic, _ in aws_transcript]
    # requests and the service's answers: accepted, documents and (when out of sync) delta
    for expected in ("get", "get/rejected", "update", "update/accepted", "update/documents", "update/delta",
                     "get/accepted", "delete", "delete/accepted"):
        assert expected in topics, f"{expected} missing from {topics}"
    assert our_transcript == aws_transcript
