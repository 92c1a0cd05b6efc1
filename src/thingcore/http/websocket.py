"""MQTT over WebSockets at ``/mqtt``: the broker's own :class:`Connection`, fed from WebSocket messages.

The WebSocket is only a byte stream here, as MQTT specifies: binary messages are fed to the
connection's decoder as they come, so a packet split across messages and several packets in one
message are both fine. Sessions, authentication, access rules and flow control are those of TCP,
because it is the same ``Connection`` behind a small adapter with the asyncio transport methods it
calls. The listener is named ``ws`` (``wss`` over TLS) in identities and access rules.

Subprotocols ``mqtt``, ``mqttv3.1`` and ``mqttv3.1.1`` are accepted and the chosen one is echoed; a
client offering only others gets HTTP 400. A client offering none is accepted. A presigned SigV4 query
string on the upgrade (AWS IoT SDKs' ``wss://.../mqtt?X-Amz-...``) is checked per
``[http] verify_signatures``; a verified one authenticates the connection with the access key's
principal, as a client certificate does on MQTTS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, WebSocket
from fastapi.responses import Response
from starlette.websockets import WebSocketDisconnect

from thingcore.auth import AuthResult, Identity
from thingcore.broker.connection import Connection
from thingcore.http.caller import build_verifier, peer, signed_principal
from thingcore.http.errors import AWSError, aws_error_response

log = logging.getLogger("thingcore.ws")

SUBPROTOCOLS = ("mqtt", "mqttv3.1", "mqttv3.1.1")
WS_LISTENERS = ("ws", "wss")
_DEFAULT_HIGH_WATER = 64 * 1024
_GONE = (OSError, RuntimeError, WebSocketDisconnect)  # what send/receive raise once the peer is gone


class WebSocketTransport:
    """The asyncio-transport face of one accepted WebSocket, driving one protocol (a ``Connection``).

    Writes are queued and sent by one writer task, everything queued in one binary message; the
    queued bytes are the write buffer size, and ``pause_writing`` / ``resume_writing`` are called
    around the high-water mark as asyncio transports do. ``pause_reading`` stops taking messages,
    which lets the WebSocket server stop reading the socket.
    """

    def __init__(self, websocket: WebSocket, protocol: Any) -> None:
        self._ws = websocket
        self._protocol = protocol
        address, port = peer(websocket.scope)
        self._extra = {"peername": (address, port), "sockname": websocket.scope.get("server")}
        self._out: list[bytes] = []
        self._out_size = 0
        self._high = _DEFAULT_HIGH_WATER
        self._low = _DEFAULT_HIGH_WATER // 4
        self._writing_paused = False
        self._wake = asyncio.Event()
        self._readable = asyncio.Event()
        self._readable.set()
        self._closing = False
        self._peer_gone = False
        self._close_code = 1000
        self._close_reason = ""
        self._tasks: list[asyncio.Task] = []

    # -- what Connection calls -------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        self._out.append(data)
        self._out_size += len(data)
        self._wake.set()
        if not self._writing_paused and self._out_size > self._high:
            self._writing_paused = True
            self._protocol.pause_writing()

    def close(self) -> None:
        """Send what is queued, then a close frame."""
        if not self._closing:
            self._closing = True
            self._wake.set()
            self._readable.set()

    def abort(self) -> None:
        """Drop what is queued and stop now (a peer that does not read would never take a close frame)."""
        self._out.clear()
        self._out_size = 0
        self.close()
        for task in self._tasks:
            task.cancel()

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def pause_reading(self) -> None:
        self._readable.clear()

    def resume_reading(self) -> None:
        self._readable.set()

    def get_write_buffer_size(self) -> int:
        return self._out_size

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = _DEFAULT_HIGH_WATER if high is None else high
        self._low = self._high // 4 if low is None else low

    # -- running ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the WebSocket until either side closes it."""
        loop = asyncio.get_running_loop()
        self._protocol.connection_made(self)
        reader = loop.create_task(self._read())
        writer = loop.create_task(self._write())
        self._tasks = [reader, writer]
        try:
            await asyncio.wait([reader])
            self.close()
            await asyncio.wait([writer])
        finally:
            for task in self._tasks:
                task.cancel()
            self._closing = True
            self._protocol.connection_lost(None)

    async def _read(self) -> None:
        receive = self._ws.receive
        feed = self._protocol.data_received
        readable = self._readable
        try:
            while not self._closing:
                if not readable.is_set():
                    await readable.wait()
                    continue
                message = await receive()
                if message["type"] == "websocket.receive":
                    data = message.get("bytes")
                    if data is None:
                        log.info("closing WebSocket from %s: text frame (MQTT needs binary frames)",
                                 self._extra["peername"][0])
                        self._close_code, self._close_reason = 1003, "MQTT over WebSocket uses binary frames"
                        return
                    feed(data)
                else:  # websocket.disconnect
                    self._peer_gone = True
                    return
        except _GONE:
            self._peer_gone = True

    async def _write(self) -> None:
        send = self._ws.send
        wake = self._wake
        try:
            while True:
                out = self._out
                if not out:
                    if self._closing:
                        break
                    wake.clear()
                    await wake.wait()
                    continue
                data = out[0] if len(out) == 1 else b"".join(out)
                self._out = []
                await send({"type": "websocket.send", "bytes": data})
                self._out_size -= len(data)
                if self._writing_paused and self._out_size <= self._low:
                    self._writing_paused = False
                    self._protocol.resume_writing()
            if not self._peer_gone:
                await send({"type": "websocket.close", "code": self._close_code, "reason": self._close_reason})
        except _GONE:
            self._peer_gone = True


def accept_signed_websockets(
    authenticate: Callable[[Identity, bytes | None], Awaitable[AuthResult]],
) -> Callable[[Identity, bytes | None], Awaitable[AuthResult]]:
    """Wrap the authenticator: a WebSocket whose upgrade carried a verified SigV4 signature is authenticated
    by it (principal = the access key's), as a verified client certificate authenticates MQTTS."""

    async def wrapped(identity: Identity, password: bytes | None) -> AuthResult:
        if identity.listener in WS_LISTENERS and identity.principal is not None and identity.cert_fingerprint is None:
            return AuthResult(0, principal=identity.principal)
        return await authenticate(identity, password)

    for attr in ("password_file",):
        if hasattr(authenticate, attr):
            setattr(wrapped, attr, getattr(authenticate, attr))
    return wrapped


class MQTTOverWebSockets:
    def __init__(self, server: Any) -> None:
        self.broker = server.broker
        self.verifier = build_verifier(server.settings)

    async def endpoint(self, websocket: WebSocket) -> None:
        scope = websocket.scope
        offered = list(scope.get("subprotocols") or ())
        chosen = next((p for p in offered if p in SUBPROTOCOLS), None)
        if offered and chosen is None:
            await _deny(websocket, AWSError(400, "InvalidRequestException",
                                            f"unsupported WebSocket subprotocol {', '.join(offered)}: "
                                            f"use one of {', '.join(SUBPROTOCOLS)}"))
            return
        try:
            principal = signed_principal(self.verifier, scope)
        except AWSError as exc:
            await _deny(websocket, exc)
            return
        await websocket.accept(subprotocol=chosen)
        conn = Connection(self.broker, "wss" if scope.get("scheme") == "wss" else "ws")
        conn.principal = principal
        await WebSocketTransport(websocket, conn).run()

    async def not_upgraded(self) -> Response:
        raise AWSError(400, "InvalidRequestException",
                       "/mqtt is MQTT over WebSocket: connect with a WebSocket client, subprotocol mqtt")


async def _deny(websocket: WebSocket, error: AWSError) -> None:
    """Refuse the upgrade with an HTTP error the client can show (or a bare close if the server cannot)."""
    log.info("refused WebSocket upgrade from %s: %s", peer(websocket.scope)[0], error.message)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(aws_error_response(error.status, error.error_type, error.message))
    else:
        await websocket.close(code=1008, reason=error.message[:120])


def router(server: Any) -> APIRouter:
    api = MQTTOverWebSockets(server)
    r = APIRouter(tags=["mqtt"])
    r.add_api_websocket_route("/mqtt", api.endpoint, name="mqtt")
    r.add_api_route("/mqtt", api.not_upgraded, methods=["GET"], include_in_schema=False)
    return r
