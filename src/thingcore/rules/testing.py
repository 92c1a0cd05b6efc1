"""Evaluate a rule against one message without side effects (``POST /api/v1/rules/test``, ``thingcore rules test``).

Shows what would happen: whether the topic reaches the rule, whether WHERE passed, the SELECT output
and the exact payload actions would send, and each action with its substitution templates rendered.
Nothing is published, posted or invoked by the actions; only SQL functions that read (shadows,
secrets) and ``aws_lambda()``, which is part of computing the SELECT output, are called.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from typing import Any

import orjson

from thingcore.broker.message import Message
from thingcore.mqtt import MQTTError
from thingcore.mqtt.topics import validate_topic_name
from thingcore.rules.actions import Firing
from thingcore.rules.model import DEFAULT_SQL_VERSION, SQL_VERSIONS, RuleError, invalid
from thingcore.rules.sql import MessageContext

_INGEST = "$aws/rules/"


def _payload_bytes(body: dict[str, Any]) -> bytes:
    if body.get("payloadBase64") is not None:
        try:
            return base64.b64decode(body["payloadBase64"], validate=True)
        except ValueError:
            raise invalid("payloadBase64 is not valid base64") from None
    payload = body.get("payload")
    if payload is None:
        return b""
    if isinstance(payload, str):
        return payload.encode()
    return orjson.dumps(payload)


def _json_view(value: Any) -> dict[str, Any]:
    """The output as the API shows it: JSON as JSON, bytes as base64."""
    from thingcore.rules.sql.values import UNDEFINED, output_to_bytes

    if isinstance(value, bytes | bytearray):
        return {"outputBase64": base64.b64encode(value).decode()}
    if value is UNDEFINED:
        return {"output": None, "outputUndefined": True}
    return {"output": orjson.loads(output_to_bytes(value))}


async def dry_run(engine: Any, body: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    rule_name = body.get("ruleName")
    actions = body.get("actions") or []
    error_action = body.get("errorAction")
    if rule_name and not body.get("sql"):
        stored = engine.get(rule_name)
        sql, version = stored["sql"], stored["awsIotSqlVersion"]
        actions, error_action = stored["actions"], stored.get("errorAction")
    else:
        sql = body.get("sql")
        version = body.get("awsIotSqlVersion") or DEFAULT_SQL_VERSION
        if not isinstance(sql, str) or not sql.strip():
            raise invalid("sql is required (or ruleName of an existing rule)")
        if version not in SQL_VERSIONS:
            raise invalid(f"awsIotSqlVersion must be one of {', '.join(SQL_VERSIONS)}")
    topic = body.get("topic")
    if not isinstance(topic, str) or not topic:
        raise invalid("topic is required")
    try:
        validate_topic_name(topic)
    except MQTTError as exc:
        raise invalid(f"topic {topic!r} is not a valid topic name: {exc}") from None
    if not isinstance(actions, list):
        raise invalid("actions must be a list")
    payload = _payload_bytes(body)

    query = engine.compile_query(sql, version)
    built = [engine.build_action(a, f"actions[{i}]", version) for i, a in enumerate(actions)]
    error_built = engine.build_action(error_action, "errorAction", version, error_action=True) \
        if error_action else None

    seen_topic, ingest_rule = topic, None
    if topic.startswith(_INGEST):
        ingest_rule, _, seen_topic = topic[len(_INGEST):].partition("/")
        reaches = True
    else:
        reaches = query.matches(topic)  # AWS's matching: FROM 'a/#' does not take 'a'; no FROM takes nothing
    client_id = body.get("clientId")
    msg = Message(topic, payload, 0, False, {}, client_id=client_id, principal=body.get("principal"),
                  source_address=body.get("sourceIp"), received_at=time.time())
    ctx = MessageContext.of_message(msg, seen_topic, rule_name or ingest_rule or "test", engine.services,
                                    trace_id=str(uuid.uuid4()))
    try:
        if query.needs_services:
            result = await asyncio.get_running_loop().run_in_executor(None, query.evaluate, ctx)
        else:
            result = query.evaluate(ctx)
    except Exception as exc:
        raise RuleError("InvalidRequestException", f"evaluation failed: {exc}") from None

    out: dict[str, Any] = {
        "sql": sql, "awsIotSqlVersion": version, "topic": topic, "topicPattern": query.topic_filter or None,
        "topicMatches": reaches, "wherePassed": bool(result.matched),
    }
    if ingest_rule is not None:
        out["basicIngestRule"] = ingest_rule
    if not result.matched:
        out["actions"] = []
        return out
    out.update(_json_view(result.output))
    firing = Firing(rule_name or "test", msg, ctx, result.output, len(built), None)
    data = firing.payload
    out["payload"] = data.decode("utf-8", "replace") if firing.is_json else None
    out["actions"] = [_describe(action, firing) for action in built]
    if error_built is not None:
        sample = Firing(firing.rule_name, msg, ctx, None, 1, None)
        sample.failures = [{"failedAction": built[0].failed_action if built else "RepublishAction",
                            "failedResource": "", "errorMessage": "(an example failure)"}]
        doc = sample.error_document(topic)
        out["errorAction"] = _describe(error_built, Firing(firing.rule_name, msg, ctx, doc, 1, None))
    return out


def _describe(action: Any, firing: Firing) -> dict[str, Any]:
    try:
        return {action.kind: action.describe(firing)}
    except Exception as exc:
        return {action.kind: None, "error": str(exc)}
