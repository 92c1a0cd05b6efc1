"""Functions that reach services (aws_lambda, get_thing_shadow, get_dynamodb, get_secret,
get_registry_data) through ``ctx.services``: arguments passed on, results addressable, failures
failing the rule with a clear message. ``LocalServices`` is a small in-memory implementation of
the services contract (the SQL package's only dependency), the role thingcore's engine plays."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.test_sql_helpers import ctx

from thingcore.rules.sql import SqlRuntimeError, compile_sql


class LocalServices:
    account_id = "123456789012"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.shadows = {("t1", None): {"state": {"reported": {"alarm": "ON", "v": 2.0}}},
                        ("t1", "named"): {"state": {"reported": {"v": 7}}}}
        self.items = {("Devices", "d1"): {"deviceId": "d1", "location": "Oslo", "floor": 3}}
        self.secrets: dict[str, str | bytes] = {"api": '{"API_KEY_VALUE": "s3cr3t", "n": 1}', "plain": "just text",
                                                "bin": b"\x00\x01"}
        self.things = {"sensor1": {"thingName": "sensor1", "attributes": {"limit": "9"}}}

    def get_thing_shadow(self, thing_name: str, role_arn: str, shadow_name: str | None = None) -> dict | None:
        self.calls.append(("shadow", thing_name, role_arn, shadow_name))
        return self.shadows.get((thing_name, shadow_name))

    def call_function(self, function_arn: str, payload: Any) -> Any:
        self.calls.append(("lambda", function_arn, payload))
        if function_arn.endswith(":broken"):
            raise RuntimeError("function raised ValueError: boom")
        if function_arn.endswith(":text"):
            return "not json"
        return {"echo": payload, "ok": True}

    def get_dynamodb(self, table: str, hash_key_name: str, hash_key_value: Any, range_key_name: str | None = None,
                     range_key_value: Any = None, role_arn: str | None = None) -> dict | None:
        self.calls.append(("dynamodb", table, hash_key_name, hash_key_value, range_key_name, range_key_value,
                           role_arn))
        return self.items.get((table, hash_key_value))

    def get_secret(self, secret_id: str, secret_type: str, key: str | None, role_arn: str) -> str | bytes:
        self.calls.append(("secret", secret_id, secret_type, key, role_arn))
        if secret_id not in self.secrets:
            raise KeyError(f"no secret {secret_id}")
        return self.secrets[secret_id]

    def get_registry_data(self, api: str, thing_name: str, role_arn: str) -> dict | None:
        self.calls.append(("registry", api, thing_name, role_arn))
        if api == "ListThingGroupsForThing":
            return {"thingGroups": []}
        return self.things.get(thing_name)


ROLE = "arn:aws:iam::123456789012:role/r"


def evaluate(sql: str, payload: Any = b"{}", services: Any = None) -> Any:
    r = compile_sql(sql).evaluate(ctx(payload, services=services))
    return r.output if r.matched else None


def test_get_thing_shadow_in_where_and_select() -> None:
    s = LocalServices()
    sql = (f"SELECT get_thing_shadow('t1', 'named', '{ROLE}').state.reported.v AS named, "
           f"get_thing_shadow('t1', '{ROLE}').state.reported.v AS classic FROM 'a' "
           f"WHERE get_thing_shadow(thing, '{ROLE}').state.reported.alarm = 'ON'")
    assert evaluate(sql, {"thing": "t1"}, s) == {"named": 7, "classic": 2}
    assert ("shadow", "t1", ROLE, "named") in s.calls and ("shadow", "t1", ROLE, None) in s.calls
    assert evaluate(f"SELECT get_thing_shadow('nope', '{ROLE}') AS s FROM 'a'", services=s) == {}


def test_aws_lambda_receives_the_payload_and_returns_json() -> None:
    s = LocalServices()
    arn = "arn:aws:lambda:us-east-1:123456789012:function:enrich"
    assert evaluate(f"SELECT aws_lambda('{arn}', {{'payload': attribute1}}).echo AS out FROM 'a'",
                    {"attribute1": 21}, s) == {"out": {"payload": 21}}
    assert evaluate(f"SELECT aws_lambda('{arn}', *) AS out FROM 'a'", {"attribute1": 21}, s) == \
        {"out": {"echo": {"attribute1": 21}, "ok": True}}
    with pytest.raises(SqlRuntimeError, match="aws_lambda\\(\\) failed: function raised ValueError: boom"):
        evaluate("SELECT aws_lambda('arn:aws:lambda:r:1:function:broken', *) AS o FROM 'a'", services=s)
    with pytest.raises(SqlRuntimeError, match="did not return JSON"):
        evaluate("SELECT aws_lambda('arn:aws:lambda:r:1:function:text', *) AS o FROM 'a'", services=s)
    with pytest.raises(SqlRuntimeError, match="encode\\(\\*, 'base64'\\)"):
        evaluate(f"SELECT aws_lambda('{arn}', *) AS o FROM 'a'", b"\x00binary", s)


def test_get_dynamodb() -> None:
    s = LocalServices()
    sql = f"SELECT *, get_dynamodb('Devices', 'deviceId', id, '{ROLE}').location AS location FROM 'some/topic'"
    assert evaluate(sql, {"id": "d1"}, s) == {"id": "d1", "location": "Oslo"}
    assert s.calls[-1] == ("dynamodb", "Devices", "deviceId", "d1", None, None, ROLE)
    assert evaluate(f"SELECT get_dynamodb('Devices', 'deviceId', id, 'seq', n, '{ROLE}') AS i FROM 'a'",
                    {"id": "zz", "n": 4}, s) == {}
    assert s.calls[-1] == ("dynamodb", "Devices", "deviceId", "zz", "seq", 4, ROLE)


def test_get_dynamodb_twice_in_one_statement_aborts_the_rule() -> None:
    s = LocalServices()
    with pytest.raises(SqlRuntimeError, match="at most once per SQL statement"):
        evaluate(f"SELECT get_dynamodb('Devices', 'deviceId', id, '{ROLE}') AS a, "
                 f"get_dynamodb('Devices', 'deviceId', id, '{ROLE}') AS b FROM 'a'", {"id": "d1"}, s)
    # once per evaluation, not once per rule
    q = compile_sql(f"SELECT get_dynamodb('Devices', 'deviceId', id, '{ROLE}').floor AS f FROM 'a'")
    for _ in range(2):
        assert q.evaluate(ctx({"id": "d1"}, services=s)).output == {"f": 3}


def test_get_secret() -> None:
    s = LocalServices()
    assert evaluate(f"SELECT get_secret('api', 'SecretString', 'API_KEY_VALUE', '{ROLE}') AS k FROM 'a'",
                    services=s) == {"k": "s3cr3t"}
    assert evaluate(f"SELECT get_secret('api', 'SecretString', '{ROLE}') AS k FROM 'a'", services=s) == \
        {"k": {"API_KEY_VALUE": "s3cr3t", "n": 1}}
    assert evaluate(f"SELECT get_secret('plain', 'SecretString', '{ROLE}') AS k FROM 'a'", services=s) == \
        {"k": "just text"}
    assert evaluate(f"SELECT get_secret('bin', 'SecretBinary', '{ROLE}') AS k FROM 'a'", services=s) == {"k": "AAE="}
    for sql, message in [
        (f"SELECT get_secret('plain', 'SecretString', 'key', '{ROLE}') AS k FROM 'a'", "is not a JSON object"),
        (f"SELECT get_secret('api', 'SecretString', 'other', '{ROLE}') AS k FROM 'a'", "has no key 'other'"),
        (f"SELECT get_secret('bin', 'SecretBinary', 'key', '{ROLE}') AS k FROM 'a'", "cannot be used with Secret"),
        (f"SELECT get_secret('api', 'Other', '{ROLE}') AS k FROM 'a'", "SecretString or SecretBinary"),
        (f"SELECT get_secret('missing', 'SecretString', '{ROLE}') AS k FROM 'a'", "get_secret\\(\\) failed"),
    ]:
        with pytest.raises(SqlRuntimeError, match=message):
            evaluate(sql, services=s)


def test_get_registry_data() -> None:
    s = LocalServices()
    assert evaluate(f"SELECT get_registry_data('DescribeThing', 'sensor1', '{ROLE}').attributes.limit AS l, "
                    f"get_registry_data('ListThingGroupsForThing', 'sensor1', '{ROLE}').thingGroups AS g FROM 'a'",
                    services=s) == {"l": "9", "g": []}
    with pytest.raises(SqlRuntimeError, match="DescribeThing or ListThingGroupsForThing"):
        evaluate(f"SELECT get_registry_data('Other', 'sensor1', '{ROLE}') AS x FROM 'a'", services=s)


def test_get_or_default_catches_a_failing_lookup() -> None:
    s = LocalServices()
    assert evaluate(f"SELECT get_or_default(get_secret('missing', 'SecretString', '{ROLE}'), 'fallback') AS k "
                    "FROM 'a'", services=s) == {"k": "fallback"}


@pytest.mark.parametrize("sql", [
    f"SELECT get_thing_shadow('t1', '{ROLE}') AS s FROM 'a'",
    "SELECT aws_lambda('arn:aws:lambda:r:1:function:f', *) AS s FROM 'a'",
    f"SELECT get_dynamodb('T', 'k', 'v', '{ROLE}') AS s FROM 'a'",
    f"SELECT get_secret('s', 'SecretString', '{ROLE}') AS s FROM 'a'",
    f"SELECT get_registry_data('DescribeThing', 't', '{ROLE}') AS s FROM 'a'",
])
def test_missing_services_fail_clearly(sql: str) -> None:
    assert compile_sql(sql).needs_services
    with pytest.raises(SqlRuntimeError, match="is not available: no local service provides"):
        evaluate(sql)


def test_external_functions_need_string_arguments() -> None:
    with pytest.raises(SqlRuntimeError, match="thingName must be a string"):
        evaluate(f"SELECT get_thing_shadow(5, '{ROLE}') AS s FROM 'a'", services=LocalServices())
