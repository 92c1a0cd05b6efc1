"""The thing registry through boto3's `iot` client, the AWS CLI and plain HTTP against a real server."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from collections.abc import Iterator

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from tests.conftest import require_tool
from tests.integration.mqtt_helpers import uid
from tests.server import ThingcoreProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    config = {"registry": {"thing_type_delete_delay": 0}, "aws": {"region": "eu-west-1", "account_id": "111122223333"}}
    with ThingcoreProcess(tmp_path_factory.mktemp("registry"), config) as tc:
        yield tc


def iot_client(tc: ThingcoreProcess):
    return boto3.client("iot", endpoint_url=f"http://127.0.0.1:{tc.http_port}", region_name="eu-west-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def iot(server):
    return iot_client(server)


def name(prefix: str = "thing") -> str:
    return uid(prefix).replace(".", "_")


def test_create_describe_update_delete(iot) -> None:
    n = name()
    created = iot.create_thing(thingName=n, attributePayload={"attributes": {"room": "kitchen", "floor": "1"}})
    assert created["thingArn"] == f"arn:aws:iot:eu-west-1:111122223333:thing/{n}"
    thing = iot.describe_thing(thingName=n)
    assert thing["thingName"] == n and thing["defaultClientId"] == n
    assert thing["thingId"] == created["thingId"]
    assert thing["attributes"] == {"room": "kitchen", "floor": "1"}
    assert thing["version"] == 1

    iot.update_thing(thingName=n, attributePayload={"attributes": {"floor": "2", "room": ""}, "merge": True})
    thing = iot.describe_thing(thingName=n)
    assert thing["attributes"] == {"floor": "2"}
    assert thing["version"] == 2
    iot.update_thing(thingName=n, attributePayload={"attributes": {"color": "red"}})  # no merge: overwrite
    assert iot.describe_thing(thingName=n)["attributes"] == {"color": "red"}

    with pytest.raises(iot.exceptions.VersionConflictException):
        iot.update_thing(thingName=n, attributePayload={"attributes": {}}, expectedVersion=1)
    with pytest.raises(iot.exceptions.VersionConflictException):
        iot.delete_thing(thingName=n, expectedVersion=2)
    iot.delete_thing(thingName=n, expectedVersion=3)
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_thing(thingName=n)
    iot.delete_thing(thingName=n)  # deleting again succeeds, as on AWS


def test_repeated_create_is_idempotent_and_a_different_one_is_refused(iot) -> None:
    n = name()
    first = iot.create_thing(thingName=n, attributePayload={"attributes": {"a": "1"}})
    again = iot.create_thing(thingName=n, attributePayload={"attributes": {"a": "1"}})
    assert again["thingId"] == first["thingId"]
    with pytest.raises(iot.exceptions.ResourceAlreadyExistsException) as exc:
        iot.create_thing(thingName=n, attributePayload={"attributes": {"a": "2"}})
    assert exc.value.response["resourceId"] == first["thingId"]
    assert iot.describe_thing(thingName=n)["attributes"] == {"a": "1"}


def test_invalid_requests_raise_typed_errors_and_store_nothing(iot) -> None:
    n = name()
    with pytest.raises(iot.exceptions.InvalidRequestException):
        iot.create_thing(thingName="has space")
    with pytest.raises(iot.exceptions.InvalidRequestException):
        iot.create_thing(thingName=n, attributePayload={"attributes": {f"k{i}": "v" for i in range(4)}})
    with pytest.raises(iot.exceptions.InvalidRequestException):
        iot.create_thing(thingName=n, attributePayload={"attributes": {"k": "no spaces allowed"}})
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.create_thing(thingName=n, thingTypeName="no-such-type")
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_thing(thingName=n)
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.update_thing(thingName=n, attributePayload={"attributes": {"a": "1"}})
    with pytest.raises(iot.exceptions.InvalidRequestException):
        iot.list_things(nextToken="garbage!")
    with pytest.raises(iot.exceptions.InvalidRequestException):
        iot.list_things(maxResults=251)


def test_list_filtered_by_attribute_and_type_and_paged(iot) -> None:
    batch = name("batch")
    tt = name("type")
    iot.create_thing_type(thingTypeName=tt)
    expected = []
    for i in range(12):
        n = f"{batch}-{i:02d}"
        attrs = {"batch": batch, "parity": "odd" if i % 2 else "even"}
        typed = {"thingTypeName": tt} if i < 4 else {}
        iot.create_thing(thingName=n, attributePayload={"attributes": attrs}, **typed)
        if i % 2:
            expected.append(n)
    pages = []
    kwargs = {"attributeName": "batch", "attributeValue": batch, "maxResults": 5}
    while True:
        page = iot.list_things(**kwargs)
        pages.append([t["thingName"] for t in page["things"]])
        if "nextToken" not in page:
            break
        kwargs["nextToken"] = page["nextToken"]
    assert [len(p) for p in pages] == [5, 5, 2]
    assert [n for p in pages for n in p] == [f"{batch}-{i:02d}" for i in range(12)]

    paginator = iot.get_paginator("list_things")
    odd = [t["thingName"] for page in paginator.paginate(attributeName="parity", attributeValue="odd",
                                                         PaginationConfig={"PageSize": 2})
           for t in page["things"] if t["thingName"].startswith(batch)]
    assert odd == expected

    typed = iot.list_things(thingTypeName=tt)["things"]
    assert [t["thingName"] for t in typed] == [f"{batch}-{i:02d}" for i in range(4)]
    assert all(t["thingTypeName"] == tt and t["version"] == 1 for t in typed)
    prefix = iot.list_things(attributeName="batch", attributeValue=batch[:-3], usePrefixAttributeValue=True)
    assert len([t for t in prefix["things"] if t["thingName"].startswith(batch)]) == 12


def test_thing_types_lifecycle(iot) -> None:
    tt = name("type")
    created = iot.create_thing_type(thingTypeName=tt, thingTypeProperties={
        "thingTypeDescription": "a light bulb", "searchableAttributes": ["wattage", "model"]})
    assert created["thingTypeArn"] == f"arn:aws:iot:eu-west-1:111122223333:thingtype/{tt}"
    desc = iot.describe_thing_type(thingTypeName=tt)
    assert desc["thingTypeProperties"] == {"thingTypeDescription": "a light bulb",
                                           "searchableAttributes": ["wattage", "model"]}
    assert desc["thingTypeMetadata"]["deprecated"] is False
    assert isinstance(desc["thingTypeMetadata"]["creationDate"], datetime.datetime)
    listed = iot.list_thing_types(thingTypeName=tt)["thingTypes"]
    assert [t["thingTypeName"] for t in listed] == [tt]

    n = name()
    iot.create_thing(thingName=n, thingTypeName=tt, attributePayload={"attributes": {f"k{i}": "v" for i in range(10)}})
    with pytest.raises(iot.exceptions.InvalidRequestException):
        iot.delete_thing_type(thingTypeName=tt)  # not deprecated
    iot.deprecate_thing_type(thingTypeName=tt)
    assert iot.describe_thing_type(thingTypeName=tt)["thingTypeMetadata"]["deprecated"] is True
    with pytest.raises(iot.exceptions.InvalidRequestException):
        iot.create_thing(thingName=name(), thingTypeName=tt)
    with pytest.raises(iot.exceptions.InvalidRequestException):
        iot.delete_thing_type(thingTypeName=tt)  # still used by a thing
    with pytest.raises(iot.exceptions.InvalidRequestException):
        iot.update_thing(thingName=n, removeThingType=True)  # 10 attributes are too many without a type
    iot.update_thing(thingName=n, removeThingType=True, attributePayload={"attributes": {"k0": "v"}})
    assert "thingTypeName" not in iot.describe_thing(thingName=n)
    iot.delete_thing_type(thingTypeName=tt)
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_thing_type(thingTypeName=tt)
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.deprecate_thing_type(thingTypeName=tt, undoDeprecate=True)


def test_undo_deprecation_allows_new_things_again(iot) -> None:
    tt = name("type")
    iot.create_thing_type(thingTypeName=tt)
    iot.deprecate_thing_type(thingTypeName=tt)
    iot.deprecate_thing_type(thingTypeName=tt, undoDeprecate=True)
    assert iot.describe_thing_type(thingTypeName=tt)["thingTypeMetadata"]["deprecated"] is False
    n = name()
    iot.create_thing(thingName=n, thingTypeName=tt)
    assert iot.describe_thing(thingName=n)["thingTypeName"] == tt


def test_type_delete_waits_for_the_deprecation_delay(thingcore) -> None:
    """The default server keeps AWS's five minutes: a fresh deprecation does not allow deletion."""
    iot = iot_client(thingcore)
    tt = name("type")
    iot.create_thing_type(thingTypeName=tt)
    iot.deprecate_thing_type(thingTypeName=tt)
    with pytest.raises(iot.exceptions.InvalidRequestException) as exc:
        iot.delete_thing_type(thingTypeName=tt)
    assert "300 s after deprecation" in exc.value.response["Error"]["Message"]
    assert iot.describe_thing_type(thingTypeName=tt)["thingTypeName"] == tt


def test_aws_cli_creates_and_lists_things(server) -> None:
    aws = require_tool("aws")
    n = name("cli")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "eu-west-1", "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    endpoint = f"http://127.0.0.1:{server.http_port}"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([aws, "iot", *args, "--endpoint-url", endpoint, "--output", "json"],
                              capture_output=True, text=True, env=env, timeout=60)

    done = run("create-thing", "--thing-name", n, "--attribute-payload", '{"attributes": {"site": "cli"}}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["thingName"] == n
    listed = run("list-things", "--attribute-name", "site", "--attribute-value", "cli")
    assert listed.returncode == 0, listed.stderr
    assert n in [t["thingName"] for t in json.loads(listed.stdout)["things"]]
    missing = run("describe-thing", "--thing-name", name("absent"))
    assert missing.returncode != 0
    assert "ResourceNotFoundException" in missing.stderr


def test_bad_http_bodies_get_aws_errors_and_the_server_keeps_serving(server) -> None:
    base = f"http://127.0.0.1:{server.http_port}"
    n = name()
    for body in (b"{not json", b'{"attributePayload": {"attributes": {"a": 1}}}', b'{"attributePayload": []}'):
        resp = httpx.post(f"{base}/things/{n}", content=body, headers={"content-type": "application/json"})
        assert resp.status_code == 400, resp.text
        assert resp.headers["x-amzn-ErrorType"] == "InvalidRequestException"
        assert resp.json()["message"]
    assert httpx.get(f"{base}/things/{n}").status_code == 404
    ok = httpx.post(f"{base}/things/{n}")  # curl-style, no body at all
    assert ok.status_code == 200 and ok.json()["thingName"] == n
    # `curl -d '{...}'` labels JSON as a form; the body is still read as JSON
    m = name()
    form = httpx.post(f"{base}/things/{m}", content=b'{"attributePayload": {"attributes": {"via": "curl"}}}',
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 200, form.text
    assert httpx.get(f"{base}/things/{m}").json()["attributes"] == {"via": "curl"}
    huge = httpx.post(f"{base}/things/{name()}", content=b'{"thingTypeName": "' + b"x" * 300_000 + b'"}')
    assert huge.status_code == 413 and huge.headers["x-amzn-ErrorType"] == "RequestEntityTooLargeException"

    def chunks():  # no Content-Length: the limit applies while reading
        for _ in range(40):
            yield b" " * 10_000

    streamed = httpx.post(f"{base}/things/{name()}", content=chunks())
    assert streamed.status_code == 413
    assert httpx.get(f"{base}/things/{n}").json()["thingName"] == n


def test_registry_survives_kill_9(thingcore_factory) -> None:
    tc = thingcore_factory()
    iot = iot_client(tc)
    iot.create_thing_type(thingTypeName="durable-type")
    iot.create_thing(thingName="durable", thingTypeName="durable-type", attributePayload={"attributes": {"a": "1"}})
    iot.update_thing(thingName="durable", attributePayload={"attributes": {"b": "2"}, "merge": True})
    before = iot.describe_thing(thingName="durable")
    tc.kill()
    tc.start()
    iot = iot_client(tc)
    after = iot.describe_thing(thingName="durable")
    assert {k: after[k] for k in ("thingId", "attributes", "version", "thingTypeName")} == \
        {k: before[k] for k in ("thingId", "attributes", "version", "thingTypeName")}
    assert iot.describe_thing_type(thingTypeName="durable-type")["thingTypeName"] == "durable-type"


def test_signed_requests_are_verified_when_configured(thingcore_factory) -> None:
    tc = thingcore_factory({"http": {"verify_signatures": True, "access_keys": [
        {"access_key_id": "AKIDREGISTRY", "secret_access_key": "registry-secret"}]},
        # an access key manages only where an access rule allows it
        "auth": {"acl": [{"effect": "allow", "action": "manage", "principal": "AKIDREGISTRY", "topic": "#"}]}})
    endpoint = f"http://127.0.0.1:{tc.http_port}"
    good = boto3.client("iot", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKIDREGISTRY",
                        aws_secret_access_key="registry-secret", config=Config(retries={"max_attempts": 1}))
    good.create_thing(thingName="signed")
    bad = boto3.client("iot", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKIDREGISTRY",
                       aws_secret_access_key="wrong", config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as exc:
        bad.create_thing(thingName="forged")
    assert exc.value.response["Error"]["Code"] == "InvalidSignatureException"
    unsigned = httpx.delete(f"{endpoint}/things/signed")
    assert unsigned.status_code == 403 and unsigned.headers["x-amzn-ErrorType"] == "ForbiddenException"
    assert [t["thingName"] for t in good.list_things()["things"]] == ["signed"]
