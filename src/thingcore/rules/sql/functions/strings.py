"""String functions. Non-string arguments go through the standard String conversion, so
``lower(["HELLO"])`` is ``'["hello"]'`` and Null/Undefined arguments give Undefined."""

from __future__ import annotations

import math
from typing import Any

from ..values import UNDEFINED, string_to_int, to_string
from .registry import V2016, sqlfunc

# Java's String.trim(): every character up to U+0020.
_TRIM = "".join(chr(i) for i in range(33))


def _index(v: Any) -> Any:
    """An Int argument: Decimals and numeric strings rounded down; anything else Undefined."""
    t = type(v)
    if t is int:
        return v
    if t is float:
        if math.isnan(v):
            return UNDEFINED
        if math.isinf(v):
            return -(10 ** 9) if v < 0 else 10 ** 9
        return math.floor(v)
    if t is str:
        return string_to_int(v, "floor")
    return UNDEFINED


def _strings(*args: Any) -> list[Any] | None:
    out = []
    for a in args:
        s = to_string(a)
        if s is UNDEFINED:
            return None
        out.append(s)
    return out


@sqlfunc("chr", 1)
def sql_chr(v: Any) -> Any:
    n = _index(v)
    if n is UNDEFINED or not 0 <= n <= 127:
        return UNDEFINED
    return chr(n)


@sqlfunc("concat", 0, None)
def sql_concat(*args: Any) -> Any:
    if not args:
        return UNDEFINED
    if len(args) == 1:
        return args[0]
    if any(type(a) is list for a in args):
        out: list[Any] = []
        for a in args:
            if type(a) is list:
                out.extend(a)
            elif a is not UNDEFINED:
                out.append(a)
        return out
    parts = _strings(*args)
    return UNDEFINED if parts is None else "".join(parts)


@sqlfunc("endswith", 2)
def sql_endswith(s: Any, suffix: Any) -> Any:
    p = _strings(s, suffix)
    return UNDEFINED if p is None else p[0].endswith(p[1])


@sqlfunc("startswith", 2)
def sql_startswith(s: Any, prefix: Any) -> Any:
    p = _strings(s, prefix)
    return UNDEFINED if p is None else p[0].startswith(p[1])


@sqlfunc("indexof", 2, since=V2016)
def sql_indexof(s: Any, sub: Any) -> Any:
    p = _strings(s, sub)
    return UNDEFINED if p is None else p[0].find(p[1])


@sqlfunc("length", 1, since=V2016)
def sql_length(s: Any) -> Any:
    x = to_string(s)
    return UNDEFINED if x is UNDEFINED else len(x)


@sqlfunc("numbytes", 1, since=V2016)
def sql_numbytes(s: Any) -> Any:
    x = to_string(s)
    return UNDEFINED if x is UNDEFINED else len(x.encode("utf-8", "surrogatepass"))


@sqlfunc("lower", 1)
def sql_lower(s: Any) -> Any:
    x = to_string(s)
    return UNDEFINED if x is UNDEFINED else x.lower()


@sqlfunc("upper", 1)
def sql_upper(s: Any) -> Any:
    x = to_string(s)
    return UNDEFINED if x is UNDEFINED else x.upper()


def _pad_width(n: Any) -> Any:
    w = _index(n)
    if w is UNDEFINED:
        return UNDEFINED
    return min(max(w, 0), 1000)


@sqlfunc("lpad", 2)
def sql_lpad(s: Any, n: Any) -> Any:
    x = to_string(s)
    w = _pad_width(n)
    if x is UNDEFINED or w is UNDEFINED:
        return UNDEFINED
    return " " * w + x


@sqlfunc("rpad", 2)
def sql_rpad(s: Any, n: Any) -> Any:
    x = to_string(s)
    w = _pad_width(n)
    if x is UNDEFINED or w is UNDEFINED:
        return UNDEFINED
    return x + " " * w


@sqlfunc("ltrim", 1)
def sql_ltrim(s: Any) -> Any:
    x = to_string(s)
    return UNDEFINED if x is UNDEFINED else x.lstrip(_TRIM)


@sqlfunc("rtrim", 1)
def sql_rtrim(s: Any) -> Any:
    x = to_string(s)
    return UNDEFINED if x is UNDEFINED else x.rstrip(_TRIM)


@sqlfunc("trim", 1)
def sql_trim(s: Any) -> Any:
    x = to_string(s)
    return UNDEFINED if x is UNDEFINED else x.strip(_TRIM)


@sqlfunc("replace", 3)
def sql_replace(s: Any, old: Any, new: Any) -> Any:
    p = _strings(s, old, new)
    return UNDEFINED if p is None else p[0].replace(p[1], p[2])


@sqlfunc("substring", 2, 3)
def sql_substring(s: Any, start: Any, end: Any = None) -> Any:
    """0-based, end exclusive; indices clamped to the string; start >= end gives ''."""
    x = to_string(s)
    if x is UNDEFINED:
        return UNDEFINED
    n = len(x)
    i = _index(start)
    if i is UNDEFINED:
        return UNDEFINED
    i = min(max(i, 0), n)
    if end is None:
        return x[i:]
    j = _index(end)
    if j is UNDEFINED:
        return UNDEFINED
    j = min(max(j, 0), n)
    return x[i:j] if i < j else ""
