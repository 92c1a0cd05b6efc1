"""The shadow REST API with boto3's ``iot-data`` client, the AWS CLI, ``thingcore shadow`` and mosquitto.

boto3 runs unchanged with ``endpoint_url``: successes parse, and errors surface as its typed
exceptions (ResourceNotFoundException, ConflictException, InvalidRequestException, ...).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tests.conftest import require_tool
from tests.integration.mqtt_helpers import PahoClient
from tests.server import ThingcoreProcess
from typer.testing import CliRunner

from thingcore.cli import app

boto3 = pytest.importorskip("boto3", reason="boto3 is not installed (pip install boto3)")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def iot(thingcore: ThingcoreProcess) -> Any:
    return boto3.client("iot-data", endpoint_url=f"http://127.0.0.1:{thingcore.http_port}", region_name="us-east-1",
                        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")


@pytest.fixture
def mqtt(thingcore: ThingcoreProcess) -> Iterator[PahoClient]:
    c = PahoClient(thingcore.mqtt_port)
    c.connect()
    yield c
    c.client.disconnect()
    c.client.loop_stop()


def thing() -> str:
    return f"http-{uuid.uuid4().hex[:10]}"


def payload(resp: dict[str, Any]) -> dict[str, Any]:
    return json.loads(resp["payload"].read())


# -- boto3 -------------------------------------------------------------------------------------------


def test_get_update_get_delete(iot: Any) -> None:
    name = thing()
    with pytest.raises(iot.exceptions.ResourceNotFoundException) as info:
        iot.get_thing_shadow(thingName=name)
    assert info.value.response["Error"]["Message"] == f"No shadow exists with name: '{name}'"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    accepted = payload(iot.update_thing_shadow(thingName=name, payload=b'{"state": {"desired": {"led": "on"}}}'))
    assert accepted["state"] == {"desired": {"led": "on"}} and accepted["version"] == 1
    assert set(accepted["metadata"]["desired"]) == {"led"} and isinstance(accepted["timestamp"], int)

    doc = payload(iot.get_thing_shadow(thingName=name))
    assert doc["state"] == {"desired": {"led": "on"}, "delta": {"led": "on"}} and doc["version"] == 1

    payload(iot.update_thing_shadow(thingName=name, payload=json.dumps({"state": {"reported": {"led": "on"}}})))
    doc = payload(iot.get_thing_shadow(thingName=name))
    assert doc["state"] == {"desired": {"led": "on"}, "reported": {"led": "on"}} and doc["version"] == 2

    assert payload(iot.delete_thing_shadow(thingName=name))["version"] == 2
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.get_thing_shadow(thingName=name)
    again = payload(iot.update_thing_shadow(thingName=name, payload=b'{"state": {"reported": {"led": "off"}}}'))
    assert again["version"] == 3, "re-creation continues the deleted shadow's numbering"


def test_version_conflict_is_a_conflict_exception(iot: Any) -> None:
    name = thing()
    iot.update_thing_shadow(thingName=name, payload=b'{"state": {"desired": {"a": 1}}}')
    iot.update_thing_shadow(thingName=name, payload=b'{"state": {"desired": {"a": 2}}, "version": 1}')
    with pytest.raises(iot.exceptions.ConflictException) as info:
        iot.update_thing_shadow(thingName=name, payload=b'{"state": {"desired": {"a": 3}}, "version": 1}')
    assert info.value.response["Error"]["Message"] == "Version conflict"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert payload(iot.get_thing_shadow(thingName=name))["state"]["desired"] == {"a": 2}, "nothing was written"


@pytest.mark.parametrize(("body", "error", "message"), [
    (b"{not json", "InvalidRequestException", "Invalid JSON"),
    (b'{"state": "on"}', "InvalidRequestException", "State node must be an object"),
    (b'{"state": {"wanted": {}}}', "InvalidRequestException", "State contains an invalid node: 'wanted'"),
    (b'{"clientToken": "x"}', "InvalidRequestException", "Missing required node: state"),
    (b'{"state": {"reported": {"a": "\xff"}}}', "UnsupportedDocumentEncodingException",
     "Unsupported documented encoding; supported encoding is UTF-8"),
    (json.dumps({"state": {"reported": {"big": "x" * 9000}}}).encode(), "RequestEntityTooLargeException",
     "The payload exceeds the maximum size allowed"),
])
def test_bad_updates_raise_typed_exceptions(iot: Any, body: bytes, error: str, message: str) -> None:
    name = thing()
    with pytest.raises(getattr(iot.exceptions, error)) as info:
        iot.update_thing_shadow(thingName=name, payload=body)
    assert info.value.response["Error"]["Message"] == message
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.get_thing_shadow(thingName=name)


def test_bad_names_are_invalid_requests(iot: Any) -> None:
    with pytest.raises(iot.exceptions.InvalidRequestException):
        iot.get_thing_shadow(thingName="no.dots")
    with pytest.raises(iot.exceptions.InvalidRequestException):
        iot.update_thing_shadow(thingName=thing(), shadowName="a b", payload=b'{"state": {}}')


def test_named_shadows_and_paged_listing(iot: Any) -> None:
    name = thing()
    iot.update_thing_shadow(thingName=name, payload=b'{"state": {"desired": {"name": "default"}}}')
    for shadow in ("s3", "s1", "s2", "s4", "s5"):
        iot.update_thing_shadow(thingName=name, shadowName=shadow,
                                payload=json.dumps({"state": {"reported": {"name": shadow}}}))
    assert payload(iot.get_thing_shadow(thingName=name, shadowName="s2"))["state"]["reported"] == {"name": "s2"}
    assert iot.list_named_shadows_for_thing(thingName=name)["results"] == ["s1", "s2", "s3", "s4", "s5"]
    first = iot.list_named_shadows_for_thing(thingName=name, pageSize=2)
    second = iot.list_named_shadows_for_thing(thingName=name, pageSize=2, nextToken=first["nextToken"])
    third = iot.list_named_shadows_for_thing(thingName=name, pageSize=2, nextToken=second["nextToken"])
    assert (first["results"], second["results"], third["results"]) == (["s1", "s2"], ["s3", "s4"], ["s5"])
    assert "nextToken" not in third
    iot.delete_thing_shadow(thingName=name, shadowName="s2")
    with pytest.raises(iot.exceptions.ResourceNotFoundException) as info:
        iot.get_thing_shadow(thingName=name, shadowName="s2")
    assert info.value.response["Error"]["Message"] == "No shadow exists with name: 's2'"
    assert "s2" not in iot.list_named_shadows_for_thing(thingName=name)["results"]
    assert payload(iot.get_thing_shadow(thingName=name))["state"]["desired"] == {"name": "default"}
    assert iot.list_named_shadows_for_thing(thingName=thing())["results"] == [], "an unknown thing lists nothing"


def test_rest_updates_reach_mqtt_subscribers_and_errors_do_not(iot: Any, mqtt: PahoClient) -> None:
    name = thing()
    prefix = f"$aws/things/{name}/shadow"
    mqtt.subscribe([f"{prefix}/update/accepted", f"{prefix}/update/delta", f"{prefix}/update/documents",
                    f"{prefix}/update/rejected"], 1)
    body = payload(iot.update_thing_shadow(thingName=name, payload=b'{"state":{"desired":{"x":1}},"clientToken":"r"}'))
    got = {m.topic: json.loads(m.payload) for m in mqtt.expect_n(3)}
    assert got[f"{prefix}/update/accepted"] == body
    assert got[f"{prefix}/update/delta"]["state"] == {"x": 1} and got[f"{prefix}/update/delta"]["clientToken"] == "r"
    assert got[f"{prefix}/update/documents"]["current"]["state"] == {"desired": {"x": 1}}
    with pytest.raises(iot.exceptions.InvalidRequestException):
        iot.update_thing_shadow(thingName=name, payload=b'{"state": 5}')
    mqtt.no_more()


# -- other clients: the AWS CLI, thingcore's CLI, mosquitto ------------------------------------------


def test_aws_cli(thingcore: ThingcoreProcess, tmp_path: Any) -> None:
    aws = require_tool("aws")
    name, out = thing(), tmp_path / "out.json"
    env = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_DEFAULT_REGION": "us-east-1",
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    common = ["--endpoint-url", f"http://127.0.0.1:{thingcore.http_port}"]
    subprocess.run([aws, "iot-data", "update-thing-shadow", "--thing-name", name, "--payload",
                    '{"state":{"reported":{"temp":21}}}', *common, str(out)], check=True, env=env, timeout=60,
                   capture_output=True)
    assert json.loads(out.read_text())["version"] == 1
    missing = subprocess.run([aws, "iot-data", "get-thing-shadow", "--thing-name", thing(), *common, str(out)],
                             env=env, timeout=60, capture_output=True, text=True)
    assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr


def cli(thingcore: ThingcoreProcess, *args: str) -> Any:
    return CliRunner().invoke(app, ["shadow", *args, "--endpoint", f"http://127.0.0.1:{thingcore.http_port}"])


def test_thingcore_shadow_cli(thingcore: ThingcoreProcess) -> None:
    name = thing()
    res = cli(thingcore, "update", name, "--desired", '{"on": true}', "--client-token", "cli")
    assert res.exit_code == 0, res.output
    accepted = json.loads(res.stdout)
    assert accepted["state"] == {"desired": {"on": True}} and accepted["clientToken"] == "cli"
    res = cli(thingcore, "update", name, '{"state": {"reported": {"on": false}}}', "--name", "cfg")
    assert res.exit_code == 0 and json.loads(res.stdout)["version"] == 1
    res = cli(thingcore, "get", name)
    assert json.loads(res.stdout)["state"]["delta"] == {"on": True}
    assert json.loads(cli(thingcore, "list", name).stdout)["results"] == ["cfg"]
    assert json.loads(cli(thingcore, "list", name, "--all", "--page-size", "1").stdout)["results"] == ["cfg"]
    assert json.loads(cli(thingcore, "delete", name, "--name", "cfg").stdout)["version"] == 1

    missing = cli(thingcore, "get", name, "--name", "cfg")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "error: ResourceNotFoundException: No shadow exists with name: 'cfg'"
    conflict = cli(thingcore, "update", name, "--desired", '{"on": false}', "--version", "7")
    assert conflict.exit_code == 1 and "ConflictException: Version conflict" in conflict.stderr
    bad = cli(thingcore, "update", name, "--desired", "{nope")
    assert bad.exit_code == 2 and "--desired is not valid JSON" in bad.stderr
    assert cli(thingcore, "update", name).exit_code == 2


def test_cli_reports_an_unreachable_server_in_one_line() -> None:
    res = CliRunner().invoke(app, ["shadow", "get", "lamp", "--endpoint", "http://127.0.0.1:9"])
    assert res.exit_code == 1
    assert res.stderr.startswith("error: cannot reach thingcore at http://127.0.0.1:9")
    assert "Traceback" not in res.output
    assert res.stderr.count("\n") == 1


def test_cli_is_a_thingcore_subcommand() -> None:
    out = subprocess.run([sys.executable, "-m", "thingcore", "shadow", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "update" in out.stdout and "list" in out.stdout


def test_mosquitto_example_from_the_docs(thingcore: ThingcoreProcess, mqtt: PahoClient) -> None:
    sub, pub = require_tool("mosquitto_sub"), require_tool("mosquitto_pub")
    name, client_id = thing(), f"mosq-{uuid.uuid4().hex[:8]}"
    port = str(thingcore.mqtt_port)
    mqtt.subscribe(f"$aws/events/subscriptions/subscribed/{client_id}", 1)  # tells when mosquitto_sub is ready
    listener = subprocess.Popen([sub, "-p", port, "-i", client_id, "-t", f"$aws/things/{name}/shadow/update/delta",
                                 "-C", "1", "-W", "30", "-q", "1"], stdout=subprocess.PIPE, text=True)
    try:
        mqtt.expect()
        subprocess.run([pub, "-p", port, "-q", "1", "-t", f"$aws/things/{name}/shadow/update",
                        "-m", '{"state":{"desired":{"color":"red"}}}'], check=True, timeout=20)
        out, _ = listener.communicate(timeout=30)
    finally:
        listener.kill()
    assert json.loads(out)["state"] == {"color": "red"}
