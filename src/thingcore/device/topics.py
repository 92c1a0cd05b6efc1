"""Topic checks before anything is sent (a bad topic is a ValueError at the call, not a closed
connection later) and local filter matching for routing received messages to callbacks."""

from __future__ import annotations

from thingcore.mqtt import MQTTError
from thingcore.mqtt.topics import parse_shared, topic_matches, validate_topic_filter, validate_topic_name


def check_topic(topic: str) -> None:
    if not isinstance(topic, str):
        raise TypeError(f"topic must be a str, not {type(topic).__name__}")
    try:
        validate_topic_name(topic)
    except MQTTError as exc:
        raise ValueError(f"invalid topic {topic!r}: {exc.message}") from None


def check_filter(topic_filter: str) -> None:
    if not isinstance(topic_filter, str):
        raise TypeError(f"topic filter must be a str, not {type(topic_filter).__name__}")
    try:
        validate_topic_filter(topic_filter)
    except MQTTError as exc:
        raise ValueError(f"invalid topic filter {topic_filter!r}: {exc.message}") from None


class TopicMatcher:
    """Matches topic names against one filter (the inner filter of a ``$share/group/...``)."""

    __slots__ = ("_exact", "_filter")

    def __init__(self, topic_filter: str) -> None:
        _group, inner = parse_shared(topic_filter)
        self._filter = inner
        self._exact = "+" not in inner and "#" not in inner

    def matches(self, topic: str) -> bool:
        if self._exact:
            return topic == self._filter
        return topic_matches(self._filter, topic)
