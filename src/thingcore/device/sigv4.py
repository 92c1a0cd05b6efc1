"""AWS Signature Version 4 on the client side: the presigned ``/mqtt`` WebSocket URL AWS IoT wants, and
signed HTTP requests for the data plane. Written from AWS's SigV4 documentation; only what devices need."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

from thingcore.device.options import AwsCredentials

ALGORITHM = "AWS4-HMAC-SHA256"
WEBSOCKET_SERVICE = "iotdevicegateway"  # the credential-scope service AWS documents for /mqtt
DATA_SERVICE = "iotdata"  # botocore's signing name for iot-data


def _enc(text: str) -> str:
    return quote(text, safe="-_.~")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def _stamp(now: float | None) -> tuple[str, str]:
    t = time.gmtime(time.time() if now is None else now)
    return time.strftime("%Y%m%dT%H%M%SZ", t), time.strftime("%Y%m%d", t)


def _signature(creds: AwsCredentials, service: str, date: str, amz_date: str, canonical_request: str) -> str:
    scope = f"{date}/{creds.region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = _hmac(("AWS4" + creds.secret_access_key).encode(), date)
    for part in (creds.region, service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def _canonical_query(params: dict[str, str]) -> str:
    return "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(params.items()))


def host_header(host: str, port: int, tls: bool) -> str:
    """The Host header a client sends (the port is left out when it is the scheme's default)."""
    return host if port == (443 if tls else 80) else f"{host}:{port}"


def presign_websocket(creds: AwsCredentials, host: str, path: str = "/mqtt", *, service: str = WEBSOCKET_SERVICE,
                      expires: int = 86400, now: float | None = None) -> str:
    """``path?X-Amz-...`` for the WebSocket upgrade; ``host`` as sent in the Host header. The session
    token is appended after signing, as AWS's device SDKs do."""
    amz_date, date = _stamp(now)
    params = {
        "X-Amz-Algorithm": ALGORITHM,
        "X-Amz-Credential": f"{creds.access_key_id}/{date}/{creds.region}/{service}/aws4_request",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": "host",
    }
    query = _canonical_query(params)
    canonical = "\n".join(["GET", path, query, f"host:{host}\n", "host", hashlib.sha256(b"").hexdigest()])
    query += "&X-Amz-Signature=" + _signature(creds, service, date, amz_date, canonical)
    if creds.session_token:
        query += "&X-Amz-Security-Token=" + _enc(creds.session_token)
    return f"{path}?{query}"


def sign_headers(creds: AwsCredentials, method: str, host: str, raw_path: str, params: dict[str, str],
                 body: bytes, *, service: str = DATA_SERVICE, now: float | None = None) -> dict[str, str]:
    """Headers (Authorization, X-Amz-Date, token) for a request to ``raw_path`` (already percent-encoded)
    with query ``params``. Non-S3 services canonicalise the encoded path once more."""
    amz_date, date = _stamp(now)
    headers = {"host": host, "x-amz-date": amz_date}
    if creds.session_token:
        headers["x-amz-security-token"] = creds.session_token
    names = sorted(headers)
    canonical = "\n".join([
        method.upper(), quote(raw_path, safe="/~"), _canonical_query(params),
        "".join(f"{n}:{headers[n].strip()}\n" for n in names), ";".join(names),
        hashlib.sha256(body).hexdigest(),
    ])
    signature = _signature(creds, service, date, amz_date, canonical)
    out = {k: v for k, v in headers.items() if k != "host"}
    out["authorization"] = (f"{ALGORITHM} Credential={creds.access_key_id}/{date}/{creds.region}/{service}/"
                            f"aws4_request, SignedHeaders={';'.join(names)}, Signature={signature}")
    return out
