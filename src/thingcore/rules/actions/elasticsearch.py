"""``elasticsearch`` and ``openSearch``: index the SELECT result as a document (AWS ElasticsearchAction,
OpenSearchAction).

``endpoint``, ``index``, ``type`` and ``id`` take templates. An ``endpoint`` on ``amazonaws.com`` is looked
up in ``[search] endpoints`` (AWS domain -> URL of your cluster); unmapped, the document goes to the embedded
SQLite full-text index (``thingcore search INDEX QUERY``, ``/api/v1/search``). Any other endpoint (which a
template may take from the message) is used as is, through the address policy of ``rules/address_policy.py``
(public addresses only unless ``[rules]`` allows more; mapped endpoints are the operator's and trusted):
``PUT <endpoint>/<index>/_doc/<id>`` with the JSON document (``type`` is kept in the embedded index only:
Elasticsearch 7+ and OpenSearch have no mapping types). The result must be a JSON object, as on AWS.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from thingcore.destinations.local import destinations
from thingcore.destinations.search import SearchError, embedded_index, is_aws_endpoint, put_http
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

_REQUIRED = {"endpoint", "index", "type", "id"}


class ElasticsearchAction(Action):
    kind = "elasticsearch"
    failed_action = "ElasticsearchAction"
    concurrency = 64  # embedded: documents in flight together share one commit; HTTP: capped by http_concurrency

    def __init__(self, params: dict[str, Any], env: ActionEnv) -> None:
        super().__init__(params, env)
        params_check(params, self.kind, {*_REQUIRED, "roleArn"}, _REQUIRED)
        self.endpoint = TemplateField(params["endpoint"], env, f"{self.kind}.endpoint")
        self.index = TemplateField(params["index"], env, f"{self.kind}.index")
        self.type = TemplateField(params["type"], env, f"{self.kind}.type")
        self.id = TemplateField(params["id"], env, f"{self.kind}.id")
        ep = self.endpoint.const
        if ep is not None and not is_aws_endpoint(ep) and not ep.lower().startswith(("http://", "https://")):
            raise ActionConfigError(f"{self.kind}.endpoint must be an http(s) URL")
        self.hub = destinations(env)
        self.timeout = env.settings.rules.http_timeout
        if ep is None or not is_aws_endpoint(ep) or ep.rstrip("/") in env.settings.search.endpoints:
            self.concurrency = env.settings.rules.http_concurrency

    def resource(self, firing: Firing) -> str:
        return f"{self.endpoint.render(firing)}/{self.index.render(firing)}/{self.id.render(firing)}"

    def destination_problem(self) -> str | None:
        ep, policy = self.endpoint.const, self.env.address_policy
        if ep is None or policy is None or is_aws_endpoint(ep):
            return None
        why = policy.check_literal(ep)
        return f"{self.kind}.endpoint: {why}" if why else None

    def _target(self, firing: Firing) -> tuple[str | None, str, str, str]:
        """(URL of a real cluster or None for the embedded index, index, type, id)."""
        try:
            endpoint, index = self.endpoint.render(firing), self.index.render(firing)
            doc_type, doc_id = self.type.render(firing), self.id.render(firing)
        except Exception as exc:
            raise ActionError(f"cannot render the document's target: {exc}") from None
        if not index or not doc_id:
            raise ActionError("the index and the document id must not be empty")
        mapped = self.env.settings.search.endpoints.get(endpoint.rstrip("/")) \
            or self.env.settings.search.endpoints.get(endpoint)
        url = mapped or (None if is_aws_endpoint(endpoint) else endpoint)
        return url, index, doc_type, doc_id

    def _document(self, firing: Firing) -> Any:
        if not isinstance(firing.output, dict):
            raise ActionError("the SELECT result must be a JSON object to be indexed")
        return firing.output

    async def execute(self, firing: Firing) -> None:  # type: ignore[override]
        url, index, doc_type, doc_id = self._target(firing)
        doc = self._document(firing)
        body = firing.payload
        try:
            if url is None:
                await embedded_index(self.hub).put(self.hub, index, doc_id, doc_type, body, doc)
            else:
                await put_http(self.env.http_client(), url, index, doc_id, body, self.timeout)
        except SearchError as exc:
            raise ActionError(str(exc), retryable=exc.retryable) from None
        except AddressRefused as exc:
            raise ActionError(f"{url}: refused: {exc}") from None
        except (OSError, sqlite3.Error) as exc:  # a locked or full disk: may work later
            raise ActionError(f"search index: {exc}", retryable=True) from None

    def describe(self, firing: Firing) -> dict[str, Any]:
        url, index, doc_type, doc_id = self._target(firing)
        return {"destination": url or "embedded", "index": index, "type": doc_type, "id": doc_id,
                "document": orjson.loads(orjson.dumps(firing.output)) if isinstance(firing.output, dict) else None}


class OpenSearchAction(ElasticsearchAction):
    kind = "openSearch"
    failed_action = "OpenSearchAction"
