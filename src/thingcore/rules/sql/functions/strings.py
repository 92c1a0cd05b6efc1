"""String functions. Non-string arguments go through the standard String conversion, so
``lower(["HELLO"])`` is ``'["hello"]'`` and Null/Undefined arguments give Undefined.

Each is ``metered``: it charges the characters it reads and writes to the evaluation's meter, and one
that can grow its input (``concat``, ``replace``, the pads) checks the size of its result before building it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..limits import Meter
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


def _strings(meter: Meter, *args: Any) -> list[Any] | None:
    out = []
    size = 0
    for a in args:
        s = to_string(a)
        if s is UNDEFINED:
            return None
        out.append(s)
        size += len(s)
    meter.charge(size)
    return out


def _string(meter: Meter, v: Any) -> Any:
    s = to_string(v)
    if s is not UNDEFINED:
        meter.charge(len(s))
    return s


@sqlfunc("chr", 1)
def sql_chr(v: Any) -> Any:
    n = _index(v)
    if n is UNDEFINED or not 0 <= n <= 127:
        return UNDEFINED
    return chr(n)


@sqlfunc("concat", 0, None, metered=True)
def sql_concat(meter: Meter, *args: Any) -> Any:
    if not args:
        return UNDEFINED
    if len(args) == 1:
        return args[0]
    if any(type(a) is list for a in args):
        meter.size(sum(len(a) if type(a) is list else 1 for a in args), "an array")
        out: list[Any] = []
        for a in args:
            if type(a) is list:
                out.extend(a)
            elif a is not UNDEFINED:
                out.append(a)
        meter.container(out, "the array concat() builds")
        return out
    parts = _strings(meter, *args)
    if parts is None:
        return UNDEFINED
    meter.size(sum(len(p) for p in parts), "the string concat() builds")
    return "".join(parts)


@sqlfunc("endswith", 2, metered=True)
def sql_endswith(meter: Meter, s: Any, suffix: Any) -> Any:
    p = _strings(meter, s, suffix)
    return UNDEFINED if p is None else p[0].endswith(p[1])


@sqlfunc("startswith", 2, metered=True)
def sql_startswith(meter: Meter, s: Any, prefix: Any) -> Any:
    p = _strings(meter, s, prefix)
    return UNDEFINED if p is None else p[0].startswith(p[1])


@sqlfunc("indexof", 2, since=V2016, metered=True)
def sql_indexof(meter: Meter, s: Any, sub: Any) -> Any:
    p = _strings(meter, s, sub)
    return UNDEFINED if p is None else p[0].find(p[1])


@sqlfunc("length", 1, since=V2016, metered=True)
def sql_length(meter: Meter, s: Any) -> Any:
    x = _string(meter, s)
    return UNDEFINED if x is UNDEFINED else len(x)


@sqlfunc("numbytes", 1, since=V2016, metered=True)
def sql_numbytes(meter: Meter, s: Any) -> Any:
    x = _string(meter, s)
    return UNDEFINED if x is UNDEFINED else len(x.encode("utf-8", "surrogatepass"))


def _case_mapped(meter: Meter, s: Any, mapping: Callable[[str], str]) -> Any:
    x = _string(meter, s)
    if x is UNDEFINED:
        return UNDEFINED
    r = mapping(x)
    if len(r) != len(x):  # a few characters map to several ('ß' -> 'SS')
        meter.size(len(r))
    return r


@sqlfunc("lower", 1, metered=True)
def sql_lower(meter: Meter, s: Any) -> Any:
    return _case_mapped(meter, s, str.lower)


@sqlfunc("upper", 1, metered=True)
def sql_upper(meter: Meter, s: Any) -> Any:
    return _case_mapped(meter, s, str.upper)


def _pad_width(n: Any) -> Any:
    w = _index(n)
    if w is UNDEFINED:
        return UNDEFINED
    return min(max(w, 0), 1000)


@sqlfunc("lpad", 2, metered=True)
def sql_lpad(meter: Meter, s: Any, n: Any) -> Any:
    x = to_string(s)
    w = _pad_width(n)
    if x is UNDEFINED or w is UNDEFINED:
        return UNDEFINED
    meter.size(len(x) + w, "the padded string")
    return " " * w + x


@sqlfunc("rpad", 2, metered=True)
def sql_rpad(meter: Meter, s: Any, n: Any) -> Any:
    x = to_string(s)
    w = _pad_width(n)
    if x is UNDEFINED or w is UNDEFINED:
        return UNDEFINED
    meter.size(len(x) + w, "the padded string")
    return x + " " * w


@sqlfunc("ltrim", 1, metered=True)
def sql_ltrim(meter: Meter, s: Any) -> Any:
    x = _string(meter, s)
    return UNDEFINED if x is UNDEFINED else x.lstrip(_TRIM)


@sqlfunc("rtrim", 1, metered=True)
def sql_rtrim(meter: Meter, s: Any) -> Any:
    x = _string(meter, s)
    return UNDEFINED if x is UNDEFINED else x.rstrip(_TRIM)


@sqlfunc("trim", 1, metered=True)
def sql_trim(meter: Meter, s: Any) -> Any:
    x = _string(meter, s)
    return UNDEFINED if x is UNDEFINED else x.strip(_TRIM)


@sqlfunc("replace", 3, metered=True)
def sql_replace(meter: Meter, s: Any, old: Any, new: Any) -> Any:
    p = _strings(meter, s, old, new)
    if p is None:
        return UNDEFINED
    x, a, b = p
    if len(b) > len(a):  # the result can grow: its size is known before it is built
        count = x.count(a) if a else len(x) + 1
        meter.size(len(x) + count * (len(b) - len(a)), "the string replace() builds")
    return x.replace(a, b)


@sqlfunc("substring", 2, 3, metered=True)
def sql_substring(meter: Meter, s: Any, start: Any, end: Any = None) -> Any:
    """0-based, end exclusive; indices clamped to the string; start >= end gives ''."""
    x = _string(meter, s)
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
