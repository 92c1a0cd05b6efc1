"""Functions reading the message's context (topic, client, principal, source IP, trace id, time,
MQTT 5 properties) and substitution templates."""

from __future__ import annotations

import re
import time

import pytest
from tests.unit.test_sql_helpers import V1, ctx, run, value

from thingcore.rules.sql import UNDEFINED, compile_sql, compile_template


def test_topic() -> None:
    c = {"topic": "things/myThings/thingOne"}
    assert value("topic()", **c) == "things/myThings/thingOne"
    assert value("topic(1)", **c) == "things"
    assert value("topic(3)", **c) == "thingOne"
    assert value("topic('2')", **c) == "myThings"
    assert value("topic(1.2)", **c) == "things"
    for bad in ("topic(4)", "topic(0)", "topic(-1)", "topic('x')", "topic(missing)", "topic(true)"):
        assert value(bad, **c) is UNDEFINED, bad


def test_basic_ingest_topic_is_the_rest_of_the_topic() -> None:
    # the engine strips $aws/rules/<rule>/ before evaluating, as AWS does for topic()
    c = {"topic": "Buildings/Building5/Floor2/Room201/Lights"}
    assert value("topic()", **c) == "Buildings/Building5/Floor2/Room201/Lights"
    assert value("topic(3)", **c) == "Floor2"


def test_publisher_identity() -> None:
    assert value("clientid()", client_id="dev-1") == "dev-1"
    assert value("clientid()") == "n/a"  # not published over MQTT
    assert value("principal()", principal="ba67293af50bf2506f5f93469686da660c7c844e7b3950bfb16813e0d31e9373") == \
        "ba67293af50bf2506f5f93469686da660c7c844e7b3950bfb16813e0d31e9373"
    assert value("principal()") is UNDEFINED
    assert value("sourceip()", source_ip="10.1.2.3") == "10.1.2.3"
    assert value("sourceip()") is UNDEFINED
    assert value("traceid()", trace_id="12345678-1234-1234-1234-123456789012") == "12345678-1234-1234-1234-123456789012"
    assert value("traceid()") is UNDEFINED


def test_timestamp_and_versions_and_account() -> None:
    assert value("timestamp()", timestamp_ms=1481825251155) == 1481825251155
    now = value("timestamp()")
    assert abs(now - time.time() * 1000) < 60_000  # no receive time given: the evaluation's clock
    assert value("sql_version()") == "2016-03-23"
    assert value("sql_version()", version=V1) == "2015-10-08"
    assert value("accountid()") == "000000000000"

    class Services:
        account_id = "123456789012"
    assert value("accountid()", services=Services()) == "123456789012"


def test_mqtt5_properties() -> None:
    props = {"content_type": "text/plain", "response_topic": "r/t", "correlation_data": b"cid",
             "payload_format_indicator": 1, "user_property": [("k", "v1"), ("o", "ov"), ("k", "v2")]}
    out = run("SELECT get_mqtt_property('content_type') AS c, get_mqtt_property('format_indicator') AS f, "
              "get_mqtt_property('response_topic') AS r, get_mqtt_property('correlation_data') AS d, "
              "get_mqtt_property('bogus') AS b, get_user_properties('k') AS k, get_user_properties('none') AS n, "
              "get_user_properties() AS all FROM 't'", properties=props)
    assert out == {"c": "text/plain", "f": "UTF8_DATA", "r": "r/t", "d": "Y2lk", "k": ["v1", "v2"],
                   "all": [{"k": "v1"}, {"o": "ov"}, {"k": "v2"}]}
    # an MQTT 3.1.1 message (no properties)
    assert run("SELECT get_mqtt_property('format_indicator') AS f, get_mqtt_property('content_type') AS c, "
               "get_user_properties() AS u FROM 't'") == {"f": "UNSPECIFIED_BYTES"}


def test_template_rendering() -> None:
    c = ctx({"device": "d1", "temp": 21.5, "n": None, "obj": {"a": [1]}, "flag": True}, topic="a/b/c",
            timestamp_ms=1000)
    assert compile_template("${topic(2)}/${device}").render(c) == "b/d1"
    assert compile_template("t=${temp} n=[${n}] m=[${missing}] o=${obj} f=${flag}").render(c) == \
        't=21.5 n=[] m=[] o={"a":[1]} f=true'
    assert compile_template("$$aws/things/${device}/shadow/update").render(c) == "$aws/things/d1/shadow/update"
    assert compile_template("cost: $5 and {braces} ${'}'}").render(c) == "cost: $5 and {braces} }"
    assert compile_template("${ {'a': device} }").render(c) == '{"a":"d1"}'
    assert compile_template("${parse_time('yyyy', timestamp(), 'UTC')}").render(c) == "1970"
    assert compile_template("plain").render(None) == "plain"  # constant templates need no context
    assert compile_template("plain").is_constant and compile_template("${1 + 1}").is_constant
    assert compile_template("${1 + 1}").render(None) == "2"
    assert not compile_template("${device}").is_constant


def test_template_sees_the_original_message_and_set_variables_not_aliases() -> None:
    c = ctx({"a": 1})
    q = compile_sql("SET @twice = a * 2 SELECT a AS alias FROM 't'")
    out = q.evaluate(c).output
    t = compile_template("${alias}|${a}|${@twice}")
    assert t.render(c, out) == "|1|2"
    compile_sql("SELECT a FROM 't'").evaluate(c)  # a rule without SET evaluated on the same context
    assert t.render(c, out) == "|1|"


def test_template_on_binary_payload() -> None:
    c = ctx(b"\x00\x01", topic="dev/7/raw")
    assert compile_template("out/${topic(2)}/${device_id}").render(c) == "out/7/"
    assert compile_template("${encode(*, 'base64')}").render(c) == "AAE="


def test_template_external_functions_are_flagged() -> None:
    assert compile_template("${get_secret('k', 'SecretString', 'API', 'arn')}").needs_services
    assert not compile_template("${topic()}").needs_services


def test_newuuid_in_templates_is_fresh_per_render() -> None:
    t = compile_template("${newuuid()}")
    a, b = t.render(ctx()), t.render(ctx())
    assert a != b and re.fullmatch(r"[0-9a-f-]{36}", a)


@pytest.mark.parametrize("expr", ["topic()", "clientid()", "timestamp()", "newuuid()", "rand()", "traceid()"])
def test_context_functions_are_never_folded_at_compile_time(expr: str) -> None:
    q = compile_sql(f"SELECT {expr} AS v FROM 't'")
    a = q.evaluate(ctx(topic="x/1", client_id="c1", timestamp_ms=1, trace_id="t1")).output.get("v")
    b = q.evaluate(ctx(topic="x/2", client_id="c2", timestamp_ms=2, trace_id="t2")).output.get("v")
    assert a != b
