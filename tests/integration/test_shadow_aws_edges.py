"""Shadow edges as AWS documents them, over MQTT (paho) and REST (boto3) against a real server.

Nested and array deltas on ``/update/delta`` and in GET, a whole section set to null (and no
delta message after it), the request shapes of AWS's own device SDKs (a trailing NUL, names in the
body), and the error messages of AWS's table on ``/rejected`` and in boto3's exceptions.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.mqtt_helpers import PahoClient
from tests.server import ThingcoreProcess

boto3 = pytest.importorskip("boto3", reason="boto3 is not installed (pip install boto3)")

pytestmark = pytest.mark.integration

OPS = ("accepted", "rejected", "delta", "documents")


@pytest.fixture(scope="module")
def iot(thingcore: ThingcoreProcess) -> Any:
    return boto3.client("iot-data", endpoint_url=f"http://127.0.0.1:{thingcore.http_port}", region_name="us-east-1",
                        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")


@pytest.fixture
def device(thingcore: ThingcoreProcess) -> Iterator[PahoClient]:
    c = PahoClient(thingcore.mqtt_port)
    c.connect()
    yield c
    c.close()


def thing() -> str:
    return f"edge-{uuid.uuid4().hex[:10]}"


def listen(client: PahoClient, prefix: str) -> None:
    client.subscribe([f"{prefix}/update/{op}" for op in OPS] + [f"{prefix}/get/accepted", f"{prefix}/get/rejected"],
                     1)


def request(client: PahoClient, topic: str, body: bytes, n: int) -> dict[str, dict[str, Any]]:
    """Publish a request and collect its ``n`` answers by topic suffix (accepted, delta, ...)."""
    client.publish(topic, body, 1)
    got = {m.topic.rsplit("/", 1)[1]: json.loads(m.payload) for m in client.expect_n(n)}
    assert len(got) == n, got
    return got


def doc(resp: dict[str, Any]) -> dict[str, Any]:
    return json.loads(resp["payload"].read())


# -- deltas ----------------------------------------------------------------------------------------------


def test_nested_delta_message_and_get_hold_only_the_differing_leaves(device: PahoClient, iot: Any) -> None:
    name = thing()
    prefix = f"$aws/things/{name}/shadow"
    listen(device, prefix)
    first = request(device, f"{prefix}/update",
                    b'{"state":{"desired":{"lights":{"color":{"r":255,"g":255,"b":255}},"zones":[1,2]}}}', 3)
    desired_at = first["accepted"]["timestamp"]
    got = request(device, f"{prefix}/update",
                  b'{"state":{"reported":{"lights":{"color":{"r":255,"g":0,"b":255}},"zones":[1,3]}},'
                  b'"clientToken":"dev"}', 3)
    delta = got["delta"]
    assert delta["state"] == {"lights": {"color": {"g": 255}}, "zones": [1, 2]}, "leaves with their path; arrays whole"
    assert delta["metadata"] == {"lights": {"color": {"g": {"timestamp": desired_at}}},
                                 "zones": [{"timestamp": desired_at}] * 2}
    assert (delta["version"], delta["clientToken"]) == (2, "dev")
    full = doc(iot.get_thing_shadow(thingName=name))
    assert full["state"]["delta"] == {"lights": {"color": {"g": 255}}, "zones": [1, 2]}
    assert "delta" not in full["metadata"]
    device.no_more()


def test_desired_null_removes_the_section_and_no_delta_follows(device: PahoClient, iot: Any) -> None:
    name = thing()
    prefix = f"$aws/things/{name}/shadow"
    listen(device, prefix)
    request(device, f"{prefix}/update", b'{"state":{"desired":{"a":1,"b":{"c":2}},"reported":{"a":0}}}', 3)
    got = request(device, f"{prefix}/update", b'{"state":{"desired":null},"clientToken":"n"}', 2)
    assert set(got) == {"accepted", "documents"}
    assert got["accepted"]["state"] == {"desired": None} and got["accepted"]["version"] == 2
    assert got["documents"]["previous"]["state"]["desired"] == {"a": 1, "b": {"c": 2}}
    previous = got["documents"]["previous"]
    assert got["documents"]["current"] == {"state": {"reported": {"a": 0}},
                                           "metadata": {"reported": previous["metadata"]["reported"]}, "version": 2}
    # the next update that leaves something out of sync brings the next delta message: none came in between
    got = request(device, f"{prefix}/update", b'{"state":{"desired":{"a":5}}}', 3)
    assert got["delta"]["state"] == {"a": 5} and got["delta"]["version"] == 3
    device.no_more()
    full = doc(iot.get_thing_shadow(thingName=name))
    assert full["state"] == {"desired": {"a": 5}, "reported": {"a": 0}, "delta": {"a": 5}}
    assert set(full["metadata"]) == {"desired", "reported"} and set(full["metadata"]["desired"]) == {"a"}


def test_reported_null_over_rest_leaves_all_of_desired_as_the_delta(device: PahoClient, iot: Any) -> None:
    name = thing()
    prefix = f"$aws/things/{name}/shadow"
    listen(device, prefix)
    iot.update_thing_shadow(thingName=name, payload=b'{"state":{"desired":{"x":1},"reported":{"x":1}}}')
    got = {m.topic.rsplit("/", 1)[1] for m in device.expect_n(2)}
    assert got == {"accepted", "documents"}, "in sync: no delta"
    accepted = doc(iot.update_thing_shadow(thingName=name, payload=b'{"state":{"reported":null}}'))
    assert accepted["state"] == {"reported": None} and accepted["version"] == 2
    got = {m.topic.rsplit("/", 1)[1]: json.loads(m.payload) for m in device.expect_n(3)}
    assert got["delta"]["state"] == {"x": 1}
    assert doc(iot.get_thing_shadow(thingName=name))["state"] == {"desired": {"x": 1}, "delta": {"x": 1}}
    device.no_more()


# -- what AWS's device SDKs send -------------------------------------------------------------------------


def test_names_in_the_body_are_accepted_and_the_topic_decides(device: PahoClient, iot: Any) -> None:
    """The JavaScript v2 SDK's classic and named shadow clients put thingName/shadowName in the body."""
    name, other = thing(), thing()
    prefix = f"$aws/things/{name}/shadow/name/cfg"
    listen(device, prefix)
    body = {"thingName": name, "shadowName": "cfg", "state": {"reported": {"on": True}}, "clientToken": "js"}
    got = request(device, f"{prefix}/update", json.dumps(body).encode(), 2)
    assert got["accepted"]["state"] == {"reported": {"on": True}} and got["accepted"]["clientToken"] == "js"
    assert "thingName" not in got["accepted"]
    # names that disagree with the topic change nothing: the topic names the shadow, as on AWS
    body = {"thingName": other, "shadowName": "elsewhere", "state": {"reported": {"on": False}}}
    got = request(device, f"{prefix}/update", json.dumps(body).encode(), 2)
    assert got["accepted"]["version"] == 2
    assert doc(iot.get_thing_shadow(thingName=name, shadowName="cfg"))["state"]["reported"] == {"on": False}
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.get_thing_shadow(thingName=other, shadowName="elsewhere")
    rest = doc(iot.update_thing_shadow(thingName=name, payload=json.dumps(
        {"thingName": name, "state": {"desired": {"on": True}}}).encode()))
    assert rest["version"] == 1 and rest["state"] == {"desired": {"on": True}}
    device.no_more()


def test_a_trailing_nul_is_accepted_over_mqtt_and_rest(device: PahoClient, iot: Any) -> None:
    """The Embedded C SDK's shadow demo publishes its JSON C string with the terminating NUL."""
    name = thing()
    prefix = f"$aws/things/{name}/shadow"
    listen(device, prefix)
    got = request(device, f"{prefix}/update", b'{"state":{"reported":{"powerOn":0}},"clientToken":"021909"}\x00', 2)
    assert got["accepted"]["state"] == {"reported": {"powerOn": 0}} and got["accepted"]["clientToken"] == "021909"
    got = request(device, f"{prefix}/get", b'{"clientToken":"g"}\x00\r\n', 1)
    assert got["accepted"]["clientToken"] == "g" and got["accepted"]["version"] == 1
    assert doc(iot.update_thing_shadow(thingName=name, payload=b'{"state":{"desired":{"powerOn":1}}}\x00\n'))[
        "version"] == 2
    device.expect_n(3)
    got = request(device, f"{prefix}/update", b'{"state":{"reported":{"powerOn":1}}}\x00garbage', 1)
    assert got["rejected"]["code"] == 400 and got["rejected"]["message"] == "Invalid JSON"
    with pytest.raises(iot.exceptions.InvalidRequestException) as info:
        iot.update_thing_shadow(thingName=name, payload=b'{"state":{}}\x00{"state":{}}')
    assert info.value.response["Error"]["Message"] == "Invalid JSON"
    assert doc(iot.get_thing_shadow(thingName=name))["version"] == 2, "refused requests changed nothing"
    device.no_more()


# -- error messages of AWS's table, on /rejected and over REST -------------------------------------------

BAD = [
    (b"this is not json", 400, "Invalid JSON"),
    (b"[1, 2]", 400, "Invalid JSON"),
    (b'{"desired": {"x": 1}}', 400, "Missing required node: state"),
    (b'{"clientToken": "c"}', 400, "Missing required node: state"),
    (b'{"state": 5}', 400, "State node must be an object"),
    (b'{"state": {"desired": [1]}}', 400, "Desired node must be an object"),
    (b'{"state": {"reported": "on"}}', 400, "Reported node must be an object"),
    (b'{"state": {"wanted": {}}}', 400, "State contains an invalid node: 'wanted'"),
    (b'{"state": {}, "version": "2"}', 400, "Invalid version"),
    (b'{"state": {}, "clientToken": "' + b"x" * 65 + b'"}', 400, "Invalid clientToken"),
    (b'{"state": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": {}}}}}}}}}', 400,
     "JSON contains too many levels of nesting; maximum is 6"),
    (b'{"state": {"desired": {"a": "\xff"}}}', 415, "Unsupported documented encoding; supported encoding is UTF-8"),
    (json.dumps({"state": {"reported": {"big": "x" * 9000}}}).encode(), 413,
     "The payload exceeds the maximum size allowed"),
]
REST_TYPES = {400: "InvalidRequestException", 413: "RequestEntityTooLargeException",
              415: "UnsupportedDocumentEncodingException"}


@pytest.mark.parametrize(("body", "code", "message"), BAD, ids=[f"{i}-{m[:24]}" for i, (_, _, m) in enumerate(BAD)])
def test_error_messages_on_rejected_and_over_rest(device: PahoClient, iot: Any, body: bytes, code: int,
                                                  message: str) -> None:
    name = thing()
    prefix = f"$aws/things/{name}/shadow"
    listen(device, prefix)
    got = request(device, f"{prefix}/update", body, 1)
    assert set(got) == {"rejected"}
    assert (got["rejected"]["code"], got["rejected"]["message"]) == (code, message)
    with pytest.raises(getattr(iot.exceptions, REST_TYPES[code])) as info:
        iot.update_thing_shadow(thingName=name, payload=body)
    assert info.value.response["Error"]["Message"] == message
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == code
    device.no_more()


def test_conflict_and_not_found_messages(device: PahoClient, iot: Any) -> None:
    name = thing()
    prefix = f"$aws/things/{name}/shadow"
    listen(device, prefix)
    got = request(device, f"{prefix}/get", b"", 1)
    assert (got["rejected"]["code"], got["rejected"]["message"]) == (404, f"No shadow exists with name: '{name}'")
    request(device, f"{prefix}/update", b'{"state":{"desired":{"a":1}}}', 3)
    got = request(device, f"{prefix}/update", b'{"state":{"desired":{"a":2}},"version":7,"clientToken":"v"}', 1)
    assert got["rejected"] == {"code": 409, "message": "Version conflict", "timestamp": got["rejected"]["timestamp"],
                               "clientToken": "v"}
    with pytest.raises(iot.exceptions.ConflictException) as info:
        iot.update_thing_shadow(thingName=name, payload=b'{"state":{"desired":{"a":2}},"version":7}')
    assert info.value.response["Error"]["Message"] == "Version conflict"
    device.no_more()
