"""``republish``: publish the SELECT result to another topic through the broker (AWS RepublishAction).

Parameters as AWS defines them: ``topic`` (substitution templates; ``$$`` stands for ``$``, so
``$$aws/things/x/shadow/update`` targets a reserved topic), ``qos`` 0 or 1 (default 0), ``roleArn``
(accepted, not needed locally) and ``headers``, the MQTT 5 properties of the new message: ``payloadFormatIndicator``
(``UNSPECIFIED_BYTES``/``UTF8_DATA``), ``contentType``, ``responseTopic``, ``correlationData``
(base64), ``messageExpiry`` (seconds) and ``userProperties`` (``[{key, value}]``), all templates.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Callable
from typing import Any

import orjson

from thingcore.broker.admission import PublishRefused
from thingcore.broker.message import Message
from thingcore.mqtt import MQTTError
from thingcore.mqtt.topics import validate_topic_name
from thingcore.rules.actions.base import (
    Action,
    ActionConfigError,
    ActionEnv,
    ActionError,
    Firing,
    TemplateField,
    output_payload,
    params_check,
)
from thingcore.rules.sql.values import bytes_as_text

_HEADER_FIELDS = {
    "payloadFormatIndicator": "payload_format_indicator",
    "contentType": "content_type",
    "responseTopic": "response_topic",
    "correlationData": "correlation_data",
    "messageExpiry": "message_expiry_interval",
}
_FORMATS = {"UNSPECIFIED_BYTES": 0, "UTF8_DATA": 1}
_MAX_HEADER = 1024


class RepublishAction(Action):
    kind = "republish"
    failed_action = "RepublishAction"
    durable = False  # the broker takes the message over: persistent sessions have their own durability
    concurrency = 16  # only waits when a copy must be committed for a persistent session
    inline = True  # broker.publish returns at once (or a commit future to wait for)

    def __init__(self, params: dict[str, Any], env: ActionEnv) -> None:
        super().__init__(params, env)
        params_check(params, "republish", {"topic", "qos", "roleArn", "headers"}, {"topic"})
        self.topic = TemplateField(params["topic"], env, "republish.topic")
        qos = params.get("qos", 0)
        if qos not in (0, 1) or isinstance(qos, bool):
            raise ActionConfigError("republish.qos must be 0 or 1")
        self.qos: int = qos
        headers = params.get("headers") or {}
        if not isinstance(headers, dict):
            raise ActionConfigError("republish.headers must be an object")
        unknown = sorted(set(headers) - {*_HEADER_FIELDS, "userProperties"})
        if unknown:
            raise ActionConfigError(f"republish.headers: unknown header(s) {', '.join(unknown)}")
        self.headers: list[tuple[str, TemplateField]] = []
        for name, prop in _HEADER_FIELDS.items():
            if name in headers:
                value = headers[name]
                if isinstance(value, str) and len(value) > _MAX_HEADER:
                    raise ActionConfigError(f"republish.headers.{name} is longer than {_MAX_HEADER} characters")
                self.headers.append((prop, TemplateField(value, env, f"republish.headers.{name}")))
        fmt = headers.get("payloadFormatIndicator")
        if isinstance(fmt, str) and "${" not in fmt and fmt not in _FORMATS:
            raise ActionConfigError("republish.headers.payloadFormatIndicator must be UNSPECIFIED_BYTES or UTF8_DATA")
        self.user_properties: list[tuple[TemplateField, TemplateField]] = []
        props = headers.get("userProperties")
        if props is not None:
            if not isinstance(props, list) or not 1 <= len(props) <= 100:
                raise ActionConfigError("republish.headers.userProperties must be a list of 1 to 100 {key, value}")
            for i, kv in enumerate(props):
                if not isinstance(kv, dict) or set(kv) != {"key", "value"}:
                    raise ActionConfigError(f"republish.headers.userProperties[{i}] must be {{\"key\": ..., "
                                            "\"value\": ...}")
                where = f"republish.headers.userProperties[{i}]"
                self.user_properties.append((TemplateField(kv["key"], env, where + ".key"),
                                             TemplateField(kv["value"], env, where + ".value")))
        self.slow_templates = self.needs_services
        # the rule's message passes the broker's gate as the rule's principal, like any client's publish
        self._broker_publish = env.broker.publish if env.broker is not None else None
        self.origin = env.origin
        self.has_headers = bool(self.headers or self.user_properties)
        #: topic -> republish topic, when that is all execute() has to render (the usual republish)
        self._quick_topic: Callable[[str], str] | None = None
        if not self.has_headers and not self.slow_templates:
            const = self.topic.const
            if const is not None:
                self._quick_topic = lambda _topic: const
            elif self.topic.topic_parts is not None:
                self._quick_topic = self.topic.from_topic
        # a QoS 0 copy is never stored, so broker.publish completes it at once: no firing needed
        self.direct = self._quick_topic is not None and self.qos == 0
        if self.topic.const is not None:
            try:
                validate_topic_name(self.topic.const)
            except MQTTError as exc:
                raise ActionConfigError(f"republish.topic {self.topic.const!r} is not a valid topic: {exc}") from None

    def render_topic(self, firing: Firing) -> str:
        return self.topic.render(firing)

    def resource(self, firing: Firing) -> str:
        return self.render_topic(firing)

    def render_properties(self, firing: Firing) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for prop, field in self.headers:
            value = field.render(firing)
            if prop == "payload_format_indicator":
                if value not in _FORMATS:
                    raise ActionError(f"payloadFormatIndicator {value!r} is not UNSPECIFIED_BYTES or UTF8_DATA")
                props[prop] = _FORMATS[value]
            elif prop == "correlation_data":
                try:
                    props[prop] = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    raise ActionError(f"correlationData {value!r} is not base64") from None
            elif prop == "message_expiry_interval":
                try:
                    props[prop] = int(value)
                except ValueError:
                    raise ActionError(f"messageExpiry {value!r} is not a number of seconds") from None
                if not 0 <= props[prop] <= 0xFFFFFFFF:
                    raise ActionError(f"messageExpiry {value!r} is out of range")
            else:
                props[prop] = value
        if self.user_properties:
            props["user_property"] = [(k.render(firing), v.render(firing)) for k, v in self.user_properties]
        return props

    def _publish(self, msg: Message) -> asyncio.Future | None:
        try:
            return self._broker_publish(msg, self.origin)  # type: ignore[misc]
        except PublishRefused as refusal:
            raise ActionError(f"cannot republish to {msg.topic!r}: {refusal.message}") from None

    def _message(self, firing: Firing) -> Message:
        topic = self.topic.const
        if topic is None:
            topic = self.topic.render(firing)
        now = time.time()
        if not self.has_headers:
            return Message(topic, firing.payload, self.qos, False, {}, None, None, None, now)
        props = self.render_properties(firing)
        msg = Message(topic, firing.payload, self.qos, False, props, None, None, None, now)
        expiry = props.pop("message_expiry_interval", None)
        if expiry is not None:
            msg.expires_at = now + expiry
        return msg

    def execute(self, firing: Firing) -> Any:
        quick = self._quick_topic
        if quick is not None:  # _message() for the usual republish (no headers, topic from topic levels)
            msg = Message(quick(firing.topic), firing.payload, self.qos, False, {}, None, None, None, time.time())
        elif self.slow_templates:
            return self._execute_rendered_in_thread(firing)
        else:
            msg = self._message(firing)
        committed = self._publish(msg)
        if committed is None:
            return None
        return _wait_committed(committed)

    def execute_direct(self, topic: str, output: Any) -> None:
        target = self._quick_topic(topic)  # type: ignore[misc]  # direct implies a quick topic
        if type(output) is dict:  # output_payload(), inlined for the usual JSON object
            try:
                payload = orjson.dumps(output, default=bytes_as_text)
            except TypeError:
                payload = output_payload(output)
        else:
            payload = output_payload(output)
        self._publish(Message(target, payload, 0, False, {}, None, None, None, time.time()))

    async def _execute_rendered_in_thread(self, firing: Firing) -> None:
        try:
            msg = await asyncio.to_thread(self._message, firing)
        except ActionError:
            raise
        except Exception as exc:  # a template whose external function failed
            raise ActionError(f"cannot render the message: {exc}") from None
        committed = self._publish(msg)
        if committed is not None:
            await _wait_committed(committed)

    def describe(self, firing: Firing) -> dict[str, Any]:
        out: dict[str, Any] = {"topic": self.render_topic(firing), "qos": self.qos}
        if self.headers or self.user_properties:
            headers: dict[str, Any] = {}
            names = {v: k for k, v in _HEADER_FIELDS.items()}
            for prop, field in self.headers:
                headers[names[prop]] = field.render(firing)
            if self.user_properties:
                headers["userProperties"] = [{"key": k.render(firing), "value": v.render(firing)}
                                             for k, v in self.user_properties]
            out["headers"] = headers
        return out


async def _wait_committed(fut: asyncio.Future) -> None:
    try:
        await fut
    except Exception as exc:
        raise ActionError(f"the republished message could not be stored: {exc}", retryable=True) from exc
