"""Helpers shared by the SQL unit tests (this module holds no tests itself)."""

from __future__ import annotations

from typing import Any

import orjson

from thingcore.rules.sql import UNDEFINED, MessageContext, compile_sql

V1 = "2015-10-08"
V2 = "2016-03-23"


def ctx(payload: Any = b"{}", topic: str = "t/1", **kw: Any) -> MessageContext:
    if not isinstance(payload, bytes):
        payload = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
    return MessageContext(topic=topic, payload=payload, **kw)


def run(sql: str, payload: Any = b"{}", topic: str = "t/1", version: str = V2, **kw: Any) -> Any:
    """The SELECT output, or None when WHERE did not pass."""
    r = compile_sql(sql, version).evaluate(ctx(payload, topic, **kw))
    return r.output if r.matched else None


def value(expr: str, payload: Any = b"{}", version: str = V2, **kw: Any) -> Any:
    """The value of one expression (UNDEFINED when it is Undefined)."""
    out = run(f"SELECT {expr} AS v FROM 't/#'", payload, version=version, **kw)
    return out.get("v", UNDEFINED)
