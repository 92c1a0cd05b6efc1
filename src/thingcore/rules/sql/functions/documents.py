"""Functions over documents and types: get, isNull, isUndefined, transform, get_or_default."""

from __future__ import annotations

from typing import Any

from ..limits import Meter, weigh
from ..values import UNDEFINED, to_int
from .registry import V2016, sqlfunc

TRANSFORM_LIMIT = 128 * 1024  # bytes of output AWS allows transform() to produce


@sqlfunc("get", 2)
def sql_get(coll: Any, key: Any) -> Any:
    """Array/String + index (converted to Int, 0-based), Object + String key; else Undefined."""
    t = type(coll)
    if t is dict:
        return coll.get(key, UNDEFINED) if type(key) is str else UNDEFINED
    if t is list or t is str:
        i = to_int(key)
        if type(i) is not int or not 0 <= i < len(coll):
            return UNDEFINED
        return coll[i]
    return UNDEFINED


@sqlfunc("isnull", 1)
def sql_isnull(v: Any) -> bool:
    return v is None


@sqlfunc("isundefined", 1, since=V2016)
def sql_isundefined(v: Any) -> bool:
    return v is UNDEFINED


@sqlfunc("transform", 3, since=V2016, metered=True)
def sql_transform(meter: Meter, mode: Any, obj: Any, array: Any) -> Any:
    """Only ``enrichArray``: each object of the array gets the object's attributes merged in. The
    result is Undefined past AWS's 128 KiB (measured without serializing it: the merged attributes
    are shared by every item, so a serialization could be far bigger than the memory used)."""
    if mode != "enrichArray" or type(obj) is not dict or type(array) is not list:
        return UNDEFINED
    meter.charge(len(array) * (len(obj) + 1))
    out = []
    for item in array:
        if type(item) is not dict:
            out.append(item)
            continue
        merged = dict(item)
        merged.update(obj)
        out.append(merged)
    total, steps = weigh(out, TRANSFORM_LIMIT)
    meter.charge(steps * 2)
    if total > TRANSFORM_LIMIT:
        return UNDEFINED
    return out


@sqlfunc("get_or_default", 2)
def sql_get_or_default(v: Any, default: Any) -> Any:
    """The compiler evaluates this lazily (a failing first argument also yields the default);
    this plain form is used when both arguments are constants."""
    return default if v is UNDEFINED or v is None else v
