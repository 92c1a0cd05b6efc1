"""Rule actions into object storage, metrics, alarms, logs, notifications, search and Salesforce, end to end:
boto3 creates the rule, paho publishes, and the test reads what arrived at the real destination."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from tests.integration.mqtt_helpers import PahoClient, uid, wait_for
from tests.integration.outputs_helpers import Forwarder, IndexServer, Mailbox, body_text, moto_s3
from tests.integration.rules_helpers import LOOPBACK_DESTINATIONS, RecordingServer, iot_client, rule_name
from tests.server import ThingcoreProcess, free_port

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/rules"
MAIL_ARN = "arn:aws:sns:us-east-1:123456789012:mail"
HOOK_ARN = "arn:aws:sns:us-east-1:123456789012:hook"
FAILING_ARN = "arn:aws:sns:us-east-1:123456789012:failing"
TOKEN = "T" * 40


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox().start()
    yield box
    box.stop()


@pytest.fixture(scope="module")
def web() -> Iterator[RecordingServer]:
    srv = RecordingServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def index_server() -> Iterator[IndexServer]:
    srv = IndexServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as url:
        yield url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mailbox: Mailbox, web: RecordingServer,
           s3_endpoint: str) -> Iterator[ThingcoreProcess]:
    mail = f"mailto://127.0.0.1:{mailbox.port}?from=thingcore@example.com&to=ops@example.com"
    config = {
        "rules": {"retry_delay": 0.05, "max_attempts": 3, **LOOPBACK_DESTINATIONS},
        "cloudwatch": {"max_metric_series": 5},
        # keys quoted: the tests' TOML writer does not quote inline-table keys
        "notifications": {"topics": {f'"{MAIL_ARN}"': [mail], f'"{HOOK_ARN}"': [f"json://127.0.0.1:"
                                                                                f"{web.url.rsplit(':', 1)[1]}/hook"],
                                    f'"{FAILING_ARN}"': [f"json://127.0.0.1:{web.url.rsplit(':', 1)[1]}/failing"]}},
    }
    with ThingcoreProcess(tmp_path_factory.mktemp("outputs"), config) as tc:
        yield tc


@pytest.fixture(scope="module")
def iot(server: ThingcoreProcess):
    return iot_client(server)


@pytest.fixture
def client(server: ThingcoreProcess) -> Iterator[PahoClient]:
    with PahoClient(server.mqtt_port, uid("out")) as c:
        c.connect()
        yield c


def make_rule(iot, sql: str, *actions: dict, error_topic: str | None = None) -> str:
    name = rule_name()
    for action in actions:  # boto3 insists on AWS's required roleArn (salesforce has none)
        for kind, params in action.items():
            if kind != "salesforce":
                params.setdefault("roleArn", ROLE)
    payload: dict = {"sql": sql, "awsIotSqlVersion": "2016-03-23", "actions": list(actions)}
    if error_topic:
        payload["errorAction"] = {"republish": {"topic": error_topic, "roleArn": ROLE}}
    iot.create_topic_rule(ruleName=name, topicRulePayload=payload)
    return name


def test_s3_writes_objects_into_the_data_dir(iot, client: PahoClient, server: ThingcoreProcess) -> None:
    name = rule_name()
    make_rule(iot, f"SELECT * FROM 'obj/{name}/+'",
              {"s3": {"bucketName": "telemetry", "key": "${topic(2)}/${topic(3)}.json", "roleArn": ROLE,
                      "cannedAcl": "private"}})
    client.publish(f"obj/{name}/dev1", json.dumps({"t": 21.5}), qos=1)
    client.publish(f"obj/{name}/raw", b"\x00\x01binary", qos=1)
    path = server.data_dir / "objects" / "telemetry" / name / "dev1.json"
    wait_for(path.exists, what=str(path))
    assert json.loads(path.read_bytes()) == {"t": 21.5}
    raw = server.data_dir / "objects" / "telemetry" / name / "raw.json"
    wait_for(raw.exists, what=str(raw))
    assert raw.read_bytes() == b"\x00\x01binary"  # a binary payload is written as is, as AWS does


def test_s3_key_leaving_the_bucket_goes_to_the_error_action(iot, client: PahoClient,
                                                             server: ThingcoreProcess) -> None:
    name = rule_name()
    make_rule(iot, f"SELECT * FROM 'obj/{name}/#'", {"s3": {"bucketName": "bk1", "key": "${topic(3)}/../../x"}},
              error_topic=f"errors/{name}")
    client.subscribe(f"errors/{name}", qos=1)
    client.publish(f"obj/{name}/a", b"{}", qos=1)
    err = json.loads(client.expect().payload)
    assert err["failures"][0]["failedAction"] == "S3Action"
    assert "'..'" in err["failures"][0]["errorMessage"]
    assert not (server.data_dir / "objects" / "x").exists()


def test_s3_to_an_s3_compatible_endpoint(tmp_path: Path, s3_endpoint: str) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="k",
                      aws_secret_access_key="s")
    s3.create_bucket(Bucket="iot-archive")
    config = {"object_storage": {"endpoint_url": s3_endpoint, "access_key_id": "k", "secret_access_key": "s"},
              "rules": {"retry_delay": 0.05}}
    with ThingcoreProcess(tmp_path, config) as tc, PahoClient(tc.mqtt_port, uid("s3")) as c:
        c.connect()
        make_rule(iot_client(tc), "SELECT temp, topic(2) AS dev FROM 'arch/+'",
                  {"s3": {"bucketName": "iot-archive", "key": "${topic(2)}/${timestamp()}.json", "roleArn": ROLE}},
                  {"s3": {"bucketName": "no-such-bucket", "key": "x"}}, error_topic="errors/s3")
        c.subscribe("errors/s3", qos=1)
        c.publish("arch/d7", json.dumps({"temp": 3}), qos=1)
        keys = wait_for(lambda: s3.list_objects_v2(Bucket="iot-archive", Prefix="d7/").get("Contents"),
                        what="the object in moto")
        body = s3.get_object(Bucket="iot-archive", Key=keys[0]["Key"])["Body"].read()
        assert json.loads(body) == {"temp": 3, "dev": "d7"}
        err = json.loads(c.expect().payload)  # a missing bucket is not retried: the error action at once
        assert [f["failedResource"] for f in err["failures"]] == ["no-such-bucket/x"]
        assert "NoSuchBucket" in err["failures"][0]["errorMessage"]


def test_cloudwatch_metric_appears_on_metrics(iot, client: PahoClient, server: ThingcoreProcess) -> None:
    name = rule_name()
    make_rule(iot, f"SELECT * FROM 'm/{name}/+'",
              {"cloudwatchMetric": {"metricNamespace": "IoT/Plant", "metricName": "temp-${topic(3)}",
                                    "metricValue": "${temperature}", "metricUnit": "None", "roleArn": ROLE}})
    client.publish(f"m/{name}/a1", json.dumps({"temperature": 19.5}), qos=1)
    client.publish(f"m/{name}/a1", json.dumps({"temperature": 22.25}), qos=1)

    def sample() -> str | None:
        text = httpx.get(f"http://127.0.0.1:{server.http_port}/metrics").text
        lines = [line for line in text.splitlines() if line.startswith("IoT_Plant_temp_a1{")]
        return lines[0] if lines and lines[0].endswith(" 22.25") else None

    line = wait_for(sample, what="the gauge at 22.25")
    assert 'namespace="IoT/Plant"' in line and 'metric="temp-a1"' in line and 'unit="None"' in line


def test_cloudwatch_metric_bad_value_and_series_limit(iot, client: PahoClient) -> None:
    name = rule_name()
    make_rule(iot, f"SELECT * FROM 'm/{name}/+'",
              {"cloudwatchMetric": {"metricNamespace": "Lim", "metricName": "${topic(3)}", "metricValue": "${v}",
                                    "metricUnit": "Count"}}, error_topic=f"errors/{name}")
    client.subscribe(f"errors/{name}", qos=1)
    client.publish(f"m/{name}/x", json.dumps({"v": "hot"}), qos=1)
    assert "is not a number" in json.loads(client.expect().payload)["failures"][0]["errorMessage"]
    for i in range(6):  # the limit is 5 series (another test may hold one already)
        client.publish(f"m/{name}/s{i}", json.dumps({"v": i}), qos=1)
    err = json.loads(client.expect().payload)
    assert "max_metric_series" in err["failures"][0]["errorMessage"]


def test_cloudwatch_alarm_state_is_stored_listed_and_published(iot, client: PahoClient,
                                                               server: ThingcoreProcess) -> None:
    name = rule_name()
    alarm = f"overheat_{name}"
    make_rule(iot, f"SELECT * FROM 'al/{name}'",
              {"cloudwatchAlarm": {"alarmName": alarm, "stateValue": "${CASE temp > 50 WHEN true THEN 'ALARM' "
                                   "ELSE 'OK' END}", "stateReason": "temp=${temp}", "roleArn": ROLE}})
    client.subscribe(f"thingcore/alarms/{alarm}", qos=1)
    client.publish(f"al/{name}", json.dumps({"temp": 80}), qos=1)
    first = json.loads(client.expect().payload)
    assert (first["stateValue"], first["stateReason"], first["previousStateValue"]) == ("ALARM", "temp=80", None)
    client.publish(f"al/{name}", json.dumps({"temp": 90}), qos=1)  # same state: stored, not published
    client.publish(f"al/{name}", json.dumps({"temp": 20}), qos=1)
    second = json.loads(client.expect().payload)
    assert (second["stateValue"], second["previousStateValue"], second["stateReason"]) == ("OK", "ALARM", "temp=20")
    listed = httpx.get(f"http://127.0.0.1:{server.http_port}/api/v1/alarms").json()["alarms"]
    assert [a["stateValue"] for a in listed if a["alarmName"] == alarm] == ["OK"]
    out = subprocess.run([sys.executable, "-m", "thingcore", "alarms", "show", alarm, "--endpoint",
                          f"http://127.0.0.1:{server.http_port}"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["stateReason"] == "temp=20"


def test_cloudwatch_logs_lines_per_group(iot, client: PahoClient, server: ThingcoreProcess) -> None:
    name = rule_name()
    make_rule(iot, f"SELECT * FROM 'lg/{name}/+'", {"cloudwatchLogs": {"logGroupName": "/iot/${topic(3)}"}})
    make_rule(iot, f"SELECT VALUE events FROM 'lgb/{name}'",
              {"cloudwatchLogs": {"logGroupName": f"batch-{name}", "batchMode": True}})
    client.publish(f"lg/{name}/g1", json.dumps({"n": 1}), qos=1)
    client.publish(f"lg/{name}/g1", "plain text", qos=1)
    client.publish(f"lgb/{name}", json.dumps({"events": [{"timestamp": 1700000000000, "message": "a"},
                                                         {"timestamp": 1700000000001, "message": "b"}]}), qos=1)
    path = server.data_dir / "logs" / (quote("/iot/g1", safe="") + ".jsonl")
    lines = wait_for(lambda: path.exists() and len(path.read_text().splitlines()) >= 2 and path.read_text(),
                     what=str(path)).splitlines()
    # deliveries in flight together are appended together, in no guaranteed order (timestamps tell)
    assert sorted(json.loads(line)["message"] for line in lines) == sorted(['{"n":1}', "plain text"])
    assert json.loads(lines[0])["logGroupName"] == "/iot/g1"
    batch = server.data_dir / "logs" / f"batch-{name}.jsonl"
    # the file appears before its lines are written: wait for the lines, not for the file
    text = wait_for(lambda: batch.exists() and len(batch.read_text().splitlines()) >= 2 and batch.read_text(),
                    what=f"two lines in {batch}")
    got = [json.loads(line) for line in text.splitlines()]
    assert [(e["timestamp"], e["message"]) for e in got] == [(1700000000000, "a"), (1700000000001, "b")]


def test_sns_email_over_smtp_and_json_webhook(iot, client: PahoClient, mailbox: Mailbox,
                                              web: RecordingServer) -> None:
    name = rule_name()
    make_rule(iot, f"SELECT * FROM 'sns/{name}'", {"sns": {"targetArn": MAIL_ARN, "roleArn": ROLE}},
              {"sns": {"targetArn": HOOK_ARN, "messageFormat": "RAW"}})
    before = len(mailbox.messages)
    client.publish(f"sns/{name}", json.dumps({"alert": name}), qos=1)
    mail = mailbox.wait(before + 1)[before]
    assert mail["To"] == "ops@example.com" and mail["Subject"] == "AWS Notification Message"
    assert json.loads(body_text(mail)) == {"alert": name}
    hits = web.wait_hits("/hook", 1)
    assert json.loads(json.loads(hits[-1].body)["message"]) == {"alert": name}


def test_sns_json_format_sends_each_protocol_its_message(iot, client: PahoClient, mailbox: Mailbox) -> None:
    name = rule_name()
    make_rule(iot, f"SELECT 'mail for ' + who AS email, 'short' AS default FROM 'snsj/{name}'",
              {"sns": {"targetArn": MAIL_ARN, "messageFormat": "JSON"}})
    before = len(mailbox.messages)
    client.publish(f"snsj/{name}", json.dumps({"who": name}), qos=1)
    mail = mailbox.wait(before + 1)[before]
    assert body_text(mail).strip() == f"mail for {name}"


def test_sns_failing_webhook_is_retried_then_the_error_action(iot, client: PahoClient,
                                                               web: RecordingServer) -> None:
    name = rule_name()
    web.scripts["/failing"] = [500, 500, 500]
    make_rule(iot, f"SELECT * FROM 'snsf/{name}'", {"sns": {"targetArn": FAILING_ARN}}, error_topic=f"errors/{name}")
    client.subscribe(f"errors/{name}", qos=1)
    client.publish(f"snsf/{name}", b'{"x": 1}', qos=1)
    failure = json.loads(client.expect().payload)["failures"][0]
    assert (failure["failedAction"], failure["failedResource"]) == ("SnsAction", FAILING_ARN)
    assert "1 of 1 notification URLs failed" in failure["errorMessage"] and "(after 3 tries)" in failure["errorMessage"]
    assert len(web.wait_hits("/failing", 3)) == 3


def test_sns_unconfigured_topic_is_refused(iot) -> None:
    with pytest.raises(ClientError) as info:
        make_rule(iot, "SELECT * FROM 'x'", {"sns": {"targetArn": "arn:aws:sns:us-east-1:1:nowhere"}})
    assert info.value.response["Error"]["Code"] == "InvalidRequestException"
    assert "nowhere" in info.value.response["Error"]["Message"]


def test_elasticsearch_embedded_full_text_index(iot, client: PahoClient, server: ThingcoreProcess) -> None:
    name = rule_name()
    index = f"logs{name.lower()}"
    make_rule(iot, f"SELECT * FROM 'es/{name}/+'",
              {"elasticsearch": {"endpoint": "https://search-plant-abc.us-east-1.es.amazonaws.com",
                                 "index": index, "type": "reading", "id": "${topic(3)}", "roleArn": ROLE}})
    client.publish(f"es/{name}/d1", json.dumps({"note": "pump vibration high", "v": 7}), qos=1)
    client.publish(f"es/{name}/d2", json.dumps({"note": "all quiet"}), qos=1)
    client.publish(f"es/{name}/d1", json.dumps({"note": "pump replaced"}), qos=1)  # same id: replaced
    base = f"http://127.0.0.1:{server.http_port}/api/v1/search"
    wait_for(lambda: httpx.get(base, params={"index": index, "q": "replaced"}).json()["total"] == 1,
             what="the replaced document")
    hits = httpx.get(base, params={"index": index, "q": "pump"}).json()
    assert [(h["id"], h["source"]) for h in hits["hits"]] == [("d1", {"note": "pump replaced"})]
    out = subprocess.run([sys.executable, "-m", "thingcore", "search", index, "quiet OR vibration", "--endpoint",
                          f"http://127.0.0.1:{server.http_port}"], capture_output=True, text=True, check=True)
    assert [h["id"] for h in json.loads(out.stdout)["hits"]] == ["d2"]
    bad = httpx.get(base, params={"index": index, "q": "AND AND"})
    assert bad.status_code == 400 and "invalid query" in bad.json()["message"]


def test_opensearch_through_the_index_api(iot, client: PahoClient, index_server: IndexServer) -> None:
    name = rule_name()
    make_rule(iot, "SELECT *, topic(2) AS device FROM 'os/+'",
              {"openSearch": {"endpoint": index_server.url, "index": "telemetry", "type": "_doc",
                              "id": "${topic(2)}-${newuuid()}", "roleArn": ROLE}})
    client.publish(f"os/{name}", json.dumps({"temp": 4}), qos=1)
    doc_id = wait_for(lambda: next((i for (x, i) in index_server.docs if x == "telemetry" and i.startswith(name)),
                                   None), what="the document")
    assert index_server.docs[("telemetry", doc_id)] == {"temp": 4, "device": name}
    got = httpx.get(f"{index_server.url}/telemetry/_doc/{doc_id}").json()
    assert got["found"] and got["_source"]["device"] == name
    assert ("PUT", f"/telemetry/_doc/{doc_id}", "application/json") in index_server.requests


def test_search_endpoint_down_retries_then_error_action(iot, client: PahoClient, server: ThingcoreProcess) -> None:
    name = rule_name()
    dead = f"http://127.0.0.1:{free_port()}"
    rule = make_rule(iot, f"SELECT * FROM 'down/{name}'",
                     {"elasticsearch": {"endpoint": dead, "index": "i", "type": "t", "id": "${newuuid()}"}},
                     error_topic=f"errors/{name}")
    client.subscribe(f"errors/{name}", qos=1)
    client.publish(f"down/{name}", b'{"a": 1}', qos=1)
    err = json.loads(client.expect().payload)
    failure = err["failures"][0]
    assert failure["failedAction"] == "ElasticsearchAction" and "(after 3 tries)" in failure["errorMessage"]
    client.expect_none()  # one error document per message
    metrics = httpx.get(f"http://127.0.0.1:{server.http_port}/api/v1/rules/{rule}/metrics").json()
    action = metrics["actions"][0]
    assert (action["retried"], action["failed"]) == (2, 1)


def test_salesforce_posts_with_the_token_and_retries_5xx(iot, client: PahoClient, web: RecordingServer) -> None:
    name = rule_name()
    path = f"/streams/{name}/conn/event"
    web.scripts[path] = [503]
    make_rule(iot, f"SELECT * FROM 'sf/{name}'", {"salesforce": {"url": web.url + path, "token": TOKEN}})
    client.publish(f"sf/{name}", json.dumps({"reading": 1}), qos=1)
    hits = web.wait_hits(path, 2)  # the 503 is tried again
    assert [json.loads(h.body) for h in hits] == [{"reading": 1}] * 2
    assert hits[1].headers["authorization"] == f"Bearer {TOKEN}"
    assert hits[1].headers["content-type"] == "application/json"


def create_raw(server: ThingcoreProcess, *actions: dict) -> httpx.Response:
    """CreateTopicRule over plain HTTP (boto3's path): boto3 itself refuses some bad input before sending."""
    return httpx.post(f"http://127.0.0.1:{server.http_port}/rules/{rule_name()}",
                      json={"sql": "SELECT * FROM 'x'", "actions": list(actions)})


def test_salesforce_short_token_is_refused(server: ThingcoreProcess) -> None:
    resp = create_raw(server, {"salesforce": {"url": "https://example.com/s", "token": "short"}})
    assert resp.status_code == 400 and "at least 40" in resp.json()["message"]


@pytest.mark.parametrize("kind", ["iotAnalytics", "iotEvents", "iotSiteWise", "stepFunctions", "timestream",
                                  "location", "kafka"])
def test_actions_thingcore_cannot_serve_are_refused_by_name(server: ThingcoreProcess, kind: str) -> None:
    resp = create_raw(server, {kind: {"roleArn": ROLE}})  # boto3 would first insist on each action's parameters
    assert resp.status_code == 400 and resp.headers["x-amzn-ErrorType"].startswith("InvalidRequestException")
    assert f"the {kind} action is not supported by thingcore" in resp.json()["message"]


def test_alarms_and_indexed_documents_survive_kill_9(tmp_path: Path) -> None:
    with ThingcoreProcess(tmp_path, {"rules": {"retry_delay": 0.05}}) as tc:
        iot = iot_client(tc)
        make_rule(iot, "SELECT * FROM 'k/+'",
                  {"cloudwatchAlarm": {"alarmName": "door-${topic(2)}", "stateValue": "${state}",
                                       "stateReason": "door ${state}"}},
                  {"elasticsearch": {"endpoint": "https://search-x.us-east-1.es.amazonaws.com", "index": "doors",
                                     "type": "t", "id": "${topic(2)}"}})
        with PahoClient(tc.mqtt_port, uid("k")) as c:
            c.connect()
            c.subscribe("thingcore/alarms/#", qos=1)
            c.publish("k/front", json.dumps({"state": "ALARM"}), qos=1)
            assert json.loads(c.expect().payload)["stateValue"] == "ALARM"
        api = f"http://127.0.0.1:{tc.http_port}/api/v1"
        wait_for(lambda: httpx.get(f"{api}/search", params={"index": "doors", "q": "ALARM"}).json()["total"],
                 what="the indexed document")
        tc.kill()
        tc.start()
        api = f"http://127.0.0.1:{tc.http_port}/api/v1"
        assert httpx.get(f"{api}/alarms/door-front").json()["stateReason"] == "door ALARM"
        assert [h["id"] for h in httpx.get(f"{api}/search", params={"index": "doors", "q": "alarm"}).json()["hits"]] \
            == ["front"]
        with PahoClient(tc.mqtt_port, uid("k")) as c:  # after the restart, the stored state is the previous one
            c.connect()
            c.subscribe("thingcore/alarms/#", qos=1)
            c.publish("k/front", json.dumps({"state": "OK"}), qos=1)
            changed = json.loads(c.expect().payload)
            assert (changed["stateValue"], changed["previousStateValue"]) == ("OK", "ALARM")


def test_s3_endpoint_down_for_a_while_then_back(tmp_path: Path, s3_endpoint: str) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="k",
                      aws_secret_access_key="s")
    s3.create_bucket(Bucket="later")
    port = free_port()  # thingcore's endpoint: nothing listens there until the forwarder to moto starts
    config = {"object_storage": {"endpoint_url": f"http://127.0.0.1:{port}"},
              "rules": {"retry_delay": 0.2, "max_attempts": 12}}
    with ThingcoreProcess(tmp_path, config) as tc, PahoClient(tc.mqtt_port, uid("s3d")) as c:
        c.connect()
        rule = make_rule(iot_client(tc), "SELECT * FROM 'later/+'",
                         {"s3": {"bucketName": "later", "key": "${topic(2)}.json"}})
        for i in range(5):
            c.publish(f"later/m{i}", json.dumps({"i": i}), qos=1)
        api = f"http://127.0.0.1:{tc.http_port}/api/v1/rules/{rule}/metrics"
        wait_for(lambda: httpx.get(api).json()["actions"][0]["retried"] >= 5, what="tries against the dead endpoint")
        forwarder = Forwarder(port, ("127.0.0.1", int(s3_endpoint.rsplit(":", 1)[1])))
        try:
            wait_for(lambda: s3.list_objects_v2(Bucket="later").get("KeyCount") == 5, timeout=60,
                     what="the 5 objects after the endpoint came back")
            assert sorted(json.loads(s3.get_object(Bucket="later", Key=f"m{i}.json")["Body"].read())["i"]
                          for i in range(5)) == list(range(5))
            metrics = wait_for(lambda: (m := httpx.get(api).json()["actions"][0])["succeeded"] == 5 and m,
                               what="5 deliveries counted")
            assert metrics["failed"] == 0
        finally:
            forwarder.close()
