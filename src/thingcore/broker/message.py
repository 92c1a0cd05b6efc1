"""The application message as it travels through the broker, the bus and the services.

A :class:`Message` is what every publisher produces (an MQTT client, an HTTP POST, the shadow
service, a rule action) and what every subscriber receives. It carries the publisher's identity
so that later stages (rules' ``clientid()``, ``principal()``, ``sourceip()``) can use it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

# Properties forwarded unchanged from a PUBLISH to its subscribers (MQTT 5, 3.3.2.3).
FORWARDED_PROPERTIES = (
    "payload_format_indicator",
    "content_type",
    "response_topic",
    "correlation_data",
    "user_property",
)


@dataclass(slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: dict[str, Any] = field(default_factory=dict)
    client_id: str | None = None
    principal: str | None = None
    source_address: str | None = None
    received_at: float = field(default_factory=time.time)
    expires_at: float | None = None  # wall-clock time after which the message must not be delivered
    #: Its id in storage, assigned when it is first stored for a persistent session and kept for every other
    #: session of the same fan-out (and every later delivery of the same object), so storage holds it once.
    store_id: int = 0

    @classmethod
    def from_publish_properties(cls, topic: str, payload: bytes, qos: int, retain: bool,
                                properties: dict[str, Any], **origin: Any) -> Message:
        """Keep only what is forwarded and turn a message expiry interval into a deadline."""
        forwarded = {k: properties[k] for k in FORWARDED_PROPERTIES if k in properties} if properties else {}
        msg = cls(topic, payload, qos, retain, forwarded, **origin)
        interval = properties.get("message_expiry_interval") if properties else None
        if interval is not None:
            msg.expires_at = msg.received_at + interval
        return msg

    def remaining_expiry(self, now: float | None = None) -> int | None:
        """Seconds left before expiry (None when the message never expires); <= 0 means expired."""
        if self.expires_at is None:
            return None
        return int(self.expires_at - (now if now is not None else time.time()) + 0.999)

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now if now is not None else time.time()) >= self.expires_at

    # -- serialization for storage: a small JSON header followed by the raw payload ----------------

    def to_record(self, **extra: Any) -> bytes:
        props = dict(self.properties)
        if "correlation_data" in props:
            props["correlation_data"] = props["correlation_data"].hex()
        header = {
            "t": self.topic, "q": self.qos, "r": self.retain, "p": props, "c": self.client_id,
            "pr": self.principal, "a": self.source_address, "at": self.received_at, "x": self.expires_at,
        }
        if extra:
            header["e"] = extra
        head = orjson.dumps(header)
        return len(head).to_bytes(4, "big") + head + self.payload

    @classmethod
    def from_record(cls, record: bytes) -> tuple[Message, dict[str, Any]]:
        n = int.from_bytes(record[:4], "big")
        header = orjson.loads(record[4 : 4 + n])
        props = header["p"]
        if "correlation_data" in props:
            props["correlation_data"] = bytes.fromhex(props["correlation_data"])
        if "user_property" in props:
            props["user_property"] = [tuple(kv) for kv in props["user_property"]]
        msg = cls(
            header["t"], bytes(record[4 + n :]), header["q"], header["r"], props, header["c"], header["pr"],
            header["a"], header["at"], header["x"],
        )
        return msg, header.get("e", {})
