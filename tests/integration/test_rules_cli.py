"""The rules directory read at start-up and `thingcore rules ...` against a running server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.integration.mqtt_helpers import PahoClient, uid
from tests.integration.rules_helpers import iot_client, rule_name
from tests.server import ThingcoreProcess, free_port

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/rules"


def write_rules(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    # a bare topicRulePayload, named after its file
    (directory / "to_fahrenheit.json").write_text(json.dumps({
        "sql": "SELECT temp * 1.8 + 32 AS f FROM 'dir/+/temp'", "awsIotSqlVersion": "2016-03-23",
        "actions": [{"republish": {"topic": "dir/out/${topic(2)}", "roleArn": ROLE}}]}))
    # the input of `aws iot create-topic-rule --cli-input-json`
    (directory / "second.json").write_text(json.dumps({
        "ruleName": "from_cli_input", "topicRulePayload": {"sql": "SELECT * FROM 'dir/other'", "actions": [],
                                                           "ruleDisabled": True}}))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    base = tmp_path_factory.mktemp("rules-cli")
    write_rules(base / "rules")
    with ThingcoreProcess(base, {"rules": {"directory": str(base / "rules")}}) as tc:
        yield tc


def cli(server: ThingcoreProcess | None, *args: str, endpoint: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "THINGCORE_ENDPOINT": endpoint or f"http://127.0.0.1:{server.http_port}"}
    return subprocess.run([sys.executable, "-m", "thingcore", "rules", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def test_rules_directory_is_loaded_at_start(server: ThingcoreProcess) -> None:
    iot = iot_client(server)
    rule = iot.get_topic_rule(ruleName="to_fahrenheit")["rule"]
    assert rule["sql"] == "SELECT temp * 1.8 + 32 AS f FROM 'dir/+/temp'"
    assert iot.get_topic_rule(ruleName="from_cli_input")["rule"]["ruleDisabled"] is True
    with PahoClient(server.mqtt_port) as client:
        client.connect()
        client.subscribe("dir/out/+", 1)
        client.publish("dir/kitchen/temp", b'{"temp": 100}', 1)
        msg = client.expect()
    assert msg.topic == "dir/out/kitchen"
    assert json.loads(msg.payload) == {"f": 212}


def test_restart_keeps_directory_rules_and_their_creation_time(server: ThingcoreProcess) -> None:
    iot = iot_client(server)
    created = iot.get_topic_rule(ruleName="to_fahrenheit")["rule"]["createdAt"]
    server.restart()
    assert iot.get_topic_rule(ruleName="to_fahrenheit")["rule"]["createdAt"] == created  # unchanged file: no rewrite


def test_a_bad_rule_file_stops_the_start_with_its_name(thingcore_factory, tmp_path: Path) -> None:
    directory = tmp_path / "bad-rules"
    directory.mkdir()
    (directory / "broken.json").write_text(json.dumps({"sql": "SELECT FROM 'x'", "actions": []}))
    with pytest.raises(RuntimeError) as info:
        thingcore_factory({"rules": {"directory": str(directory)}})
    log = str(info.value).replace("\n", "")  # the console wraps long lines
    assert "broken.json: SqlParseException" in log and "column 8" in log


def test_cli_apply_list_show_disable_enable_delete(server: ThingcoreProcess, tmp_path: Path) -> None:
    name = rule_name("cli")
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"sql": f"SELECT * FROM 'cli/{name}'", "actions": [],
                                "description": "first"}))
    created = cli(server, "apply", str(path))
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    assert out["action"] == "created" and out["rule"]["description"] == "first"

    path.write_text(json.dumps({"sql": f"SELECT * FROM 'cli/{name}/#'", "actions": [], "description": "second"}))
    replaced = json.loads(cli(server, "apply", str(path)).stdout)
    assert replaced["action"] == "replaced" and replaced["rule"]["description"] == "second"

    listed = json.loads(cli(server, "list", "--topic", f"cli/{name}/x").stdout)["rules"]
    assert [r["ruleName"] for r in listed] == [name]
    assert json.loads(cli(server, "disable", name).stdout)["ruleDisabled"] is True
    assert json.loads(cli(server, "show", name).stdout)["rule"]["ruleDisabled"] is True
    assert cli(server, "enable", name).returncode == 0
    assert json.loads(cli(server, "show", name).stdout)["rule"]["ruleDisabled"] is False
    assert cli(server, "delete", name).returncode == 0
    missing = cli(server, "show", name)
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("error: no such rule")
    assert "Traceback" not in missing.stderr


def test_cli_refusals_are_one_line(server: ThingcoreProcess, tmp_path: Path) -> None:
    bad = tmp_path / "bad_sql.json"
    bad.write_text(json.dumps({"sql": "SELECT * FROM", "actions": []}))
    result = cli(server, "apply", str(bad))
    assert result.returncode == 1
    assert result.stderr.startswith("error: SqlParseException:") and result.stderr.count("\n") == 1
    assert json.loads(cli(server, "list").stdout)["rules"]  # the server is fine, nothing half-applied
    unreadable = cli(server, "apply", str(tmp_path / "missing.json"))
    assert unreadable.returncode == 2 and "cannot read" in unreadable.stderr
    down = cli(None, "list", endpoint=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1 and down.stderr.startswith("error: cannot reach thingcore")
    assert "Traceback" not in down.stderr


def test_cli_rules_test_shows_output_where_and_rendered_actions(server: ThingcoreProcess, tmp_path: Path) -> None:
    actions = tmp_path / "actions.json"
    actions.write_text(json.dumps({"actions": [
        {"republish": {"topic": "alerts/${topic(2)}", "roleArn": ROLE, "qos": 1}},
        {"http": {"url": "https://example.com/hook/${clientid()}",
                  "headers": [{"key": "x-temp", "value": "${temp}"}]}}]}))
    sql = "SELECT temp, temp > 30 AS hot FROM 'sensors/+/data' WHERE temp > 20"
    result = cli(server, "test", "--sql", sql, "--topic", "sensors/s1/data", "--payload", '{"temp": 31}',
                 "--client-id", "dev-9", "--actions", str(actions))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["topicMatches"] is True and out["wherePassed"] is True
    assert out["output"] == {"temp": 31, "hot": True}
    assert json.loads(out["payload"]) == {"temp": 31, "hot": True}
    republish, http = out["actions"]
    assert republish == {"republish": {"topic": "alerts/s1", "qos": 1}}
    assert http["http"]["url"] == "https://example.com/hook/dev-9"
    assert http["http"]["headers"]["x-temp"] == "31"
    assert http["http"]["headers"]["content-type"] == "application/json"

    cold = json.loads(cli(server, "test", "--sql", sql, "--topic", "other/s1/data", "--payload",
                          '{"temp": 5}').stdout)
    assert cold["topicMatches"] is False and cold["wherePassed"] is False and "output" not in cold
    bad = cli(server, "test", "--sql", "SELECT nope(", "--topic", "a")
    assert bad.returncode == 1 and "SqlParseException" in bad.stderr


def test_rules_test_over_http_has_no_side_effects(server: ThingcoreProcess) -> None:
    topic = f"effects/{uid('t')}"
    with PahoClient(server.mqtt_port) as client:
        client.connect()
        client.subscribe(topic, 1)
        resp = httpx.post(f"http://127.0.0.1:{server.http_port}/api/v1/rules/test", json={
            "sql": "SELECT * FROM '#'", "topic": "x/y", "payload": {"a": 1},
            "actions": [{"republish": {"topic": topic, "roleArn": ROLE}}]})
        assert resp.status_code == 200, resp.text
        assert resp.json()["actions"] == [{"republish": {"topic": topic, "qos": 0}}]
        client.no_more()  # nothing was published
    binary = httpx.post(f"http://127.0.0.1:{server.http_port}/api/v1/rules/test", json={
        "sql": "SELECT * FROM 'b'", "topic": "b", "payloadBase64": "AAEC/w=="}).json()
    assert binary["outputBase64"] == "AAEC/w==" and binary["payload"] is None
    existing = httpx.post(f"http://127.0.0.1:{server.http_port}/api/v1/rules/test", json={
        "ruleName": "to_fahrenheit", "topic": "dir/a/temp", "payload": '{"temp": 0}'}).json()
    assert existing["output"] == {"f": 32}
    assert existing["actions"] == [{"republish": {"topic": "dir/out/a", "qos": 0}}]
