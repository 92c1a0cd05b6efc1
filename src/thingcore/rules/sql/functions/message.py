"""Functions that read the incoming message's context: topic(), clientid(), timestamp(), MQTT 5
properties, ... They take the evaluation environment (``env.ctx`` is the MessageContext)."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from ..values import UNDEFINED, to_int
from .registry import sqlfunc

DEFAULT_ACCOUNT_ID = "000000000000"


@sqlfunc("topic", 0, 1, env=True)
def sql_topic(env: Any, n: Any = None) -> Any:
    """The whole topic, or its n-th level (1-based)."""
    topic = env.ctx.topic
    if n is None:
        return topic
    i = to_int(n)
    if type(i) is not int or i < 1:
        return UNDEFINED
    levels = topic.split("/")
    return levels[i - 1] if i <= len(levels) else UNDEFINED


@sqlfunc("clientid", 0, env=True)
def sql_clientid(env: Any) -> Any:
    return env.ctx.client_id or "n/a"


@sqlfunc("principal", 0, env=True)
def sql_principal(env: Any) -> Any:
    p = env.ctx.principal
    return UNDEFINED if p is None else p


@sqlfunc("sourceip", 0, env=True)
def sql_sourceip(env: Any) -> Any:
    ip = env.ctx.source_ip
    return ip if ip else UNDEFINED


@sqlfunc("traceid", 0, env=True)
def sql_traceid(env: Any) -> Any:
    t = env.ctx.trace_id
    return UNDEFINED if t is None else t


@sqlfunc("timestamp", 0, env=True)
def sql_timestamp(env: Any) -> int:
    return env.ctx.timestamp_ms or int(time.time() * 1000)


@sqlfunc("accountid", 0, env=True)
def sql_accountid(env: Any) -> str:
    return getattr(env.ctx.services, "account_id", None) or DEFAULT_ACCOUNT_ID


@sqlfunc("sql_version", 0, env=True)
def sql_sql_version(env: Any) -> str:
    return env.version


@sqlfunc("newuuid", 0, pure=False)
def sql_newuuid() -> str:
    return str(uuid.uuid4())


_FORMAT_INDICATOR = {0: "UNSPECIFIED_BYTES", 1: "UTF8_DATA"}


@sqlfunc("get_mqtt_property", 1, env=True)
def sql_get_mqtt_property(env: Any, name: Any) -> Any:
    """An MQTT 5 PUBLISH property: content_type, format_indicator (UNSPECIFIED_BYTES/UTF8_DATA),
    response_topic, correlation_data (base64); anything else is Undefined."""
    props = env.ctx.properties or {}
    if name == "format_indicator":
        return _FORMAT_INDICATOR.get(props.get("payload_format_indicator", 0), UNDEFINED)
    if name == "content_type" or name == "response_topic":
        v = props.get(name)
        return UNDEFINED if v is None else v
    if name == "correlation_data":
        v = props.get(name)
        if v is None:
            return UNDEFINED
        if isinstance(v, str):
            v = v.encode("utf-8")
        return base64.b64encode(v).decode("ascii")
    return UNDEFINED


@sqlfunc("get_user_properties", 0, 1, env=True)
def sql_get_user_properties(env: Any, key: Any = None) -> Any:
    """No key: every user property as ``[{"k": "v"}, ...]`` in order; with a key: the array of its
    values (keys may repeat); Undefined when there are none."""
    pairs = (env.ctx.properties or {}).get("user_property") or []
    if key is None:
        return [{k: v} for k, v in pairs] if pairs else UNDEFINED
    if type(key) is not str:
        return UNDEFINED
    values = [v for k, v in pairs if k == key]
    return values if values else UNDEFINED
