"""Payloads, received messages, and MQTT 5 properties in plain Python terms (paho's objects stay inside)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

Payload = bytes | bytearray | memoryview | str | dict | list | int | float | bool | None
UserProperties = Mapping[str, str] | Sequence[tuple[str, str]]

#: publish keyword -> paho property name
_PUBLISH_PROPERTIES = {
    "content_type": "ContentType",
    "response_topic": "ResponseTopic",
    "correlation_data": "CorrelationData",
    "message_expiry": "MessageExpiryInterval",
    "payload_format_indicator": "PayloadFormatIndicator",
    "user_properties": "UserProperty",
}
_RECEIVED_PROPERTIES = {paho: ours for ours, paho in _PUBLISH_PROPERTIES.items()}
_RECEIVED_PROPERTIES["SubscriptionIdentifier"] = "subscription_identifiers"


def encode_payload(payload: Payload) -> bytes:
    """bytes as they are, str as UTF-8, anything else (dict, list, number, bool) as JSON; None is empty."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if payload is None:
        return b""
    try:
        return orjson.dumps(payload)
    except TypeError as exc:
        raise TypeError(f"payload must be bytes, str or JSON-serialisable, not {type(payload).__name__}: {exc}") \
            from None


def user_property_pairs(value: UserProperties) -> list[tuple[str, str]]:
    items = value.items() if isinstance(value, Mapping) else value
    pairs = []
    for item in items:
        k, v = item
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("user properties are (str, str) pairs")
        pairs.append((k, v))
    return pairs


def normalize_properties(props: Mapping[str, Any]) -> dict[str, Any]:
    """Check publish properties and bring them to one form (the form HTTP publish and paho both read)."""
    out: dict[str, Any] = {}
    for name, value in props.items():
        if value is None:
            continue
        if name not in _PUBLISH_PROPERTIES:
            raise TypeError(f"unknown publish property {name!r}; known: {', '.join(_PUBLISH_PROPERTIES)}")
        if name == "user_properties":
            value = user_property_pairs(value)
        elif name == "correlation_data":
            value = value.encode() if isinstance(value, str) else bytes(value)
        elif name in ("message_expiry", "payload_format_indicator"):
            value = int(value)
        out[name] = value
    return out


def paho_properties(props: Mapping[str, Any], packet_type: int = PacketTypes.PUBLISH) -> Properties | None:
    """paho Properties from normalized publish properties (None when there are none)."""
    if not props:
        return None
    p = Properties(packet_type)
    for name, value in props.items():
        setattr(p, _PUBLISH_PROPERTIES[name], value)
    return p


def properties_dict(props: Properties | None) -> dict[str, Any]:
    """A received PUBLISH's MQTT 5 properties with the names ``publish()`` takes."""
    if props is None:
        return {}
    out: dict[str, Any] = {}
    for paho_name, ours in _RECEIVED_PROPERTIES.items():
        if hasattr(props, paho_name):
            value = getattr(props, paho_name)
            if ours == "subscription_identifiers" and not isinstance(value, list):
                value = [value]
            out[ours] = value
    return out


@dataclass(slots=True)
class Message:
    """A message received on a subscription."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")

    def json(self) -> Any:
        """The payload parsed as JSON (ValueError if it is not JSON)."""
        return orjson.loads(self.payload)

    @property
    def user_properties(self) -> list[tuple[str, str]]:
        return list(self.properties.get("user_properties", ()))
