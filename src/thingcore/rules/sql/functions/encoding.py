"""Hashes (md2 ... sha512) and base64 encode()/decode()."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from typing import Any

from ..limits import Meter
from ..values import UNDEFINED, loads, normalize_v2, to_string
from .registry import V2016, sqlfunc

# MD2's substitution table (RFC 1319), generated from the digits of pi; hashlib no longer has MD2.
_MD2_S = bytes.fromhex(
    "292e43c9a2d87c013d3654a1ecf0061362a705f3c0c7738c98932bd9bc4c82ca1e9b573cfdd4e01667426f188a17e512"
    "be4ec4d6da9ede49a0fbf58ebb2fee7aa968799115b2073f94c210890b225f21807f5d9a5a903227353ecce7bff79703"
    "ff1930b348a5b5d1d75e922aac56aac64fb838d296a47db676fc6be29c7404f1459d705964718720865bcf65e62da802"
    "1b6025adaeb0b9f61c46616934407e0f5547a323dd51af3ac35cf9cebac5ea262c530d6e85288409d3dfcdf441814d52"
    "6adc37c86cc1abfa24e17b080cbdb14a7888958be363e86de9cbd5fe3b001d39f2efb70e6658d0e4a67772f8eb754b0a"
    "314450b48fed1f1adb998d339f118314"
)


def md2_hex(data: bytes) -> str:
    """MD2 as RFC 1319 describes it (with the published erratum for the checksum step)."""
    s = _MD2_S
    pad = 16 - len(data) % 16
    data = data + bytes([pad]) * pad
    checksum = bytearray(16)
    last = 0
    for i in range(0, len(data), 16):
        for j in range(16):
            checksum[j] ^= s[data[i + j] ^ last]
            last = checksum[j]
    data += bytes(checksum)
    x = bytearray(48)
    for i in range(0, len(data), 16):
        for j in range(16):
            x[16 + j] = data[i + j]
            x[32 + j] = x[16 + j] ^ x[j]
        t = 0
        for j in range(18):
            for k in range(48):
                x[k] ^= s[t]
                t = x[k]
            t = (t + j) & 0xFF
    return bytes(x[:16]).hex()


def _hash(digest: Callable[[bytes], str], cost: int = 1) -> Callable[..., Any]:
    def apply(meter: Meter, v: Any) -> Any:
        data = v if type(v) is bytes else to_string(v)
        if data is UNDEFINED:
            return UNDEFINED
        if type(data) is str:
            data = data.encode("utf-8", "surrogatepass")
        meter.charge(len(data) * cost)
        return digest(data)
    return apply


sqlfunc("md2", 1, metered=True)(_hash(md2_hex, 100))  # pure Python: about 1 µs a byte
for _name in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512"):
    sqlfunc(_name, 1, metered=True)(_hash(lambda data, _n=_name: hashlib.new(_n, data).hexdigest()))


@sqlfunc("encode", 2, since=V2016, metered=True)
def sql_encode(meter: Meter, v: Any, scheme: Any) -> Any:
    """base64 of the value's String conversion; raw bytes (``encode(*, 'base64')`` of any payload)
    are encoded as they are."""
    if type(scheme) is not str or scheme.lower() != "base64":
        return UNDEFINED
    if type(v) is bytes:
        data = v
    else:
        s = to_string(v)
        if s is UNDEFINED:
            return UNDEFINED
        data = s.encode("utf-8", "surrogatepass")
    meter.size((len(data) + 2) // 3 * 4, "the base64 text encode() builds")
    return base64.b64encode(data).decode("ascii")


def decode_base64(v: Any, scheme: Any, v2: bool, meter: Meter | None = None) -> Any:
    """A decoded JSON document is returned as a value (so ``decode(x, 'base64').temperature``
    works), other text as a string; what cannot be decoded is Null."""
    if type(scheme) is not str or scheme.lower() != "base64":
        return UNDEFINED
    s = to_string(v)
    if s is UNDEFINED:
        return UNDEFINED
    if meter is not None:
        meter.charge(len(s) * 2)  # decoded, then parsed as JSON
    try:
        raw = base64.b64decode(s.encode("ascii"), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError, UnicodeError):
        return None
    try:
        doc = loads(text)
    except (ValueError, RecursionError):
        return text
    return normalize_v2(doc) if v2 else doc


@sqlfunc("decode", 2, None, since=V2016, env=True)
def sql_decode(env: Any, v: Any, scheme: Any, *rest: Any) -> Any:
    if rest:
        return UNDEFINED
    return decode_base64(v, scheme, env.v2, env.meter)
