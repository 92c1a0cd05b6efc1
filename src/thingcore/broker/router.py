"""Subscription trie: which subscribers does a topic reach, at what QoS, with which options.

Matching walks one trie level per topic level, so the cost depends on the topic's depth and the
wildcards actually present, never on the number of subscriptions; results are cached per topic
and the cache is dropped whenever the subscription set changes. No regular expressions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class Subscriber(Protocol):
    """Anything the router can deliver to: an MQTT session or an in-process bus handler."""

    client_id: str


@dataclass(slots=True, frozen=True)
class Entry:
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0
    subscription_id: int | None = None


@dataclass(slots=True)
class Target:
    """One subscriber's merged view of every subscription that matched a topic."""

    subscriber: Any
    qos: int
    no_local: bool
    retain_as_published: bool
    subscription_ids: tuple[int, ...]


class _Node:
    __slots__ = ("children", "shared", "subs")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.subs: dict[Any, Entry] = {}
        self.shared: dict[str, dict[Any, Entry]] = {}

    def empty(self) -> bool:
        return not (self.children or self.subs or self.shared)


@dataclass(slots=True)
class Match:
    targets: list[Target]
    # one list of (subscriber, entry) per matching shared-subscription group
    shared_groups: list[tuple[str, dict[Any, Entry]]]


_CACHE_LIMIT = 50_000
# What a topic nobody subscribes to matches, shared by every such topic in the cache (a client's own presence
# and subscription event topics are such topics: one Match and two lists each cost 160 bytes per client).
# Read only, like every cached Match.
_NO_MATCH = Match([], [])


class Router:
    def __init__(self) -> None:
        self._root = _Node()
        self._cache: dict[str, Match] = {}
        self.count = 0

    # -- changes ---------------------------------------------------------------------------------

    def add(self, subscriber: Any, topic_filter: str, entry: Entry, share_group: str | None = None) -> bool:
        """Add or replace a subscription; True when it did not exist before."""
        node = self._root
        for level in topic_filter.split("/"):
            nxt = node.children.get(level)
            if nxt is None:
                nxt = node.children[level] = _Node()
            node = nxt
        bucket = node.subs if share_group is None else node.shared.setdefault(share_group, {})
        new = subscriber not in bucket
        bucket[subscriber] = entry
        if new:
            self.count += 1
        self._cache.clear()
        return new

    def remove(self, subscriber: Any, topic_filter: str, share_group: str | None = None) -> bool:
        path: list[tuple[_Node, str]] = []
        node = self._root
        for level in topic_filter.split("/"):
            nxt = node.children.get(level)
            if nxt is None:
                return False
            path.append((node, level))
            node = nxt
        if share_group is None:
            existed = node.subs.pop(subscriber, None) is not None
        else:
            group = node.shared.get(share_group)
            existed = group is not None and group.pop(subscriber, None) is not None
            if group is not None and not group:
                del node.shared[share_group]
        if not existed:
            return False
        self.count -= 1
        for parent, level in reversed(path):  # prune empty branches so the trie does not leak
            if not parent.children[level].empty():
                break
            del parent.children[level]
        self._cache.clear()
        return True

    # -- matching --------------------------------------------------------------------------------

    def match(self, topic: str) -> Match:
        cached = self._cache.get(topic)
        if cached is not None:
            return cached
        found: list[tuple[Any, Entry]] = []
        shared: list[tuple[str, dict[Any, Entry]]] = []
        levels = topic.split("/")
        self._walk(self._root, levels, 0, found, shared, topic.startswith("$"))
        result = Match(_merge(found), shared) if found or shared else _NO_MATCH
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[topic] = result
        return result

    def _walk(self, node: _Node, levels: list[str], i: int, found: list, shared: list, dollar: bool) -> None:
        children = node.children
        if i == len(levels):
            if node.subs:
                found.extend(node.subs.items())
            if node.shared:
                shared.extend(node.shared.items())
            hash_node = children.get("#")  # "a/#" also matches "a"
            if hash_node is not None:
                if hash_node.subs:
                    found.extend(hash_node.subs.items())
                if hash_node.shared:
                    shared.extend(hash_node.shared.items())
            return
        wild = not (dollar and i == 0)  # a leading wildcard never matches a $-topic
        if wild:
            hash_node = children.get("#")
            if hash_node is not None:
                if hash_node.subs:
                    found.extend(hash_node.subs.items())
                if hash_node.shared:
                    shared.extend(hash_node.shared.items())
        child = children.get(levels[i])
        if child is not None:
            self._walk(child, levels, i + 1, found, shared, dollar)
        if wild:
            plus = children.get("+")
            if plus is not None:
                self._walk(plus, levels, i + 1, found, shared, dollar)


def _merge(found: list[tuple[Any, Entry]]) -> list[Target]:
    """One target per subscriber: the highest QoS and every subscription identifier."""
    if len(found) == 1:
        sub, e = found[0]
        ids = (e.subscription_id,) if e.subscription_id else ()
        return [Target(sub, e.qos, e.no_local, e.retain_as_published, ids)]
    merged: dict[Any, Target] = {}
    for sub, e in found:
        t = merged.get(sub)
        if t is None:
            ids = (e.subscription_id,) if e.subscription_id else ()
            merged[sub] = Target(sub, e.qos, e.no_local, e.retain_as_published, ids)
        else:
            t.qos = max(t.qos, e.qos)
            t.no_local = t.no_local and e.no_local  # delivered if any matching subscription wants it
            t.retain_as_published = t.retain_as_published or e.retain_as_published
            if e.subscription_id:
                t.subscription_ids = (*t.subscription_ids, e.subscription_id)
    return list(merged.values())
