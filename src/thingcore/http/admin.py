"""thingcore's own admin API under ``/api/v1``: broker statistics, clients, retained messages, config.

Described by OpenAPI (FastAPI serves ``/openapi.json`` and ``/docs``). Access is the broker's
``manage`` permission on ``<kind>[/<name>]`` (``stats``, ``clients/<id>``, ``retained/<topic>``,
``config``; see :mod:`thingcore.http.caller`): administrators have it (``Authorization: Bearer
<[admin] token>``, or, with no token configured, callers ``[admin] allow_unauthenticated`` admits:
loopback only by default), SigV4 access keys where an access rule allows it. So a fresh install
does not hand strangers a way to kick devices or read the configuration. A caller without
credentials gets 401 UnauthorizedException, one with credentials but no right 403
ForbiddenException, in AWS's error shape like every other API here.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from thingcore.config import redacted
from thingcore.http.caller import Callers
from thingcore.http.errors import AWSError
from thingcore.mqtt import MQTTError
from thingcore.mqtt.topics import validate_topic_filter

ADMINISTRATIVE_ACTION = 0x98
# Long query and path values are refused with a clear 400 before the HTTP parser's 16 KB line limit
MAX_KEY = 1024


class ErrorBody(BaseModel):
    message: str


class Stats(BaseModel):
    uptime_seconds: float
    broker: dict[str, int] = Field(description="Counters and gauges of the broker (same as /metrics)")
    storage: dict[str, int] = Field(description="Storage writer counters (commits, operations, largest batch)")
    lifecycle_events_published: int


class ClientInfo(BaseModel):
    client_id: str
    connected: bool
    persistent: bool = Field(description="The session outlives the connection (clean session 0 / expiry > 0)")
    session_expiry_interval: int
    subscriptions: int
    inflight: int
    queued: int
    disconnected_at: float | None = None
    address: str | None = None
    port: int | None = None
    listener: str | None = None
    protocol: str | None = None
    username: str | None = None
    principal: str | None = None
    keep_alive: int | None = None
    connected_at: float | None = None
    bytes_in: int | None = None
    bytes_out: int | None = None
    messages_in: int | None = None
    messages_out: int | None = None


class ClientPage(BaseModel):
    clients: list[ClientInfo]
    next: str | None = Field(None, description="Pass as `after` to get the next page; null on the last page")


class SubscriptionInfo(BaseModel):
    filter: str = Field(description="The filter as subscribed, with any $share/<group>/ prefix")
    qos: int
    no_local: bool
    retain_as_published: bool
    retain_handling: int
    subscription_identifier: int | None = None
    share_group: str | None = None


class SubscriptionList(BaseModel):
    client_id: str
    subscriptions: list[SubscriptionInfo]


ServerDisconnectCode = Literal[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97,
    0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
]


class DisconnectRequest(BaseModel):
    reason_code: ServerDisconnectCode = Field(
        ADMINISTRATIVE_ACTION, description="MQTT 5 DISCONNECT reason code a server may send (default 0x98 = 152, "
                                           "administrative action)")
    reason_string: str | None = Field(None, max_length=1024, description="Sent to MQTT 5 clients")


class DisconnectResult(BaseModel):
    client_id: str
    reason_code: int
    reason_code_sent: bool = Field(description="False for MQTT 3.1.1 clients: their connection is just closed")


class RetainedSummary(BaseModel):
    topic: str
    qos: int
    payload_size: int
    received_at: float
    expires_at: float | None = None


class RetainedPage(BaseModel):
    retained: list[RetainedSummary]
    next: str | None = Field(None, description="Pass as `after` to get the next page; null on the last page")


class RetainedMessage(RetainedSummary):
    payload_base64: str
    payload_utf8: str | None = Field(None, description="The payload as text when it is valid UTF-8")
    properties: dict[str, Any]
    client_id: str | None = None


_bearer = HTTPBearer(auto_error=False, scheme_name="adminToken",
                     description="The [admin] token of the server's configuration")


def require_admin(server: Any) -> Callable[..., Awaitable[None]]:
    """The dependency of every ``/api/v1`` router: the caller must be allowed to MANAGE what the route
    touches (see :meth:`thingcore.http.caller.Callers.manager`), through the broker's one gate.

    The bearer parameter only documents the token in OpenAPI; :mod:`thingcore.http.caller` reads it.
    """
    manage = Callers(server).manager()

    async def check(request: Request,
                    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        await manage(request)

    return check


def _client_info(session: Any) -> dict[str, Any]:
    conn = session.connection
    info: dict[str, Any] = {
        "client_id": session.client_id, "connected": conn is not None, "persistent": session.persistent,
        "session_expiry_interval": session.expiry_interval, "subscriptions": len(session.subscriptions),
        "inflight": len(session.inflight), "queued": session.queued_count,
        "disconnected_at": session.disconnected_at,
    }
    if conn is not None:
        info.update(conn.info())
    return info


def _json_properties(props: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in props.items():
        if isinstance(value, bytes):
            out[key] = value.hex()
        elif key == "user_property":
            out[key] = [list(kv) for kv in value]
        else:
            out[key] = value
    return out


_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Invalid request (InvalidRequestException)"},
    401: {"model": ErrorBody, "description": "Missing or wrong admin token (UnauthorizedException)"},
    403: {"model": ErrorBody, "description": "The caller may not manage this (ForbiddenException)"},
}
# for other /api/v1 routers: `APIRouter(dependencies=[Depends(require_admin(server))], responses=ADMIN_RESPONSES)`
_require_admin = require_admin
ADMIN_RESPONSES = _RESPONSES
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such client or topic (ResourceNotFoundException)"},
}


def router(server: Any) -> APIRouter:
    broker = server.broker
    started = time.time()
    api = APIRouter(prefix="/api/v1", tags=["admin"], dependencies=[Depends(require_admin(server))],
                    responses=_RESPONSES)
    # without a configured token the bearer is optional (an empty requirement next to it in OpenAPI)
    extra = {"security": [{}]} if not server.settings.admin.token else None

    def route(method: str, path: str, **kwargs: Any) -> Any:
        return api.api_route(path, methods=[method], openapi_extra=extra, **kwargs)

    @route("GET", "/stats", response_model=Stats, summary="Broker and storage statistics")
    async def stats() -> dict[str, Any]:
        lifecycle = getattr(server, "lifecycle", None)
        return {
            "uptime_seconds": time.time() - started, "broker": broker.snapshot(),
            "storage": server.storage.stats.as_dict(),
            "lifecycle_events_published": lifecycle.published if lifecycle is not None else 0,
        }

    @route("GET", "/clients", response_model=ClientPage, summary="Clients (sessions), in client id order, paged")
    async def list_clients(
        status: Annotated[Literal["connected", "disconnected", "all"], Query(
            description="connected clients (default), offline persistent sessions, or both")] = "connected",
        prefix: Annotated[str, Query(max_length=MAX_KEY, description="Only client ids starting with this")] = "",
        after: Annotated[str | None, Query(max_length=MAX_KEY,
                                           description="Client id the previous page ended with")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        ids = []
        for cid, session in broker.sessions.items():
            if not cid.startswith(prefix) or (after is not None and cid <= after):
                continue
            online = session.connection is not None
            if (status == "connected" and not online) or (status == "disconnected" and online):
                continue
            ids.append(cid)
        ids.sort()
        page = ids[:limit]
        return {"clients": [_client_info(broker.sessions[cid]) for cid in page],
                "next": page[-1] if len(ids) > limit else None}

    def session_of(client_id: str) -> Any:
        session = broker.sessions.get(client_id)
        if session is None:
            raise AWSError(404, "ResourceNotFoundException", f"no client or session {client_id!r}")
        return session

    @route("GET", "/clients/{client_id:path}/subscriptions", response_model=SubscriptionList, responses=_NOT_FOUND,
             summary="A client's subscriptions")
    async def client_subscriptions(client_id: Annotated[str, Path(max_length=MAX_KEY)]) -> dict[str, Any]:
        session = session_of(client_id)
        subs = []
        for key, (entry, group, _bare) in sorted(session.subscriptions.items()):
            subs.append({
                "filter": key, "qos": entry.qos, "no_local": entry.no_local,
                "retain_as_published": entry.retain_as_published, "retain_handling": entry.retain_handling,
                "subscription_identifier": entry.subscription_id, "share_group": group,
            })
        return {"client_id": client_id, "subscriptions": subs}

    @route("POST", "/clients/{client_id:path}/disconnect", response_model=DisconnectResult, responses=_NOT_FOUND,
              summary="Disconnect a client (MQTT 5: DISCONNECT with a reason code, 0x98 by default)")
    async def disconnect_client(client_id: Annotated[str, Path(max_length=MAX_KEY)],
                                body: DisconnectRequest | None = None) -> dict[str, Any]:
        body = body or DisconnectRequest()
        session = broker.sessions.get(client_id)
        conn = session.connection if session is not None else None
        if conn is None:
            raise AWSError(404, "ResourceNotFoundException", f"client {client_id!r} is not connected")
        conn.disconnect_reason = "API_INITIATED_DISCONNECT"
        conn.close(body.reason_code, body.reason_string or "disconnected by an administrator")
        return {"client_id": client_id, "reason_code": body.reason_code, "reason_code_sent": conn.v5}

    @route("GET", "/clients/{client_id:path}", response_model=ClientInfo, responses=_NOT_FOUND,
             summary="One client: connection details when connected, session state always")
    async def get_client(client_id: Annotated[str, Path(max_length=MAX_KEY)]) -> dict[str, Any]:
        return _client_info(session_of(client_id))

    @route("GET", "/retained", response_model=RetainedPage, summary="Retained messages, in topic order, paged")
    async def list_retained(
        filter: Annotated[str, Query(max_length=MAX_KEY,
                                     description="MQTT topic filter; `#` does not match `$` topics")] = "#",
        after: Annotated[str | None, Query(max_length=MAX_KEY, description="Topic the previous page ended with")]
        = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        try:
            validate_topic_filter(filter)
        except MQTTError as exc:
            raise AWSError(400, "InvalidRequestException", f"invalid topic filter: {exc.message}") from None
        now = time.time()
        msgs = sorted((m for m in broker.retained.match(filter)
                       if not m.expired(now) and (after is None or m.topic > after)), key=lambda m: m.topic)
        page = msgs[:limit]
        return {"retained": [_summary(m) for m in page], "next": page[-1].topic if len(msgs) > limit else None}

    @route("GET", "/retained/{topic:path}", response_model=RetainedMessage, responses=_NOT_FOUND,
             summary="One retained message with its payload")
    async def get_retained(topic: Annotated[str, Path(max_length=MAX_KEY)]) -> dict[str, Any]:
        msg = broker.retained.get(topic) if topic else None
        if msg is None or msg.expired():
            raise AWSError(404, "ResourceNotFoundException", f"no retained message on {topic!r}")
        try:
            text: str | None = msg.payload.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return {**_summary(msg), "payload_base64": base64.b64encode(msg.payload).decode(), "payload_utf8": text,
                "properties": _json_properties(msg.properties), "client_id": msg.client_id}

    @route("GET", "/config", summary="The server's effective configuration, secrets replaced by ***")
    async def config() -> dict[str, Any]:
        return redacted(server.settings)

    return api


def _summary(msg: Any) -> dict[str, Any]:
    return {"topic": msg.topic, "qos": msg.qos, "payload_size": len(msg.payload), "received_at": msg.received_at,
            "expires_at": msg.expires_at}
