"""AWS IoT SQL values and the standard conversions between them (iot-sql-data-types).

Values are plain Python objects so that SELECT output needs no translation: Int is ``int``,
Decimal is ``float`` (AWS renders output numbers IEEE-double style), Boolean ``bool``, String
``str``, Array ``list``, Object ``dict``, Null ``None``, a non-JSON payload ``bytes``, and
Undefined the :data:`UNDEFINED` singleton. ``bool`` is a subclass of ``int`` in Python, so every
numeric check here uses ``type(x) is int``.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson


class _Undefined:
    """"Not a value": missing keys, failed conversions, functions given bad arguments."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Undefined"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Any = _Undefined()

# Strings AWS converts to Decimal (docs: ^-?\d+(\.\d+)?((?i)E-?\d+)?$).
_DECIMAL_STRING = re.compile(r"-?\d+(?:\.\d+)?(?:[eE]-?\d+)?")
# Above this magnitude a whole double is not turned into an Int (AWS Ints have at most 34 digits).
_INT_LIMIT = 1e34


def is_number(v: Any) -> bool:
    t = type(v)
    return t is int or t is float


def whole_to_int(v: Any) -> Any:
    """SQL 2016-03-23: whole-number Decimals are Ints (``10.0`` is processed as ``10``)."""
    if type(v) is float and v.is_integer() and -_INT_LIMIT < v < _INT_LIMIT:
        return int(v)
    return v


def normalize_v2(v: Any) -> Any:
    """Apply :func:`whole_to_int` throughout a parsed document; containers are copied only if needed."""
    t = type(v)
    if t is float:
        return whole_to_int(v)
    if t is dict:
        out = None
        for k, x in v.items():
            tx = type(x)
            if tx is float or tx is dict or tx is list:
                y = normalize_v2(x)
                if y is not x or type(y) is not tx:
                    if out is None:
                        out = dict(v)
                    out[k] = y
        return v if out is None else out
    if t is list:
        changed = False
        items = []
        for x in v:
            tx = type(x)
            y = normalize_v2(x) if (tx is float or tx is dict or tx is list) else x
            if y is not x or type(y) is not tx:
                changed = True
            items.append(y)
        return items if changed else v
    return v


def parse_decimal_string(s: str) -> Any:
    """A numeric string as a Decimal (float), or UNDEFINED."""
    if _DECIMAL_STRING.fullmatch(s) is None:
        return UNDEFINED
    f = float(s)
    return f if math.isfinite(f) else UNDEFINED


def to_decimal(v: Any) -> Any:
    """Standard conversion to Decimal: numbers stay numbers (an Int keeps exact integer arithmetic
    where callers want it), numeric strings parse, Null stays Null, anything else is Undefined."""
    t = type(v)
    if t is int or t is float:
        return v
    if t is str:
        return parse_decimal_string(v)
    if v is None:
        return None
    return UNDEFINED


def to_number(v: Any) -> Any:
    """Like :func:`to_decimal` but Null is Undefined: what operators and math functions need."""
    t = type(v)
    if t is int or t is float:
        return v
    if t is str:
        return parse_decimal_string(v)
    return UNDEFINED


def string_to_int(s: str, rounding: str) -> Any:
    """A numeric string as an Int: 'trunc' (standard conversion) or 'floor' (cast and friends)."""
    if _DECIMAL_STRING.fullmatch(s) is None:
        return UNDEFINED
    try:
        d = Decimal(s)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        return UNDEFINED
    if rounding == "floor":
        return int(d.to_integral_value(rounding="ROUND_FLOOR"))
    return int(d)


def to_int(v: Any) -> Any:
    """Standard conversion to Int: Decimals round to nearest (halves away from zero), strings are
    parsed as Decimal and truncated, Null stays Null."""
    t = type(v)
    if t is int:
        return v
    if t is float:
        if not math.isfinite(v):
            return UNDEFINED
        return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)
    if t is str:
        return string_to_int(v, "trunc")
    if v is None:
        return None
    return UNDEFINED


def to_int_floor(v: Any) -> Any:
    """The conversion most functions document: "rounded down to the nearest Int"; Null is Undefined."""
    t = type(v)
    if t is int:
        return v
    if t is float:
        return math.floor(v) if math.isfinite(v) else UNDEFINED
    if t is str:
        return string_to_int(v, "floor")
    return UNDEFINED


def to_bool(v: Any) -> Any:
    """Standard conversion to Boolean: booleans, and the strings "true"/"false" in any case."""
    if v is True or v is False:
        return v
    if type(v) is str:
        low = v.lower()
        if low == "true":
            return True
        if low == "false":
            return False
    return UNDEFINED


def format_decimal(f: float) -> str:
    """A Decimal as a string: shortest round-trip digits, Java-style exponent (``1E+22``)."""
    r = repr(f)
    if "e" in r:
        mantissa, exp = r.split("e")
        e = int(exp)
        return f"{mantissa}E{'+' if e >= 0 else '-'}{abs(e)}"
    return r


def to_string(v: Any) -> Any:
    """Standard conversion to String; Null and Undefined become Undefined."""
    t = type(v)
    if t is str:
        return v
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    if t is float:
        return format_decimal(v)
    if t is dict or t is list:
        return dumps(v).decode("utf-8")
    if t is bytes:
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return UNDEFINED
    return UNDEFINED


def type_name(v: Any) -> str:
    t = type(v)
    if t is bool:
        return "Boolean"
    if t is int:
        return "Int"
    if t is float:
        return "Decimal"
    if t is str:
        return "String"
    if t is list:
        return "Array"
    if t is dict:
        return "Object"
    if v is None:
        return "Null"
    if t is bytes:
        return "Binary"
    return "Undefined"


# -- equality and ordering --------------------------------------------------------------------------

def sql_equals(a: Any, b: Any) -> Any:
    """The ``=`` operator: Undefined on either side is Undefined, mismatched types are false,
    Int and Decimal compare as numbers, arrays item by item in order, objects key by key."""
    ta = type(a)
    tb = type(b)
    if ta is tb:
        if ta is list:
            if len(a) != len(b):
                return False
            return all(sql_equals(x, y) is True for x, y in zip(a, b, strict=True))
        if ta is dict:
            if a.keys() != b.keys():
                return False
            return all(sql_equals(x, b[k]) is True for k, x in a.items())
        if a is UNDEFINED:
            return UNDEFINED
        return a == b
    if a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    if (ta is int or ta is float) and (tb is int or tb is float):
        return a == b
    return False


def sql_compare(a: Any, b: Any) -> Any:
    """Both sides converted to Decimal; -1/0/1, or Undefined when either side is not a number."""
    x = to_number(a)
    y = to_number(b)
    if x is UNDEFINED or y is UNDEFINED:
        return UNDEFINED
    return (x > y) - (x < y)


# -- JSON ----------------------------------------------------------------------------------------------

def dumps(v: Any) -> bytes:
    """Compact JSON; Undefined members of objects and arrays are left out (they have no JSON form)."""
    try:
        return orjson.dumps(v, default=bytes_as_text)
    except TypeError:
        # orjson refuses integers beyond 64 bits; AWS Ints may have 34 digits.
        return json.dumps(_strip_undefined(v), separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False, default=_json_default).encode("utf-8")


def bytes_as_text(o: Any) -> Any:
    """orjson's ``default``: bytes inside an output are written as (UTF-8) text; anything else is refused."""
    if isinstance(o, (bytes, bytearray)):
        return o.decode("utf-8", "replace")
    raise TypeError


def _json_default(o: Any) -> Any:
    if isinstance(o, (bytes, bytearray)):
        return o.decode("utf-8", "replace")
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _strip_undefined(v: Any) -> Any:
    t = type(v)
    if t is dict:
        return {k: _strip_undefined(x) for k, x in v.items() if x is not UNDEFINED}
    if t is list:
        return [_strip_undefined(x) for x in v if x is not UNDEFINED]
    return v


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def loads(data: bytes | str) -> Any:
    """Parse JSON the way the rules engine reads documents; raises ValueError when it is not JSON.
    Integers beyond 64 bits (which orjson refuses) and NaN/Infinity (which AWS refuses) are handled."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    # Retry with the standard library only for what orjson cannot represent (very large integers).
    return json.loads(data, parse_constant=_reject_constant)


_DOCUMENT_START = frozenset(b"{[ \t\r\n")


def parse_payload(payload: bytes) -> Any:
    """The message payload as the SQL sees it: a JSON object or array is a document; anything else
    (binary data, plain text, a bare JSON scalar such as ``80``, an empty payload) is raw bytes.
    Numbers are as parsed (2016-03-23's whole-number rule is applied where values are read)."""
    if not payload or payload[0] not in _DOCUMENT_START:
        return payload
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        try:
            doc = loads(payload)
        except (ValueError, RecursionError):
            return payload
    t = type(doc)
    if t is not dict and t is not list:
        return payload
    return doc


def output_to_bytes(output: Any) -> bytes:
    """Serialize a SELECT output as a message payload: raw bytes stay as they are, Undefined is an
    empty payload, anything else is JSON."""
    if type(output) is bytes:
        return output
    if output is UNDEFINED:
        return b""
    return dumps(output)
