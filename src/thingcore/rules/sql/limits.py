"""Bounds on what one statement may cost: at creation (its size and shape) and per message (its work).

A rule runs on the broker's event loop, so a statement must not be able to stall it or exhaust memory,
whatever the message. Two measures make every evaluation bounded and (about) linear in its input:

- **Value size.** No string, array or object built during an evaluation may exceed
  :attr:`Limits.max_value_size` (characters of a string; serialized size of an array or object). Functions
  that can multiply sizes (``replace``, ``concat``, ``+``, ``regexp_replace``, ``encode``, container
  literals, nested SELECTs...) check *before* they build, so the limit is never overshot in memory.
- **Cost.** Each evaluation gets :attr:`Limits.max_cost` units of work, about 10 ns each: one per character
  a function reads or writes, :data:`STEP` per expression evaluated for an element of a nested SELECT or per
  regular-expression match replaced. Loops (nested SELECTs, replacements) are charged as they go, so an
  evaluation that would run long stops early instead.

Past either bound the evaluation raises :class:`SqlLimitError`: the rule fails for that message (its error
action gets the reason) and the broker carries on. A constant expression that breaks them is refused
when the statement is compiled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import SqlRuntimeError

STEP = 10  #: cost of one expression evaluated per element (a Python-level step, ~100 ns)
MAX_SQL_LENGTH = 256 * 1024  #: characters of a statement (AWS: a rule is at most 256 KB)
MAX_FUNCTION_CALLS = 1000  #: function calls written in one statement
MAX_NODES = 20_000  #: expressions (operators, operands, calls) in one statement


class SqlLimitError(SqlRuntimeError):
    """An evaluation went past :attr:`Limits.max_value_size` or :attr:`Limits.max_cost`."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The per-evaluation bounds (``[rules] max_value_size`` and ``max_evaluation_cost``)."""

    max_value_size: int = 2 * 1024 * 1024  # the base64 text of the largest default MQTT packet fits
    max_cost: int = 5_000_000

    def meter(self) -> Meter:
        return Meter(self)


DEFAULT_LIMITS = Limits()


class Meter:
    """What is left of one evaluation's budget; functions that do work proportional to their input
    receive it as their first argument (``sqlfunc(..., metered=True)``)."""

    __slots__ = ("left", "max_cost", "max_value_size")

    def __init__(self, limits: Limits) -> None:
        self.max_value_size = limits.max_value_size
        self.max_cost = limits.max_cost
        self.left = limits.max_cost

    def reset(self) -> None:
        self.left = self.max_cost

    def charge(self, units: int) -> None:
        """Spend ``units``; raises when the evaluation's budget is gone."""
        self.left -= units
        if self.left < 0:
            raise SqlLimitError(f"the evaluation exceeded its cost budget ({self.max_cost:,} units, "
                                "[rules] max_evaluation_cost): the statement does too much work for this message")

    def size(self, n: int, what: str = "a string") -> None:
        """A value of size ``n`` is about to be built: refuse it past max_value_size, else charge it."""
        if n > self.max_value_size:
            raise SqlLimitError(f"{what} of {n:,} characters would exceed the limit of {self.max_value_size:,} "
                                "([rules] max_value_size)")
        self.left -= n
        if self.left < 0:
            self.charge(0)

    def container(self, v: Any, what: str = "an array or object") -> None:
        """Check a freshly built array or object: its serialized size (walked with early exit, shared
        parts counted each time they appear, as serializing would) must stay within max_value_size."""
        limit = self.max_value_size
        total, steps = weigh(v, limit)
        self.charge(steps * 4)
        if total > limit:
            raise SqlLimitError(f"{what} larger than {limit:,} characters when serialized "
                                "([rules] max_value_size)")


def weigh(v: Any, limit: int) -> tuple[int, int]:
    """About the JSON size of ``v`` (strings by length, numbers as 8) and the number of items walked;
    stops as soon as the size passes ``limit``, so the walk costs at most about ``limit`` steps even
    for a structure that shares one big part many times."""
    total = 0
    steps = 0
    stack = [v]
    pop = stack.pop
    push = stack.extend
    while stack:
        x = pop()
        steps += 1
        t = type(x)
        if t is str or t is bytes:
            total += len(x) + 2
        elif t is dict:
            total += 2 + len(x)
            for k in x:
                total += len(k) + 3
            push(x.values())
        elif t is list:
            total += 2 + len(x)
            push(x)
        else:
            total += 8
        if total > limit:
            break
    return total, steps
