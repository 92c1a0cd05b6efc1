"""The exceptions a device program sees: one base class, one subclass per thing that can go wrong.

Shadow rejections carry AWS's error code (the HTTP status in the ``/rejected`` document or the REST
answer) and have one subclass per documented code, so callers can catch exactly the case they handle.
"""

from __future__ import annotations

from typing import Any


class DeviceError(Exception):
    """Base class of every error raised by :mod:`thingcore.device`."""


class ConnectError(DeviceError):
    """The first connection could not be made (refused, unreachable, TLS failure, ...)."""

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class ConnectTimeout(ConnectError, TimeoutError):
    """No connection within the time ``connect()`` was given."""


class NotConnected(DeviceError):
    """A QoS 0 publish while offline (it is dropped), or an operation on a closed device."""


class QueueFull(DeviceError):
    """The offline queue holds ``queue_size`` QoS 1 publishes already (policy ``"error"``)."""


class MessageDropped(DeviceError):
    """A queued publish was dropped: the queue overflowed (``drop_oldest``/``drop_new``) or the device closed."""


class PublishError(DeviceError):
    """The server refused a publish: an MQTT 5 PUBACK reason code >= 0x80, or an HTTP error."""

    def __init__(self, message: str, reason_code: int | None = None, status: int | None = None,
                 error_type: str | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.status = status
        self.error_type = error_type


class SubscribeError(DeviceError):
    """The server refused a subscription (SUBACK failure code)."""

    def __init__(self, topic_filter: str, reason_code: int, reason: str) -> None:
        super().__init__(f"subscription to {topic_filter!r} refused: {reason} (0x{reason_code:02X})")
        self.topic_filter = topic_filter
        self.reason_code = reason_code


class UnsupportedOperation(DeviceError):
    """The transport cannot do this (HTTP is publish-only, as on AWS IoT)."""


class OperationTimeout(DeviceError, TimeoutError):
    """No SUBACK/UNSUBACK (or other answer) within the time allowed."""


# -- shadows ------------------------------------------------------------------------------------------


class ShadowError(DeviceError):
    """Base class of shadow errors."""


class ShadowTimeout(ShadowError, TimeoutError):
    """No ``/accepted`` or ``/rejected`` answer carrying our clientToken within the timeout."""


class ShadowRejected(ShadowError):
    """The shadow service rejected a request: ``code`` is AWS's (400, 401, 403, 404, 409, 413, 429, 500...)."""

    code: int = 0

    def __init__(self, code: int, message: str, client_token: str | None = None,
                 document: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.client_token = client_token
        self.document = document or {"code": code, "message": message}


class ShadowBadRequest(ShadowRejected):
    """400: invalid JSON, a missing ``state`` node, too deep, a bad version or clientToken."""


class ShadowUnauthorized(ShadowRejected):
    """401."""


class ShadowForbidden(ShadowRejected):
    """403."""


class ShadowNotFound(ShadowRejected):
    """404: the shadow does not exist (yet, or any more)."""


class ShadowVersionConflict(ShadowRejected):
    """409: the update named a ``version`` that is not the shadow's current one."""


class ShadowTooLarge(ShadowRejected):
    """413: desired + reported would exceed 8 KB."""


class ShadowUnsupportedEncoding(ShadowRejected):
    """415: the document is not UTF-8."""


class ShadowThrottled(ShadowRejected):
    """429: too many requests in flight (AWS: 10 per connection)."""


class ShadowInternalError(ShadowRejected):
    """500 (and other 5xx)."""


_SHADOW_ERRORS: dict[int, type[ShadowRejected]] = {
    400: ShadowBadRequest, 401: ShadowUnauthorized, 403: ShadowForbidden, 404: ShadowNotFound,
    409: ShadowVersionConflict, 413: ShadowTooLarge, 415: ShadowUnsupportedEncoding, 429: ShadowThrottled,
    500: ShadowInternalError,
}


def shadow_rejection(code: Any, message: Any, client_token: str | None = None,
                     document: dict[str, Any] | None = None) -> ShadowRejected:
    """The typed exception for a rejection code (an unknown code gives the base class)."""
    try:
        number = int(code)
    except (TypeError, ValueError):
        number = 0
    cls = _SHADOW_ERRORS.get(number, ShadowInternalError if number >= 500 else ShadowRejected)
    return cls(number, str(message), client_token, document)
