"""AWS ``iot-data`` shadow REST API: boto3 and the AWS CLI work against it with ``endpoint_url``.

``GET|POST|DELETE /things/{thingName}/shadow[?name=]`` and
``GET /api/things/shadow/ListNamedShadowsForThing/{thingName}?nextToken=&pageSize=``, with the
paths, shapes and errors of the botocore model (``iot-data`` 2015-05-28). Errors carry AWS's
``x-amzn-ErrorType`` so botocore raises its typed exceptions; REST errors publish nothing on MQTT.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from thingcore.http.errors import AWSError
from thingcore.shadow.document import ShadowError

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


def router(server: Any) -> APIRouter:
    api = APIRouter(tags=["shadows (AWS iot-data)"])

    def service() -> Any:
        return server.shadows

    @api.get("/things/{thingName}/shadow", summary="GetThingShadow: the full document with delta")
    async def get_thing_shadow(thingName: str, name: str | None = None) -> Response:
        try:
            return _json(await service().get(thingName, name))
        except ShadowError as err:
            raise _aws_error(err) from None

    @api.post("/things/{thingName}/shadow", summary="UpdateThingShadow: merge a request state document")
    async def update_thing_shadow(thingName: str, request: Request, name: str | None = None) -> Response:
        try:
            return _json(await service().update(thingName, name, await request.body()))
        except ShadowError as err:
            raise _aws_error(err) from None

    @api.delete("/things/{thingName}/shadow", summary="DeleteThingShadow: remove it (the version is kept)")
    async def delete_thing_shadow(thingName: str, name: str | None = None) -> Response:
        try:
            return _json(await service().delete(thingName, name))
        except ShadowError as err:
            raise _aws_error(err) from None

    @api.get("/api/things/shadow/ListNamedShadowsForThing/{thingName}",
             summary="ListNamedShadowsForThing: named shadow names in order, paged")
    async def list_named_shadows(thingName: str, nextToken: str | None = None,
                                 pageSize: str | None = None) -> JSONResponse:
        try:
            size = 100
            if pageSize is not None:
                try:
                    size = int(pageSize)
                except ValueError:
                    raise ShadowError(400, "pageSize must be an integer between 1 and 100") from None
            return JSONResponse(await service().list_named(thingName, nextToken, size))
        except ShadowError as err:
            raise _aws_error(err) from None

    return api
