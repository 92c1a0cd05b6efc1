"""Bounds on the HTTP listener's connections: an idle timeout and a cap, which uvicorn lacks.

uvicorn's httptools protocol arms its keep-alive timer only after a response and cancels it on any
byte received, so a connection that never sends a request, or sends a request's head one byte at a
time, stays open forever; 1 100 of them once exhausted the process's file descriptors and new MQTT
clients got no answer. This subclass adds:

- a head timer: the request line and headers must arrive within ``[http] idle_timeout`` of the
  connection opening or of the previous response, else the connection is closed (logged at DEBUG:
  browsers keep idle connections open as a matter of course);
- a hint: a TLS ClientHello on this plain port (a client that defaults to TLS, as the AWS SDKs do) is
  logged as such (rate-limited) and the connection closed, instead of uvicorn's "Invalid HTTP request";
- a cap: past ``[http] max_connections`` open HTTP connections (upgraded WebSockets are MQTT clients
  and not counted), a new connection is answered ``503`` with an AWS-style body and closed at once,
  with a warning logged (at most one line per 10 s, with the count refused since the last).

A connection is counted from the moment the protocol sees it, which for HTTPS is after the TLS
handshake (asyncio bounds that by its own 60 s handshake timeout).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from thingcore.broker.handshake import TLS_HELLO, plain_port_hint, refusals

log = logging.getLogger("thingcore.http")

_REPORT_EVERY = 10.0


def _full_response(limit: int) -> bytes:
    body = orjson.dumps({"message": f"the HTTP listener has {limit} open connections ([http] max_connections); "
                                    "try again later"})
    return (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"x-amzn-ErrorType: ServiceUnavailableException\r\nretry-after: 1\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head timeout and a connection cap (see the module docstring)."""

    idle_timeout: ClassVar[float] = 10.0
    max_connections: ClassVar[int] = 0
    open: ClassVar[set[BoundedHttpToolsProtocol]]
    refused: ClassVar[list[float]]  # [refused since the last report, time of the last report]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._turned_away = False
        self._first = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        limit = self.max_connections
        if limit and len(self.open) >= limit:
            self._turned_away = True
            transport.write(_full_response(limit))
            transport.close()
            self._report_full(transport)
            return
        super().connection_made(transport)
        self.open.add(self)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._turned_away:
            return
        self.open.discard(self)
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._first:
            self._first = False
            if data[:2] == TLS_HELLO and self.transport.get_extra_info("ssl_object") is None:
                sock = self.transport.get_extra_info("sockname")
                refusals("closing HTTP connection from %s: %s", self.client[0] if self.client else "?",
                         plain_port_hint("HTTP", sock[1] if sock else None, None, "TLS ([http] certfile and keyfile)"))
                self.transport.close()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.pipeline and not self.transport.is_closing():
            self._arm()

    def handle_websocket_upgrade(self) -> None:
        self.open.discard(self)  # an MQTT client from now on, bounded by the broker
        self._disarm()
        super().handle_websocket_upgrade()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.idle_timeout, self._idle)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _idle(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            log.debug("closing HTTP connection from %s: no request within %.1f s", self.client, self.idle_timeout)
            self.transport.close()

    def _report_full(self, transport: asyncio.Transport) -> None:
        counts = self.refused
        counts[0] += 1
        now = time.monotonic()
        if now - counts[1] >= _REPORT_EVERY:
            peer = transport.get_extra_info("peername")
            log.warning("HTTP listener full (%d connections, [http] max_connections): refused %d connection(s) "
                        "with 503, the last from %s", self.max_connections, counts[0], peer[0] if peer else "?")
            counts[0], counts[1] = 0, now


def bounded_protocol(idle_timeout: float, max_connections: int) -> type[BoundedHttpToolsProtocol]:
    """A protocol class for one listener (its own count of open connections), for ``uvicorn.Config(http=...)``."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {
        "idle_timeout": idle_timeout, "max_connections": max_connections, "open": set(),
        "refused": [0.0, float("-inf")],
    })
