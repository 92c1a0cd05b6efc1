"""Topic names, topic filters, shared subscriptions and the reference matcher. No I/O.

``topic_matches`` is the plain reference implementation (the router uses a trie); tests compare
the two.
"""

from __future__ import annotations

from .reason_codes import MQTTError, ReasonCode

MAX_TOPIC_BYTES = 65_535
SHARE_PREFIX = "$share/"


class TopicNameInvalid(MQTTError):
    def __init__(self, message: str) -> None:
        super().__init__(ReasonCode.TOPIC_NAME_INVALID, message)


class TopicFilterInvalid(MQTTError):
    def __init__(self, message: str) -> None:
        super().__init__(ReasonCode.TOPIC_FILTER_INVALID, message)


def _check_size(
    topic: str, max_bytes: int | None, max_levels: int | None, err: type[MQTTError], what: str
) -> None:
    if "\x00" in topic:
        raise err(f"{what} contains U+0000")
    limit = MAX_TOPIC_BYTES if max_bytes is None else min(max_bytes, MAX_TOPIC_BYTES)
    # A str of n code points encodes to between n and 4n bytes: only encode when it matters.
    if len(topic) * 4 > limit and len(topic.encode("utf-8", "surrogatepass")) > limit:
        raise err(f"{what} longer than {limit} bytes")
    if max_levels is not None and topic.count("/") + 1 > max_levels:
        raise err(f"{what} has more than {max_levels} levels")


def validate_topic_name(topic: str, *, max_bytes: int | None = None, max_levels: int | None = None) -> None:
    """Raise :class:`TopicNameInvalid` (0x90) unless ``topic`` may be published to."""
    if not topic:
        raise TopicNameInvalid("empty topic name")
    if "+" in topic or "#" in topic:
        raise TopicNameInvalid(f"wildcard in topic name {topic!r}")
    _check_size(topic, max_bytes, max_levels, TopicNameInvalid, "topic name")


def parse_shared(filter: str) -> tuple[str | None, str]:
    """``"$share/group/a/b"`` -> ``("group", "a/b")``; a plain filter -> ``(None, filter)``.

    Raises :class:`TopicFilterInvalid` (0x8F) for a malformed shared subscription.
    """
    if not filter.startswith(SHARE_PREFIX):
        return None, filter
    rest = filter[len(SHARE_PREFIX) :]
    group, sep, inner = rest.partition("/")
    if not sep or not group or not inner:
        raise TopicFilterInvalid(f"malformed shared subscription {filter!r}")
    if "+" in group or "#" in group:
        raise TopicFilterInvalid(f"wildcard in share name {group!r}")
    return group, inner


def validate_topic_filter(
    filter: str, *, max_bytes: int | None = None, max_levels: int | None = None
) -> None:
    """Raise :class:`TopicFilterInvalid` (0x8F) unless ``filter`` is a valid filter.

    A ``$share/group/filter`` is checked as a shared subscription (group and inner filter);
    ``max_levels`` applies to the inner filter.
    """
    if not filter:
        raise TopicFilterInvalid("empty topic filter")
    _check_size(filter, max_bytes, None, TopicFilterInvalid, "topic filter")
    _, inner = parse_shared(filter)
    if "+" in inner or "#" in inner:
        levels = inner.split("/")
        last = len(levels) - 1
        for i, level in enumerate(levels):
            if "#" in level and (level != "#" or i != last):
                raise TopicFilterInvalid(f"'#' must be the whole last level in {filter!r}")
            if "+" in level and level != "+":
                raise TopicFilterInvalid(f"'+' must be a whole level in {filter!r}")
    if max_levels is not None and inner.count("/") + 1 > max_levels:
        raise TopicFilterInvalid(f"topic filter has more than {max_levels} levels")


def topic_matches(filter: str, topic: str) -> bool:
    """Does ``filter`` match the topic name ``topic``? (``a/#`` matches ``a``; a filter that
    starts with a wildcard does not match a topic that starts with ``$``.)"""
    if topic.startswith("$") and filter[:1] in ("+", "#"):
        return False
    if "+" not in filter and "#" not in filter:
        return filter == topic
    flevels = filter.split("/")
    tlevels = topic.split("/")
    nt = len(tlevels)
    for i, f in enumerate(flevels):
        if f == "#":
            return True
        if i >= nt:
            return False
        if f != "+" and f != tlevels[i]:
            return False
    return len(flevels) == nt
