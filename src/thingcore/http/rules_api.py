"""Rules over HTTP: AWS iot control-plane paths for topic rules, plus thingcore's test and metrics endpoints.

AWS paths and shapes (botocore ``iot/2015-05-28``, rest-json), so boto3's ``iot`` client and
``aws iot ... --endpoint-url`` work unchanged:

    POST   /rules/{ruleName}          CreateTopicRule  (body: topicRulePayload)
    GET    /rules/{ruleName}          GetTopicRule     -> {ruleArn, rule}
    PATCH  /rules/{ruleName}          ReplaceTopicRule
    DELETE /rules/{ruleName}          DeleteTopicRule
    GET    /rules                     ListTopicRules   (?topic, maxResults, nextToken, ruleDisabled)
    POST   /rules/{ruleName}/enable   EnableTopicRule
    POST   /rules/{ruleName}/disable  DisableTopicRule
    POST   /destinations              CreateTopicRuleDestination  (body: destinationConfiguration)
    GET    /destinations              ListTopicRuleDestinations   (?maxResults, nextToken)
    PATCH  /destinations              UpdateTopicRuleDestination  (body: arn, status)
    GET    /destinations/{arn+}       GetTopicRuleDestination
    DELETE /destinations/{arn+}       DeleteTopicRuleDestination
    GET    /confirmdestination/{confirmationToken+}  ConfirmTopicRuleDestination (the token is the credential:
           the destination's endpoint calls it, as it browses AWS's ``enableUrl``)

Every route but the confirmation needs the broker's ``manage`` permission on ``rules/<ruleName>``
(``rules`` to list, test, or read all metrics) or ``destinations[/<arn>]``, like the rest of the
control plane (:meth:`thingcore.http.caller.Callers.manager`):
administrators have it, a SigV4 access key only where an access rule allows it, anyone else gets
403 ``ForbiddenException`` (401 ``UnauthorizedException`` under ``/api/v1`` without credentials) and
nothing changes. A rule acts with what it is given (republish writes anywhere, ``get_secret()``
reads secrets), so managing rules is as powerful as administering the server. As on AWS, a missing
rule is answered with ``UnauthorizedException`` ("Access to topic rule ... was denied"), bad SQL with
``SqlParseException`` naming the position. thingcore's own endpoints, under ``/api/v1`` with the
admin API's access check: ``POST /api/v1/rules/test`` and the metrics.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from thingcore.http.admin import require_admin
from thingcore.http.caller import Callers
from thingcore.http.errors import AWSError, aws_error_response
from thingcore.rules.model import RuleError, invalid
from thingcore.rules.testing import dry_run

_DEFAULT_PAGE = 1000
RuleName = Annotated[str, Path(description="^[a-zA-Z0-9_]+$, 1-128 characters")]


async def _rule_error(_request: Request, exc: Exception) -> JSONResponse:
    """A refused rule operation, answered in AWS's shape (installed on the app by ``create_app``)."""
    assert isinstance(exc, RuleError)
    return aws_error_response(exc.status, exc.error_type, exc.message, **exc.extra)


#: picked up by ``thingcore.http.app.create_app``: every handler here lets RuleError propagate
exception_handlers = {RuleError: _rule_error}


def _engine(server: Any) -> Any:
    engine = getattr(server, "rules", None)
    if engine is None:
        raise AWSError(503, "ServiceUnavailableException", "the rules engine is not running")
    return engine


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise invalid("the request body must be a topicRulePayload JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"the request body is not valid JSON: {exc}") from None


async def _json_object(request: Request) -> dict[str, Any]:
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    return body


def _rule_view(resource: dict[str, Any]) -> dict[str, Any]:
    """``TopicRule`` as GetTopicRule returns it (no ARN inside, createdAt in epoch seconds)."""
    keys = ("ruleName", "sql", "description", "createdAt", "actions", "ruleDisabled", "awsIotSqlVersion",
            "errorAction")
    return {k: resource[k] for k in keys if k in resource}


def _token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid("nextToken is not valid") from None


def router(server: Any) -> APIRouter:
    api = APIRouter(tags=["rules (AWS iot)"], dependencies=[Depends(Callers(server).manager())])

    @api.post("/rules/{ruleName}", summary="CreateTopicRule")
    async def create_topic_rule(ruleName: RuleName, request: Request) -> Response:
        payload = await _json_body(request)
        await _engine(server).create(ruleName, payload)
        return Response(status_code=200)

    @api.patch("/rules/{ruleName}", summary="ReplaceTopicRule")
    async def replace_topic_rule(ruleName: RuleName, request: Request) -> Response:
        payload = await _json_body(request)
        await _engine(server).replace(ruleName, payload)
        return Response(status_code=200)

    @api.get("/rules/{ruleName}", summary="GetTopicRule")
    async def get_topic_rule(ruleName: RuleName) -> JSONResponse:
        resource = _engine(server).get(ruleName)
        return JSONResponse({"ruleArn": resource["ruleArn"], "rule": _rule_view(resource)})

    @api.delete("/rules/{ruleName}", summary="DeleteTopicRule")
    async def delete_topic_rule(ruleName: RuleName) -> Response:
        await _engine(server).delete(ruleName)
        return Response(status_code=200)

    @api.post("/rules/{ruleName}/enable", summary="EnableTopicRule")
    async def enable_topic_rule(ruleName: RuleName) -> Response:
        await _engine(server).set_disabled(ruleName, False)
        return Response(status_code=200)

    @api.post("/rules/{ruleName}/disable", summary="DisableTopicRule")
    async def disable_topic_rule(ruleName: RuleName) -> Response:
        await _engine(server).set_disabled(ruleName, True)
        return Response(status_code=200)

    @api.get("/rules", summary="ListTopicRules")
    async def list_topic_rules(
        topic: Annotated[str | None, Query(description="Only rules whose FROM is this filter or matches this topic")]
        = None,
        maxResults: Annotated[int | None, Query()] = None,
        nextToken: Annotated[str | None, Query()] = None,
        ruleDisabled: Annotated[bool | None, Query()] = None,
    ) -> JSONResponse:
        if maxResults is not None and not 1 <= maxResults <= 10000:
            raise invalid("maxResults must be between 1 and 10000")
        engine = _engine(server)
        rules = engine.list(topic=topic, disabled=ruleDisabled)
        if nextToken:
            after = _untoken(nextToken)
            rules = [r for r in rules if r["ruleName"] > after]
        limit = maxResults or _DEFAULT_PAGE
        page, more = rules[:limit], len(rules) > limit
        items = []
        for r in page:
            item = {"ruleArn": r["ruleArn"], "ruleName": r["ruleName"], "createdAt": r["createdAt"],
                    "ruleDisabled": r["ruleDisabled"]}
            pattern = engine.topic_pattern(r["ruleName"])
            if pattern is not None:
                item["topicPattern"] = pattern
            items.append(item)
        body: dict[str, Any] = {"rules": items}
        if more:
            body["nextToken"] = _token(page[-1]["ruleName"])
        return JSONResponse(body)

    @api.post("/destinations", summary="CreateTopicRuleDestination")
    async def create_topic_rule_destination(request: Request) -> JSONResponse:
        body = await _json_object(request)
        dest = await _engine(server).destinations.create(body.get("destinationConfiguration"),
                                                         str(request.base_url))
        return JSONResponse({"topicRuleDestination": dest})

    @api.get("/destinations", summary="ListTopicRuleDestinations")
    async def list_topic_rule_destinations(maxResults: Annotated[int | None, Query()] = None,
                                           nextToken: Annotated[str | None, Query()] = None) -> JSONResponse:
        if maxResults is not None and not 1 <= maxResults <= 1000:
            raise invalid("maxResults must be between 1 and 1000")
        dests = _engine(server).destinations.list()
        start = int(_untoken(nextToken)) if nextToken and _untoken(nextToken).isdigit() else 0
        if nextToken and not start:
            raise invalid("nextToken is not valid")
        limit = maxResults or _DEFAULT_PAGE
        page = dests[start:start + limit]
        body: dict[str, Any] = {"destinationSummaries": [d.summary() for d in page]}
        if start + limit < len(dests):
            body["nextToken"] = _token(str(start + limit))
        return JSONResponse(body)

    @api.patch("/destinations", summary="UpdateTopicRuleDestination")
    async def update_topic_rule_destination(request: Request) -> Response:
        body = await _json_object(request)
        await _engine(server).destinations.update(body.get("arn"), body.get("status"), str(request.base_url))
        return Response(status_code=200)

    @api.get("/destinations/{arn:path}", summary="GetTopicRuleDestination")
    async def get_topic_rule_destination(arn: str) -> JSONResponse:
        return JSONResponse({"topicRuleDestination": _engine(server).destinations.get(arn)})

    @api.delete("/destinations/{arn:path}", summary="DeleteTopicRuleDestination")
    async def delete_topic_rule_destination(arn: str) -> Response:
        await _engine(server).destinations.delete(arn)
        return Response(status_code=200)

    # no caller check: the token, sent only to the destination's endpoint, is the proof (AWS's enableUrl)
    confirm = APIRouter(tags=["rules (AWS iot)"])

    @confirm.get("/confirmdestination/{confirmationToken:path}", summary="ConfirmTopicRuleDestination")
    async def confirm_topic_rule_destination(confirmationToken: str) -> Response:
        await _engine(server).destinations.confirm(confirmationToken)
        return Response(status_code=200)

    own = APIRouter(prefix="/api/v1/rules", tags=["rules"], dependencies=[Depends(require_admin(server))])

    @own.post("/test", summary="Evaluate a rule against one message without side effects")
    async def test_rule(request: Request) -> JSONResponse:
        body = await _json_body(request)
        result = await dry_run(_engine(server), body)
        return JSONResponse(result)

    @own.get("/metrics", summary="Engine counters and every rule's counters")
    async def all_metrics() -> JSONResponse:
        engine = _engine(server)
        return JSONResponse({**engine.engine_metrics(),
                             "ruleMetrics": [engine.rule_metrics(name) for name in sorted(engine.rules)]})

    @own.get("/{ruleName}/metrics", summary="One rule's counters: received, matched, per-action results")
    async def rule_metrics(ruleName: RuleName) -> JSONResponse:
        try:
            return JSONResponse(_engine(server).rule_metrics(ruleName))
        except RuleError as exc:
            raise AWSError(404, "ResourceNotFoundException", f"rule {ruleName} does not exist") from exc

    both = APIRouter()
    both.include_router(api)
    both.include_router(confirm)
    both.include_router(own)
    return both
