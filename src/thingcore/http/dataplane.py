"""AWS IoT data plane over HTTP: Publish, GetRetainedMessage and ListRetainedMessages.

Paths, parameters and shapes are those of botocore's ``iot-data`` model, so boto3, the AWS CLI and
curl work unchanged. A published message enters the broker exactly like an MQTT PUBLISH: the same
topic checks, the same authorizer (``publish`` with the caller's identity), ``broker.publish``, and
for ``qos=1`` the answer waits until the message is committed wherever it is owed. Messages from
HTTP carry no client id (AWS's ``clientid()`` is ``"n/a"`` for them).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
import uuid
from bisect import bisect_right
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.routing import Route

from thingcore.auth import Action, Identity
from thingcore.broker.admission import PublishRefused
from thingcore.broker.flow import PublishHeld
from thingcore.broker.message import Message
from thingcore.http.caller import Callers
from thingcore.http.errors import AWSError
from thingcore.mqtt import MQTTError, ReasonCode
from thingcore.mqtt.topics import validate_topic_name

if TYPE_CHECKING:
    from thingcore.broker.session import Session

_BAD = "InvalidRequestException"
_MAX_EXPIRY = 0xFFFFFFFF
_MAX_RESULTS = 200
_FORMATS = {"UNSPECIFIED_BYTES": 0, "UTF8_DATA": 1}


def _bad(message: str) -> AWSError:
    return AWSError(400, _BAD, message)


def _json(data: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), media_type="application/json", headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise _bad("Content-Length is not a number") from None
        if declared > limit:
            raise AWSError(413, "RequestEntityTooLargeException",
                           f"the payload is {declared} bytes; the limit is {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise AWSError(413, "RequestEntityTooLargeException", f"the payload exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def url_topic(request: Request, prefix: bytes, fallback: str) -> str:
    """The topic from the undecoded path: ``%2F`` and ``/`` both separate levels, bytes are UTF-8."""
    scope = request.scope
    raw = scope.get("raw_path")
    if raw is None:
        return fallback
    root = scope.get("root_path", "").encode()
    if root and raw.startswith(root):
        raw = raw[len(root):]
    if not raw.startswith(prefix):
        return fallback
    try:
        return unquote_to_bytes(raw[len(prefix):]).decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("the topic in the URL is not valid UTF-8") from None


def _check_topic(topic: str, what: str = "topic") -> None:
    try:
        validate_topic_name(topic)
    except MQTTError as exc:
        raise _bad(f"invalid {what}: {exc.message}") from None


def _qos(value: str | None) -> int:
    if value is None:
        return 0
    if value not in ("0", "1"):
        raise _bad(f"qos must be 0 or 1, not {value!r}")
    return int(value)


def _bool(value: str | None, name: str) -> bool:
    if value is None:
        return False
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise _bad(f"{name} must be true or false, not {value!r}")
    return lowered == "true"


def _user_properties(value: str) -> list[tuple[str, str]]:
    """Base64 of a JSON array of ``{"name": "value"}`` objects (boto3 may wrap the array in a JSON string)."""
    error = _bad('x-amz-mqtt5-user-properties must be base64 of a JSON array of {"name": "value"} objects')
    try:
        data: Any = orjson.loads(base64.b64decode(value, validate=True))
        if isinstance(data, str):
            data = orjson.loads(data)
    except (binascii.Error, ValueError):
        raise error from None
    if not isinstance(data, list):
        raise error
    out: list[tuple[str, str]] = []
    for item in data:
        if not isinstance(item, dict):
            raise error
        for k, v in item.items():
            if not isinstance(v, str):
                raise error
            out.append((k, v))
    return out


def _publish_properties(request: Request, payload: bytes) -> tuple[dict[str, Any], int | None]:
    """MQTT 5 properties from AWS's query parameters and headers, and the message expiry in seconds."""
    params = request.query_params
    headers = request.headers
    props: dict[str, Any] = {}
    fmt = headers.get("x-amz-mqtt5-payload-format-indicator")
    if fmt is not None:
        if fmt not in _FORMATS:
            raise _bad("x-amz-mqtt5-payload-format-indicator must be UNSPECIFIED_BYTES or UTF8_DATA")
        props["payload_format_indicator"] = _FORMATS[fmt]
        if fmt == "UTF8_DATA":
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise _bad("the payload is not valid UTF-8 (payload format indicator UTF8_DATA)") from None
    content_type = params.get("contentType")
    if content_type is not None:
        props["content_type"] = content_type
    response_topic = params.get("responseTopic")
    if response_topic is not None:
        _check_topic(response_topic, "responseTopic")
        props["response_topic"] = response_topic
    correlation = headers.get("x-amz-mqtt5-correlation-data")
    if correlation is not None:
        try:
            props["correlation_data"] = base64.b64decode(correlation, validate=True)
        except binascii.Error:
            raise _bad("x-amz-mqtt5-correlation-data must be base64") from None
    user = headers.get("x-amz-mqtt5-user-properties")
    if user is not None:
        props["user_property"] = _user_properties(user)
    expiry_text = params.get("messageExpiry")
    expiry = None
    if expiry_text is not None:
        if not expiry_text.isdigit() or int(expiry_text) > _MAX_EXPIRY:
            raise _bad(f"messageExpiry must be a number of seconds (0..{_MAX_EXPIRY}), not {expiry_text!r}")
        expiry = int(expiry_text)
    return props, expiry


_REFUSALS = {  # the gate's reason code -> HTTP status and AWS error type
    ReasonCode.PACKET_TOO_LARGE: (413, "RequestEntityTooLargeException"),
    ReasonCode.TOPIC_NAME_INVALID: (400, _BAD),
    ReasonCode.RETAIN_NOT_SUPPORTED: (400, _BAD),
    ReasonCode.QUOTA_EXCEEDED: (429, "ThrottlingException"),
}


def refusal_error(topic: str, refusal: PublishRefused) -> AWSError:
    """The gate's refusal of an HTTP publish, as AWS answers it (403 unless the reason says otherwise)."""
    status, error_type = _REFUSALS.get(refusal.reason_code, (403, "ForbiddenException"))
    return AWSError(status, error_type, f"cannot publish to {topic!r}: {refusal.message}")


class _Waiter:
    """Stands in the queue of a congested subscriber like a paused MQTT publisher does."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future) -> None:
        self.future = future

    def release(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class DataPlane:
    def __init__(self, server: Any) -> None:
        self.broker = server.broker
        self.callers = Callers(server)
        self.max_body = server.settings.limits.max_packet_size

    def _allowed(self, identity: Identity, action: Action, topic: str) -> bool:
        return self.callers.allowed(identity, action, topic)

    async def publish(self, request: Request, topic: str) -> Response:
        body = await read_body(request, self.max_body)
        identity = await self.callers.identity(request.scope, body)
        topic = url_topic(request, b"/topics/", topic)
        _check_topic(topic)
        params = request.query_params
        qos = _qos(params.get("qos"))
        retain = _bool(params.get("retain"), "retain")
        props, expiry = _publish_properties(request, body)
        broker = self.broker
        msg = Message(topic, body, qos, retain, props, None, identity.principal, identity.address)
        if expiry is not None:
            msg.expires_at = msg.received_at + expiry
        while True:  # a subscriber's full queue: wait for room before routing it (broker/flow.py)
            try:
                commit = broker.publish(msg, identity, hold=True)
                break
            except PublishRefused as refusal:
                raise refusal_error(topic, refusal) from None
            except PublishHeld as held:
                await self._backpressure(held.sessions)
        if broker.unqueued:
            broker.unqueued = False
            raise AWSError(429, "ThrottlingException",
                           f"cannot publish to {topic!r}: no subscriber could take the message, their queues are full")
        if broker.congested:  # queued, past half a subscriber's queue: answer once it drains
            sessions, broker.congested = broker.congested, []
            await self._backpressure(sessions)
        if qos and commit is not None:
            try:
                await commit
            except Exception as exc:
                raise AWSError(500, "InternalFailureException", f"the message could not be stored: {exc}") from None
        trace = str(uuid.UUID(int=random.getrandbits(128), version=4))  # an id, not a secret: no syscall
        return _json({"message": "OK", "traceId": trace}, {"x-amzn-RequestId": trace})

    async def _backpressure(self, sessions: list[Session]) -> None:
        """Subscribers' queues are full or filling: go on once one drains (or after backpressure_timeout)."""
        broker = self.broker
        waiter = _Waiter(asyncio.get_running_loop().create_future())
        for session in sessions:
            session.waiting_publishers.add(waiter)
        try:
            await asyncio.wait_for(waiter.future, broker.backpressure_timeout)
        except TimeoutError:  # subscribers that did not drain in that time are not waited for again
            for session in sessions:
                session.waited_too_long()
        finally:
            for session in sessions:
                session.waiting_publishers.discard(waiter)

    async def get_retained(self, request: Request, topic: str) -> Response:
        identity = await self.callers.identity(request.scope, await read_body(request, self.max_body))
        topic = url_topic(request, b"/retainedMessage/", topic)
        _check_topic(topic)
        if not self._allowed(identity, Action.RECEIVE, topic):
            raise self.callers.refused(identity, Action.RECEIVE, topic, f"not authorized to read {topic!r}")
        msg = self.broker.retained.get(topic)
        if msg is None or msg.expired():
            raise AWSError(404, "ResourceNotFoundException", f"No retained message for topic {topic!r}")
        out: dict[str, Any] = {
            "topic": msg.topic,
            "payload": base64.b64encode(msg.payload).decode(),
            "qos": msg.qos,
            "lastModifiedTime": int(msg.received_at * 1000),
        }
        user = msg.properties.get("user_property")
        if user:
            out["userProperties"] = base64.b64encode(orjson.dumps([{k: v} for k, v in user])).decode()
        return _json(out)

    async def list_retained(self, request: Request) -> Response:
        identity = await self.callers.identity(request.scope, await read_body(request, self.max_body))
        params = request.query_params
        limit_text = params.get("maxResults")
        limit = _MAX_RESULTS
        if limit_text is not None:
            if not limit_text.isdigit() or not 1 <= int(limit_text) <= _MAX_RESULTS:
                raise _bad(f"maxResults must be 1..{_MAX_RESULTS}, not {limit_text!r}")
            limit = int(limit_text)
        after = _decode_token(params.get("nextToken"))
        messages = {m.topic: m for m in self.broker.retained.all()
                    if not m.expired() and self._allowed(identity, Action.RECEIVE, m.topic)}
        topics = sorted(messages)
        start = bisect_right(topics, after) if after is not None else 0
        page = topics[start:start + limit]
        out: dict[str, Any] = {"retainedTopics": [
            {"topic": t, "payloadSize": len(messages[t].payload), "qos": messages[t].qos,
             "lastModifiedTime": int(messages[t].received_at * 1000)}
            for t in page
        ]}
        if start + limit < len(topics):
            out["nextToken"] = base64.urlsafe_b64encode(page[-1].encode()).decode()
        return _json(out)


def _decode_token(token: str | None) -> str | None:
    """nextToken is the last topic of the previous page, base64url: paging survives inserts and deletes."""
    if not token:
        return None
    try:
        return base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise _bad("nextToken is not a token this API returned") from None


def router(server: Any) -> APIRouter:
    api = DataPlane(server)
    r = APIRouter(tags=["iot-data"])

    async def publish(request: Request) -> Response:
        return await api.publish(request, request.path_params["topic"])

    # A plain Starlette route: FastAPI's parameter machinery would cost a third of every publish, and the
    # parameters are read by hand anyway. Documented in docs/http.md rather than in the OpenAPI page.
    r.routes.append(Route("/topics/{topic:path}", publish, methods=["POST"], name="Publish"))
    r.add_api_route("/retainedMessage", api.list_retained, methods=["GET"], operation_id="ListRetainedMessages",
                    summary="AWS iot-data ListRetainedMessages (maxResults 1..200, nextToken)")
    r.add_api_route("/retainedMessage/{topic:path}", api.get_retained, methods=["GET"],
                    operation_id="GetRetainedMessage", summary="AWS iot-data GetRetainedMessage (payload base64)")
    return r
