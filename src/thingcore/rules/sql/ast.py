"""The syntax tree the parser builds and the compiler turns into closures (never walked per message)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Node:
    pos: int


@dataclass(slots=True)
class Literal(Node):
    value: Any


@dataclass(slots=True)
class Star(Node):
    """``*``: the whole payload, or the current element inside a nested SELECT."""


@dataclass(slots=True)
class Attribute(Node):
    """A bare name (``temp``) looked up in the current document."""
    name: str


@dataclass(slots=True)
class Variable(Node):
    """``@name``, assigned by the SET clause."""
    name: str


@dataclass(slots=True)
class Member(Node):
    """``expr.name``."""
    target: Node
    name: str


@dataclass(slots=True)
class Unary(Node):
    op: str  # 'NOT', '-', '+'
    operand: Node


@dataclass(slots=True)
class Binary(Node):
    op: str  # 'AND', 'OR', '=', '<>', '<', '<=', '>', '>=', 'IN', '+', '-', '*', '/', '%'
    left: Node
    right: Node


@dataclass(slots=True)
class Call(Node):
    name: str  # lower case
    args: list[Node]
    written: str = ""  # the name as written, for default output keys and messages


@dataclass(slots=True)
class Cast(Node):
    value: Node
    target: str  # lower case type keyword
    target_pos: int = 0


@dataclass(slots=True)
class Case(Node):
    subject: Node
    whens: list[tuple[Node, Node]]
    default: Node | None


@dataclass(slots=True)
class ObjectLiteral(Node):
    items: list[tuple[str, Node]]


@dataclass(slots=True)
class ArrayLiteral(Node):
    items: list[Node]


@dataclass(slots=True)
class SelectItem:
    pos: int
    expr: Node | None  # None for ``*``
    alias: list[str] | None = None  # dotted alias split into its parts


@dataclass(slots=True)
class Select(Node):
    """A SELECT; ``source`` is the FROM expression of a nested SELECT (None at top level)."""
    value: bool
    items: list[SelectItem]
    source: Node | None = None
    where: Node | None = None
    topic_filter: str | None = None
    topic_pos: int = 0
    assignments: list[tuple[str, Node, int]] = field(default_factory=list)  # SET @name = expr
