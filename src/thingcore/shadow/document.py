"""Shadow documents as AWS IoT shapes them: validation, merge, delta, metadata and versions.

Pure code: bytes and dicts in, dicts and bytes out, no I/O and no clock (callers pass ``now``), so
every rule is testable on its own and the service (:mod:`thingcore.shadow.service`) only adds the
bus, storage and per-shadow ordering. The rules, with their sources, are section 3 of
``reference/aws-iot-behaviour.md``; choices where AWS is silent are marked "[AWS silent]".

Merges are copy-on-write: a merge copies only the dicts along the paths it touches and shares the
rest with the previous version, so the previous version stays intact for ``/update/documents``
without a deep copy, and nothing here ever mutates a dict it did not create.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

MAX_STATE_BYTES = 8 * 1024  #: serialized desired + reported, metadata excluded
MAX_DEPTH = 6  #: JSON nesting levels, the desired/reported object itself being level 1
MAX_CLIENT_TOKEN_BYTES = 64
MAX_THING_NAME = 128
MAX_SHADOW_NAME = 64

_THING_NAME = re.compile(r"[a-zA-Z0-9:_-]+")
_SHADOW_NAME = re.compile(r"[$a-zA-Z0-9:_-]+")  # the botocore model allows '$' in shadow names

#: Top-level keys an update may carry. ``metadata`` and ``timestamp`` are ignored rather than
#: refused because AWS's own documents carry them and clients send fetched documents back;
#: ``thingName`` and ``shadowName`` because the AWS IoT Device SDK v2 for JavaScript serializes its
#: whole request model into the body. The topic (or URL) alone names the shadow, as on AWS, so
#: these two are ignored even when they name another shadow.
_UPDATE_KEYS = frozenset(("state", "clientToken", "version", "metadata", "timestamp", "thingName", "shadowName"))
#: What may follow the JSON document: whitespace, and the NUL that ends a C string (the AWS IoT
#: Device SDK for Embedded C's shadow demo publishes its string with it). A deliberate leniency.
_TRAILER = b"\x00 \t\r\n"
_SECTIONS = ("desired", "reported")

# AWS's error messages (device-shadow-error-messages.html)
INVALID_JSON = "Invalid JSON"  # over MQTT and REST alike, as the table documents it
BAD_ENCODING = "Unsupported documented encoding; supported encoding is UTF-8"
MISSING_STATE = "Missing required node: state"
STATE_NOT_OBJECT = "State node must be an object"
DESIRED_NOT_OBJECT = "Desired node must be an object"
REPORTED_NOT_OBJECT = "Reported node must be an object"
INVALID_VERSION = "Invalid version"
INVALID_CLIENT_TOKEN = "Invalid clientToken"
TOO_DEEP = f"JSON contains too many levels of nesting; maximum is {MAX_DEPTH}"
VERSION_CONFLICT = "Version conflict"
TOO_LARGE = "The payload exceeds the maximum size allowed"
NULL_IN_ARRAY = f"{INVALID_JSON}: arrays cannot contain null"
TOO_MANY_REQUESTS = "Too Many Requests"
INTERNAL_FAILURE = "Internal service failure"


class ShadowError(Exception):
    """A rejected request: AWS's HTTP-style ``code`` and ``message``, plus the token to echo."""

    def __init__(self, code: int, message: str, client_token: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.client_token = client_token

    def payload(self, now: int) -> bytes:
        """The error document published on ``/rejected``."""
        doc: dict[str, Any] = {"code": self.code, "message": self.message, "timestamp": now}
        if self.client_token is not None:
            doc["clientToken"] = self.client_token
        return orjson.dumps(doc)


def not_found(thing: str, shadow: str | None, client_token: str | None = None) -> ShadowError:
    """404 with AWS's wording: the shadow's name for a named shadow, the thing's for the classic one."""
    return ShadowError(404, f"No shadow exists with name: '{shadow or thing}'", client_token)


def check_names(thing: str, shadow: str | None) -> None:
    """Thing and shadow name rules of the iot-data model; raises a 400 ShadowError."""
    if not thing:
        raise ShadowError(400, "ThingName is missing")
    if len(thing) > MAX_THING_NAME:
        raise ShadowError(400, f"ThingName has a maximum length of {MAX_THING_NAME}")
    if _THING_NAME.fullmatch(thing) is None:
        raise ShadowError(400, "ThingName must match pattern [a-zA-Z0-9:_-]+")
    if shadow is not None:
        if not shadow:
            raise ShadowError(400, "ShadowName must not be empty")
        if len(shadow) > MAX_SHADOW_NAME:
            raise ShadowError(400, f"ShadowName has a maximum length of {MAX_SHADOW_NAME}")
        if _SHADOW_NAME.fullmatch(shadow) is None:
            raise ShadowError(400, "ShadowName must match pattern [$a-zA-Z0-9:_-]+")


# -- requests ------------------------------------------------------------------------------------


@dataclass(slots=True)
class UpdateRequest:
    """A validated update. ``state`` is ``None`` for ``{"state": null}`` (clear both sections)."""

    state: dict[str, Any] | None
    client_token: str | None = None
    version: int | None = None


def _strip_trailer(payload: bytes) -> bytes:
    """The payload without trailing NULs and whitespace (anything else after the document stays)."""
    if payload and payload[-1] in _TRAILER:
        return payload.rstrip(_TRAILER)
    return payload


def _load_json(payload: bytes) -> Any:
    try:
        return orjson.loads(_strip_trailer(payload))
    except orjson.JSONDecodeError:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ShadowError(415, BAD_ENCODING) from None
        raise ShadowError(400, INVALID_JSON) from None


def _client_token(doc: dict[str, Any]) -> str | None:
    token = doc.get("clientToken")
    if token is None:
        return None
    if type(token) is not str or len(token.encode()) > MAX_CLIENT_TOKEN_BYTES:
        raise ShadowError(400, INVALID_CLIENT_TOKEN)
    return token


def parse_token(payload: bytes) -> str | None:
    """The optional clientToken of a get or delete request (AWS ignores the rest of the payload)."""
    if not _strip_trailer(payload):
        return None
    doc = _load_json(payload)
    return _client_token(doc) if type(doc) is dict else None


def parse_update(payload: bytes) -> UpdateRequest:
    """Validate an update request in AWS's order; raises :class:`ShadowError` (400/415)."""
    doc = _load_json(payload)
    if type(doc) is not dict:
        raise ShadowError(400, INVALID_JSON)
    token = _client_token(doc)
    if "state" not in doc:  # before unknown keys: {"desired": ...} is a document without state
        raise ShadowError(400, MISSING_STATE, token)
    for key in doc:
        if key not in _UPDATE_KEYS:  # [AWS silent] refused rather than silently dropped
            raise ShadowError(400, f"{INVALID_JSON}: unknown node '{key}'", token)
    state = doc["state"]
    if state is not None:
        if type(state) is not dict:
            raise ShadowError(400, STATE_NOT_OBJECT, token)
        if "delta" in state:  # delta is computed, never set: dropped as AWS's Greengrass emulation does
            state = {k: v for k, v in state.items() if k != "delta"}
        for key, value in state.items():
            if key not in _SECTIONS:
                raise ShadowError(400, f"State contains an invalid node: '{key}'", token)
            if value is not None and type(value) is not dict:
                raise ShadowError(400, DESIRED_NOT_OBJECT if key == "desired" else REPORTED_NOT_OBJECT, token)
    version = doc.get("version")
    if version is not None and (type(version) is not int or version < 0):
        raise ShadowError(400, INVALID_VERSION, token)
    if state:
        for section in state.values():
            problem = _check_tree(section, 1) if section else None
            if problem is not None:
                raise ShadowError(400, problem, token)
    return UpdateRequest(state, token, version)


def _check_tree(node: dict[str, Any] | list[Any], depth: int) -> str | None:
    """What is wrong with a section: nesting deeper than MAX_DEPTH, or a null inside an array."""
    if depth > MAX_DEPTH:
        return TOO_DEEP
    in_array = type(node) is list
    for value in node if in_array else node.values():
        t = type(value)
        if t is dict or t is list:
            problem = _check_tree(value, depth + 1)
            if problem is not None:
                return problem
        elif value is None and in_array:  # [AWS silent on the wording] arrays can't hold null (DOC)
            return NULL_IN_ARRAY
    return None


# -- the shadow ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Shadow:
    """One existing shadow: its sections (``None`` when absent), their metadata, version, timestamp.

    ``delta`` is derived from desired and reported and kept so GET and the delta message need not
    recompute it; :func:`new_shadow` and :func:`apply_update` keep it current.
    """

    desired: dict[str, Any] | None = None
    reported: dict[str, Any] | None = None
    desired_meta: dict[str, Any] | None = None
    reported_meta: dict[str, Any] | None = None
    version: int = 0
    timestamp: int = 0
    delta: dict[str, Any] | None = None

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.desired is not None:
            out["desired"] = self.desired
        if self.reported is not None:
            out["reported"] = self.reported
        return out

    def metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.desired_meta is not None:
            out["desired"] = self.desired_meta
        if self.reported_meta is not None:
            out["reported"] = self.reported_meta
        return out

    def snapshot(self) -> dict[str, Any]:
        """``previous``/``current`` of ``/update/documents``: state (no delta), metadata, version."""
        return {"state": self.state(), "metadata": self.metadata(), "version": self.version}

    def document(self, now: int, client_token: str | None = None) -> dict[str, Any]:
        """The full document GET returns: state with delta when non-empty, metadata, version."""
        state = self.state()
        if self.delta:
            state["delta"] = self.delta
        doc: dict[str, Any] = {"state": state, "metadata": self.metadata(), "version": self.version,
                               "timestamp": now}
        if client_token is not None:
            doc["clientToken"] = client_token
        return doc

    def delta_message(self, now: int, client_token: str | None) -> dict[str, Any] | None:
        """The ``/update/delta`` document (``state`` holds the delta itself), or None when in sync."""
        if not self.delta:
            return None
        msg: dict[str, Any] = {"state": self.delta, "metadata": delta_metadata(self.delta, self.desired_meta),
                               "version": self.version, "timestamp": now}
        if client_token is not None:
            msg["clientToken"] = client_token
        return msg

    def to_record(self) -> bytes:
        """The stored form: AWS's document shape (readable in the database), without delta."""
        return orjson.dumps({**self.snapshot(), "timestamp": self.timestamp})

    @classmethod
    def from_record(cls, record: bytes) -> Shadow:
        doc = orjson.loads(record)
        state, meta = doc.get("state") or {}, doc.get("metadata") or {}
        return new_shadow(state.get("desired"), state.get("reported"), meta.get("desired"), meta.get("reported"),
                          doc["version"], doc.get("timestamp", 0))


def new_shadow(desired: dict[str, Any] | None, reported: dict[str, Any] | None, desired_meta: dict[str, Any] | None,
               reported_meta: dict[str, Any] | None, version: int, timestamp: int) -> Shadow:
    return Shadow(desired, reported, desired_meta, reported_meta, version, timestamp, compute_delta(desired, reported))


@dataclass(slots=True)
class Accepted:
    """The outcome of an accepted update: the new shadow and the ``/update/accepted`` document."""

    shadow: Shadow
    response: dict[str, Any]


def apply_update(current: Shadow | None, req: UpdateRequest, current_version: int, now: int) -> Accepted:
    """Merge ``req`` into ``current`` (None: the shadow does not exist) as version ``current_version + 1``.

    ``current_version`` is the shadow's version, or for a missing shadow the version it had when it
    was deleted (AWS continues the numbering within 48 hours), else 0. Raises 409 on a version
    mismatch and 413 when desired + reported would pass 8 KB; ``current`` is never modified.
    """
    if req.version is not None and req.version != current_version:
        raise ShadowError(409, VERSION_CONFLICT, req.client_token)
    leaf = {"timestamp": now}
    state = req.state
    desired = current.desired if current else None
    reported = current.reported if current else None
    desired_meta = current.desired_meta if current else None
    reported_meta = current.reported_meta if current else None
    if state is None:
        desired = reported = desired_meta = reported_meta = None
        patch_meta: dict[str, Any] = leaf
    else:
        patch_meta = _mirror(state, leaf)
        if "desired" in state:
            desired, desired_meta = _merge_section(desired, desired_meta, state["desired"], patch_meta["desired"])
        if "reported" in state:
            reported, reported_meta = _merge_section(reported, reported_meta, state["reported"],
                                                     patch_meta["reported"])
    size = (len(orjson.dumps(desired)) if desired is not None else 0) + \
        (len(orjson.dumps(reported)) if reported is not None else 0)
    if size > MAX_STATE_BYTES:
        raise ShadowError(413, TOO_LARGE, req.client_token)
    shadow = new_shadow(desired, reported, desired_meta, reported_meta, current_version + 1, now)
    response: dict[str, Any] = {"state": state, "metadata": patch_meta, "version": shadow.version, "timestamp": now}
    if req.client_token is not None:
        response["clientToken"] = req.client_token
    return Accepted(shadow, response)


def _merge_section(
    section: dict[str, Any] | None, meta: dict[str, Any] | None, patch: dict[str, Any] | None, patch_meta: Any
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if patch is None:  # "desired": null removes the section
        return None, None
    merged, merged_meta = _merge(section, meta, patch, patch_meta)
    if not merged:  # an empty top-level section disappears from the document
        return None, None
    return merged, merged_meta


def _merge(
    dst: dict[str, Any] | None, meta: dict[str, Any] | None, patch: dict[str, Any], patch_meta: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """null deletes a key, objects merge, everything else (scalars, arrays, type changes) replaces."""
    out = dict(dst) if dst else {}
    out_meta = dict(meta) if meta else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
            out_meta.pop(key, None)
        elif type(value) is dict:
            cur = out.get(key)
            if type(cur) is dict:
                sub_meta = out_meta.get(key)
                out[key], out_meta[key] = _merge(cur, sub_meta if type(sub_meta) is dict else None, value,
                                                 patch_meta[key])
            else:  # a new object: built by merging into nothing, so nulls inside it are dropped
                out[key], out_meta[key] = _merge(None, None, value, patch_meta[key])
        else:
            out[key] = value
            out_meta[key] = patch_meta[key]
    return out, out_meta


def _mirror(node: Any, leaf: dict[str, int]) -> Any:
    """Metadata of a request fragment: objects recurse, arrays get one entry per element, leaves (and
    nulls) get ``{"timestamp": T}``. The leaf dict is shared: metadata dicts are never mutated."""
    t = type(node)
    if t is dict:
        return {k: _mirror(v, leaf) for k, v in node.items()}
    if t is list:
        return [_mirror(v, leaf) for v in node]
    return leaf


# -- delta ---------------------------------------------------------------------------------------


def compute_delta(desired: dict[str, Any] | None, reported: dict[str, Any] | None) -> dict[str, Any] | None:
    """Every desired leaf that differs from reported, with its path from the root; None when in sync."""
    if not desired:
        return None
    if reported is None:
        return desired
    return _diff(desired, reported) or None


def _diff(desired: dict[str, Any], reported: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, want in desired.items():
        if key not in reported:
            out[key] = want
            continue
        have = reported[key]
        if type(want) is dict and type(have) is dict:
            sub = _diff(want, have)
            if sub:
                out[key] = sub
        elif not json_equal(want, have):
            out[key] = want
    return out


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: numbers compare by value (1 == 1.0), booleans are not numbers."""
    ta, tb = type(a), type(b)
    if ta is not tb:
        return ta in (int, float) and tb in (int, float) and a == b
    if ta is dict:
        return a.keys() == b.keys() and all(json_equal(v, b[k]) for k, v in a.items())
    if ta is list:
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def delta_metadata(delta: dict[str, Any], desired_meta: dict[str, Any] | None) -> dict[str, Any]:
    """The desired-side metadata of every delta path (what AWS puts in the delta message)."""
    out: dict[str, Any] = {}
    meta = desired_meta or {}
    for key, value in delta.items():
        sub = meta.get(key)
        out[key] = delta_metadata(value, sub) if type(value) is dict and type(sub) is dict else sub
    return out
