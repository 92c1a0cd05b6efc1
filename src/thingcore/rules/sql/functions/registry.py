"""The table of built-in functions: name -> how to call it, its arity and the SQL version it needs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

V2015 = "2015-10-08"
V2016 = "2016-03-23"


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    name: str
    impl: Callable[..., Any]
    min_args: int
    max_args: int | None  # None: any number
    since: str = V2015
    env: bool = False  # impl(env, *args): reads the message context (topic(), clientid(), ...)
    pure: bool = True  # same arguments, same result: folded at compile time when all are constants
    external: bool = False  # reaches a service (may block; the engine runs such rules in a thread)
    metered: bool = False  # impl(meter, *args): work or output grows with its input (limits.Meter)


FUNCTIONS: dict[str, FunctionSpec] = {}


def sqlfunc(name: str, min_args: int, max_args: int | None = -1, *, since: str = V2015, env: bool = False,
            pure: bool = True, external: bool = False,
            metered: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``impl`` as SQL function ``name`` (max_args defaults to min_args). A ``metered`` function
    takes the evaluation's :class:`~thingcore.rules.sql.limits.Meter` first and charges its work to it."""
    def register(impl: Callable[..., Any]) -> Callable[..., Any]:
        top = min_args if max_args == -1 else max_args
        FUNCTIONS[name] = FunctionSpec(name, impl, min_args, top, since, env, pure and not env and not external,
                                       external, metered)
        return impl
    return register
