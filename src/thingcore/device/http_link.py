"""HTTP publish (AWS iot-data ``POST /topics/{topic}``) and the shadow REST calls, with httpx.

The paths, query parameters and headers are botocore's ``iot-data`` model, so the same code talks to
thingcore's HTTP port and to an AWS IoT data endpoint (with SigV4 credentials, or a client
certificate on port 8443).
"""

from __future__ import annotations

import base64
import ssl
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from thingcore.device import sigv4
from thingcore.device.errors import ConnectError, PublishError, shadow_rejection
from thingcore.device.options import AwsCredentials

_FORMATS = {0: "UNSPECIFIED_BYTES", 1: "UTF8_DATA"}
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


def _certificate_error(exc: BaseException) -> bool:
    """Is a certificate verification failure somewhere in the chain (retrying will not fix it)?"""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class TransientHTTPError(Exception):
    """Worth retrying: the server is unreachable, overloaded or failing."""


def _error_message(response: httpx.Response) -> tuple[str, str]:
    error_type = response.headers.get("x-amzn-errortype", "").split(":")[0]
    try:
        body = response.json()
        message = body.get("message") or body.get("Message") or response.text
    except ValueError:
        message = response.text
    return error_type or f"HTTP {response.status_code}", str(message)[:500]


class HttpLink:
    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None, credentials: AwsCredentials | None,
                 timeout: float) -> None:
        self.tls = tls is not None
        self.host_header = sigv4.host_header(host, port, self.tls)
        scheme = "https" if self.tls else "http"
        self.base_url = f"{scheme}://{host}:{port}"
        self.credentials = credentials
        self._client = httpx.AsyncClient(base_url=self.base_url, verify=tls if tls is not None else True,
                                         timeout=timeout)

    async def close(self) -> None:
        await self._client.aclose()

    async def _request(self, method: str, raw_path: str, params: dict[str, str], body: bytes = b"",
                       headers: dict[str, str] | None = None) -> httpx.Response:
        headers = dict(headers or {})
        if self.credentials is not None:
            headers.update(sigv4.sign_headers(self.credentials, method, self.host_header, raw_path, params, body))
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(params.items()))
        url = httpx.URL(self.base_url + raw_path + ("?" + query if query else ""))
        try:
            return await self._client.request(method, url, content=body, headers=headers)
        except httpx.TransportError as exc:
            if _certificate_error(exc):
                raise ConnectError(f"TLS: cannot verify the server of {self.base_url}: {exc}") from exc
            raise TransientHTTPError(f"{method} {self.base_url}{raw_path}: {exc!r}") from exc

    async def publish(self, topic: str, payload: bytes, qos: int, retain: bool, props: dict[str, Any]) -> None:
        """One Publish call: returns on 200, raises PublishError (refused) or TransientHTTPError (retry)."""
        params = {"qos": str(min(qos, 1))}
        if retain:
            params["retain"] = "true"
        headers = {"content-type": "application/octet-stream"}
        if "content_type" in props:
            params["contentType"] = props["content_type"]
        if "response_topic" in props:
            params["responseTopic"] = props["response_topic"]
        if "message_expiry" in props:
            params["messageExpiry"] = str(props["message_expiry"])
        if "correlation_data" in props:
            headers["x-amz-mqtt5-correlation-data"] = base64.b64encode(props["correlation_data"]).decode()
        if "payload_format_indicator" in props:
            headers["x-amz-mqtt5-payload-format-indicator"] = _FORMATS.get(props["payload_format_indicator"],
                                                                           "UNSPECIFIED_BYTES")
        if "user_properties" in props:
            pairs = orjson.dumps([{k: v} for k, v in props["user_properties"]])
            headers["x-amz-mqtt5-user-properties"] = base64.b64encode(pairs).decode()
        response = await self._request("POST", "/topics/" + quote(topic, safe=""), params, payload, headers)
        if response.status_code == 200:
            return
        error_type, message = _error_message(response)
        if response.status_code in TRANSIENT_STATUS:
            raise TransientHTTPError(f"HTTP {response.status_code} {error_type}: {message}")
        raise PublishError(f"publish to {topic!r} refused: HTTP {response.status_code} {error_type}: {message}",
                           status=response.status_code, error_type=error_type)

    async def shadow(self, method: str, thing: str, name: str | None, body: bytes = b"") -> dict[str, Any]:
        """GetThingShadow / UpdateThingShadow / DeleteThingShadow; a rejection raises its typed error."""
        params = {"name": name} if name else {}
        response = await self._request(method, f"/things/{quote(thing, safe='')}/shadow", params, body)
        if response.status_code == 200:
            return orjson.loads(response.content)
        _error_type, message = _error_message(response)
        raise shadow_rejection(response.status_code, message)
