"""SELECT / WHERE / SET semantics: output shapes, Undefined dropping out, binary payloads, nested
SELECTs, both SQL versions, and serialization of the output."""

from __future__ import annotations

import orjson
import pytest
from tests.unit.test_sql_helpers import V1, V2, ctx, run

from thingcore.rules.sql import MessageContext, compile_sql, output_to_bytes


def test_missing_keys_drop_out_of_the_output() -> None:
    assert run("SELECT missing FROM 't'", {"a": 1}) == {}
    assert run("SELECT a, missing, b.c AS c FROM 't'", {"a": 1, "b": 2}) == {"a": 1}
    assert run("SELECT NULL AS n, missing AS m FROM 't'", {}) == {"n": None}


def test_select_value_of_undefined_is_an_empty_payload() -> None:
    out = run("SELECT VALUE missing FROM 't'", {"a": 1})
    assert out == b""
    assert output_to_bytes(out) == b""


def test_star_adds_and_overrides_keys_in_order() -> None:
    doc = {"a": 1, "b": 2}
    assert run("SELECT *, 3 AS c FROM 't'", doc) == {"a": 1, "b": 2, "c": 3}
    assert run("SELECT *, 9 AS a FROM 't'", doc) == {"a": 9, "b": 2}
    assert run("SELECT 9 AS a, * FROM 't'", doc) == {"a": 1, "b": 2}


def test_dotted_aliases_build_nested_objects_without_touching_the_payload() -> None:
    c = ctx({"state": {"reported": {"t": 1}}, "x": 5})
    q = compile_sql("SELECT *, x AS state.reported.x, 7 AS state.desired.y FROM 't'")
    out = q.evaluate(c).output
    assert out == {"state": {"reported": {"t": 1, "x": 5}, "desired": {"y": 7}}, "x": 5}
    # the parsed payload (shared by every rule evaluating the message) is unchanged
    assert compile_sql("SELECT * FROM 't'").evaluate(c).output == {"state": {"reported": {"t": 1}}, "x": 5}


def test_default_output_names() -> None:
    doc = {"a": {"b": 1}, "c": 2}
    assert run("SELECT a.b, c, upper('x'), c + 1, topic(1) FROM 't'", doc, topic="dev/1") == \
        {"b": 1, "c": 2, "upper": "X", "_4": 3, "topic": "dev"}


def test_where_fires_only_on_boolean_true() -> None:
    for where, fires in [("true", True), ("false", False), ("'true'", False), ("1", False), ("NULL", False),
                         ("missing", False), ("missing > 1", False), ("a > 1", True), ("a > '1'", True)]:
        assert (run(f"SELECT a FROM 't' WHERE {where}", {"a": 2}) is not None) is fires, where


def test_where_sees_the_payload_not_the_select_aliases() -> None:
    assert run("SELECT a AS b FROM 't' WHERE b = 1", {"a": 1}) is None
    assert run("SELECT a AS b FROM 't' WHERE a = 1", {"a": 1}) == {"b": 1}


def test_non_json_payloads_are_bytes() -> None:
    for payload in (b"\x00\x01\xfe", b"plain text", b"80", b'"a string"', b"true", b"{broken", b"", b"null"):
        assert run("SELECT * FROM 't'", payload) == payload, payload
        assert run("SELECT a FROM 't'", payload) == {}
        assert run("SELECT VALUE * FROM 't'", payload) == payload
    assert output_to_bytes(run("SELECT * FROM 't'", b"\x00\xff")) == b"\x00\xff"


def test_binary_payload_with_extra_items() -> None:
    raw = b"\x89PNG\x00"
    # AWS cannot add keys to a non-JSON payload: it passes through unchanged
    assert run("SELECT *, principal() AS p FROM 't'", raw, principal="abc") == raw
    # an empty payload can be extended
    assert run("SELECT *, principal() AS p FROM 't'", b"", principal="abc") == {"p": "abc"}
    assert run("SELECT encode(*, 'base64') AS data FROM 't'", raw) == {"data": "iVBORwA="}
    assert run("SELECT encode(*, 'base64') AS data FROM 't'", b'{"a": 1}') == {"data": "eyJhIjogMX0="}


def test_json_array_payload() -> None:
    assert run("SELECT * FROM 't'", [1, 2]) == [1, 2]
    assert run("SELECT VALUE get(*, 1) FROM 't'", [1, 2]) == 2
    assert run("SELECT (SELECT VALUE x FROM *) AS v FROM 't'", [{"x": 1}]) == {"v": []}


def test_nested_select_sources() -> None:
    doc = {"arr": [{"v": 1, "k": "a"}, {"v": 2, "k": "b"}, {"k": "c"}], "obj": {"v": 5}, "num": 3}
    assert run("SELECT (SELECT VALUE v FROM arr) AS vs FROM 't'", doc) == {"vs": [1, 2]}
    assert run("SELECT (SELECT k FROM arr WHERE v > 1) AS ks FROM 't'", doc) == {"ks": [{"k": "b"}]}
    assert run("SELECT (SELECT k FROM arr WHERE v > 5) AS ks FROM 't'", doc) == {"ks": []}
    assert run("SELECT (SELECT v FROM obj) AS o FROM 't'", doc) == {"o": {"v": 5}}
    assert run("SELECT (SELECT v FROM obj WHERE v > 9) AS o FROM 't'", doc) == {}
    assert run("SELECT (SELECT v FROM num) AS n, (SELECT v FROM missing) AS m FROM 't'", doc) == {}
    assert run("SELECT (SELECT *, 1 AS one FROM arr WHERE k = 'a') AS x FROM 't'", doc) == \
        {"x": [{"v": 1, "k": "a", "one": 1}]}
    assert run("SELECT (SELECT VALUE (SELECT VALUE v FROM arr) FROM *) AS x FROM 't'", doc) == {"x": [[1, 2]]}


def test_nested_select_over_scalars() -> None:
    assert run("SELECT (SELECT VALUE * FROM nums WHERE * > 2) AS big FROM 't'", {"nums": [1, 3, 5]}) == \
        {"big": [3, 5]}


def test_set_variables() -> None:
    sql = ("SET @t = temp * 2, @msg = 'T=' + @t, @o = {'n': name} "
           "SELECT @t AS t, @msg AS m, @o.n AS n, @missing2 AS x FROM 't' WHERE @t > 10")
    with pytest.raises(Exception, match="@missing2 is not defined"):
        compile_sql(sql)
    sql = ("SET @t = temp * 2, @msg = 'T=' + @t, @o = {'n': name} "
           "SELECT @t AS t, @msg AS m, @o.n AS n FROM 't' WHERE @t > 10")
    assert run(sql, {"temp": 6, "name": "x"}) == {"t": 12, "m": "T=12", "n": "x"}
    assert run(sql, {"temp": 4, "name": "x"}) is None
    assert run("SET @a = (SELECT VALUE v FROM arr) SELECT VALUE @a", {"arr": [{"v": 1}]}) == [1]


def test_whole_number_decimals_in_2016_output() -> None:
    doc = b'{"a": 5.0, "b": {"c": [1.0, 2.5, {"d": 3.0}]}, "e": 1e2}'
    assert run("SELECT * FROM 't'", doc, version=V1) == {"a": 5.0, "b": {"c": [1.0, 2.5, {"d": 3.0}]}, "e": 100.0}
    out = run("SELECT * FROM 't'", doc, version=V2)
    assert out == {"a": 5, "b": {"c": [1, 2.5, {"d": 3}]}, "e": 100}
    assert output_to_bytes(out) == b'{"a":5,"b":{"c":[1,2.5,{"d":3}]},"e":100}'
    assert output_to_bytes(run("SELECT * FROM 't'", doc, version=V1)) == \
        b'{"a":5.0,"b":{"c":[1.0,2.5,{"d":3.0}]},"e":100.0}'
    assert run("SELECT cast(a AS String) AS s FROM 't'", doc, version=V1) == {"s": "5.0"}
    assert run("SELECT cast(a AS String) AS s FROM 't'", doc, version=V2) == {"s": "5"}
    assert run("SELECT VALUE a FROM 't'", doc, version=V2) == 5


def test_numbers_render_like_aws() -> None:
    out = run("SELECT * FROM 't'", b'{"x": 36.903999599999999, "y": -25.2632837000000772, "big": 12345678901234567}')
    assert output_to_bytes(out) == b'{"x":36.9039996,"y":-25.263283700000077,"big":12345678901234567}'
    assert output_to_bytes({"v": 10 ** 30}) == b'{"v":1000000000000000000000000000000}'


def test_evaluation_does_not_check_the_topic() -> None:
    # the engine routes by topic_filter; Basic Ingest messages may not match FROM at all
    assert compile_sql("SELECT a FROM 'x/y'").evaluate(ctx({"a": 1}, topic="other")).matched


def test_contexts_of_one_message_share_the_parsed_payload() -> None:
    payload = orjson.dumps({"a": {"b": 1}})
    first = MessageContext("t", payload)
    second = MessageContext("t", payload)
    assert first.document() is second.document()
    assert MessageContext("t", bytes(payload)).document() == first.document()


def test_sql_versions_accept_the_same_basic_statements() -> None:
    for version in (V1, V2, "beta"):
        assert run("SELECT a, b AS c FROM 'x' WHERE a > 1", {"a": 2, "b": 3}, version=version) == {"a": 2, "c": 3}


def test_deeply_nested_payloads() -> None:
    for depth in (999, 1000, 1020):  # around orjson's nesting limit and Python's recursion limit
        payload = b'{"a":' * depth + b"1.0" + b"}" * depth
        out = run("SELECT * FROM 't'", payload)
        assert type(out) is dict and "a" in out
    too_deep = b'{"a":' * 2000 + b"1" + b"}" * 2000  # not parseable as JSON: raw bytes
    assert run("SELECT * FROM 't'", too_deep) == too_deep
