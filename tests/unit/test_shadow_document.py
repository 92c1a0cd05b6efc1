"""Shadow document rules: validation, merge, metadata, delta and versions, as AWS IoT applies them.

Many cases are the AWS-verified ones of moto's iotdata tests and the AWS SDK sample transcript
(reference/aws-iot-behaviour.md section 3).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from thingcore.shadow.document import (
    MAX_STATE_BYTES,
    Shadow,
    ShadowError,
    apply_update,
    check_names,
    compute_delta,
    json_equal,
    not_found,
    parse_token,
    parse_update,
)

T0, T1, T2 = 1_700_000_000, 1_700_000_060, 1_700_000_120


def update(current: Shadow | None, doc: Any, now: int = T0, version: int | None = None) -> tuple[Shadow, dict]:
    req = parse_update(orjson.dumps(doc))
    base = current.version if current else (version or 0)
    result = apply_update(current, req, base, now)
    return result.shadow, result.response


def reject(payload: bytes | Any) -> ShadowError:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    with pytest.raises(ShadowError) as info:
        parse_update(raw)
    return info.value


# -- accepted documents and GET --------------------------------------------------------------------


def test_first_update_creates_version_1_and_echoes_the_request() -> None:
    shadow, resp = update(None, {"state": {"reported": {"color": "green", "brightness": 40}}, "clientToken": "t1"})
    assert resp == {
        "state": {"reported": {"color": "green", "brightness": 40}},
        "metadata": {"reported": {"color": {"timestamp": T0}, "brightness": {"timestamp": T0}}},
        "version": 1, "timestamp": T0, "clientToken": "t1",
    }
    assert shadow.version == 1 and shadow.delta is None


def test_accepted_holds_only_the_request_fields_and_get_the_whole_shadow() -> None:
    s, _ = update(None, {"state": {"reported": {"color": "green", "brightness": 40}}}, T0)
    s, resp = update(s, {"state": {"desired": {"color": "red"}}, "clientToken": "t2"}, T1)
    assert resp["state"] == {"desired": {"color": "red"}}
    assert resp["metadata"] == {"desired": {"color": {"timestamp": T1}}}
    assert resp["version"] == 2
    s, _ = update(s, {"state": {"reported": {"brightness": 80}}}, T2)
    assert s.document(T2 + 5) == {
        "state": {"desired": {"color": "red"}, "reported": {"color": "green", "brightness": 80},
                  "delta": {"color": "red"}},
        "metadata": {"desired": {"color": {"timestamp": T1}},
                     "reported": {"color": {"timestamp": T0}, "brightness": {"timestamp": T2}}},
        "version": 3, "timestamp": T2 + 5,
    }


def test_delta_message_has_the_delta_as_state_and_desired_timestamps() -> None:
    """SDK transcript: reporting Status Awful against desired Great gives delta {Status: Great}."""
    s, _ = update(None, {"state": {"desired": {"Color": "red", "Status": "Great"}}}, T0)
    s, _ = update(s, {"state": {"reported": {"Color": "red", "Status": "Great"}}}, T1)
    assert s.delta_message(T1, None) is None
    s, _ = update(s, {"state": {"reported": {"Status": "Awful"}}, "clientToken": "c"}, T2)
    assert s.delta_message(T2, "c") == {"state": {"Status": "Great"}, "metadata": {"Status": {"timestamp": T0}},
                                        "version": 3, "timestamp": T2, "clientToken": "c"}


def test_documents_snapshots() -> None:
    s1, _ = update(None, {"state": {"desired": {"a": 1}}}, T0)
    s2, _ = update(s1, {"state": {"reported": {"a": 1}}}, T1)
    assert s1.snapshot() == {"state": {"desired": {"a": 1}}, "metadata": {"desired": {"a": {"timestamp": T0}}},
                             "version": 1}
    assert s2.snapshot()["state"] == {"desired": {"a": 1}, "reported": {"a": 1}}
    assert s1.state() == {"desired": {"a": 1}}, "the previous version is not modified by the next update"


def test_state_null_clears_but_keeps_the_shadow() -> None:
    """moto test_update_empty_state (AWS-verified)."""
    s, resp = update(None, {"state": None}, T0)
    assert resp == {"state": None, "metadata": {"timestamp": T0}, "version": 1, "timestamp": T0}
    assert s.document(T0) == {"state": {}, "metadata": {}, "version": 1, "timestamp": T0}
    s, resp = update(s, {"state": {"desired": {"a": "b"}}}, T1)
    assert resp["state"] == {"desired": {"a": "b"}}
    assert s.document(T1)["state"] == {"desired": {"a": "b"}, "delta": {"a": "b"}}
    s, resp = update(s, {"state": None}, T2)
    assert resp == {"state": None, "metadata": {"timestamp": T2}, "version": 3, "timestamp": T2}
    assert s.document(T2) == {"state": {}, "metadata": {}, "version": 3, "timestamp": T2}


def test_section_null_removes_it_and_its_metadata() -> None:
    s, _ = update(None, {"state": {"desired": {"a": 1}, "reported": {"a": 2}}}, T0)
    s, resp = update(s, {"state": {"desired": None, "reported": {"a": 1}}}, T1)
    assert resp["metadata"] == {"desired": {"timestamp": T1}, "reported": {"a": {"timestamp": T1}}}
    assert s.state() == {"reported": {"a": 1}} and s.metadata() == {"reported": {"a": {"timestamp": T1}}}


def test_null_deletes_keys_and_the_last_key_removes_the_section() -> None:
    """moto test_delete_field_from_device_shadow (AWS-verified)."""
    s, _ = update(None, {"state": {"desired": {"state1": 1, "state2": 2}}})
    s, resp = update(s, {"state": {"desired": {"state1": None}}})
    assert s.desired == {"state2": 2}
    assert resp["metadata"] == {"desired": {"state1": {"timestamp": T0}}}, "nulls are echoed with a timestamp"
    s, _ = update(s, {"state": {"desired": {"state2": None}}})
    assert "desired" not in s.document(T0)["state"] and "desired" not in s.document(T0)["metadata"]


def test_null_for_a_missing_key_is_no_error() -> None:
    s, _ = update(None, {"state": {"reported": {"online": None}}})
    assert s.document(T0)["state"] == {} and s.version == 1


@pytest.mark.parametrize(("initial", "patch", "expected"), [
    ({"a": 1, "b": {"c": 3}}, {"a": 1, "b": {"c": 3}, "d": {}}, {"a": 1, "b": {"c": 3}, "d": {}}),
    ({"a": 1, "b": {"c": 3}, "d": {}}, {"a": 1, "b": {"c": {}}, "d": {}}, {"a": 1, "b": {"c": {}}, "d": {}}),
    ({"a": 1, "b": {"c": 3}}, {"a": 1, "b": {"c": {"d": 3}}}, {"a": 1, "b": {"c": {"d": 3}}}),
])
def test_empty_objects_below_the_top_level_are_kept(initial: dict, patch: dict, expected: dict) -> None:
    """moto test_update_desired (AWS-verified): GET returns the update as-is, also as delta."""
    s, _ = update(None, {"state": {"desired": initial}})
    s, _ = update(s, {"state": {"desired": patch}})
    assert s.desired == expected and s.delta == expected


def test_empty_top_level_sections_disappear() -> None:
    s, resp = update(None, {"state": {"desired": {}}})
    assert resp["state"] == {"desired": {}} and resp["metadata"] == {"desired": {}}
    assert s.document(T0)["state"] == {}
    s, _ = update(None, {"state": {}})
    assert s.document(T0) == {"state": {}, "metadata": {}, "version": 1, "timestamp": T0}


def test_nested_merge_null_and_array_replacement() -> None:
    """Example B of the reference: objects merge, null deletes, arrays replace whole."""
    s, _ = update(None, {"state": {"desired": {"lights": {"color": {"r": 255, "g": 0, "b": 255}, "on": True},
                                               "zones": [1, 2, 3]}}}, T0)
    s, _ = update(s, {"state": {"desired": {"lights": {"color": {"g": 255}, "on": None}, "zones": [4]}}}, T1)
    assert s.desired == {"lights": {"color": {"r": 255, "g": 255, "b": 255}}, "zones": [4]}
    assert s.desired_meta == {"lights": {"color": {"r": {"timestamp": T0}, "g": {"timestamp": T1},
                                                   "b": {"timestamp": T0}}},
                              "zones": [{"timestamp": T1}]}


def test_arrays_get_one_metadata_entry_per_element() -> None:
    s, resp = update(None, {"state": {"reported": {"ColorRGB": [255, 0, 0], "pts": [{"x": 1}, [2]]}}})
    leaf = {"timestamp": T0}
    assert resp["metadata"]["reported"] == {"ColorRGB": [leaf, leaf, leaf], "pts": [{"x": leaf}, [leaf]]}
    assert s.reported_meta == resp["metadata"]["reported"]


def test_type_changes_replace_value_and_metadata() -> None:
    s, _ = update(None, {"state": {"reported": {"a": {"b": 1}, "c": 5}}}, T0)
    s, _ = update(s, {"state": {"reported": {"a": 7, "c": {"d": None, "e": 1}}}}, T1)
    assert s.reported == {"a": 7, "c": {"e": 1}}, "nulls inside a new object are dropped"
    assert s.reported_meta == {"a": {"timestamp": T1}, "c": {"e": {"timestamp": T1}}}


def test_a_user_supplied_delta_is_ignored() -> None:
    s, resp = update(None, {"state": {"desired": {"a": 1}, "delta": {"a": 2}}})
    assert resp["state"] == {"desired": {"a": 1}} and s.desired == {"a": 1}


def test_metadata_and_timestamp_of_a_fetched_document_are_ignored() -> None:
    s, _ = update(None, {"state": {"desired": {"a": 1}}, "metadata": {"x": 1}, "timestamp": 5})
    assert s.desired == {"a": 1}


# -- delta -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("desired", "reported", "delta"), [
    ({"online": True}, {"online": False}, {"online": True}),
    ({"enabled": True}, {"online": False, "enabled": True}, None),
    ({"enabled": True}, None, {"enabled": True}),
    (None, {"online": False}, None),
    ({"list": ["value_1"]}, {"list": ["value_1", "value_2"]}, {"list": ["value_1"]}),
    ({"list": [["value_1"]]}, {"list": [["value_1"], ["value_2"]]}, {"list": [["value_1"]]}),
    ({"a": {"b": ["c", "d"]}}, {"a": {"b": ["d"]}}, {"a": {"b": ["c", "d"]}}),
    ({"a": {"b": {"c": "d2"}}}, {"a": {"b": {"c": "d", "e": "f"}}}, {"a": {"b": {"c": "d2"}}}),
    ({"a1": {"b1": {"c": "d"}}, "a2": {"b2": "sth"}}, {"a1": {"b1": {"c": "d"}}}, {"a2": {"b2": "sth"}}),
    ({"a": {"b1": {"c": "d"}, "b2": "sth"}}, {"a": {"b1": {"c": "d"}}}, {"a": {"b2": "sth"}}),
    ({"lights": {"color": {"r": 255, "g": 255}}}, {"lights": {"color": {"r": 255, "g": 0}}},
     {"lights": {"color": {"g": 255}}}),
    ({"n": 1}, {"n": 1.0}, None),
    ({"n": 1}, {"n": True}, {"n": 1}),
    ({"n": [1, 2]}, {"n": [1.0, 2]}, None),
    ({"x": {}}, {}, {"x": {}}),
    ({"x": {}}, {"x": {"y": 1}}, None),
    ({"x": "1"}, {"x": 1}, {"x": "1"}),
    ({"x": {"y": 1}}, {"x": 5}, {"x": {"y": 1}}),
])
def test_delta(desired: dict | None, reported: dict | None, delta: dict | None) -> None:
    """Cases of moto's AWS-verified test_delta_calculation and the developer guide."""
    assert compute_delta(desired, reported) == delta


def test_delta_metadata_follows_nested_paths() -> None:
    s, _ = update(None, {"state": {"desired": {"lights": {"color": {"r": 255, "g": 255}}, "x": [1]}}}, T0)
    s, _ = update(s, {"state": {"reported": {"lights": {"color": {"r": 255, "g": 0}}, "x": [1]}}}, T1)
    msg = s.delta_message(T1, None)
    assert msg is not None
    assert msg["state"] == {"lights": {"color": {"g": 255}}}
    assert msg["metadata"] == {"lights": {"color": {"g": {"timestamp": T0}}}}


def test_json_equal_keeps_booleans_apart_from_numbers() -> None:
    assert json_equal({"a": [1, {"b": 2.0}]}, {"a": [1.0, {"b": 2}]})
    assert not json_equal(True, 1) and not json_equal(0, False) and not json_equal([True], [1])
    assert not json_equal({"a": 1}, {"b": 1}) and not json_equal([1], [1, 2])


# -- versions and limits ---------------------------------------------------------------------------


def test_versions_increase_by_one_even_for_no_op_updates() -> None:
    s, _ = update(None, {"state": {"desired": {"a": 1}}})
    for expected in (2, 3, 4):
        s, resp = update(s, {"state": {"desired": {"a": 1}}})
        assert s.version == resp["version"] == expected


def test_version_conflict_is_409_with_the_token() -> None:
    s, _ = update(None, {"state": {"desired": {"a": 1}}})
    s, _ = update(s, {"state": {"desired": {"a": 2}}, "version": 1})
    with pytest.raises(ShadowError) as info:
        update(s, {"state": {"desired": {"a": 3}}, "version": 1, "clientToken": "tok"})
    assert (info.value.code, info.value.message, info.value.client_token) == (409, "Version conflict", "tok")


def test_recreation_continues_the_deleted_version() -> None:
    req = parse_update(b'{"state":{"desired":{"a":1}},"version":9}')
    assert apply_update(None, req, 9, T0).shadow.version == 10
    with pytest.raises(ShadowError) as info:
        apply_update(None, parse_update(b'{"state":{},"version":1}'), 0, T0)
    assert info.value.code == 409


def test_size_limit_counts_desired_plus_reported_not_metadata() -> None:
    half = MAX_STATE_BYTES // 2 - len('{"k":""}')
    s, _ = update(None, {"state": {"desired": {"k": "x" * half}, "reported": {"k": "y" * half}}})
    assert len(orjson.dumps(s.desired)) + len(orjson.dumps(s.reported)) == MAX_STATE_BYTES
    with pytest.raises(ShadowError) as info:
        update(s, {"state": {"reported": {"k": "y" * (half + 1)}}, "clientToken": "big"})
    assert (info.value.code, info.value.message) == (413, "The payload exceeds the maximum size allowed")
    assert info.value.client_token == "big"
    smaller, _ = update(s, {"state": {"reported": {"k": None}}})
    assert smaller.reported is None, "an update that shrinks an over-full document is accepted"


def test_depth_limit_counts_nesting_levels_from_the_section() -> None:
    ok = {"state": {"desired": {"one": {"two": {"three": {"four": {"five": {"leaf": 1}}}}}}}}
    s, _ = update(None, ok)  # the 2019 quota page's example: desired.one...five is allowed
    assert s.desired is not None
    too_deep = {"state": {"reported": {"one": {"two": {"three": {"four": {"five": {"six": {}}}}}}}}}
    err = reject(too_deep)
    assert (err.code, err.message) == (400, "JSON contains too many levels of nesting; maximum is 6")
    assert reject({"state": {"desired": {"a": [[[[[[1]]]]]]}}}).code == 400, "arrays are nesting levels too"


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "code", "message"), [
    (b"{not json", 400, "Invalid JSON"),
    (b"", 400, "Invalid JSON"),
    (b"[1, 2]", 400, "Invalid JSON"),
    (b'{"state": {"desired": {"a": "\xff"}}}', 415, "Unsupported documented encoding; supported encoding is UTF-8"),
    (b'{"desired": {"a": 1}}', 400, "Missing required node: state"),
    (b'{"state": {}, "colour": 1}', 400, "Invalid JSON: unknown node 'colour'"),
    (b'{"clientToken": "x"}', 400, "Missing required node: state"),
    (b'{"state": [1]}', 400, "State node must be an object"),
    (b'{"state": "on"}', 400, "State node must be an object"),
    (b'{"state": {"desired": 5}}', 400, "Desired node must be an object"),
    (b'{"state": {"reported": []}}', 400, "Reported node must be an object"),
    (b'{"state": {"wanted": {}}}', 400, "State contains an invalid node: 'wanted'"),
    (b'{"state": {}, "version": "3"}', 400, "Invalid version"),
    (b'{"state": {}, "version": 1.5}', 400, "Invalid version"),
    (b'{"state": {}, "version": true}', 400, "Invalid version"),
    (b'{"state": {}, "version": -1}', 400, "Invalid version"),
    (b'{"state": {}, "clientToken": 5}', 400, "Invalid clientToken"),
    (b'{"state": {"desired": {"c": [null, "RED"]}}}', 400, "Invalid JSON: arrays cannot contain null"),
])
def test_rejections(payload: bytes, code: int, message: str) -> None:
    err = reject(payload)
    assert (err.code, err.message) == (code, message)


def test_client_token_limit_is_64_bytes() -> None:
    assert parse_update(orjson.dumps({"state": {}, "clientToken": "x" * 64})).client_token == "x" * 64
    assert reject({"state": {}, "clientToken": "x" * 65}).message == "Invalid clientToken"
    assert reject({"state": {}, "clientToken": "é" * 33}).message == "Invalid clientToken", "bytes, not characters"


def test_rejections_after_the_token_echo_it() -> None:
    assert reject({"state": 5, "clientToken": "abc"}).client_token == "abc"
    doc = orjson.loads(reject({"state": 5, "clientToken": "abc"}).payload(T0))
    assert doc == {"code": 400, "message": "State node must be an object", "timestamp": T0, "clientToken": "abc"}


def test_get_and_delete_payloads_carry_only_a_token() -> None:
    assert parse_token(b"") is None and parse_token(b"  ") is None
    assert parse_token(b'{"clientToken": "abc", "other": 1}') == "abc"
    assert parse_token(b'"just a string"') is None
    with pytest.raises(ShadowError):
        parse_token(b"{broken")
    with pytest.raises(ShadowError):
        parse_token(b'{"clientToken": "' + b"x" * 65 + b'"}')


@pytest.mark.parametrize(("thing", "shadow", "ok"), [
    ("lamp", None, True), ("a:b_c-1", "cfg", True), ("x" * 128, "$y" + "z" * 62, True),
    ("", None, False), ("x" * 129, None, False), ("a.b", None, False), ("lamp", "", False),
    ("lamp", "s" * 65, False), ("lamp", "a b", False), ("lamp$", None, False),
])
def test_name_rules(thing: str, shadow: str | None, ok: bool) -> None:
    if ok:
        check_names(thing, shadow)
    else:
        with pytest.raises(ShadowError) as info:
            check_names(thing, shadow)
        assert info.value.code == 400


def test_not_found_names_the_shadow_or_the_thing() -> None:
    assert not_found("lamp", None).message == "No shadow exists with name: 'lamp'"
    assert not_found("lamp", "cfg", "t").message == "No shadow exists with name: 'cfg'"
    assert not_found("lamp", None).code == 404


def test_record_round_trip() -> None:
    s, _ = update(None, {"state": {"desired": {"a": [1, {"b": 2}]}, "reported": {"a": 1}}}, T1)
    back = Shadow.from_record(s.to_record())
    assert back == s
