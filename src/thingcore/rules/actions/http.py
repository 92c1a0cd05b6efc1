"""``http``: POST the SELECT result to a URL (AWS HttpAction).

``url``, ``confirmationUrl`` and header values take substitution templates. As on AWS: POST only; the body is
the SELECT result with ``Content-Type: application/json`` (``application/octet-stream`` for a binary result)
unless a ``content-type`` header is configured; a 2xx answer is success; only 429 and 5xx answers are tried
again. As on AWS, the URL must begin with the ``confirmationUrl`` of an ENABLED topic rule destination
(``rules/destinations.py``): checked when the rule is created or replaced (for a URL without templates) and
again for every delivery, so a URL that a message chooses (``http://${target}/``) can only land on a
confirmed destination. ``confirmationUrl`` (default: ``url``) must be a prefix of ``url``, and is required
when ``url`` has templates. Connections go through the address policy (``rules/address_policy.py``).
Headers that would change how the request is routed or framed are refused (:data:`FORBIDDEN_HEADERS`).
Unlike AWS, ``http://`` URLs and any port are allowed; ``auth.sigv4`` and batching are accepted and not
applied (each message is its own request).
"""

from __future__ import annotations

import asyncio
import re
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
from thingcore.rules.address_policy import AddressRefused
from thingcore.rules.destinations import DestinationUrlError, UrlKey, url_key

_MAX_URL = 2000
_MAX_HEADERS = 100
_MAX_RESPONSE = 16384
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name (RFC 9110 token)

#: Header names a rule may not set: hop-by-hop headers and framing (a rule must not smuggle a second request
#: or hold the connection), Host (another virtual host than the confirmed one), proxy credentials, and the
#: ``x-amz-rules-engine-`` headers that mark thingcore's own confirmation messages. ``Authorization`` stays
#: allowed: the destination is confirmed, and a token for it is the usual reason to set headers.
FORBIDDEN_HEADERS = frozenset({
    "host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
    "content-length", "expect", "proxy-authorization", "proxy-authenticate",
})
_RESERVED_PREFIX = "x-amz-rules-engine-"


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
        confirmation = params.get("confirmationUrl")
        if confirmation is not None and (not isinstance(confirmation, str) or len(confirmation) > _MAX_URL):
            raise ActionConfigError(f"http.confirmationUrl must be a string of at most {_MAX_URL} characters")
        self.confirmation = TemplateField(confirmation, env, "http.confirmationUrl") if confirmation else None
        if self.confirmation is not None and self.confirmation.const is not None and self.url.const is not None \
                and not url.startswith(confirmation):
            raise ActionConfigError(f"http.url {url!r} must begin with http.confirmationUrl {confirmation!r}")
        #: the parsed URL when it has no templates: matched against the destinations without parsing per message
        self.const_key: UrlKey | None = None
        if self.url.const is not None:
            try:
                self.const_key = url_key(url)
            except DestinationUrlError as exc:
                raise ActionConfigError(f"http.url: {exc}") from None
        headers = params.get("headers") or []
        if not isinstance(headers, list) or len(headers) > _MAX_HEADERS:
            raise ActionConfigError(f"http.headers must be a list of at most {_MAX_HEADERS} {{key, value}}")
        self.headers: list[tuple[str, TemplateField]] = []
        for i, kv in enumerate(headers):
            if not isinstance(kv, dict) or set(kv) != {"key", "value"} or not isinstance(kv["key"], str) \
                    or not 1 <= len(kv["key"]) <= 256:
                raise ActionConfigError(f"http.headers[{i}] must be {{\"key\": <1-256 characters>, \"value\": ...}}")
            key = kv["key"]
            if not _TOKEN.match(key):
                raise ActionConfigError(f"http.headers[{i}]: {key!r} is not a valid header name")
            if key.lower() in FORBIDDEN_HEADERS or key.lower().startswith(_RESERVED_PREFIX):
                raise ActionConfigError(f"http.headers[{i}]: a rule may not set the {key} header")
            self.headers.append((key, TemplateField(kv["value"], env, f"http.headers[{i}].value")))
        self.has_content_type = any(k.lower() == "content-type" for k, _ in self.headers)
        self.concurrency = env.settings.rules.http_concurrency
        self.slow_templates = self.needs_services
        self.timeout = env.settings.rules.http_timeout

    def resource(self, firing: Firing) -> str:
        return self.url.render(firing)

    def destination_problem(self) -> str | None:
        destinations = self.env.destinations
        if destinations is None:
            return None
        if self.url.const is None and self.confirmation is None:
            return ("http.url has substitution templates: http.confirmationUrl is required (the URL prefix of "
                    "the topic rule destination every rendered URL must fall under)")
        confirmation = self.confirmation.const if self.confirmation is not None else self.url.const
        if confirmation is None:
            return None  # a templated confirmationUrl: destinations are matched per message
        if self.url.const is None and not self.url.source.startswith(confirmation):
            return f"http.url {self.url.source!r} must begin with http.confirmationUrl {confirmation!r}"
        if destinations.match(self.const_key or confirmation) is None:
            return (f"no ENABLED topic rule destination matches {self.url.const or confirmation}: create one with "
                    "CreateTopicRuleDestination and confirm it (ConfirmTopicRuleDestination) first")
        return None

    def _destination_url(self, url: str, firing: Firing) -> httpx.URL:
        """The URL to POST to, once it is known to fall under an ENABLED destination (checked per delivery:
        the destination may have been disabled or deleted since the rule was created)."""
        try:
            key = self.const_key or url_key(url)
        except DestinationUrlError as exc:
            raise ActionError(f"POST {url}: {exc}") from None
        if self.confirmation is not None and self.confirmation.const is None:
            try:
                confirmation = self.confirmation.render(firing)
            except Exception as exc:
                raise ActionError(f"cannot render http.confirmationUrl: {exc}") from None
            if not url.startswith(confirmation):
                raise ActionError(f"POST {url}: the URL does not begin with its confirmationUrl {confirmation}")
        if self.env.destinations is not None and self.env.destinations.match(key) is None:
            raise ActionError(f"POST {url}: no ENABLED topic rule destination matches this URL")
        return httpx.URL(url)

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
        target = self._destination_url(url, firing)
        client: httpx.AsyncClient = self.env.http_client()
        try:
            async with client.stream("POST", target, content=body, headers=headers, timeout=self.timeout) as resp:
                size = 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > _MAX_RESPONSE:
                        break
                status = resp.status_code
        except AddressRefused as exc:
            raise ActionError(f"POST {url}: refused: {exc}") from None
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
