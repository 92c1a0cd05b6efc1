"""Topic rules managed through boto3's `iot` client and the AWS CLI against a real server."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from collections.abc import Iterator

import pytest
from tests.conftest import require_tool
from tests.integration.mqtt_helpers import PahoClient
from tests.integration.rules_helpers import iot_client, rule_name
from tests.server import ThingcoreProcess

pytestmark = pytest.mark.integration

REGION, ACCOUNT = "eu-west-1", "111122223333"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    config = {"aws": {"region": REGION, "account_id": ACCOUNT}}
    with ThingcoreProcess(tmp_path_factory.mktemp("rules-api"), config) as tc:
        yield tc


@pytest.fixture(scope="module")
def iot(server: ThingcoreProcess):
    return iot_client(server, REGION)


def republish(topic: str) -> dict:
    return {"republish": {"topic": topic, "roleArn": "arn:aws:iam::111122223333:role/r", "qos": 1}}


def test_create_get_replace_delete(iot) -> None:
    name = rule_name()
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=2)
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": "SELECT temp FROM 'sensors/+/data' WHERE temp > 20", "description": "hot sensors",
        "actions": [republish("alerts/hot")], "awsIotSqlVersion": "2016-03-23",
        "errorAction": republish("alerts/errors"),
    })
    got = iot.get_topic_rule(ruleName=name)
    assert got["ruleArn"] == f"arn:aws:iot:{REGION}:{ACCOUNT}:rule/{name}"
    rule = got["rule"]
    assert rule["ruleName"] == name
    assert rule["sql"] == "SELECT temp FROM 'sensors/+/data' WHERE temp > 20"
    assert rule["description"] == "hot sensors"
    assert rule["awsIotSqlVersion"] == "2016-03-23"
    assert rule["ruleDisabled"] is False
    assert rule["actions"] == [republish("alerts/hot")]
    assert rule["errorAction"] == republish("alerts/errors")
    assert before <= rule["createdAt"] <= datetime.datetime.now(datetime.UTC)

    iot.replace_topic_rule(ruleName=name, topicRulePayload={
        "sql": "SELECT * FROM 'sensors/#'", "actions": [republish("all/${topic()}")]})
    replaced = iot.get_topic_rule(ruleName=name)["rule"]
    assert replaced["sql"] == "SELECT * FROM 'sensors/#'"
    assert replaced["awsIotSqlVersion"] == "2015-10-08"  # AWS's default when omitted
    assert "errorAction" not in replaced and "description" not in replaced
    assert replaced["createdAt"] == rule["createdAt"]

    iot.delete_topic_rule(ruleName=name)
    with pytest.raises(iot.exceptions.UnauthorizedException, match="Access to topic rule"):
        iot.get_topic_rule(ruleName=name)


def test_default_sql_version_and_empty_actions(iot) -> None:
    name = rule_name()
    iot.create_topic_rule(ruleName=name, topicRulePayload={"sql": "SELECT * FROM 'x/y'", "actions": []})
    rule = iot.get_topic_rule(ruleName=name)["rule"]
    assert rule["awsIotSqlVersion"] == "2015-10-08"
    assert rule["actions"] == []


def test_enable_disable(iot) -> None:
    name = rule_name()
    iot.create_topic_rule(ruleName=name, topicRulePayload={"sql": "SELECT * FROM 'a/b'", "actions": [],
                                                           "ruleDisabled": True})
    assert iot.get_topic_rule(ruleName=name)["rule"]["ruleDisabled"] is True
    iot.enable_topic_rule(ruleName=name)
    assert iot.get_topic_rule(ruleName=name)["rule"]["ruleDisabled"] is False
    iot.disable_topic_rule(ruleName=name)
    assert iot.get_topic_rule(ruleName=name)["rule"]["ruleDisabled"] is True
    disabled = {r["ruleName"] for r in iot.list_topic_rules(ruleDisabled=True)["rules"]}
    enabled = {r["ruleName"] for r in iot.list_topic_rules(ruleDisabled=False)["rules"]}
    assert name in disabled and name not in enabled


def test_list_paging_and_topic_filter(iot) -> None:
    prefix = rule_name("page")
    names = [f"{prefix}_{i}" for i in range(5)]
    for i, n in enumerate(names):
        iot.create_topic_rule(ruleName=n, topicRulePayload={"sql": f"SELECT * FROM 'paged/{prefix}/{i}/#'",
                                                            "actions": []})
    first = iot.list_topic_rules(maxResults=2)
    assert len(first["rules"]) == 2 and first["nextToken"]
    seen = []
    for page in iot.get_paginator("list_topic_rules").paginate(PaginationConfig={"PageSize": 2}):
        seen += [r["ruleName"] for r in page["rules"]]
    assert all(n in seen for n in names)
    assert len(seen) == len(set(seen))  # no rule twice across pages
    item = next(r for r in iot.list_topic_rules()["rules"] if r["ruleName"] == names[3])
    assert item["topicPattern"] == f"paged/{prefix}/3/#"
    assert item["ruleArn"].endswith(f":rule/{names[3]}")
    assert isinstance(item["createdAt"], datetime.datetime)
    by_pattern = [r["ruleName"] for r in iot.list_topic_rules(topic=f"paged/{prefix}/3/#")["rules"]]
    assert by_pattern == [names[3]]
    by_topic = [r["ruleName"] for r in iot.list_topic_rules(topic=f"paged/{prefix}/1/dev/temp")["rules"]]
    assert by_topic == [names[1]]


def test_bad_sql_names_the_position(iot) -> None:
    with pytest.raises(iot.exceptions.SqlParseException) as info:
        iot.create_topic_rule(ruleName=rule_name(), topicRulePayload={
            "sql": "SELECT temp FROM 'a/b' WHERE temp >", "actions": []})
    message = info.value.response["Error"]["Message"]
    assert "column" in message and "line 1" in message, message


def test_refusals(iot) -> None:
    name = rule_name()
    payload = {"sql": "SELECT * FROM 'r/s'", "actions": []}
    iot.create_topic_rule(ruleName=name, topicRulePayload=payload)
    with pytest.raises(iot.exceptions.ResourceAlreadyExistsException):
        iot.create_topic_rule(ruleName=name, topicRulePayload=payload)
    with pytest.raises(iot.exceptions.InvalidRequestException, match="regular expression"):
        iot.create_topic_rule(ruleName="has-hyphen", topicRulePayload=payload)
    with pytest.raises(iot.exceptions.InvalidRequestException, match="iotEvents action is not supported"):
        iot.create_topic_rule(ruleName=rule_name(), topicRulePayload={
            **payload, "actions": [{"iotEvents": {"roleArn": "arn:aws:iam::1:role/r", "inputName": "i"}}]})
    with pytest.raises(iot.exceptions.InvalidRequestException, match="at most 10 actions"):
        iot.create_topic_rule(ruleName=rule_name(), topicRulePayload={**payload, "actions": [republish("o")] * 11})
    with pytest.raises(iot.exceptions.InvalidRequestException, match="qos must be 0 or 1"):
        iot.create_topic_rule(ruleName=rule_name(), topicRulePayload={
            **payload, "actions": [{"republish": {"topic": "o", "roleArn": "r", "qos": 2}}]})
    with pytest.raises(iot.exceptions.InvalidRequestException, match="not configured"):
        iot.create_topic_rule(ruleName=rule_name(), topicRulePayload={
            **payload, "actions": [{"lambda": {"functionArn": "arn:aws:lambda:eu-west-1:1:function:nope"}}]})
    with pytest.raises(iot.exceptions.InvalidRequestException, match="template"):
        iot.create_topic_rule(ruleName=rule_name(), topicRulePayload={
            **payload, "actions": [republish("out/${topic(}")]})
    for missing in (iot.get_topic_rule, iot.delete_topic_rule, iot.enable_topic_rule, iot.disable_topic_rule):
        with pytest.raises(iot.exceptions.UnauthorizedException):
            missing(ruleName=rule_name("missing"))
    with pytest.raises(iot.exceptions.UnauthorizedException):
        iot.replace_topic_rule(ruleName=rule_name("missing"), topicRulePayload=payload)
    # nothing of a refused create was kept
    names = {r["ruleName"] for r in iot.list_topic_rules()["rules"]}
    assert "has-hyphen" not in names


def test_rule_survives_kill_and_keeps_working(server: ThingcoreProcess, iot) -> None:
    name = rule_name()
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": "SELECT VALUE n FROM 'durable/in'", "actions": [{"republish": {"topic": f"durable/{name}",
                                                                              "roleArn": "r"}}]})
    server.kill()
    server.start()
    assert iot.get_topic_rule(ruleName=name)["rule"]["sql"] == "SELECT VALUE n FROM 'durable/in'"
    with PahoClient(server.mqtt_port) as client:
        client.connect()
        client.subscribe(f"durable/{name}", 1)
        client.publish("durable/in", b'{"n": 42}', 1)
        assert client.expect().payload == b"42"


def test_aws_cli(server: ThingcoreProcess, tmp_path) -> None:
    aws = require_tool("aws")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    endpoint = ["--endpoint-url", f"http://127.0.0.1:{server.http_port}"]
    name = rule_name("cli")
    payload = tmp_path / "rule.json"
    payload.write_text(json.dumps({"sql": "SELECT * FROM 'cli/in'", "awsIotSqlVersion": "2016-03-23",
                                   "actions": [republish("cli/out")]}))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([aws, "iot", *args, *endpoint], capture_output=True, text=True, env=env, timeout=60,
                              check=False)

    created = run("create-topic-rule", "--rule-name", name, "--topic-rule-payload", f"file://{payload}")
    assert created.returncode == 0, created.stderr
    got = run("get-topic-rule", "--rule-name", name)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["rule"]["actions"] == [republish("cli/out")]
    bad = run("create-topic-rule", "--rule-name", rule_name("cli"), "--topic-rule-payload",
              '{"sql": "SELEC * FROM \'x\'", "actions": []}')
    assert bad.returncode != 0 and "SqlParseException" in bad.stderr
    assert run("delete-topic-rule", "--rule-name", name).returncode == 0


def test_errors_use_aws_shape_for_plain_http(server: ThingcoreProcess) -> None:
    import httpx

    base = f"http://127.0.0.1:{server.http_port}"
    resp = httpx.post(f"{base}/rules/{rule_name()}", content=b"{not json")
    assert resp.status_code == 400
    assert resp.headers["x-amzn-ErrorType"] == "InvalidRequestException"
    assert "not valid JSON" in resp.json()["message"]
    resp = httpx.post(f"{base}/rules/{rule_name()}", json={"sql": "SELECT * FROM 'a'"})
    assert resp.status_code == 400 and "actions is required" in resp.json()["message"]


def test_signed_requests_are_verified_when_configured(thingcore_factory) -> None:
    import boto3
    import httpx
    from botocore.config import Config
    from botocore.exceptions import ClientError

    tc = thingcore_factory({"http": {"verify_signatures": True, "access_keys": [
        {"access_key_id": "AKIDRULES", "secret_access_key": "rules-secret"}]},
        # an access key manages only where an access rule allows it
        "auth": {"acl": [{"effect": "allow", "action": "manage", "principal": "AKIDRULES", "topic": "#"}]}})
    endpoint = f"http://127.0.0.1:{tc.http_port}"

    def client(secret: str):
        return boto3.client("iot", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKIDRULES",
                            aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}))

    good = client("rules-secret")
    good.create_topic_rule(ruleName="signed", topicRulePayload={"sql": "SELECT * FROM 's'", "actions": []})
    with pytest.raises(ClientError) as exc:
        client("wrong").delete_topic_rule(ruleName="signed")
    assert exc.value.response["Error"]["Code"] == "InvalidSignatureException"
    unsigned = httpx.delete(f"{endpoint}/rules/signed")
    assert unsigned.status_code == 403 and unsigned.headers["x-amzn-ErrorType"] == "ForbiddenException"
    assert [r["ruleName"] for r in good.list_topic_rules()["rules"]] == ["signed"]
