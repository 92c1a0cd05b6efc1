"""Math and bit functions (abs ... trunc). Double-precision ones return floats; results that are
not real numbers (``sqrt(-1)``, ``ln(0)``, overflow) are Undefined, as AWS's Decimal cannot hold them."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from ..operators import op_mod
from ..values import UNDEFINED, parse_decimal_string, to_int_floor
from .registry import sqlfunc


def _number(v: Any) -> Any:
    t = type(v)
    if t is int or t is float:
        return v
    if t is str:
        return parse_decimal_string(v)
    return UNDEFINED


def _double(fn: Callable[..., float]) -> Callable[..., Any]:
    def apply(*args: Any) -> Any:
        xs = []
        for a in args:
            x = _number(a)
            if x is UNDEFINED:
                return UNDEFINED
            try:
                xs.append(float(x))
            except OverflowError:
                return UNDEFINED
        try:
            r = fn(*xs)
        except (ValueError, OverflowError, ZeroDivisionError):
            return UNDEFINED
        return r if isinstance(r, float) and math.isfinite(r) else UNDEFINED
    return apply


for _name, _fn in {
    "acos": math.acos, "asin": math.asin, "atan": math.atan, "cos": math.cos, "cosh": math.cosh,
    "sin": math.sin, "sinh": math.sinh, "tan": math.tan, "tanh": math.tanh, "exp": math.exp,
    "ln": math.log, "log": math.log10, "sqrt": math.sqrt,
}.items():
    sqlfunc(_name, 1)(_double(_fn))
sqlfunc("atan2", 2)(_double(math.atan2))
sqlfunc("power", 2)(_double(math.pow))


@sqlfunc("abs", 1)
def sql_abs(v: Any) -> Any:
    t = type(v)
    if t is int or t is float:
        return abs(v)
    if t is str:
        x = parse_decimal_string(v)
        return UNDEFINED if x is UNDEFINED else abs(float(x))
    return UNDEFINED


def _rounding(fn: Callable[[float], int]) -> Callable[[Any], Any]:
    def apply(v: Any) -> Any:
        x = _number(v)
        if x is UNDEFINED:
            return UNDEFINED
        if type(x) is int:
            return x
        return fn(x) if math.isfinite(x) else UNDEFINED
    return apply


def _round_half_away(x: float) -> int:
    """``round(1.5) = 2``, ``round(-1.5) = -2`` (the documented examples)."""
    d = Decimal(repr(x)).to_integral_value(rounding="ROUND_HALF_UP")
    return int(d)


sqlfunc("ceil", 1)(_rounding(math.ceil))
sqlfunc("floor", 1)(_rounding(math.floor))
sqlfunc("round", 1)(_rounding(_round_half_away))


@sqlfunc("sign", 1)
def sql_sign(v: Any) -> Any:
    x = _number(v)
    if x is UNDEFINED:
        return UNDEFINED
    return (x > 0) - (x < 0)


@sqlfunc("mod", 2)
def sql_mod(a: Any, b: Any) -> Any:
    return op_mod(a, b)


sqlfunc("remainder", 2)(sql_mod)


@sqlfunc("trunc", 2)
def sql_trunc(v: Any, places: Any) -> Any:
    """Truncate toward zero to ``places`` decimals (clamped to 0..34), trailing zeros stripped."""
    n = to_int_floor(places) if type(places) is not str else UNDEFINED
    if n is UNDEFINED:
        return UNDEFINED
    t = type(v)
    if t is int:
        return v
    if t is float:
        if not math.isfinite(v):
            return UNDEFINED
        d = Decimal(repr(v))
    elif t is str:
        if parse_decimal_string(v) is UNDEFINED:
            return UNDEFINED
        d = Decimal(v)
    else:
        return UNDEFINED
    n = min(max(n, 0), 34)
    try:
        d = d.quantize(Decimal(1).scaleb(-n), rounding=ROUND_DOWN)
    except InvalidOperation:
        pass  # more digits than the context holds: nothing to cut
    d = d.normalize()
    if d == d.to_integral_value():
        return int(d)
    return float(d)


def _ints(a: Any, b: Any) -> tuple[Any, Any]:
    return to_int_floor(a), to_int_floor(b)


@sqlfunc("bitand", 2)
def sql_bitand(a: Any, b: Any) -> Any:
    x, y = _ints(a, b)
    return UNDEFINED if x is UNDEFINED or y is UNDEFINED else x & y


@sqlfunc("bitor", 2)
def sql_bitor(a: Any, b: Any) -> Any:
    x, y = _ints(a, b)
    return UNDEFINED if x is UNDEFINED or y is UNDEFINED else x | y


@sqlfunc("bitxor", 2)
def sql_bitxor(a: Any, b: Any) -> Any:
    x, y = _ints(a, b)
    return UNDEFINED if x is UNDEFINED or y is UNDEFINED else x ^ y


@sqlfunc("bitnot", 1)
def sql_bitnot(a: Any) -> Any:
    """AWS documents ``bitnot(13) = 2``: the NOT of the operand's significant bits (1101 -> 0010),
    not two's complement (-14). Negative operands use two's complement."""
    x = to_int_floor(a)
    if x is UNDEFINED:
        return UNDEFINED
    if x < 0:
        return ~x
    return x ^ ((1 << max(x.bit_length(), 1)) - 1)


@sqlfunc("rand", 0, pure=False)
def sql_rand() -> float:
    return random.random()


@sqlfunc("nanvl", 2)
def sql_nanvl(a: Any, b: Any) -> Any:
    if a is UNDEFINED or a is None or (type(a) is float and math.isnan(a)):
        return b
    return a
