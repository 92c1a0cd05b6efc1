"""Property tests of the shadow document rules (hypothesis)."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from thingcore.shadow.document import (
    Shadow,
    ShadowError,
    UpdateRequest,
    apply_update,
    compute_delta,
    json_equal,
    parse_update,
)

KEYS = st.sampled_from(["a", "b", "c", "d", "timestamp"])  # few keys, so updates overlap; 'timestamp' is legal
SCALARS = st.one_of(st.booleans(), st.integers(-5, 5), st.floats(-2, 2, allow_nan=False).map(lambda f: round(f, 1)),
                    st.text("xy", max_size=2))


def values(depth: int, nulls: bool) -> st.SearchStrategy[Any]:
    """JSON values nested at most ``depth`` containers deep; nulls (deletions) only as object members."""
    if depth == 0:
        return SCALARS
    inner = values(depth - 1, nulls)
    member = st.one_of(st.none(), inner) if nulls else inner
    return st.one_of(
        SCALARS,
        st.lists(values(depth - 1, False), max_size=3),
        st.dictionaries(KEYS, member, max_size=3),
    )


def sections(nulls: bool) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(KEYS, st.one_of(st.none(), values(3, nulls)) if nulls else values(3, False), max_size=4)


STATES = st.fixed_dictionaries({}, optional={"desired": st.one_of(st.none(), sections(True)),
                                             "reported": st.one_of(st.none(), sections(True))})
UPDATES = st.one_of(STATES, st.none())


def reference_merge(dst: dict[str, Any] | None, patch: dict[str, Any]) -> dict[str, Any]:
    """An independent, deep-copying statement of AWS's merge: null deletes, objects merge, rest replaces."""
    out = copy.deepcopy(dst) if dst else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            out[key] = reference_merge(out[key] if isinstance(out.get(key), dict) else {}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_all(states: list[dict[str, Any] | None], now: int = 100) -> list[Shadow]:
    shadow: Shadow | None = None
    history = []
    for i, state in enumerate(states):
        shadow = apply_update(shadow, UpdateRequest(state), shadow.version if shadow else 0, now + i).shadow
        history.append(shadow)
    return history


def same_shape(state: Any, meta: Any) -> bool:
    """Metadata mirrors state: objects by key, arrays by element, every leaf a {"timestamp": int}."""
    if isinstance(state, dict):
        return isinstance(meta, dict) and state.keys() == meta.keys() and all(
            same_shape(v, meta[k]) for k, v in state.items())
    if isinstance(state, list):
        return isinstance(meta, list) and len(state) == len(meta) and all(map(same_shape, state, meta))
    return isinstance(meta, dict) and meta.keys() == {"timestamp"} and type(meta["timestamp"]) is int


@settings(max_examples=150, deadline=None)
@given(st.lists(UPDATES, min_size=1, max_size=6))
def test_merge_matches_the_reference_and_metadata_mirrors_state(states: list[dict[str, Any] | None]) -> None:
    desired: dict[str, Any] | None = None
    reported: dict[str, Any] | None = None
    for shadow, state in zip(apply_all(states), states, strict=True):
        if state is None:
            desired = reported = None
        else:
            if "desired" in state:
                desired = None if state["desired"] is None else (reference_merge(desired, state["desired"]) or None)
            if "reported" in state:
                reported = None if state["reported"] is None else (reference_merge(reported, state["reported"]) or None)
        assert shadow.desired == desired and shadow.reported == reported
        assert same_shape(shadow.desired, shadow.desired_meta) if desired else shadow.desired_meta is None
        assert same_shape(shadow.reported, shadow.reported_meta) if reported else shadow.reported_meta is None
        assert "null" not in orjson.dumps(shadow.state()).decode(), "stored state never holds null"


@settings(max_examples=150, deadline=None)
@given(st.lists(UPDATES, min_size=1, max_size=6))
def test_version_increases_by_one_per_accepted_update(states: list[dict[str, Any] | None]) -> None:
    assert [s.version for s in apply_all(states)] == list(range(1, len(states) + 1))


@settings(max_examples=150, deadline=None)
@given(sections(False), sections(False))
def test_reporting_the_delta_converges(desired: dict[str, Any], reported: dict[str, Any]) -> None:
    """A device that applies the delta it was sent and reports it leaves nothing out of sync."""
    shadow, device = apply_all([{"desired": desired, "reported": reported}])[0], None
    delta = shadow.delta
    assert delta == compute_delta(shadow.desired, shadow.reported)
    if delta is None:
        return
    device = apply_update(shadow, UpdateRequest({"reported": delta}), shadow.version, 200).shadow
    assert device.delta is None
    assert device.desired == shadow.desired and device.version == shadow.version + 1


@settings(max_examples=150, deadline=None)
@given(sections(False), sections(False))
def test_delta_is_exactly_the_desired_leaves_that_differ(desired: dict[str, Any], reported: dict[str, Any]) -> None:
    delta = compute_delta(desired or None, reported or None) or {}

    def check(d: dict[str, Any], r: dict[str, Any] | None, out: dict[str, Any]) -> None:
        for key, want in d.items():
            have = r.get(key, KeyError) if r is not None else KeyError
            if isinstance(want, dict) and isinstance(have, dict):
                check(want, have, out.get(key, {}))
            elif have is KeyError or not json_equal(want, have):
                assert json_equal(out[key], want)
            else:
                assert key not in out
        assert set(out) <= set(d)

    check(desired, reported or None, delta)


@settings(max_examples=100, deadline=None)
@given(st.lists(UPDATES, min_size=2, max_size=5))
def test_an_update_never_changes_the_previous_version(states: list[dict[str, Any] | None]) -> None:
    """Merges are copy-on-write: /update/documents' "previous" is exactly what was stored."""
    shadow = apply_all(states[:1])[0]
    for state in states[1:]:
        before = orjson.dumps(shadow.snapshot())
        nxt = apply_update(shadow, UpdateRequest(copy.deepcopy(state)), shadow.version, 500).shadow
        assert orjson.dumps(shadow.snapshot()) == before
        assert Shadow.from_record(nxt.to_record()) == nxt
        shadow = nxt


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=40), st.builds(lambda v: json.dumps(v).encode(), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(
        st.sampled_from(["state", "desired", "reported", "version", "clientToken", "x"]), inner, max_size=3)),
    max_leaves=12))))
def test_any_payload_is_accepted_or_refused_with_an_aws_error(payload: bytes) -> None:
    try:
        req = parse_update(payload)
    except ShadowError as err:
        assert err.code in (400, 415) and err.message
        return
    try:
        apply_update(None, req, 0, 1)
    except ShadowError as err:
        assert err.code in (409, 413)
