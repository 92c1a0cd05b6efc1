"""Access rules apply to shadows over REST as over MQTT: a caller needs ``publish`` on the request
topic it would use over MQTT, and SigV4-signed callers are judged by their access key's principal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.mqtt_helpers import PahoClient
from tests.server import ThingcoreProcess

boto3 = pytest.importorskip("boto3", reason="boto3 is not installed (pip install boto3)")
from botocore import UNSIGNED  # noqa: E402 - after the importorskip
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

pytestmark = pytest.mark.integration

BACKEND = ("AKIDBACKEND000000001", "backend-secret", "backend")
OTHER = ("AKIDOTHER00000000002", "other-secret", "other")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    config = {
        "http": {"verify_signatures": True, "access_keys": [
            {"access_key_id": k, "secret_access_key": s, "principal": p} for k, s, p in (BACKEND, OTHER)]},
        "auth": {"acl": [
            {"effect": "allow", "action": "all", "topic": "$aws/things/vault/#", "principal": BACKEND[2]},
            {"effect": "deny", "action": "all", "topic": "$aws/things/vault/#"},
        ]},
    }
    with ThingcoreProcess(tmp_path_factory.mktemp("shadow-access"), config) as tc:
        yield tc


def client(server: ThingcoreProcess, key: tuple[str, str, str] | None) -> Any:
    creds: dict[str, Any] = {"aws_access_key_id": key[0], "aws_secret_access_key": key[1]} if key else {}
    cfg = Config(retries={"max_attempts": 1}, **({} if key else {"signature_version": UNSIGNED}))
    return boto3.client("iot-data", endpoint_url=f"http://127.0.0.1:{server.http_port}", region_name="us-east-1",
                        config=cfg, **creds)


def test_the_allowed_principal_reads_and_writes(server: ThingcoreProcess) -> None:
    iot = client(server, BACKEND)
    iot.update_thing_shadow(thingName="vault", payload=b'{"state": {"desired": {"locked": true}}}')
    iot.update_thing_shadow(thingName="vault", shadowName="pin", payload=b'{"state": {"desired": {"len": 6}}}')
    doc = json.loads(iot.get_thing_shadow(thingName="vault")["payload"].read())
    assert doc["state"]["desired"] == {"locked": True}
    assert iot.list_named_shadows_for_thing(thingName="vault")["results"] == ["pin"]


def test_other_principals_are_forbidden_and_change_nothing(server: ThingcoreProcess) -> None:
    client(server, BACKEND).update_thing_shadow(thingName="vault", payload=b'{"state": {"reported": {"n": 1}}}')
    iot = client(server, OTHER)
    calls = [
        lambda: iot.get_thing_shadow(thingName="vault"),
        lambda: iot.update_thing_shadow(thingName="vault", payload=b'{"state": {"reported": {"n": 2}}}'),
        lambda: iot.delete_thing_shadow(thingName="vault", shadowName="pin"),
        lambda: iot.list_named_shadows_for_thing(thingName="vault"),
    ]
    for call in calls:
        with pytest.raises(iot.exceptions.ForbiddenException):
            call()
    doc = json.loads(client(server, BACKEND).get_thing_shadow(thingName="vault")["payload"].read())
    assert doc["state"]["reported"] == {"n": 1}
    iot.update_thing_shadow(thingName="open", payload=b'{"state": {}}'), "other things' shadows are open to it"


@pytest.mark.parametrize(("key", "error"), [((BACKEND[0], "not-the-secret", BACKEND[2]), "InvalidSignatureException"),
                                            (None, "ForbiddenException")], ids=["bad signature", "unsigned"])
def test_unproven_callers_are_refused(server: ThingcoreProcess, key: tuple[str, str, str] | None, error: str) -> None:
    iot = client(server, key)
    for call in (lambda: iot.get_thing_shadow(thingName="open"),
                 lambda: iot.update_thing_shadow(thingName="open", payload=b'{"state": {}}')):
        with pytest.raises(ClientError) as info:
            call()
        assert info.value.response["Error"]["Code"] == error
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_mqtt_requests_follow_the_same_rules(server: ThingcoreProcess) -> None:
    with PahoClient(server.mqtt_port) as c:
        c.connect()
        assert c.publish("$aws/things/vault/shadow/update", b'{"state": {"reported": {"n": 99}}}', 1) == 0x87
    doc = json.loads(client(server, BACKEND).get_thing_shadow(thingName="vault")["payload"].read())
    assert doc["state"]["reported"] != {"n": 99}
