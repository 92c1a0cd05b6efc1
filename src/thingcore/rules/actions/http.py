"""``http``: POST the SELECT result to a URL (AWS HttpAction).

``url`` and header values take substitution templates. As on AWS: POST only; the body is the SELECT
result with ``Content-Type: application/json`` (``application/octet-stream`` for a binary result)
unless a ``content-type`` header is configured; a 2xx answer is success; only 429 and 5xx answers
are tried again. Locally, ``http://`` URLs and any port are allowed (AWS insists on HTTPS and a
confirmed destination), ``confirmationUrl`` is accepted and ignored, ``auth.sigv4`` and batching
are accepted and not applied (each message is its own request).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import httpx

from thingcore.rules.actions.base import (
    Action,
    ActionConfigError,
    ActionEnv,
    ActionError,
    Firing,
    TemplateField,
    params_check,
)

_MAX_URL = 2000
_MAX_HEADERS = 100
_MAX_RESPONSE = 16384


class HttpAction(Action):
    kind = "http"
    failed_action = "HttpAction"

    def __init__(self, params: dict[str, Any], env: ActionEnv) -> None:
        super().__init__(params, env)
        params_check(params, "http", {"url", "confirmationUrl", "headers", "auth", "enableBatching", "batchConfig"},
                     {"url"})
        url = params["url"]
        if not isinstance(url, str) or len(url) > _MAX_URL:
            raise ActionConfigError(f"http.url must be a string of at most {_MAX_URL} characters")
        if "${" not in url:
            _check_url(url)
        elif not url.lower().startswith(("http://", "https://")):
            raise ActionConfigError("http.url must start with http:// or https://")
        self.url = TemplateField(url, env, "http.url")
        headers = params.get("headers") or []
        if not isinstance(headers, list) or len(headers) > _MAX_HEADERS:
            raise ActionConfigError(f"http.headers must be a list of at most {_MAX_HEADERS} {{key, value}}")
        self.headers: list[tuple[str, TemplateField]] = []
        for i, kv in enumerate(headers):
            if not isinstance(kv, dict) or set(kv) != {"key", "value"} or not isinstance(kv["key"], str) \
                    or not 1 <= len(kv["key"]) <= 256:
                raise ActionConfigError(f"http.headers[{i}] must be {{\"key\": <1-256 characters>, \"value\": ...}}")
            self.headers.append((kv["key"], TemplateField(kv["value"], env, f"http.headers[{i}].value")))
        self.has_content_type = any(k.lower() == "content-type" for k, _ in self.headers)
        self.concurrency = env.settings.rules.http_concurrency
        self.slow_templates = self.needs_services
        self.timeout = env.settings.rules.http_timeout

    def resource(self, firing: Firing) -> str:
        return self.url.render(firing)

    def _request(self, firing: Firing) -> tuple[str, dict[str, str], bytes]:
        url = self.url.render(firing)
        body = firing.payload  # first: it also tells whether the result is JSON
        headers = {}
        if not self.has_content_type:
            headers["content-type"] = "application/json" if firing.is_json else "application/octet-stream"
        for key, value in self.headers:
            headers[key] = value.render(firing)
        return url, headers, body

    async def execute(self, firing: Firing) -> None:  # type: ignore[override]
        try:
            if self.slow_templates:
                url, headers, body = await asyncio.to_thread(self._request, firing)
            else:
                url, headers, body = self._request(firing)
        except Exception as exc:  # a template whose external function failed
            raise ActionError(f"cannot render the request: {exc}") from None
        try:
            _check_url(url)
        except ActionConfigError as exc:
            raise ActionError(str(exc)) from None
        client: httpx.AsyncClient = self.env.http_client()
        try:
            async with client.stream("POST", url, content=body, headers=headers, timeout=self.timeout) as resp:
                size = 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > _MAX_RESPONSE:
                        break
                status = resp.status_code
        except httpx.TimeoutException:
            raise ActionError(f"POST {url}: no answer within {self.timeout:g} s") from None
        except httpx.ConnectError as exc:  # the request never left: trying again cannot duplicate it
            raise ActionError(f"POST {url}: cannot connect: {exc}", retryable=True) from None
        except httpx.HTTPError as exc:  # AWS does not retry when the server closed the connection
            raise ActionError(f"POST {url}: {type(exc).__name__}: {exc}") from None
        if 200 <= status < 300:
            return
        # AWS tries again on 429 and 5xx only, and not when the answer was larger than 16 KB
        retryable = (status == 429 or status >= 500) and size <= _MAX_RESPONSE
        raise ActionError(f"POST {url}: HTTP {status}", retryable=retryable)

    def describe(self, firing: Firing) -> dict[str, Any]:
        url, headers, body = self._request(firing)
        return {"method": "POST", "url": url, "headers": headers,
                "body": body.decode("utf-8", "replace") if firing.is_json else None}


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ActionConfigError(f"http.url {url!r} is not an http:// or https:// URL")
