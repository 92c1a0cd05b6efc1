"""Registry errors, named and numbered as AWS IoT's control plane returns them.

The registry knows nothing about HTTP; the control-plane router turns these into AWS error
responses (``x-amzn-ErrorType``) so boto3 raises the same typed exceptions as against AWS.
"""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    status = 400
    error_type = "InvalidRequestException"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class InvalidRequest(RegistryError):
    status = 400
    error_type = "InvalidRequestException"


class NotFound(RegistryError):
    status = 404
    error_type = "ResourceNotFoundException"


class AlreadyExists(RegistryError):
    """409; AWS adds ``resourceId`` and ``resourceArn`` of the existing resource."""

    status = 409
    error_type = "ResourceAlreadyExistsException"


class VersionConflict(RegistryError):
    status = 409
    error_type = "VersionConflictException"
