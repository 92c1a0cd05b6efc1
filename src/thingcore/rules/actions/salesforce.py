"""``salesforce``: POST the SELECT result to a Salesforce IoT input stream (AWS SalesforceAction).

``url`` and ``token`` take no templates (as on AWS). The request is a POST of the SELECT result
(``Content-Type: application/json``) with the token as ``Authorization: Bearer <token>``; AWS does not
document the header it sends, this is the input stream's documented bearer authentication. AWS requires an
``https://ingestion-...sfdcnow.com/streams/...`` URL; locally any http(s) URL is accepted so the action
can target a gateway or a test server, through the address policy of ``rules/address_policy.py`` (public
addresses only unless ``[rules]`` allows more). 429 and 5xx answers and unreachable hosts are tried again.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from thingcore.rules.actions.base import Action, ActionConfigError, ActionEnv, ActionError, Firing, params_check
from thingcore.rules.address_policy import AddressRefused

MIN_TOKEN = 40
MAX_URL = 2000


class SalesforceAction(Action):
    kind = "salesforce"
    failed_action = "SalesforceAction"

    def __init__(self, params: dict[str, Any], env: ActionEnv) -> None:
        super().__init__(params, env)
        params_check(params, "salesforce", {"url", "token"}, {"url", "token"})
        url, token = params["url"], params["token"]
        if not isinstance(url, str) or len(url) > MAX_URL or urlsplit(url).scheme not in ("http", "https") \
                or not urlsplit(url).hostname:
            raise ActionConfigError(f"salesforce.url must be an http(s) URL of at most {MAX_URL} characters")
        if not isinstance(token, str) or len(token) < MIN_TOKEN:
            raise ActionConfigError(f"salesforce.token must be a string of at least {MIN_TOKEN} characters")
        self.url = url
        self.token = token
        self.concurrency = env.settings.rules.http_concurrency
        self.timeout = env.settings.rules.http_timeout

    def resource(self, firing: Firing) -> str:
        return self.url

    def destination_problem(self) -> str | None:
        policy = self.env.address_policy
        why = policy.check_literal(self.url) if policy is not None else None
        return f"salesforce.url: {why}" if why else None

    async def execute(self, firing: Firing) -> None:  # type: ignore[override]
        body = firing.payload
        headers = {"authorization": f"Bearer {self.token}",
                   "content-type": "application/json" if firing.is_json else "application/octet-stream"}
        client: httpx.AsyncClient = self.env.http_client()
        try:
            resp = await client.post(self.url, content=body, headers=headers, timeout=self.timeout)
        except AddressRefused as exc:
            raise ActionError(f"POST {self.url}: refused: {exc}") from None
        except httpx.TimeoutException:
            raise ActionError(f"POST {self.url}: no answer within {self.timeout:g} s", retryable=True) from None
        except httpx.HTTPError as exc:
            raise ActionError(f"POST {self.url}: {type(exc).__name__}: {exc}", retryable=True) from None
        if not 200 <= resp.status_code < 300:
            raise ActionError(f"POST {self.url}: HTTP {resp.status_code}",
                              retryable=resp.status_code == 429 or resp.status_code >= 500)

    def describe(self, firing: Firing) -> dict[str, Any]:
        return {"method": "POST", "url": self.url, "headers": {"authorization": "Bearer ***"},
                "body": firing.payload.decode("utf-8", "replace") if firing.is_json else None}
