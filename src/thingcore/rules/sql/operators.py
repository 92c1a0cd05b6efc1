"""The operators of AWS IoT SQL with AWS's typing rules (iot-sql-operators).

Each takes already-evaluated operands and returns a value or UNDEFINED. Arithmetic returns raw
Python numbers; the compiler applies the 2016-03-23 whole-number rule on top.
"""

from __future__ import annotations

import math
from typing import Any

from .values import UNDEFINED, parse_decimal_string, sql_equals, to_bool, to_string


def op_and(a: Any, b: Any) -> Any:
    x = to_bool(a)
    y = to_bool(b)
    if x is UNDEFINED or y is UNDEFINED:
        return UNDEFINED
    return x and y


def op_or(a: Any, b: Any) -> Any:
    x = to_bool(a)
    y = to_bool(b)
    if x is UNDEFINED or y is UNDEFINED:
        return UNDEFINED
    return x or y


def op_not(a: Any) -> Any:
    x = to_bool(a)
    return UNDEFINED if x is UNDEFINED else not x


def op_eq(a: Any, b: Any) -> Any:
    return sql_equals(a, b)


def op_ne(a: Any, b: Any) -> Any:
    r = sql_equals(a, b)
    return UNDEFINED if r is UNDEFINED else not r


def _num(v: Any) -> Any:
    t = type(v)
    if t is int or t is float:
        return v
    if t is str:
        return parse_decimal_string(v)
    return UNDEFINED


def op_lt(a: Any, b: Any) -> Any:
    x = _num(a)
    y = _num(b)
    if x is UNDEFINED or y is UNDEFINED:
        return UNDEFINED
    return x < y


def op_le(a: Any, b: Any) -> Any:
    x = _num(a)
    y = _num(b)
    if x is UNDEFINED or y is UNDEFINED:
        return UNDEFINED
    return x <= y


def op_gt(a: Any, b: Any) -> Any:
    x = _num(a)
    y = _num(b)
    if x is UNDEFINED or y is UNDEFINED:
        return UNDEFINED
    return x > y


def op_ge(a: Any, b: Any) -> Any:
    x = _num(a)
    y = _num(b)
    if x is UNDEFINED or y is UNDEFINED:
        return UNDEFINED
    return x >= y


def op_in(a: Any, b: Any) -> Any:
    """``x IN array``: true when some item equals x (by ``=``); Undefined unless b is an array."""
    if a is UNDEFINED or type(b) is not list:
        return UNDEFINED
    return any(sql_equals(a, item) is True for item in b)


_INT_LIMIT = 10 ** 34


def _finite(f: float) -> Any:
    return f if math.isfinite(f) else UNDEFINED


def op_add(a: Any, b: Any) -> Any:
    ta = type(a)
    tb = type(b)
    if ta is int and tb is int:
        return a + b
    if ta is str or tb is str:
        x = to_string(a)
        y = to_string(b)
        if x is UNDEFINED or y is UNDEFINED:
            return UNDEFINED
        return x + y
    if (ta is int or ta is float) and (tb is int or tb is float):
        return _finite(float(a) + float(b))
    return UNDEFINED


def _decimals(a: Any, b: Any) -> tuple[Any, Any]:
    """Operands for - * / %: Int pairs stay Int; otherwise both as Decimal (numeric strings parse)."""
    ta = type(a)
    tb = type(b)
    if ta is int and tb is int:
        return a, b
    x = _num(a)
    y = _num(b)
    if x is UNDEFINED or y is UNDEFINED:
        return UNDEFINED, UNDEFINED
    return float(x), float(y)


def op_sub(a: Any, b: Any) -> Any:
    x, y = _decimals(a, b)
    if x is UNDEFINED:
        return UNDEFINED
    r = x - y
    return r if type(r) is int else _finite(r)


def op_mul(a: Any, b: Any) -> Any:
    """Int * Int stays an Int while it fits AWS's 34 digits; beyond, a Decimal (so repeated products
    cannot grow numbers, and the time to compute them, without bound)."""
    x, y = _decimals(a, b)
    if x is UNDEFINED:
        return UNDEFINED
    r = x * y
    if type(r) is int:
        if -_INT_LIMIT < r < _INT_LIMIT:
            return r
        try:
            return _finite(float(r))
        except OverflowError:
            return UNDEFINED
    return _finite(r)


def op_div(a: Any, b: Any) -> Any:
    """Int / Int is an Int truncated toward zero (Java semantics); division by zero is Undefined."""
    x, y = _decimals(a, b)
    if x is UNDEFINED or not y:
        return UNDEFINED
    if type(x) is int:
        q = abs(x) // abs(y)
        return q if (x >= 0) == (y >= 0) else -q
    return _finite(x / y)


def op_mod(a: Any, b: Any) -> Any:
    """Remainder with the sign of the dividend (Java's %), so ``-7 % 3`` is ``-1``."""
    x, y = _decimals(a, b)
    if x is UNDEFINED or not y:
        return UNDEFINED
    if type(x) is int:
        r = abs(x) % abs(y)
        return r if x >= 0 else -r
    return _finite(math.fmod(x, y))


def op_neg(a: Any) -> Any:
    t = type(a)
    if t is int or t is float:
        return -a
    x = _num(a)
    return UNDEFINED if x is UNDEFINED else -float(x)


def op_pos(a: Any) -> Any:
    t = type(a)
    if t is int or t is float:
        return a
    x = _num(a)
    return UNDEFINED if x is UNDEFINED else float(x)


BINARY = {
    "AND": op_and, "OR": op_or, "=": op_eq, "<>": op_ne, "<": op_lt, "<=": op_le, ">": op_gt, ">=": op_ge,
    "IN": op_in, "+": op_add, "-": op_sub, "*": op_mul, "/": op_div, "%": op_mod,
}
ARITHMETIC = frozenset({"+", "-", "*", "/", "%"})
