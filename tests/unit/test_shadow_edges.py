"""Shadow edge cases that AWS documents and real AWS clients hit (issue 13, section 2).

Requests as AWS's own SDKs send them (a C string's terminating NUL, the JavaScript v2 SDK's
``thingName`` in the body), nested and array deltas with their metadata, whole sections set to
null, and every error message checked against AWS's documented error table.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from thingcore.shadow import document
from thingcore.shadow.document import Shadow, ShadowError, apply_update, parse_token, parse_update

T0, T1, T2 = 1_700_000_000, 1_700_000_060, 1_700_000_120

#: device-shadow-error-messages.html, every message of the table (the 429 row is a description)
AWS_ERROR_TABLE = {
    "Invalid JSON", "Missing required node: state", "State node must be an object", "Desired node must be an object",
    "Reported node must be an object", "Invalid version", "Invalid clientToken",
    "JSON contains too many levels of nesting; maximum is 6", "State contains an invalid node", "Unauthorized",
    "Forbidden", "Thing not found", "No shadow exists with name", "Version conflict",
    "The payload exceeds the maximum size allowed", "Unsupported documented encoding; supported encoding is UTF-8",
    "Internal service failure",
}


def update(current: Shadow | None, doc: Any, now: int) -> tuple[Shadow, dict[str, Any]]:
    result = apply_update(current, parse_update(orjson.dumps(doc)), current.version if current else 0, now)
    return result.shadow, result.response


def reject(payload: bytes) -> ShadowError:
    with pytest.raises(ShadowError) as info:
        parse_update(payload)
    return info.value


# -- what AWS's device SDKs send -----------------------------------------------------------------------


@pytest.mark.parametrize("trailer", [b"\x00", b"\x00\x00", b"\n", b" \r\n\t", b"\x00\n", b"\n\x00 "])
def test_trailing_nul_and_whitespace_are_accepted(trailer: bytes) -> None:
    """The Embedded C SDK's shadow demo publishes ``strlen + 1`` bytes: the JSON and its NUL."""
    req = parse_update(b'{"state":{"reported":{"powerOn":1}},"clientToken":"021909"}' + trailer)
    assert req.state == {"reported": {"powerOn": 1}} and req.client_token == "021909"
    assert parse_token(b'{"clientToken":"g1"}' + trailer) == "g1"
    assert parse_token(trailer) is None, "a get or delete with only a NUL carries no token"


@pytest.mark.parametrize("payload", [
    b'{"state":{}}\x00x', b'{"state":{}}\x00{"state":{}}', b'{"state":{}} x', b'{"state":{}}}', b'{"state":{}}\x01',
    b'\x00{"state":{}}', b'{"state":\x00{}}', b"\x00",
])
def test_other_trailing_or_embedded_data_is_still_invalid_json(payload: bytes) -> None:
    err = reject(payload)
    assert (err.code, err.message) == (400, "Invalid JSON")


def test_thing_and_shadow_name_in_the_body_are_accepted_and_the_topic_decides() -> None:
    """The JavaScript v2 SDK serializes its whole UpdateShadowRequest, names included."""
    body = {"thingName": "lamp", "shadowName": "cfg", "state": {"desired": {"on": True}}, "clientToken": "js"}
    req = parse_update(orjson.dumps(body))
    assert req.state == {"desired": {"on": True}} and req.client_token == "js"
    other = parse_update(orjson.dumps({**body, "thingName": "not-this-one", "shadowName": 7}))
    assert other.state == req.state, "names in the body never pick the shadow, whatever they say"
    accepted = apply_update(None, req, 0, T0).response
    assert "thingName" not in accepted and "shadowName" not in accepted, "AWS's accepted document has neither"


def test_a_document_without_state_is_missing_state_even_with_other_nodes() -> None:
    for body in (b'{"desired": {"x": 1}}', b'{"reported": {}, "clientToken": "c"}', b"{}", b'{"thingName": "a"}'):
        err = reject(body)
        assert (err.code, err.message) == (400, "Missing required node: state"), body
    assert reject(b'{"reported": {}, "clientToken": "c"}').client_token == "c"


# -- delta -----------------------------------------------------------------------------------------------


def test_nested_delta_holds_only_the_differing_leaves_with_desired_metadata() -> None:
    s, _ = update(None, {"state": {"desired": {"lights": {"color": {"r": 255, "g": 255, "b": 255}}}}}, T0)
    s, _ = update(s, {"state": {"reported": {"lights": {"color": {"r": 255, "g": 0, "b": 255}}}}}, T1)
    assert s.document(T2)["state"]["delta"] == {"lights": {"color": {"g": 255}}}
    assert s.delta_message(T1, "t") == {"state": {"lights": {"color": {"g": 255}}},
                                        "metadata": {"lights": {"color": {"g": {"timestamp": T0}}}},
                                        "version": 2, "timestamp": T1, "clientToken": "t"}


def test_a_differing_array_is_in_the_delta_whole_with_per_element_metadata() -> None:
    s, _ = update(None, {"state": {"desired": {"zones": [1, 2, 3], "same": ["a"]}}}, T0)
    s, _ = update(s, {"state": {"reported": {"zones": [1, 2, 4], "same": ["a"]}}}, T1)
    msg = s.delta_message(T1, None)
    assert msg is not None and msg["state"] == {"zones": [1, 2, 3]}
    assert msg["metadata"] == {"zones": [{"timestamp": T0}] * 3}


def test_keys_only_in_desired_are_in_the_delta_whole_and_keys_only_in_reported_never() -> None:
    s, _ = update(None, {"state": {"desired": {"mode": "eco", "fan": {"speed": 2, "dir": "in"}}}}, T0)
    s, _ = update(s, {"state": {"reported": {"temp": 21, "fan": {"speed": 2}}}}, T1)
    msg = s.delta_message(T1, None)
    assert msg is not None
    assert msg["state"] == {"mode": "eco", "fan": {"dir": "in"}}
    assert msg["metadata"] == {"mode": {"timestamp": T0}, "fan": {"dir": {"timestamp": T0}}}
    s, _ = update(s, {"state": {"desired": {"extra": {"a": {"b": 1}}}}}, T2)
    assert s.delta is not None and s.delta["extra"] == {"a": {"b": 1}}
    assert s.delta_message(T2, None)["metadata"]["extra"] == {"a": {"b": {"timestamp": T2}}}  # type: ignore[index]


# -- whole sections set to null --------------------------------------------------------------------------


def test_desired_null_removes_the_section_and_leaves_nothing_out_of_sync() -> None:
    s, _ = update(None, {"state": {"desired": {"a": 1, "b": {"c": 2}}, "reported": {"a": 0}}}, T0)
    assert s.delta == {"a": 1, "b": {"c": 2}}
    previous = s
    s, accepted = update(s, {"state": {"desired": None}, "clientToken": "n"}, T1)
    assert s.version == 2 and s.delta is None and s.delta_message(T1, "n") is None, "no delta message follows"
    assert accepted == {"state": {"desired": None}, "metadata": {"desired": {"timestamp": T1}}, "version": 2,
                        "timestamp": T1, "clientToken": "n"}
    assert s.document(T2) == {"state": {"reported": {"a": 0}}, "metadata": {"reported": {"a": {"timestamp": T0}}},
                              "version": 2, "timestamp": T2}
    assert s.snapshot() == {"state": {"reported": {"a": 0}}, "metadata": {"reported": {"a": {"timestamp": T0}}},
                            "version": 2}, "/update/documents current"
    assert previous.snapshot()["state"]["desired"] == {"a": 1, "b": {"c": 2}}, "/update/documents previous intact"


def test_reported_null_removes_it_and_the_whole_desired_becomes_the_delta() -> None:
    s, _ = update(None, {"state": {"desired": {"a": 1}, "reported": {"a": 1, "z": 0}}}, T0)
    assert s.delta is None
    s, _ = update(s, {"state": {"reported": None}}, T1)
    assert s.reported is None and s.reported_meta is None and s.version == 2
    assert s.delta_message(T1, None) == {"state": {"a": 1}, "metadata": {"a": {"timestamp": T0}}, "version": 2,
                                         "timestamp": T1}
    assert s.document(T1)["metadata"] == {"desired": {"a": {"timestamp": T0}}}


# -- error messages ----------------------------------------------------------------------------------------


def _table_message(message: str) -> bool:
    """A message of the table, or one followed by ': <detail>' naming what was wrong."""
    return message in AWS_ERROR_TABLE or any(message.startswith(f"{m}: ") for m in AWS_ERROR_TABLE)


@pytest.mark.parametrize("payload", [
    b"not json", b"", b"[1]", b'{"state": {}, "colour": 1}', b"{}", b'{"state": 1}', b'{"state": {"desired": 1}}',
    b'{"state": {"reported": "x"}}', b'{"state": {"wanted": {}}}', b'{"state": {}, "version": "1"}',
    b'{"state": {}, "clientToken": 1}', b'{"state": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": {}}}}}}}}}',
    b'{"state": {"desired": {"a": [1, null]}}}', b'{"state": {"reported": {"a": "\xff"}}}',
])
def test_every_validation_message_comes_from_the_aws_table(payload: bytes) -> None:
    assert _table_message(reject(payload).message), reject(payload).message


def test_every_message_constant_comes_from_the_aws_table() -> None:
    constants = [value for name, value in vars(document).items()
                 if name.isupper() and isinstance(value, str) and name != "TOO_MANY_REQUESTS"]
    assert constants and all(_table_message(m) for m in constants), constants
    assert document.not_found("lamp", None).message == "No shadow exists with name: 'lamp'"
    assert document.TOO_MANY_REQUESTS == "Too Many Requests", "the 429 row names no message: its status text"
