"""Admission: the one gate every message passes before the broker routes it.

Whoever publishes — an MQTT client, a will, an HTTP caller, a rule's republish — hands the broker a
:class:`~thingcore.broker.message.Message` and the :class:`~thingcore.auth.Identity` it acts for, and
:meth:`Broker.publish` runs the stages below in order. A stage refuses by raising
:class:`PublishRefused` with the MQTT reason code; each caller only translates that into its own protocol
(PUBACK reason code, CONNACK refusal, HTTP 403, a failed rule action). Nobody checks topics, limits or
permissions on its own, so no way in can skip a check that another applies.

Stages (only those that can refuse anything under the settings are run):

1. ``topic``: a name one may publish to (not empty, no wildcards, no U+0000, at most 65 535 bytes).
2. ``limits``: the ``aws`` profile's limits (payload 128 KB, topic length and depth, ``$`` topics).
3. ``permission``: ``authorize(identity, PUBLISH, topic)``; a Basic Ingest topic
   (``$aws/rules/<rule>/<topic>``) must be allowed both as itself and as the topic it stands for.
4. ``retained_quota``: a retained message must fit the retained store's bounds (0x97 Quota exceeded).
   A capacity, not a permission: a will is judged by it when it is due, not at CONNECT.

In-process services that publish their own answers (shadow responses, lifecycle events) pass no
identity: they are the broker's own voice, not a way in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from thingcore.auth import Action, Identity
from thingcore.broker.message import Message
from thingcore.mqtt import MQTTError, ReasonCode
from thingcore.mqtt.topics import validate_topic_name

if TYPE_CHECKING:
    from thingcore.broker.core import Broker

log = logging.getLogger("thingcore.broker")

INGEST_PREFIX = "$aws/rules/"
_PUBLISH = Action.PUBLISH  # bound once: an Enum class attribute is looked up through the class per call
_CHEAP_TOPIC_LEN = 16383  # characters: at most 4 bytes each, so surely within MQTT's 65 535-byte limit


class PublishRefused(Exception):
    """A message the gate does not let in; ``reason_code`` is the MQTT 5 reason code to answer with."""

    def __init__(self, reason_code: int, message: str) -> None:
        super().__init__(message)
        self.reason_code = int(reason_code)
        self.message = message


def ingest_topic(topic: str) -> str | None:
    """``$aws/rules/<rule>/<topic>`` -> ``<topic>``, the topic a Basic Ingest message stands for."""
    if not topic.startswith(INGEST_PREFIX):
        return None
    parts = topic.split("/", 3)
    return parts[3] if len(parts) > 3 and parts[3] else None


def who(identity: Identity) -> str:
    """A caller in a log line: principal, else client id, else address."""
    return identity.principal or identity.client_id or identity.address or "anonymous"


class RefusalLog:
    """One log line per refusal, at most ``per_second`` a second; the rest are counted and reported."""

    def __init__(self, per_second: int = 20, logger: logging.Logger | None = None) -> None:
        self.per_second = per_second
        self.logger = logger or log
        self._window = 0
        self._count = 0
        self._suppressed = 0

    def __call__(self, text: str, *args: object) -> None:
        now = int(time.monotonic())
        if now != self._window:
            if self._suppressed:
                self.logger.info("%d more refusals in the last second were not logged", self._suppressed)
            self._window, self._count, self._suppressed = now, 0, 0
        self._count += 1
        if self._count <= self.per_second:
            self.logger.info(text, *args)
        else:
            self._suppressed += 1


Stage = Callable[[Message, Identity], None]


class Admission:
    """The stages of one broker, chosen once from its settings (a stage that cannot refuse is left out)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.log = RefusalLog()
        stages: list[Stage] = []  # the topic stage runs first, inlined in admit() for its common case
        if broker.topic_limits is not None:
            stages.append(self.limits)
        if not broker.authorize_all:
            stages.append(self.permission)
        self.stages: tuple[Stage, ...] = tuple(stages)

    def admit(self, msg: Message, origin: Identity, *, in_advance: bool = False) -> None:
        """Run every stage; raises :class:`PublishRefused` (logged, counted) at the first that refuses.
        ``in_advance``: a message published later (a will at CONNECT), judged without the capacity stage."""
        try:
            topic = msg.topic
            if not topic or "+" in topic or "#" in topic or "\x00" in topic or len(topic) > _CHEAP_TOPIC_LEN:
                self.topic(msg, origin)  # the full check: refuses, saying why, or passes a long valid name
            for stage in self.stages:
                stage(msg, origin)
            if msg.retain and not in_advance:
                self.retained_quota(msg, origin)
        except PublishRefused as refusal:
            self.broker.stats.publishes_refused += 1
            self.log("refused a publish to %r from client %r (%s, %s, %s): %s [0x%02X]", msg.topic[:200],
                     origin.client_id, who(origin), origin.address, origin.listener, refusal.message,
                     refusal.reason_code)
            raise

    # -- the stages ------------------------------------------------------------------------------

    @staticmethod
    def topic(msg: Message, _origin: Identity) -> None:
        try:
            validate_topic_name(msg.topic)
        except MQTTError as exc:
            raise PublishRefused(exc.reason_code, exc.message) from None

    def limits(self, msg: Message, _origin: Identity) -> None:
        reason = self.broker.topic_limits(msg.topic, len(msg.payload), msg.retain)  # type: ignore[misc]
        if reason:
            raise PublishRefused(reason, _LIMIT_TEXT.get(reason, "topic not allowed"))

    def permission(self, msg: Message, origin: Identity) -> None:
        topic = msg.topic
        verdict = self.broker.authorize(origin, _PUBLISH, topic)
        if not verdict and topic[0] == "$" and topic.startswith(INGEST_PREFIX):
            inner = ingest_topic(topic)
            if inner is not None:
                verdict = self.broker.authorize(origin, _PUBLISH, inner)
        if verdict:
            raise PublishRefused(verdict, "not authorized to publish")

    def retained_quota(self, msg: Message, _origin: Identity) -> None:
        """Only for retained messages (called from admit() past the other stages, not a call per publish)."""
        if msg.topic.startswith(INGEST_PREFIX):  # Basic Ingest retains nothing
            return
        why = self.broker.retained.refusal(msg)
        if why is not None:
            self.broker.stats.retained_refused += 1
            raise PublishRefused(ReasonCode.QUOTA_EXCEEDED, why)


_LIMIT_TEXT = {
    ReasonCode.PACKET_TOO_LARGE: "payload above the limit",
    ReasonCode.TOPIC_NAME_INVALID: "topic above the limits (256 bytes, 8 levels)",
    ReasonCode.RETAIN_NOT_SUPPORTED: "retained messages are not allowed on reserved ($) topics",
    ReasonCode.NOT_AUTHORIZED: "publishing to this reserved topic is not allowed",
}


__all__ = ["Admission", "PublishRefused", "RefusalLog", "ingest_topic", "who"]
