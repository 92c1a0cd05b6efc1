"""AWS Signature Version 4 verification, for HTTP requests and the presigned WebSocket upgrade.

boto3, the AWS CLI and the AWS IoT device SDKs sign every request; which signatures thingcore checks is
the ``[http] verify_signatures`` setting:

* ``"true"``: every request must carry a valid signature made with a configured access key.
* ``"non-loopback"`` (default): a signature naming a configured access key is always checked; a
  loopback client may also send no signature or sign with a key thingcore does not know (boto3 with
  dummy credentials on a laptop) and is then anonymous. Non-loopback clients with an unknown key
  are refused.
* ``"false"``: signatures are ignored; callers are anonymous.

Two forms are accepted: the ``Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
Signature=...`` header, and the presigned query string (``X-Amz-Algorithm``, ``X-Amz-Credential``,
``X-Amz-Date``, ``X-Amz-Expires``, ``X-Amz-SignedHeaders``, ``X-Amz-Signature``) that AWS IoT clients
put on the ``/mqtt`` WebSocket upgrade. The region and service of the credential scope are taken as
the client states them (AWS's own clients use ``iotdata`` or ``iotdevicegateway``).

Where clients differ, each variant is tried: the canonical path encoded twice (AWS's rule for every
service but S3, as botocore does) or once; for a presigned URL, the session token inside the signed
query or appended after signing (the AWS IoT SDKs do the latter).

The payload a signature covers is always the body actually received. An ``x-amz-content-sha256``
header must be the SHA-256 of that body, else 400 ``XAmzContentSHA256Mismatch`` (as S3 answers): a
signature over a declared hash says nothing about a different body. ``UNSIGNED-PAYLOAD`` (which AWS
documents for S3 only) is accepted only where it cannot hide a body: a request without one, such as
the presigned WebSocket upgrade; with a body it is refused (403 ``InvalidSignatureException``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from calendar import timegm
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, unquote, unquote_to_bytes

from thingcore.auth import is_loopback
from thingcore.broker.admission import RefusalLog

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_SKEW = 15 * 60  # seconds a signed request's time may differ from ours (AWS's rule)
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600

_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method."
)


class SignatureError(Exception):
    """A request thingcore refuses: ``error_type`` and ``status`` are AWS's (403 but for a body mismatch)."""

    def __init__(self, error_type: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status


@dataclass(slots=True)
class Request:
    """What a signature covers, as received (ASGI scope fields and the body)."""

    method: str
    raw_path: bytes
    query_string: bytes
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes = b""


@dataclass(slots=True, frozen=True)
class AccessKey:
    access_key_id: str
    secret: str
    principal: str


@dataclass(slots=True)
class _Signed:
    key_id: str
    date: str  # yyyymmdd
    region: str
    service: str
    amz_date: str  # yyyymmddTHHMMSSZ
    signed_headers: list[str]
    signature: str
    expires: int | None  # presigned only
    query: list[tuple[str, str]]  # decoded query parameters


class Verifier:
    def __init__(self, keys: Iterable[AccessKey], mode: str = "non-loopback") -> None:
        if mode not in ("true", "false", "non-loopback"):
            raise ValueError(f"verify_signatures must be true, false or non-loopback, not {mode!r}")
        self.keys = {k.access_key_id: k for k in keys}
        self.mode = mode
        self._refusals = RefusalLog()

    def principal(self, request: Request, address: str, now: float | None = None) -> str | None:
        """The verified principal, or None for an anonymous caller; raises :class:`SignatureError` (logged)."""
        if self.mode == "false":
            return None
        try:
            return self._principal(request, address, now)
        except SignatureError as exc:
            self._refusals("refused a signed request from %s: %s: %s", address, exc.error_type, exc.message)
            raise

    def _principal(self, request: Request, address: str, now: float | None) -> str | None:
        signed = _parse(request)
        if signed is None:
            if self.mode == "true":
                raise SignatureError("ForbiddenException", "Missing Authentication Token: sign the request with "
                                     "AWS Signature Version 4 (this server verifies signatures)")
            return None
        key = self.keys.get(signed.key_id)
        if key is None:
            if self.mode == "non-loopback" and is_loopback(address):
                return None
            raise SignatureError("UnrecognizedClientException",
                                 "The security token included in the request is invalid.")
        _check_time(signed, time.time() if now is None else now)
        if not any(hmac.compare_digest(_signature(key.secret, signed, c), signed.signature)
                   for c in _canonical_requests(request, signed)):
            raise SignatureError("InvalidSignatureException", _BAD_SIGNATURE)
        return key.principal


# -- parsing ---------------------------------------------------------------------------------------


def _headers(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in request.headers:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        out[key] = out[key] + "," + text if key in out else text
    return out


def _query(query_string: bytes) -> list[tuple[str, str]]:
    pairs = []
    for part in query_string.decode("latin-1").split("&"):
        if part:
            k, _, v = part.partition("=")
            pairs.append((unquote(k), unquote(v)))
    return pairs


def _parse(request: Request) -> _Signed | None:
    headers = _headers(request)
    auth = headers.get("authorization")
    if auth is not None and auth.startswith("AWS4-"):
        algorithm, _, rest = auth.partition(" ")
        if algorithm != ALGORITHM:
            raise SignatureError("InvalidSignatureException", f"unsupported signing algorithm {algorithm!r}")
        fields = {}
        for item in rest.split(","):
            name, _, value = item.strip().partition("=")
            fields[name] = value
        missing = [f for f in ("Credential", "SignedHeaders", "Signature") if not fields.get(f)]
        if missing:
            raise SignatureError("IncompleteSignatureException",
                                 f"Authorization header requires {', '.join(missing)}")
        amz_date = headers.get("x-amz-date", "")
        return _signed(fields["Credential"], amz_date, fields["SignedHeaders"], fields["Signature"], None,
                       _query(request.query_string))
    query = _query(request.query_string)
    params = dict(query)
    if "X-Amz-Signature" not in params:
        return None
    if params.get("X-Amz-Algorithm") != ALGORITHM:
        raise SignatureError("InvalidSignatureException", f"X-Amz-Algorithm must be {ALGORITHM}")
    try:
        expires = int(params.get("X-Amz-Expires", "86400"))
    except ValueError:
        raise SignatureError("InvalidSignatureException", "X-Amz-Expires must be a number of seconds") from None
    return _signed(params.get("X-Amz-Credential", ""), params.get("X-Amz-Date", ""),
                   params.get("X-Amz-SignedHeaders", ""), params["X-Amz-Signature"], expires, query)


def _signed(credential: str, amz_date: str, signed_headers: str, signature: str, expires: int | None,
            query: list[tuple[str, str]]) -> _Signed:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
        raise SignatureError("IncompleteSignatureException",
                             "Credential must be <access key id>/<yyyymmdd>/<region>/<service>/aws4_request")
    if not amz_date:
        raise SignatureError("IncompleteSignatureException", "X-Amz-Date is missing")
    if amz_date[:8] != parts[1]:
        raise SignatureError("InvalidSignatureException", "the credential scope date does not match X-Amz-Date")
    return _Signed(parts[0], parts[1], parts[2], parts[3], amz_date, signed_headers.lower().split(";"),
                   signature.lower(), expires, query)


def _check_time(signed: _Signed, now: float) -> None:
    try:
        t = timegm(time.strptime(signed.amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise SignatureError("IncompleteSignatureException",
                             f"X-Amz-Date {signed.amz_date!r} is not yyyymmddTHHMMSSZ") from None
    if signed.expires is None:
        if abs(now - t) > MAX_SKEW:
            raise SignatureError("InvalidSignatureException",
                                 f"Signature expired: {signed.amz_date} is more than 15 min from the server's time "
                                 f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}")
        return
    if not 0 <= signed.expires <= MAX_PRESIGN_EXPIRES:
        raise SignatureError("InvalidSignatureException", f"X-Amz-Expires must be 0..{MAX_PRESIGN_EXPIRES}")
    if t - now > MAX_SKEW:
        raise SignatureError("InvalidSignatureException", "the presigned URL is not valid yet (X-Amz-Date)")
    if now > t + signed.expires:
        raise SignatureError("InvalidSignatureException", "Signature expired: the presigned URL has expired")


# -- the canonical request -------------------------------------------------------------------------


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    for seg in path.split("/"):
        if seg == "..":
            if out:
                out.pop()
        elif seg and seg != ".":
            out.append(seg)
    result = "/" + "/".join(out)
    if path.endswith("/") and out:
        result += "/"
    return result


def _canonical_paths(raw_path: bytes) -> list[str]:
    path = _remove_dot_segments(raw_path.decode("latin-1") or "/").encode("latin-1")
    twice = quote(path, safe="/~")  # the path as sent is encoded once; AWS encodes it again
    once = quote(unquote_to_bytes(path), safe="/~")
    return [twice] if once == twice else [twice, once]


def _canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _canonical_requests(request: Request, signed: _Signed) -> list[str]:
    headers = _headers(request)
    lines = []
    for name in signed.signed_headers:
        value = headers.get(name)
        if value is None:
            raise SignatureError("InvalidSignatureException", f"signed header {name!r} is missing from the request")
        lines.append(f"{name}:{' '.join(value.split())}\n")
    canonical_headers = "".join(lines)
    signed_names = ";".join(signed.signed_headers)
    payloads = _payload_hashes(request, signed, headers)
    if signed.expires is None:
        queries = [_canonical_query(signed.query)]
    else:
        without_sig = [(k, v) for k, v in signed.query if k != "X-Amz-Signature"]
        queries = [_canonical_query(without_sig)]
        if any(k == "X-Amz-Security-Token" for k, _ in without_sig):  # appended after signing, or signed
            queries.append(_canonical_query((k, v) for k, v in without_sig if k != "X-Amz-Security-Token"))
    return [
        f"{request.method.upper()}\n{path}\n{query}\n{canonical_headers}\n{signed_names}\n{payload}"
        for path in _canonical_paths(request.raw_path) for query in queries for payload in payloads
    ]


def _payload_hashes(request: Request, signed: _Signed, headers: dict[str, str]) -> list[str]:
    """The payload hashes a valid signature may have used: each stands for the body actually received."""
    actual = hashlib.sha256(request.body).hexdigest()
    declared = headers.get("x-amz-content-sha256") if signed.expires is None else None
    if declared is None:  # presigned, or a header signature that hashed the body itself (every AWS SDK but S3's)
        return [actual, UNSIGNED_PAYLOAD] if signed.expires is not None and not request.body else [actual]
    declared = declared.strip()
    if declared == UNSIGNED_PAYLOAD:
        if request.body:
            raise SignatureError("InvalidSignatureException",
                                 "x-amz-content-sha256: UNSIGNED-PAYLOAD is accepted only for a request without a "
                                 "body (AWS allows unsigned payloads for S3 only): sign the SHA-256 of the body")
        return [UNSIGNED_PAYLOAD]
    if declared.lower() != actual:
        raise SignatureError("XAmzContentSHA256Mismatch",
                             "The provided 'x-amz-content-sha256' header does not match what was computed.", 400)
    return [declared]


@lru_cache(maxsize=256)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _signature(secret: str, signed: _Signed, canonical_request: str) -> str:
    scope = f"{signed.date}/{signed.region}/{signed.service}/aws4_request"
    digest = hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{signed.amz_date}\n{scope}\n{digest}"
    key = _signing_key(secret, signed.date, signed.region, signed.service)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


__all__ = ["AccessKey", "Request", "SignatureError", "Verifier"]
