"""Rules end to end: boto3 creates them, paho-mqtt publishes, the actions deliver to real destinations."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.integration.mqtt_helpers import PahoClient, props, uid, wait_for
from tests.integration.rules_helpers import (
    LOOPBACK_DESTINATIONS,
    RecordingServer,
    confirm_destination,
    function_spec,
    iot_client,
    read_function_log,
    rule_name,
)
from tests.server import ThingcoreProcess

pytestmark = pytest.mark.integration

LAMBDA_ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}"
ROLE = "arn:aws:iam::123456789012:role/rules"


@pytest.fixture(scope="module")
def function_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("functions") / "calls.jsonl"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, function_log: Path) -> Iterator[ThingcoreProcess]:
    config = {
        "functions": {name: function_spec(name) for name in ("record", "fail", "enrich")},
        "rules": {"retry_delay": 0.05, **LOOPBACK_DESTINATIONS},
    }
    with ThingcoreProcess(tmp_path_factory.mktemp("rules"), config,
                          env={"THINGCORE_TEST_FUNCTION_LOG": str(function_log)}) as tc:
        yield tc


@pytest.fixture(scope="module")
def iot(server: ThingcoreProcess):
    return iot_client(server)


@pytest.fixture(scope="module")
def web(iot) -> Iterator[RecordingServer]:
    srv = RecordingServer().start()
    confirm_destination(iot, srv)  # http actions deliver only under a confirmed topic rule destination
    yield srv
    srv.stop()


@pytest.fixture
def client(server: ThingcoreProcess) -> Iterator[PahoClient]:
    with PahoClient(server.mqtt_port, uid("rules")) as c:
        c.connect()
        yield c


def rule_metrics(server: ThingcoreProcess, name: str) -> dict:
    return httpx.get(f"http://127.0.0.1:{server.http_port}/api/v1/rules/{name}/metrics").json()


def test_republish_transforms_a_paho_message(iot, client: PahoClient) -> None:
    name, dev = rule_name(), uid("dev")
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": f"SELECT temp * 1.8 + 32 AS fahrenheit, topic(3) AS device, clientid() AS sender "
               f"FROM 'plant/{name}/+/temp' WHERE temp > 20",
        "awsIotSqlVersion": "2016-03-23",
        "actions": [{"republish": {
            "topic": "alerts/${topic(2)}/${topic(3)}", "qos": 1, "roleArn": ROLE,
            "headers": {"contentType": "application/json", "payloadFormatIndicator": "UTF8_DATA",
                        "userProperties": [{"key": "source", "value": "${topic()}"}]},
        }}],
    })
    client.subscribe(f"alerts/{name}/+", 1)
    client.publish(f"plant/{name}/{dev}/temp", b'{"temp": 10}', 1)  # WHERE false: nothing
    client.publish(f"plant/{name}/{dev}/temp", b'{"temp": 25}', 1)
    msg = client.expect()
    assert msg.topic == f"alerts/{name}/{dev}"
    assert msg.qos == 1
    assert json.loads(msg.payload) == {"fahrenheit": 77, "device": dev, "sender": client.client_id}
    assert msg.prop("ContentType") == "application/json"
    assert msg.prop("PayloadFormatIndicator") == 1
    assert msg.prop("UserProperty") == [("source", f"plant/{name}/{dev}/temp")]
    client.no_more()


def test_plain_qos0_republish_is_counted_and_a_topic_that_renders_empty_reaches_the_error_action(
        iot, client: PahoClient, server: ThingcoreProcess) -> None:
    """The usual republish (QoS 0, topic from topic levels) is delivered without building a firing; its
    counters, payloads and failures must be those of the general path."""
    name, broken = rule_name("direct"), rule_name("empty")
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": f"SELECT * FROM 'direct/{name}/+' WHERE n > 0", "awsIotSqlVersion": "2016-03-23",
        "actions": [{"republish": {"topic": "copied/${topic(2)}/${topic(3)}", "roleArn": ROLE}}]})
    iot.create_topic_rule(ruleName=broken, topicRulePayload={
        "sql": f"SELECT * FROM 'direct/{broken}/+'",
        "actions": [{"republish": {"topic": "${topic(7)}", "roleArn": ROLE}}],  # no level 7: an empty topic
        "errorAction": {"republish": {"topic": f"errors/{broken}", "roleArn": ROLE}}})
    client.subscribe(f"copied/{name}/+", 1)
    client.subscribe(f"errors/{broken}", 1)
    for i in range(4):
        client.publish(f"direct/{name}/d{i}", json.dumps({"n": i, "v": 2.0}).encode(), 0)
    got = sorted((m.topic, json.loads(m.payload)) for m in client.expect_n(3))
    assert got == [(f"copied/{name}/d{i}", {"n": i, "v": 2}) for i in (1, 2, 3)]  # 2016-03-23: 2.0 is 2
    client.publish(f"direct/{broken}/x", b'{"a": 1}', 0)
    doc = json.loads(client.expect().payload)
    assert doc["failures"][0]["failedAction"] == "RepublishAction"
    assert "cannot republish to ''" in doc["failures"][0]["errorMessage"]
    client.no_more()
    metrics = rule_metrics(server, name)
    assert (metrics["received"], metrics["matched"]) == (4, 3)
    assert {k: metrics["actions"][0][k] for k in ("fired", "succeeded", "failed")} == {
        "fired": 3, "succeeded": 3, "failed": 0}
    broken_action = rule_metrics(server, broken)["actions"][0]
    assert (broken_action["fired"], broken_action["succeeded"], broken_action["failed"]) == (1, 0, 1)


def test_basic_ingest_reaches_only_its_rule(iot, client: PahoClient) -> None:
    name, other = rule_name("ingest"), rule_name("spy")
    out = f"ingested/{name}"
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": "SELECT *, topic() AS t, topic(2) AS floor FROM 'never/used'", "awsIotSqlVersion": "2016-03-23",
        "actions": [{"republish": {"topic": out, "roleArn": ROLE}}]})
    # a rule whose FROM names the ingest topic must not see it: Basic Ingest bypasses the broker
    iot.create_topic_rule(ruleName=other, topicRulePayload={
        "sql": f"SELECT * FROM '$aws/rules/{name}/#'", "actions": [{"republish": {"topic": out, "roleArn": ROLE}}]})
    client.subscribe(out, 1)
    client.subscribe(f"$aws/rules/{name}/#", 1)
    client.publish(f"$aws/rules/{name}/Buildings/B5/F2", b'{"co2": 410}', 1)
    msg = client.expect()
    assert msg.topic == out
    assert json.loads(msg.payload) == {"co2": 410, "t": "Buildings/B5/F2", "floor": "B5"}
    client.no_more()  # neither the raw ingest message nor the spy rule's copy


def test_basic_ingest_to_a_missing_or_disabled_rule_is_acknowledged_and_dropped(iot, client: PahoClient,
                                                                                server: ThingcoreProcess) -> None:
    name = rule_name("off")
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": "SELECT * FROM 'x'", "ruleDisabled": True,
        "actions": [{"republish": {"topic": f"off/{name}", "roleArn": ROLE}}]})
    client.subscribe(f"off/{name}", 1)
    before = server.metrics()["thingcore_rules_ingest_unknown_rule_total"]
    assert client.publish(f"$aws/rules/{name}/a", b"{}", 1) == 0
    assert client.publish(f"$aws/rules/{rule_name('nobody')}", b"{}", 1) == 0
    client.no_more()
    assert server.metrics()["thingcore_rules_ingest_unknown_rule_total"] == before + 2


def test_http_action_retries_after_503(iot, client: PahoClient, web: RecordingServer,
                                       server: ThingcoreProcess) -> None:
    name = rule_name("http")
    path = f"/ingest/{name}"
    web.scripts[path] = [503]
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": f"SELECT level, topic(2) AS site FROM 'tanks/{name}/level'", "awsIotSqlVersion": "2016-03-23",
        "actions": [{"http": {"url": web.url + "/ingest/${topic(2)}", "confirmationUrl": web.url + "/ingest/",
                              "headers": [{"key": "x-sender", "value": "${clientid()}"}]}}]})
    client.publish(f"tanks/{name}/level", b'{"level": 0.75, "noise": 1}', 1)
    first, second = web.wait_hits(path, 2)
    assert json.loads(first.body) == json.loads(second.body) == {"level": 0.75, "site": name}
    assert second.headers["content-type"] == "application/json"
    assert second.headers["x-sender"] == client.client_id
    metrics = rule_metrics(server, name)
    action = metrics["actions"][0]
    assert (metrics["received"], metrics["matched"]) == (1, 1)
    assert (action["action"], action["retried"], action["failed"]) == ("http", 1, 0)
    # success is counted once the 200 is read, just after the server recorded the request
    wait_for(lambda: rule_metrics(server, name)["actions"][0]["succeeded"] == 1, what="the success counter")


def test_http_4xx_is_not_retried_and_reaches_the_error_action(iot, client: PahoClient, web: RecordingServer) -> None:
    name = rule_name("http4xx")
    path = f"/bad/{name}"
    web.scripts[path] = [400]
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": f"SELECT * FROM 'bad/{name}'",
        "actions": [{"http": {"url": web.url + path}}],
        "errorAction": {"republish": {"topic": f"errors/{name}", "roleArn": ROLE}}})
    client.subscribe(f"errors/{name}", 1)
    client.publish(f"bad/{name}", b'{"x": 1}', 1)
    doc = json.loads(client.expect().payload)
    assert doc["failures"][0]["failedAction"] == "HttpAction"
    assert "HTTP 400" in doc["failures"][0]["errorMessage"]
    assert len(web.wait_hits(path, 1)) == 1  # given up after one try: no retry on 4xx


def test_error_action_gets_one_document_for_all_failed_actions(iot, client: PahoClient, server: ThingcoreProcess,
                                                              function_log: Path) -> None:
    name = rule_name("down")
    gone = RecordingServer().start()
    confirm_destination(iot, gone)
    dead = gone.url + "/hook"
    gone.stop()  # nothing listens there any more
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": f"SELECT * FROM 'meters/{name}'",
        "actions": [
            {"http": {"url": dead}},
            {"republish": {"topic": f"copies/{name}", "roleArn": ROLE}},
            {"lambda": {"functionArn": LAMBDA_ARN.format("fail")}},
        ],
        "errorAction": {"republish": {"topic": f"errors/{name}/${{topic(2)}}", "roleArn": ROLE}}})
    client.subscribe(f"errors/{name}/#", 1)
    client.subscribe(f"copies/{name}", 1)
    payload = b'{"kwh": 12.5}'
    client.publish(f"meters/{name}", payload, 1)
    got = {m.topic: m for m in client.expect_n(2)}
    assert json.loads(got[f"copies/{name}"].payload) == {"kwh": 12.5}  # the working action still delivered
    doc = json.loads(got[f"errors/{name}/{name}"].payload)
    assert doc["ruleName"] == name
    assert doc["topic"] == f"meters/{name}"
    assert doc["clientId"] == client.client_id
    assert base64.b64decode(doc["base64OriginalPayload"]) == payload
    assert uuid.UUID(doc["cloudwatchTraceId"])
    failures = {f["failedAction"]: f for f in doc["failures"]}
    assert set(failures) == {"HttpAction", "LambdaAction"}
    assert failures["HttpAction"]["failedResource"] == dead
    assert "after 3 tries" in failures["HttpAction"]["errorMessage"]  # nothing listening: tried again
    assert failures["LambdaAction"]["failedResource"] == LAMBDA_ARN.format("fail")
    assert "sensor calibration table missing" in failures["LambdaAction"]["errorMessage"]
    assert "after 3 tries" in failures["LambdaAction"]["errorMessage"]  # a failing function is tried again
    assert len(read_function_log(function_log, 3, "fail")) >= 3
    client.no_more()  # one error document, not one per failed action
    metrics = rule_metrics(server, name)
    assert metrics["errorActions"] == 1
    assert [a["failed"] for a in metrics["actions"][:3]] == [1, 0, 1]


def test_lambda_action_gets_the_select_result(iot, client: PahoClient, function_log: Path) -> None:
    name = rule_name("fn")
    arn = LAMBDA_ARN.format("record") + ":live"  # an alias after the name is allowed
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": f"SELECT state.reported.temp AS temp, '{name}' AS rule FROM 'fn/{name}'",
        "awsIotSqlVersion": "2016-03-23", "actions": [{"lambda": {"functionArn": arn}}]})
    client.publish(f"fn/{name}", b'{"state": {"reported": {"temp": 21.5}}}', 1)
    [call] = read_function_log(function_log, 1, "record", where=lambda r: r["event"].get("rule") == name)
    assert call["event"] == {"temp": 21.5, "rule": name}
    assert call["function_name"] == "record"
    assert call["arn"] == arn
    assert 0 < call["remaining_ms"] <= 3000
    assert re.fullmatch(r"[0-9a-f-]{36}", call["request_id"])


def test_aws_lambda_in_sql_runs_the_configured_function(iot, client: PahoClient) -> None:
    name = rule_name("sqlfn")
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": f"SELECT aws_lambda('{LAMBDA_ARN.format('enrich')}', {{'a': a, 'b': b}}) AS r FROM 'sum/{name}'",
        "awsIotSqlVersion": "2016-03-23", "actions": [{"republish": {"topic": f"sums/{name}", "roleArn": ROLE}}]})
    client.subscribe(f"sums/{name}", 1)
    client.publish(f"sum/{name}", b'{"a": 2, "b": 40}', 1)
    assert json.loads(client.expect().payload) == {"r": {"sum": 42, "by": "enrich"}}


def test_a_stuck_destination_does_not_slow_other_rules(iot, client: PahoClient, web: RecordingServer) -> None:
    slow, fast = rule_name("slow"), rule_name("fast")
    path = f"/stuck/{slow}"
    web.held.add(path)
    topic = f"shared/{slow}"
    iot.create_topic_rule(ruleName=slow, topicRulePayload={
        "sql": f"SELECT * FROM '{topic}'", "actions": [{"http": {"url": web.url + path}}]})
    iot.create_topic_rule(ruleName=fast, topicRulePayload={
        "sql": f"SELECT * FROM '{topic}'", "actions": [{"republish": {"topic": f"fast/{fast}", "roleArn": ROLE}}]})
    client.subscribe(f"fast/{fast}", 1)
    for i in range(20):
        client.publish(topic, json.dumps({"i": i}).encode(), 1)
    got = client.expect_n(20)  # every fast copy arrives while the http destination holds its requests
    assert [json.loads(m.payload)["i"] for m in got] == list(range(20))
    assert len(web.wait_hits(path, 1)) >= 1
    web.release()
    web.wait_hits(path, 20)


def test_metrics_on_prometheus(iot, client: PahoClient, server: ThingcoreProcess) -> None:
    name = rule_name("prom")
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": f"SELECT * FROM 'prom/{name}' WHERE n > 1",
        "actions": [{"republish": {"topic": f"promout/{name}", "roleArn": ROLE}}]})
    client.subscribe(f"promout/{name}", 1)
    for n in (1, 2, 3):
        client.publish(f"prom/{name}", json.dumps({"n": n}).encode(), 1)
    client.expect_n(2)
    m = server.metrics()
    assert m[f'thingcore_rule_messages_total{{rule="{name}"}}'] == 3
    assert m[f'thingcore_rule_matched_total{{rule="{name}"}}'] == 2
    labels = f'action="republish",index="0",rule="{name}"'
    assert m[f"thingcore_rule_action_fired_total{{{labels}}}"] == 2
    assert m[f"thingcore_rule_action_succeeded_total{{{labels}}}"] == 2
    assert m[f"thingcore_rule_action_latency_seconds_count{{{labels}}}"] == 2
    assert m["thingcore_rules"] >= 1
    api = httpx.get(f"http://127.0.0.1:{server.http_port}/api/v1/rules/metrics").json()
    assert any(r["ruleName"] == name and r["matched"] == 2 for r in api["ruleMetrics"])


def test_republish_message_expiry_and_correlation_headers(iot, server: ThingcoreProcess) -> None:
    name = rule_name("hdr")
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": f"SELECT * FROM 'hdr/{name}'", "awsIotSqlVersion": "2016-03-23",
        "actions": [{"republish": {"topic": f"hdrout/{name}", "roleArn": ROLE, "headers": {
            "responseTopic": "replies/${topic(2)}", "correlationData": "Y29ycmVsYXRpb24=", "messageExpiry": "3600",
        }}}]})
    with PahoClient(server.mqtt_port) as sub:
        sub.connect()
        sub.subscribe(f"hdrout/{name}", 1)
        sub.publish(f"hdr/{name}", b"{}", 1, properties=props(UserProperty=[("ignored", "x")]))
        msg = sub.expect()
    assert msg.prop("ResponseTopic") == f"replies/{name}"
    assert msg.prop("CorrelationData") == b"correlation"
    assert 3590 <= msg.prop("MessageExpiryInterval") <= 3600


def test_rules_read_and_write_shadows(iot, client: PahoClient) -> None:
    name, thing = rule_name("shadow"), uid("thing")
    # a republish to $$aws/... reaches the reserved shadow topic, and the shadow service applies it
    iot.create_topic_rule(ruleName=name + "_w", topicRulePayload={
        "sql": f"SELECT {{'reported': {{'mode': mode}}}} AS state FROM 'setmode/{name}/+'",
        "awsIotSqlVersion": "2016-03-23",
        "actions": [{"republish": {"topic": "$$aws/things/${topic(3)}/shadow/update", "roleArn": ROLE}}]})
    iot.create_topic_rule(ruleName=name + "_r", topicRulePayload={
        "sql": "SELECT VALUE get_thing_shadow(topic(3), 'arn:aws:iam::123456789012:role/r').state.reported.mode "
               f"FROM 'getmode/{name}/+'",
        "awsIotSqlVersion": "2016-03-23",
        "actions": [{"republish": {"topic": f"mode/{name}", "roleArn": ROLE}}]})
    client.subscribe(f"$aws/things/{thing}/shadow/update/accepted", 1)
    client.subscribe(f"mode/{name}", 1)
    client.publish(f"setmode/{name}/{thing}", b'{"mode": "eco"}', 1)
    accepted = json.loads(client.expect().payload)
    assert accepted["state"] == {"reported": {"mode": "eco"}}
    client.publish(f"getmode/{name}/{thing}", b"{}", 1)
    assert client.expect().payload == b'"eco"'


def test_a_rule_without_from_serves_basic_ingest_only(iot, client: PahoClient) -> None:
    name = rule_name("nofrom")
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": "SELECT n, topic() AS t", "awsIotSqlVersion": "2016-03-23",
        "actions": [{"republish": {"topic": f"nofrom/{name}", "roleArn": ROLE}}]})
    assert "topicPattern" not in next(r for r in iot.list_topic_rules()["rules"] if r["ruleName"] == name)
    client.subscribe(f"nofrom/{name}", 1)
    client.publish(f"$aws/rules/{name}/dev/1", b'{"n": 7}', 1)
    assert json.loads(client.expect().payload) == {"n": 7, "t": "dev/1"}


def test_from_multilevel_wildcard_does_not_take_the_parent_level(iot, client: PahoClient) -> None:
    name = rule_name("parent")
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": f"SELECT topic() AS t FROM 'parent/{name}/#'",
        "actions": [{"republish": {"topic": f"parentout/{name}", "roleArn": ROLE}}]})
    client.subscribe(f"parentout/{name}", 1)
    client.publish(f"parent/{name}", b"{}", 1)  # MQTT's '#' would match this; AWS's FROM does not
    client.publish(f"parent/{name}/a/b", b"{}", 1)
    assert json.loads(client.expect().payload) == {"t": f"parent/{name}/a/b"}
    client.no_more()
