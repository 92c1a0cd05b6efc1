"""Retained messages: one per topic, found for a subscription filter by walking a topic tree.

The store is bounded in topics and in total payload bytes. A retained publish that would pass a bound
is refused by the broker's gate (``refusal``) before anything is stored or routed; deleting a retained
message, or replacing one without growing the total, always works.
"""

from __future__ import annotations

from collections.abc import Iterator

from thingcore.broker.message import Message


class _Node:
    __slots__ = ("children", "message")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.message: Message | None = None


class RetainedStore:
    """In-memory index of retained messages; persistence is the broker's job (storage layer)."""

    def __init__(self, max_messages: int = 0, max_bytes: int = 0) -> None:
        self._root = _Node()
        self._count = 0
        self.payload_bytes = 0
        self.max_messages = max_messages  # 0: unbounded
        self.max_bytes = max_bytes  # 0: unbounded

    def __len__(self) -> int:
        return self._count

    @property
    def bounded(self) -> bool:
        return bool(self.max_messages or self.max_bytes)

    def refusal(self, message: Message) -> str | None:
        """Why storing this retained message would pass a bound, or None when it fits (a delete always fits)."""
        size = len(message.payload)
        if not size or not (self.max_messages or self.max_bytes):
            return None
        old = self.get(message.topic)
        if old is None and self.max_messages and self._count >= self.max_messages:
            return f"retained message limit reached ({self.max_messages} topics)"
        grow = size - (len(old.payload) if old is not None else 0)
        if self.max_bytes and grow > 0 and self.payload_bytes + grow > self.max_bytes:
            return f"retained payload limit reached ({self.max_bytes} bytes)"
        return None

    def get(self, topic: str) -> Message | None:
        node = self._root
        for level in topic.split("/"):
            node = node.children.get(level)
            if node is None:
                return None
        return node.message

    def set(self, message: Message) -> None:
        node = self._root
        for level in message.topic.split("/"):
            nxt = node.children.get(level)
            if nxt is None:
                nxt = node.children[level] = _Node()
            node = nxt
        if node.message is None:
            self._count += 1
        else:
            self.payload_bytes -= len(node.message.payload)
        self.payload_bytes += len(message.payload)
        node.message = message

    def delete(self, topic: str) -> bool:
        path: list[tuple[_Node, str]] = []
        node = self._root
        for level in topic.split("/"):
            nxt = node.children.get(level)
            if nxt is None:
                return False
            path.append((node, level))
            node = nxt
        if node.message is None:
            return False
        self.payload_bytes -= len(node.message.payload)
        node.message = None
        self._count -= 1
        for parent, level in reversed(path):
            child = parent.children[level]
            if child.children or child.message is not None:
                break
            del parent.children[level]
        return True

    def all(self) -> Iterator[Message]:
        stack = [self._root]
        while stack:
            node = stack.pop()
            if node.message is not None:
                yield node.message
            stack.extend(node.children.values())

    def match(self, topic_filter: str) -> list[Message]:
        """Every retained message whose topic the filter matches (MQTT rules, `#` includes the parent)."""
        out: list[Message] = []
        self._walk(self._root, topic_filter.split("/"), 0, out)
        return out

    def _walk(self, node: _Node, levels: list[str], i: int, out: list[Message]) -> None:
        if i == len(levels):
            if node.message is not None:
                out.append(node.message)
            return
        level = levels[i]
        if level == "#":
            if node.message is not None and i > 0:  # "a/#" matches "a" itself
                out.append(node.message)
            stack = [(name, child) for name, child in node.children.items() if not (i == 0 and name.startswith("$"))]
            while stack:
                _name, child = stack.pop()
                if child.message is not None:
                    out.append(child.message)
                stack.extend(child.children.items())
        elif level == "+":
            for name, child in node.children.items():
                if i == 0 and name.startswith("$"):
                    continue
                self._walk(child, levels, i + 1, out)
        else:
            child = node.children.get(level)
            if child is not None:
                self._walk(child, levels, i + 1, out)
