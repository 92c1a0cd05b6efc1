"""Rule payload checks, rule files, local functions and the SQL services: pure parts of the rules engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thingcore.rules.functions import FunctionError, FunctionRunner, function_name, load_handler
from thingcore.rules.model import RuleError, check_name, normalize_payload, payload_of
from thingcore.rules.services import Services
from thingcore.rules.store import RuleFileError, read_directory, read_rule_file


def test_payload_defaults_and_round_trip() -> None:
    out = normalize_payload({"sql": "SELECT * FROM 'a'", "actions": []})
    assert out == {"sql": "SELECT * FROM 'a'", "actions": [], "ruleDisabled": False,
                   "awsIotSqlVersion": "2015-10-08"}
    assert payload_of({"ruleName": "r", "createdAt": 1.0, "ruleArn": "arn", **out}) == out


@pytest.mark.parametrize("payload,message", [
    ([], "must be a JSON object"),
    ({"actions": []}, "sql is required"),
    ({"sql": "SELECT 1"}, "actions is required"),
    ({"sql": "SELECT 1", "actions": {}}, "must be a list"),
    ({"sql": "SELECT 1", "actions": [{}]}, "exactly one action"),
    ({"sql": "SELECT 1", "actions": [{"republish": {}, "http": {}}]}, "exactly one action"),
    ({"sql": "SELECT 1", "actions": [{"teleport": {}}]}, "unknown action 'teleport'"),
    ({"sql": "SELECT 1", "actions": [], "awsIotSqlVersion": "2020-01-01"}, "awsIotSqlVersion must be one of"),
    ({"sql": "SELECT 1", "actions": [], "ruleDisabled": "yes"}, "ruleDisabled must be true or false"),
    ({"sql": "SELECT 1", "actions": [], "sqlVersion": "x"}, "unknown member(s): sqlVersion"),
    ({"sql": "SELECT 1", "actions": [], "errorAction": {"nope": {}}}, "errorAction: unknown action 'nope'"),
])
def test_payload_refusals(payload: object, message: str) -> None:
    with pytest.raises(RuleError) as info:
        normalize_payload(payload)
    assert info.value.error_type == "InvalidRequestException"
    assert message in info.value.message


@pytest.mark.parametrize("name", ["ok_name", "A1", "x" * 128])
def test_good_names(name: str) -> None:
    check_name(name)


@pytest.mark.parametrize("name", ["", "has-hyphen", "sp ace", "x" * 129, "dot.ted"])
def test_bad_names(name: str) -> None:
    with pytest.raises(RuleError, match="ruleName"):
        check_name(name)


def test_rule_files(tmp_path: Path) -> None:
    (tmp_path / "plain_rule.json").write_text(json.dumps({"sql": "SELECT 1", "actions": []}))
    (tmp_path / "cli-form.json").write_text(json.dumps({"ruleName": "named_in_file",
                                                       "topicRulePayload": {"sql": "SELECT 2", "actions": []}}))
    (tmp_path / "notes.txt").write_text("ignored")
    found = [(path.name, name, payload["sql"]) for path, name, payload in read_directory(tmp_path)]
    assert found == [("cli-form.json", "named_in_file", "SELECT 2"), ("plain_rule.json", "plain_rule", "SELECT 1")]


def test_rule_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text("{nope")
    with pytest.raises(RuleFileError, match=r"broken\.json: not valid JSON"):
        read_rule_file(bad)
    hyphen = tmp_path / "bad-name.json"
    hyphen.write_text("{}")
    with pytest.raises(RuleFileError, match=r"bad-name\.json: rule name .bad-name. is not valid"):
        read_rule_file(hyphen)
    with pytest.raises(RuleFileError, match="does not exist"):
        read_directory(tmp_path / "missing")
    dup = tmp_path / "dups"
    dup.mkdir()
    (dup / "a.json").write_text(json.dumps({"ruleName": "same", "topicRulePayload": {}}))
    (dup / "same.json").write_text("{}")
    with pytest.raises(RuleFileError, match="also defined in"):
        read_directory(dup)


HANDLERS = '''
import time
def ok(event, context):
    return {"echo": event, "name": context.function_name, "left": context.get_remaining_time_in_millis()}
def boom(event, context):
    raise ValueError("no good")
def sleepy(event, context):
    time.sleep(0.5)
'''


@pytest.fixture
def runner(tmp_path: Path) -> FunctionRunner:
    path = tmp_path / "handlers.py"
    path.write_text(HANDLERS)
    r = FunctionRunner({"ok": f"{path}:ok", "boom": f"{path}:boom", "sleepy": f"{path}:sleepy"}, workers=2,
                       timeout=1.0)
    yield r
    r.close()


@pytest.mark.parametrize("arn,name", [
    ("arn:aws:lambda:us-east-1:123456789012:function:enrich", "enrich"),
    ("arn:aws:lambda:us-east-1:123456789012:function:enrich:prod", "enrich"),
    ("enrich", "enrich"),
])
def test_function_names(arn: str, name: str) -> None:
    assert function_name(arn) == name


async def test_function_runner(runner: FunctionRunner) -> None:
    result = await runner.invoke("arn:aws:lambda:us-east-1:1:function:ok", {"a": 1})
    assert result["echo"] == {"a": 1} and result["name"] == "ok" and 0 < result["left"] <= 1000
    with pytest.raises(FunctionError, match="no good") as info:
        await runner.invoke("boom", {})
    assert info.value.retryable
    with pytest.raises(FunctionError, match=r"timed out after 0\.1 s"):
        await runner.invoke("sleepy", {}, timeout=0.1)
    with pytest.raises(FunctionError, match="'missing' is not configured"):
        await runner.invoke("missing", {})
    assert runner.invoke_blocking("ok", 5, 1.0)["echo"] == 5
    with pytest.raises(FunctionError, match="timed out"):
        runner.invoke_blocking("sleepy", {}, 0.05)


def test_function_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not 'module:function'"):
        load_handler("no_colon")
    with pytest.raises(ValueError, match="cannot import no_such_module_here"):
        load_handler("no_such_module_here:f")
    with pytest.raises(ValueError, match="has no function 'nope'"):
        load_handler("json:nope")
    with pytest.raises(ValueError, match="not found"):
        load_handler(f"{tmp_path}/missing.py:f")
    assert load_handler("json:dumps") is json.dumps


def test_secrets() -> None:
    services = Services(None, {"API_KEY": "k-123", "db": '{"user": "u", "password": "p"}'}, "123456789012")
    assert services.get_secret("API_KEY", "SecretString") == "k-123"
    assert services.get_secret("arn:aws:secretsmanager:us-east-1:1:secret:API_KEY-AbCdEf", "SecretString") == "k-123"
    assert services.get_secret("db", "SecretBinary") == b'{"user": "u", "password": "p"}'
    with pytest.raises(RuntimeError, match="not configured"):
        services.get_secret("other", "SecretString")
    with pytest.raises(RuntimeError, match="no functions"):
        services.call_function("f", {})
    assert services.account_id == "123456789012"

