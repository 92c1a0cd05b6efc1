"""AWS ``iot-data`` shadow REST API: boto3 and the AWS CLI work against it with ``endpoint_url``.

``GET|POST|DELETE /things/{thingName}/shadow[?name=]`` and
``GET /api/things/shadow/ListNamedShadowsForThing/{thingName}?nextToken=&pageSize=``, with the
paths, shapes and errors of the botocore model (``iot-data`` 2015-05-28). Errors carry AWS's
``x-amzn-ErrorType`` so botocore raises its typed exceptions; REST errors publish nothing on MQTT.

Callers are identified as for every HTTP data-plane API (the admin token, a SigV4 signature, or
anonymous where ``[http] allow_anonymous`` admits it, loopback only by default; see
:mod:`thingcore.http.caller`) and the broker's gate decides as if the caller published the same
request over MQTT: a REST get, update or delete needs ``publish`` on the shadow's ``.../get``,
``.../update`` or ``.../delete`` topic; listing needs ``publish`` on the classic shadow's
``.../get`` topic. Refusals are 403 ``ForbiddenException``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from thingcore.auth import Action
from thingcore.http.caller import Callers
from thingcore.http.errors import AWSError
from thingcore.shadow.document import ShadowError, check_names

_ERROR_TYPES = {
    400: "InvalidRequestException",
    401: "UnauthorizedException",
    403: "ForbiddenException",
    404: "ResourceNotFoundException",
    409: "ConflictException",
    413: "RequestEntityTooLargeException",
    415: "UnsupportedDocumentEncodingException",
    429: "ThrottlingException",
    500: "InternalFailureException",
}


def _aws_error(err: ShadowError) -> AWSError:
    return AWSError(err.code, _ERROR_TYPES.get(err.code, "InternalFailureException"), err.message)


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def _topic(thing: str, name: str | None, op: str) -> str:
    return f"$aws/things/{thing}/shadow/name/{name}/{op}" if name else f"$aws/things/{thing}/shadow/{op}"


def router(server: Any) -> APIRouter:
    api = APIRouter(tags=["shadows (AWS iot-data)"])
    callers = Callers(server)

    async def authorize(request: Request, body: bytes, thing: str, name: str | None, op: str) -> None:
        identity = await callers.identity(request.scope, body)
        try:
            check_names(thing, name)
        except ShadowError as err:
            raise _aws_error(err) from None
        topic = _topic(thing, name, op)
        if not callers.allowed(identity, Action.PUBLISH, topic):
            raise callers.refused(identity, Action.PUBLISH, topic)

    @api.get("/things/{thingName}/shadow", summary="GetThingShadow: the full document with delta")
    async def get_thing_shadow(request: Request, thingName: str, name: str | None = None) -> Response:
        await authorize(request, b"", thingName, name, "get")
        try:
            return _json(await server.shadows.get(thingName, name))
        except ShadowError as err:
            raise _aws_error(err) from None

    @api.post("/things/{thingName}/shadow", summary="UpdateThingShadow: merge a request state document")
    async def update_thing_shadow(request: Request, thingName: str, name: str | None = None) -> Response:
        body = await request.body()
        await authorize(request, body, thingName, name, "update")
        try:
            return _json(await server.shadows.update(thingName, name, body))
        except ShadowError as err:
            raise _aws_error(err) from None

    @api.delete("/things/{thingName}/shadow", summary="DeleteThingShadow: remove it (the version is kept)")
    async def delete_thing_shadow(request: Request, thingName: str, name: str | None = None) -> Response:
        await authorize(request, b"", thingName, name, "delete")
        try:
            return _json(await server.shadows.delete(thingName, name))
        except ShadowError as err:
            raise _aws_error(err) from None

    @api.get("/api/things/shadow/ListNamedShadowsForThing/{thingName}",
             summary="ListNamedShadowsForThing: named shadow names in order, paged")
    async def list_named_shadows(request: Request, thingName: str, nextToken: str | None = None,
                                 pageSize: str | None = None) -> JSONResponse:
        await authorize(request, b"", thingName, None, "get")
        try:
            size = 100
            if pageSize is not None:
                try:
                    size = int(pageSize)
                except ValueError:
                    raise ShadowError(400, "pageSize must be an integer between 1 and 100") from None
            return JSONResponse(await server.shadows.list_named(thingName, nextToken, size))
        except ShadowError as err:
            raise _aws_error(err) from None

    return api
