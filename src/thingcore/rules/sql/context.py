"""What a statement evaluates against (one incoming message) and what it produces."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from .values import parse_payload


class MessageContext:
    """One incoming message as the rules engine sees it.

    ``services`` provides the local counterparts of AWS's external functions (each optional; a
    missing one makes the function fail the rule with a clear error):

    - ``get_thing_shadow(thing_name, role_arn, shadow_name=None) -> dict | None``
    - ``call_function(function_arn, payload) -> Any`` (``aws_lambda()``; payload is a JSON value)
    - ``get_dynamodb(table, hash_key_name, hash_key_value, range_key_name=None, range_key_value=None,
      role_arn=None) -> dict | None``
    - ``get_secret(secret_id, secret_type, key, role_arn) -> str | bytes``: the secret's current
      value, ``str`` for SecretString and ``bytes`` for SecretBinary; the SQL applies ``key`` and
      base64 itself, as AWS documents
    - ``get_registry_data(api, thing_name, role_arn) -> dict | None`` (DescribeThing /
      ListThingGroupsForThing)
    - ``account_id`` attribute: what ``accountid()`` returns (default ``000000000000``)

    The parsed payload is cached on the context, so every rule evaluating the same message parses
    it once. A plain class rather than a dataclass: one is built per message and rule, and the
    trace id is only formatted when something reads it (``trace_seq`` is what the engine passes).
    """

    __slots__ = ("_doc", "_trace_id", "_variables", "client_id", "payload", "principal", "properties", "rule_name",
                 "services", "source_ip", "timestamp_ms", "topic", "trace_seq")

    def __init__(self, topic: str, payload: bytes, client_id: str | None = None, principal: str | None = None,
                 source_ip: str | None = None, properties: dict[str, Any] | None = None, timestamp_ms: int = 0,
                 trace_id: str | None = None, rule_name: str | None = None, services: Any = None,
                 trace_seq: int = 0) -> None:
        self.topic = topic
        self.payload = payload
        self.client_id = client_id
        self.principal = principal
        self.source_ip = source_ip
        self.properties = properties if properties is not None else {}
        self.timestamp_ms = timestamp_ms
        self._trace_id = trace_id
        self.trace_seq = trace_seq
        self.rule_name = rule_name
        self.services = services
        self._doc: Any = None  # the parsed payload, wrapped in a 1-tuple
        self._variables: dict[str, Any] | None = None

    @classmethod
    def of_message(cls, msg: Any, topic: str, rule_name: str | None, services: Any, *, trace_seq: int = 0,
                   trace_id: str | None = None, doc: Any = None) -> MessageContext:
        """The context of a broker ``Message``: ``topic`` as ``topic()`` sees it (Basic Ingest strips its
        prefix), ``doc`` the payload already parsed (None: parsed when first read)."""
        ctx = cls(topic, msg.payload, msg.client_id, msg.principal, msg.source_address, msg.properties,
                  int(msg.received_at * 1000), trace_id, rule_name, services, trace_seq)
        if doc is not None:
            ctx._doc = (doc,)
        return ctx

    def __repr__(self) -> str:
        return f"MessageContext(topic={self.topic!r}, payload={self.payload!r}, client_id={self.client_id!r})"

    @property
    def trace_id(self) -> str | None:
        """The message's trace id (``traceid()``, error documents): a UUID made of a per-process random
        prefix and the engine's message counter, formatted on first use."""
        if self._trace_id is None:
            self._trace_id = format_trace_id(self.trace_seq)
        return self._trace_id

    def document(self) -> Any:
        """The payload as a JSON document (dict or list), or the raw bytes when it is not JSON (parsed once)."""
        cached = self._doc
        if cached is not None:
            return cached[0]
        doc = document_of(self.payload)
        self._doc = (doc,)
        return doc


def format_trace_id(seq: int) -> str | None:
    """Trace id number ``seq`` of this process (None for 0: no trace id)."""
    return f"{_TRACE_PREFIX}{seq & 0xFFFFFFFFFFFF:012x}" if seq else None


def document_of(payload: bytes) -> Any:
    """:func:`parse_payload`, shared with the next call on the very same payload object: the engine
    evaluates every rule a message reaches on one parse (documents are read-only)."""
    global _last_parsed
    last = _last_parsed
    if last[0] is payload:
        return last[1]
    doc = parse_payload(payload)
    _last_parsed = (payload, doc)
    return doc


_TRACE_PREFIX = str(uuid.uuid4())[:24]  # 8-4-4-4- of a random UUID: unique per process
_last_parsed: tuple[Any, Any] = (None, None)  # (payload bytes object, its document); one assignment, so thread-safe


@dataclass(slots=True)
class QueryResult:
    """``matched``: WHERE was Boolean true (or absent). ``output``: the SELECT result as a Python
    value -- a dict for ``SELECT a, b``; any JSON value for ``SELECT VALUE``; ``bytes`` when it is a
    raw (non-JSON) payload, including ``b""`` for Undefined. Treat it as read-only: it may share
    structure with the parsed payload. ``thingcore.rules.sql.output_to_bytes`` serializes it."""

    matched: bool
    output: Any = None
