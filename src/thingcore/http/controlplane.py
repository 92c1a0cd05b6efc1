"""AWS IoT control plane (``iot`` service) paths for the thing registry, so boto3 and the AWS CLI work.

Paths, methods, query names and body shapes follow botocore's ``iot/2015-05-28`` model (rest-json):
things under ``/things/{thingName}``, thing types under ``/thing-types/{thingTypeName}``. The
registry validates names and attributes itself; these models only give the JSON its shape.

Every route needs the broker's ``manage`` permission on ``things/<thingName>``, ``things`` (list),
``thing-types/<thingTypeName>`` or ``thing-types`` (:meth:`thingcore.http.caller.Callers.manager`):
administrators (the ``[admin]`` token, or a loopback caller without credentials while no token is
configured) have it, a SigV4 access key only where an access rule allows it; anyone else gets 403
``ForbiddenException`` and nothing changes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from thingcore.http.caller import ORIGINAL_HEADERS, Callers
from thingcore.http.dataplane import read_body
from thingcore.http.errors import AWSError
from thingcore.registry import Registry, RegistryError

log = logging.getLogger("thingcore.http")

T = TypeVar("T")


class ErrorBody(BaseModel):
    message: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "InvalidRequestException (x-amzn-ErrorType header)"},
    403: {"model": ErrorBody, "description": "The caller may not manage this (ForbiddenException), or a missing "
                                            "or invalid SigV4 signature"},
    404: {"model": ErrorBody, "description": "ResourceNotFoundException"},
    409: {"model": ErrorBody, "description": "ResourceAlreadyExistsException or VersionConflictException"},
}


class AttributePayload(BaseModel):
    attributes: dict[str, str] | None = None
    merge: bool = False


class CreateThingBody(BaseModel):
    thingTypeName: str | None = None
    attributePayload: AttributePayload | None = None
    billingGroupName: str | None = None


class UpdateThingBody(BaseModel):
    thingTypeName: str | None = None
    attributePayload: AttributePayload | None = None
    expectedVersion: int | None = None
    removeThingType: bool = False


class PropagatingAttribute(BaseModel):
    userPropertyKey: str | None = None
    thingAttribute: str | None = None
    connectionAttribute: str | None = None


class Mqtt5Configuration(BaseModel):
    propagatingAttributes: list[PropagatingAttribute] | None = None


class ThingTypeProperties(BaseModel):
    thingTypeDescription: str | None = None
    searchableAttributes: list[str] | None = None
    mqtt5Configuration: Mqtt5Configuration | None = None


class Tag(BaseModel):
    Key: str
    Value: str | None = None


class CreateThingTypeBody(BaseModel):
    thingTypeProperties: ThingTypeProperties | None = None
    tags: list[Tag] | None = None


class DeprecateThingTypeBody(BaseModel):
    undoDeprecate: bool = False


MAX_BODY = 256 * 1024  # far above the largest valid request (50 attributes of 128 + 800 characters)


class _JSONBodyRoute(APIRoute):
    """Bodies are JSON whatever the Content-Type says (``curl -d`` sends a form type), as AWS reads them,
    and at most ``MAX_BODY`` bytes are read (413 beyond).

    The original headers stay in the scope for the SigV4 check, which signs the Content-Type.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            body = await read_body(request, MAX_BODY)
            scope = request.scope
            headers = scope["headers"]
            content_type = next((v for k, v in headers if k == b"content-type"), b"")
            if b"json" not in content_type.lower():
                scope = {**scope, ORIGINAL_HEADERS: headers, "headers": [
                    *((k, v) for k, v in headers if k != b"content-type"), (b"content-type", b"application/json")]}
            return await handler(Request(scope, _replay(body, request.receive)))

        return route


def _replay(body: bytes, receive: Any) -> Callable[[], Awaitable[dict[str, Any]]]:
    """An ASGI receive that hands over the already-read body, then listens for the disconnect."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _aws(call: Awaitable[T]) -> T:
    """Registry errors become AWS error responses; anything unexpected is a 500 in AWS's shape."""
    try:
        return await call
    except RegistryError as exc:
        raise AWSError(exc.status, exc.error_type, exc.message, **exc.extra) from None
    except AWSError:
        raise
    except Exception:
        log.exception("control plane request failed")
        raise AWSError(500, "InternalFailureException", "internal error") from None


def router(server: Any) -> APIRouter:
    registry: Registry = server.registry
    things, types = registry.things, registry.types
    api = APIRouter(tags=["control plane (AWS iot)"], dependencies=[Depends(Callers(server).manager())],
                    responses=_ERRORS,
                    route_class=_JSONBodyRoute)

    @api.post("/things/{thingName}", summary="CreateThing")
    async def create_thing(thingName: str, body: Annotated[CreateThingBody | None, Body()] = None) -> JSONResponse:
        body = body or CreateThingBody()
        payload = body.attributePayload
        result = await _aws(things.create(
            thingName, thing_type=body.thingTypeName, attributes=payload.attributes if payload else None,
            billing_group=body.billingGroupName,
        ))
        return JSONResponse(result)

    @api.get("/things/{thingName}", summary="DescribeThing")
    async def describe_thing(thingName: str) -> JSONResponse:
        return JSONResponse(await _aws(things.describe(thingName)))

    @api.get("/things", summary="ListThings")
    async def list_things(
        nextToken: str | None = None,
        maxResults: Annotated[int | None, Query()] = None,
        attributeName: str | None = None,
        attributeValue: str | None = None,
        thingTypeName: str | None = None,
        usePrefixAttributeValue: bool = False,
    ) -> JSONResponse:
        return JSONResponse(await _aws(things.list(
            attribute_name=attributeName, attribute_value=attributeValue, thing_type=thingTypeName,
            prefix_value=usePrefixAttributeValue, max_results=maxResults, next_token=nextToken,
        )))

    @api.patch("/things/{thingName}", summary="UpdateThing")
    async def update_thing(thingName: str, body: Annotated[UpdateThingBody | None, Body()] = None) -> JSONResponse:
        body = body or UpdateThingBody()
        payload = body.attributePayload
        attributes = None
        if payload is not None:
            attributes = payload.attributes or {}
        await _aws(things.update(
            thingName, thing_type=body.thingTypeName, attributes=attributes,
            merge=bool(payload and payload.merge), expected_version=body.expectedVersion,
            remove_thing_type=body.removeThingType,
        ))
        return JSONResponse({})

    @api.delete("/things/{thingName}", summary="DeleteThing")
    async def delete_thing(thingName: str, expectedVersion: int | None = None) -> JSONResponse:
        await _aws(things.delete(thingName, expectedVersion))
        return JSONResponse({})

    @api.post("/thing-types/{thingTypeName}", summary="CreateThingType")
    async def create_thing_type(thingTypeName: str,
                                body: Annotated[CreateThingTypeBody | None, Body()] = None) -> JSONResponse:
        body = body or CreateThingTypeBody()
        props = body.thingTypeProperties.model_dump(exclude_none=True) if body.thingTypeProperties else None
        tags = [t.model_dump(exclude_none=True) for t in body.tags] if body.tags else None
        return JSONResponse(await _aws(types.create(thingTypeName, props, tags)))

    @api.get("/thing-types/{thingTypeName}", summary="DescribeThingType")
    async def describe_thing_type(thingTypeName: str) -> JSONResponse:
        return JSONResponse(await _aws(types.describe(thingTypeName)))

    @api.get("/thing-types", summary="ListThingTypes")
    async def list_thing_types(nextToken: str | None = None, maxResults: int | None = None,
                               thingTypeName: str | None = None) -> JSONResponse:
        return JSONResponse(await _aws(types.list(
            thing_type_name=thingTypeName, max_results=maxResults, next_token=nextToken,
        )))

    @api.post("/thing-types/{thingTypeName}/deprecate", summary="DeprecateThingType")
    async def deprecate_thing_type(thingTypeName: str,
                                   body: Annotated[DeprecateThingTypeBody | None, Body()] = None) -> JSONResponse:
        await _aws(types.deprecate(thingTypeName, undo=bool(body and body.undoDeprecate)))
        return JSONResponse({})

    @api.delete("/thing-types/{thingTypeName}", summary="DeleteThingType")
    async def delete_thing_type(thingTypeName: str) -> JSONResponse:
        await _aws(types.delete(thingTypeName))
        return JSONResponse({})

    return api
