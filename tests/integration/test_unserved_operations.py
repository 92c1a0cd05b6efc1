"""AWS operations thingcore does not serve answer 501 naming the operation (boto3, the AWS CLI, httpx);
served operations and real 404s are unchanged."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from tests.conftest import require_tool
from tests.server import ThingcoreProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    with ThingcoreProcess(tmp_path_factory.mktemp("unserved")) as tc:
        yield tc


def client(tc: ThingcoreProcess, service: str = "iot"):
    return boto3.client(service, endpoint_url=f"http://127.0.0.1:{tc.http_port}", region_name="eu-west-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 1}))


@pytest.mark.parametrize(("call", "operation"), [
    (lambda iot: iot.create_security_profile(securityProfileName="p"), "CreateSecurityProfile"),
    (lambda iot: iot.describe_endpoint(endpointType="iot:Data-ATS"), "DescribeEndpoint"),
    (lambda iot: iot.create_keys_and_certificate(setAsActive=True), "CreateKeysAndCertificate"),
    (lambda iot: iot.list_thing_principals(thingName="lamp"), "ListThingPrincipals"),
    (lambda iot: iot.update_thing_type(thingTypeName="t", thingTypeProperties={}), "UpdateThingType"),  # 405 path
])
def test_boto3_names_the_unserved_operation(server, call, operation) -> None:
    with pytest.raises(ClientError) as caught:
        call(client(server))
    err = caught.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 501
    assert err["Error"]["Code"] == "NotImplementedException"
    assert err["Error"]["Message"] == f"The operation {operation} is not implemented by thingcore"
    assert f"The operation {operation} is not implemented" in server.log()


def test_signing_name_picks_the_api(server) -> None:
    """GET /things/{thingName}/jobs is ListJobExecutionsForThing in iot, GetPendingJobExecutions in iot-jobs-data."""
    with pytest.raises(ClientError) as caught:
        client(server, "iot-jobs-data").get_pending_job_executions(thingName="lamp")
    assert caught.value.response["Error"]["Message"] == \
        "The operation GetPendingJobExecutions is not implemented by thingcore"
    with pytest.raises(ClientError) as caught:
        client(server).list_job_executions_for_thing(thingName="lamp")
    assert caught.value.response["Error"]["Message"] == \
        "The operation ListJobExecutionsForThing is not implemented by thingcore"
    unsigned = httpx.get(f"http://127.0.0.1:{server.http_port}/things/lamp/jobs")
    assert unsigned.status_code == 501
    assert "ListJobExecutionsForThing (iot) or GetPendingJobExecutions (iot-jobs-data)" in unsigned.json()["message"]


def test_served_operations_and_real_404s_are_unchanged(server) -> None:
    iot = client(server)
    iot.create_thing(thingName="present")
    assert iot.describe_thing(thingName="present")["thingName"] == "present"
    with pytest.raises(ClientError) as caught:
        iot.describe_thing(thingName="absent")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # neither AWS's nor ours: still a plain 404
    other = httpx.get(f"http://127.0.0.1:{server.http_port}/no/such/path")
    assert other.status_code == 404 and other.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    admin = httpx.get(f"http://127.0.0.1:{server.http_port}/api/v1/no-such-thing")
    assert admin.status_code == 404


def test_aws_cli_names_the_unserved_operation(server) -> None:
    aws = require_tool("aws")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "eu-west-1", "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_MAX_ATTEMPTS": "1"}
    endpoint = f"http://127.0.0.1:{server.http_port}"
    for args, operation in ((["create-security-profile", "--security-profile-name", "p"], "CreateSecurityProfile"),
                            (["describe-endpoint", "--endpoint-type", "iot:Data-ATS"], "DescribeEndpoint"),
                            (["create-keys-and-certificate", "--set-as-active"], "CreateKeysAndCertificate")):
        done = subprocess.run([aws, "iot", *args, "--endpoint-url", endpoint], capture_output=True, text=True,
                              env=env, timeout=60)
        assert done.returncode != 0
        assert f"(NotImplementedException) when calling the {operation} operation: " \
               f"The operation {operation} is not implemented by thingcore" in done.stderr
