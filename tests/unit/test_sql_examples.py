"""End-to-end statements from the AWS documentation and the AWS-verified validation data
(aws-iot-builder-tools/validation-tool-for-aws-iot-rules): the output AWS produced."""

from __future__ import annotations

import base64

import pytest
from tests.unit.test_sql_helpers import V1, V2, ctx, run

from thingcore.rules.sql import compile_template

SENSORS = {"temperature": 23.07, "humidity": 49.9397, "light": 5.0}
POS = {"Pos": [{"L1": 36.903999599999999, "L2": -25.263283700000002, "S": 5},
               {"L1": 36.903999599999977, "L2": -25.2632837000000772, "S": 6},
               {"L2": -25.263283700000002, "S": 7}]}


@pytest.mark.parametrize(("version", "light"), [(V1, 5.0), (V2, 5)])
def test_validation_casting_whole_decimal_depends_on_version(version: str, light: float) -> None:
    out = run("SELECT temperature, humidity, cast(light as double) as newLight FROM 'test/test5'",
              SENSORS, topic="test/test5", version=version)
    assert out == {"temperature": 23.07, "humidity": 49.9397, "newLight": light}
    assert type(out["newLight"]) is type(light)


def test_validation_filter_out_from_input_payload() -> None:
    out = run("SELECT (SELECT * FROM Pos WHERE L1 <> isNull(SELECT VALUE L1 FROM Pos) ) as required_array "
              "FROM 'test/test3'", POS, topic="test/test3")
    assert out == {"required_array": [{"L1": 36.9039996, "L2": -25.263283700000002, "S": 5},
                                      {"L1": 36.90399959999998, "L2": -25.263283700000077, "S": 6}]}


def test_validation_include_topic_and_transform() -> None:
    out = run("SELECT get((SELECT *, topic() as topic FROM *),0) as data FROM 'test/test1'", {"foo": "bar"},
              topic="test/test1")
    assert out == {"data": {"foo": "bar", "topic": "test/test1"}}


def test_validation_payload_enrichment_with_functions() -> None:
    out = run("SELECT *, topic(1) as deviceId, topic(2) as actuatorId, topic(3) as cmd FROM '+/+/+/req'",
              {"values": [50, 100]}, topic="123/ACT_123/slider/req")
    assert out == {"values": [50, 100], "deviceId": "123", "actuatorId": "ACT_123", "cmd": "slider"}


def test_validation_select_value_star_member() -> None:
    out = run("SELECT VALUE *.messages FROM 'test/test2'", {"messages": [{"message": "a"}, {"message": "b"}]})
    assert out == [{"message": "a"}, {"message": "b"}]


def test_validation_undefined_function_check() -> None:
    out = run("SELECT state.debug AS state.debug, state.command AS state.command, version FROM 'test/test6' "
              "WHERE IsUndefined(state.debug) = False OR IsUndefined(state.command) = False",
              {"state": {"command": "DOOR_OPEN", "debug": "FALSE"}, "version": "3.1"})
    assert out == {"state": {"debug": "FALSE", "command": "DOOR_OPEN"}, "version": "3.1"}


def test_docs_where_on_non_json_payload() -> None:
    sql = ("SELECT decode(encode(*, 'base64'), 'base64') AS value FROM 'topic/subtopic' "
           "WHERE decode(encode(*, 'base64'), 'base64') > 50")
    assert run(sql, b"80") == {"value": 80}
    assert run(sql, b"20") is None


def test_docs_where_false_does_nothing() -> None:
    sql = "SELECT color AS my_color FROM 'topic/subtopic' WHERE temperature > 50 AND color <> 'red'"
    assert run(sql, {"color": "red", "temperature": 40}) is None
    assert run(sql, {"color": "blue", "temperature": 60}) == {"my_color": "blue"}


def test_docs_select_examples() -> None:
    msg = {"color": "red", "temperature": 50}
    assert run("SELECT * FROM 'topic/subtopic'", msg) == msg
    assert run("SELECT color FROM 'topic/subtopic'", msg) == {"color": "red"}
    assert run("SELECT color as my_color, temperature as fahrenheit FROM 'topic/subtopic'", msg) == \
        {"my_color": "red", "fahrenheit": 50}
    assert run("SELECT *, 15 as speed FROM 'topic/subtopic'", msg) == {**msg, "speed": 15}
    assert run("SELECT VALUE color FROM 'topic/subtopic'", msg) == "red"
    assert run("SELECT (temperature - 32) * 5 / 9 AS celsius, upper(color) as my_color FROM 'topic/subtopic'",
               msg) == {"celsius": 10, "my_color": "RED"}
    assert run("SELECT color.red as red_value FROM 'topic/subtopic'",
               {"color": {"red": 255, "green": 0, "blue": 0}}) == {"red_value": 255}


def test_docs_reference_example() -> None:
    assert run("SELECT color AS rgb FROM 'topic/subtopic' WHERE temperature > 50",
               {"color": "red", "temperature": 100}) == {"rgb": "red"}


def test_docs_case() -> None:
    sql = ("SELECT CASE color WHEN 'green' THEN 'go' WHEN 'yellow' THEN 'caution' WHEN 'red' THEN 'stop' "
           "ELSE 'you are not at a stop light' END as instructions FROM 'topic/subtopic'")
    assert run(sql, {"color": "yellow"}) == {"instructions": "caution"}
    assert run(sql, {"color": "blue"}) == {"instructions": "you are not at a stop light"}
    assert run(sql, {}) == {}


def test_docs_nested_object_queries() -> None:
    msg = {"e": [{"n": "temperature", "u": "Cel", "t": 1234, "v": 22.5},
                 {"n": "light", "u": "lm", "t": 1235, "v": 135},
                 {"n": "acidity", "u": "pH", "t": 1235, "v": 7}]}
    assert run("SELECT (SELECT VALUE n FROM e) as sensors FROM 'my/topic'", msg) == \
        {"sensors": ["temperature", "light", "acidity"]}
    assert run("SELECT (SELECT v FROM e WHERE n = 'temperature') as temperature FROM 'my/topic'", msg) == \
        {"temperature": [{"v": 22.5}]}
    assert run("SELECT get((SELECT v FROM e WHERE n = 'temperature'), 0).v as temperature FROM 'topic'", msg) == \
        {"temperature": 22.5}


def test_docs_literals() -> None:
    assert run("SELECT {'latitude': get(lat_long, 0),'longitude':get(lat_long, 1)} as lat_long "
               "FROM 'topic/subtopic'", {"lat_long": [47.606, -122.332]}) == \
        {"lat_long": {"latitude": 47.606, "longitude": -122.332}}
    assert run("SELECT [lat,long] as lat_long FROM 'topic/subtopic'", {"lat": 47.696, "long": -122.332}) == \
        {"lat_long": [47.696, -122.332]}


def test_docs_array_as_top_level_output() -> None:
    assert run("SELECT VALUE arr FROM 'topic'", {"a": {"b": "c"}, "arr": [1, 2, 3, 4]}) == [1, 2, 3, 4]


def test_docs_json_extensions() -> None:
    msg = {"mydata": {"item2": {"0": {"my-key": "myValue"}}}}
    assert run("SELECT * from 'iot/rules' WHERE get(get(get(mydata,\"item2\"),\"0\"),\"my-key\") = \"myValue\"",
               msg) == msg
    assert run("SELECT foo.bar AS bar.baz FROM 'topic/subtopic'", {"foo": {"bar": "RED", "bar1": "GREEN"}}) == \
        {"bar": {"baz": "RED"}}
    device = {"deviceid": "iot123", "temp": 54.98, "humidity": 32.43}
    assert run("SELECT temp, md5(deviceid) AS hashed_id FROM 'topic/#'", device) == \
        {"temp": 54.98, "hashed_id": "e37f81fb397e595c4aeb5645b8cbbbd1"}


def test_docs_transform_examples() -> None:
    msg = {"attributes": {"data1": 1, "data2": 2}, "values": [{"a": 3}, {"b": 4}, {"c": 5}]}
    assert run("select value transform(\"enrichArray\", attributes, values) from 'A/B'", msg) == [
        {"a": 3, "data1": 1, "data2": 2}, {"b": 4, "data1": 1, "data2": 2}, {"c": 5, "data1": 1, "data2": 2}]
    assert run("select value transform(\"enrichArray\", {\"key\": attributes.data1}, values) from 'A/B'", msg) == [
        {"a": 3, "key": 1}, {"b": 4, "key": 1}, {"c": 5, "key": 1}]
    msg3 = {"data1": "example", "data2": {"a": "first attribute", "b": "second attribute", "c": [
        {"x": {"someInt": 5, "someString": "hello"}, "y": True},
        {"x": {"someInt": 10, "someString": "world"}, "y": False}]}}
    assert run("select value transform('enrichArray', (select a, b from data2), (select value c from data2)) "
               "from 'A/B'", msg3) == [
        {"x": {"someInt": 5, "someString": "hello"}, "y": True, "a": "first attribute", "b": "second attribute"},
        {"x": {"someInt": 10, "someString": "world"}, "y": False, "a": "first attribute",
         "b": "second attribute"}]


def test_docs_decode_addressable() -> None:
    assert run("SELECT decode(encoded_temp,\"base64\").temperature AS temp from 'topic/subtopic'",
               {"encoded_temp": "eyAidGVtcGVyYXR1cmUiOiAzMyB9Cg=="}) == {"temp": 33}


def test_docs_binary_payloads() -> None:
    raw = bytes(range(256))
    assert run("SELECT * FROM 'topic/subtopic'", raw) == raw
    out = run("SELECT encode(*, 'base64') AS data, timestamp() AS ts FROM 'topic/subtopic'", raw, timestamp_ms=7)
    assert out == {"data": base64.b64encode(raw).decode(), "ts": 7}
    assert run("SELECT * FROM 'topic/subtopic' WHERE device_type = 'thermostat'", raw) is None


def test_docs_substitution_templates() -> None:
    c = ctx({"deviceid": "iot123", "temp": 54.98}, topic="my/iot/topic", timestamp_ms=1579637878451)
    assert compile_template("${topic()}/republish").render(c) == "my/iot/topic/republish"
    assert compile_template("${replace(topic(), '/', '-') + '-' + timestamp()}").render(c) == \
        "my-iot-topic-1579637878451"
    assert compile_template("${floor(timestamp() / 1E3)}").render(c) == "1579637878"
    assert compile_template("device/${deviceid}").render(c) == "device/iot123"
