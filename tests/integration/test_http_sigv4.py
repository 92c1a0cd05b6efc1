"""A server that verifies every AWS Signature V4 (``[http] verify_signatures = true``): boto3 with a
configured access key works, a wrong secret, an unknown key or no signature get AWS's 403 errors, the
key's principal meets the access rules, and the presigned WebSocket upgrade is checked the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from tests.integration.mqtt_helpers import PahoClient, props, uid
from tests.integration.wsclients import RawWS, WSPahoClient
from tests.server import ThingcoreProcess

from thingcore.mqtt.packets import Connack, Connect

pytestmark = pytest.mark.integration

FLEET = ("AKIDFLEET00000000001", "fleet/secret+key", "fleet")
OTHER = ("AKIDOTHER00000000002", "other-secret")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    config = {
        "http": {"verify_signatures": True, "access_keys": [
            {"access_key_id": FLEET[0], "secret_access_key": FLEET[1], "principal": FLEET[2]},
            {"access_key_id": OTHER[0], "secret_access_key": OTHER[1]},
        ]},
        "auth": {"acl": [
            {"effect": "deny", "action": "publish", "topic": "locked/#", "principal": OTHER[0]},
            {"effect": "deny", "action": "publish", "topic": "signed-only/#", "anonymous": True},
        ]},
    }
    with ThingcoreProcess(tmp_path_factory.mktemp("sigv4"), config) as tc:
        yield tc


def iot(server: ThingcoreProcess, key_id: str, secret: str) -> Any:
    return boto3.client("iot-data", endpoint_url=f"http://127.0.0.1:{server.http_port}", region_name="eu-west-1",
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))


@pytest.fixture
def sub(server: ThingcoreProcess) -> Iterator[PahoClient]:
    with PahoClient(server.mqtt_port) as c:
        c.connect()
        yield c


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    resp = exc.value.response
    return resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Code"]


def test_signed_with_a_configured_key_publishes_and_reads(server: ThingcoreProcess, sub: PahoClient) -> None:
    topic = f"signed-only/{uid()}"
    sub.subscribe(topic, 1)
    client = iot(server, FLEET[0], FLEET[1])
    client.publish(topic=topic, qos=1, retain=True, payload=b"signed")
    assert sub.expect().payload == b"signed"
    assert client.get_retained_message(topic=topic)["payload"] == b"signed"
    client.publish(topic=topic, retain=True)


def test_wrong_secret_is_an_invalid_signature(server: ThingcoreProcess, sub: PahoClient) -> None:
    topic = f"sig/{uid()}"
    sub.subscribe(topic, 0)
    with pytest.raises(ClientError) as err:
        iot(server, FLEET[0], "not the secret").publish(topic=topic, payload=b"forged")
    assert _error(err) == (403, "InvalidSignatureException")
    assert "does not match" in err.value.response["Error"]["Message"]
    sub.no_more()


def test_unknown_access_key_is_refused(server: ThingcoreProcess) -> None:
    with pytest.raises(ClientError) as err:
        iot(server, "AKIDUNKNOWN", "whatever").publish(topic="sig/x", payload=b"x")
    assert _error(err) == (403, "UnrecognizedClientException")


def test_unsigned_request_is_refused(server: ThingcoreProcess) -> None:
    r = httpx.post(f"http://127.0.0.1:{server.http_port}/topics/sig%2Fx", content=b"x")
    assert r.status_code == 403
    assert r.headers["x-amzn-errortype"] == "ForbiddenException"
    assert "Missing Authentication Token" in r.json()["message"]
    r = httpx.get(f"http://127.0.0.1:{server.http_port}/retainedMessage")
    assert (r.status_code, r.headers["x-amzn-errortype"]) == (403, "ForbiddenException")


def test_access_rules_see_the_access_key_principal(server: ThingcoreProcess, sub: PahoClient) -> None:
    topic = f"locked/{uid()}"
    sub.subscribe(topic, 0)
    with pytest.raises(ClientError) as err:
        iot(server, OTHER[0], OTHER[1]).publish(topic=topic, payload=b"denied")
    assert _error(err) == (403, "ForbiddenException")
    iot(server, FLEET[0], FLEET[1]).publish(topic=topic, payload=b"allowed")
    assert sub.expect().payload == b"allowed"
    sub.no_more()


def presigned_path(server: ThingcoreProcess, key_id: str, secret: str, expires: int = 300) -> str:
    req = AWSRequest("GET", f"http://127.0.0.1:{server.http_port}/mqtt")
    SigV4QueryAuth(Credentials(key_id, secret), "iotdevicegateway", "eu-west-1", expires=expires).add_auth(req)
    parts = urlsplit(req.url)
    return f"{parts.path}?{parts.query}"


@pytest.mark.parametrize(("signed", "error_type"), [(None, "ForbiddenException"),
                                                    ("bad", "InvalidSignatureException")])
def test_websocket_upgrade_without_a_valid_presigned_url_is_refused(
        server: ThingcoreProcess, signed: str | None, error_type: str) -> None:
    path = "/mqtt" if signed is None else presigned_path(server, FLEET[0], "wrong")
    with RawWS(server.http_port, path=path, subprotocols=["mqtt"]) as ws:
        assert ws.status == 403
        assert ws.headers["x-amzn-errortype"] == error_type


def test_presigned_websocket_is_authenticated_as_the_key_principal(server: ThingcoreProcess,
                                                                     sub: PahoClient) -> None:
    topic = f"signed-only/{uid()}"
    sub.subscribe(topic, 1)
    with PahoClient(server.mqtt_port) as anonymous:  # the rule that the signed client passes
        anonymous.connect()
        assert anonymous.publish(topic, b"anonymous", 1) == 0x87
    with WSPahoClient(server.http_port, path=presigned_path(server, FLEET[0], FLEET[1])) as ws:
        ws.connect()
        assert ws.publish(topic, b"from a signed WebSocket", 1, properties=props(ContentType="text/plain")) == 0
    got = sub.expect()
    assert (got.payload, got.prop("ContentType")) == (b"from a signed WebSocket", "text/plain")
    sub.no_more()


def test_presigned_websocket_for_a_denied_principal_is_still_denied(server: ThingcoreProcess) -> None:
    with RawWS(server.http_port, path=presigned_path(server, OTHER[0], OTHER[1]), subprotocols=["mqtt"]) as ws:
        assert ws.status == 101
        ws.send_packet(Connect(uid("other"), 5, "MQTT", True, 30, None, None, None, {}))
        assert ws.expect(Connack).reason_code == 0
    with WSPahoClient(server.http_port, path=presigned_path(server, OTHER[0], OTHER[1])) as ws:
        ws.connect()
        assert ws.publish(f"locked/{uid()}", b"x", 1) == 0x87
