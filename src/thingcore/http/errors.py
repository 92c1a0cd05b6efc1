"""AWS-style errors for every HTTP API: `x-amzn-ErrorType` header plus `{"message": ...}` body.

botocore reads the error type from that header, so boto3 raises its typed exceptions
(`ResourceNotFoundException`, `ConflictException`, `InvalidRequestException`, ...) against thingcore
exactly as against AWS.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from thingcore.http.unserved import ERROR_TYPE as NOT_IMPLEMENTED
from thingcore.http.unserved import unserved_message


class AWSError(Exception):
    def __init__(self, status: int, error_type: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.extra = extra


def aws_error_response(status: int, error_type: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"message": message, **extra}, status_code=status, headers={"x-amzn-ErrorType": error_type}
    )


_STATUS_TYPES = {
    400: "InvalidRequestException",
    401: "UnauthorizedException",
    403: "ForbiddenException",
    404: "ResourceNotFoundException",
    405: "MethodNotAllowedException",
    409: "ConflictException",
    413: "RequestEntityTooLargeException",
    415: "UnsupportedDocumentEncodingException",
    429: "ThrottlingException",
    500: "InternalFailureException",
    501: NOT_IMPLEMENTED,
    503: "ServiceUnavailableException",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AWSError)
    async def _aws(_request: Request, exc: AWSError) -> JSONResponse:
        return aws_error_response(exc.status, exc.error_type, exc.message, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return aws_error_response(400, "InvalidRequestException", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code in (404, 405):  # no served route: perhaps an AWS operation thingcore lacks
            message = unserved_message(request)
            if message is not None:
                return aws_error_response(501, NOT_IMPLEMENTED, message)
        error_type = _STATUS_TYPES.get(exc.status_code, "InvalidRequestException")
        return aws_error_response(exc.status_code, error_type, str(exc.detail))
