"""TLS handshakes the MQTT listener refuses are logged (peer, reason) and counted, and a TLS ClientHello on
the plain port is named.

asyncio (and uvloop) swallow a failed server-side handshake: the SSL error is an ``OSError``, which they
log only in debug mode, and the protocol never hears of the connection. So the TLS listener is a plain
server whose protocol factory wraps each :class:`Connection` in the loop's own ``SSLProtocol`` itself,
exactly as ``create_server(ssl=...)`` does inside, with a waiter whose outcome it reads: a refused
client certificate, a client that does not trust ours, plain MQTT on the TLS port, a handshake timeout.
Nothing changes once the handshake is done.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from thingcore.broker.admission import RefusalLog

log = logging.getLogger("thingcore.listeners")
refusals = RefusalLog(logger=log)

# the first bytes of a TLS record carrying a ClientHello: handshake (0x16), version 3.x
TLS_HELLO = b"\x16\x03"

_REASONS = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no client certificate, and [tls] require_client_cert is on",
    "CERTIFICATE_VERIFY_FAILED": "client certificate refused",
    "TLSV1_ALERT_UNKNOWN_CA": "the client does not trust the server's certificate (it answered 'unknown CA')",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the client refused the server's certificate (bad certificate)",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the client refused the server's certificate (certificate unknown)",
    "HTTP_REQUEST": "plain HTTP on the TLS port",
    "WRONG_VERSION_NUMBER": "not TLS: plain MQTT on the TLS port? (use the plain port, or TLS on the client)",
    "UNSUPPORTED_PROTOCOL": "the client's TLS version is below TLS 1.2",
    "NO_SHARED_CIPHER": "no cipher suite in common with the client",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version in common with the client",
}


def describe(exc: BaseException) -> str | None:
    """Why a handshake failed, for a log line; None when the peer merely went away before finishing."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"client certificate refused: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        return _REASONS.get(reason, f"TLS error {reason or exc}")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no complete TLS handshake in time"
    if isinstance(exc, ConnectionAbortedError) and "handshake" in str(exc).lower():
        return "no complete TLS handshake in time"
    return None


def _ssl_protocol_class(loop: asyncio.AbstractEventLoop) -> type:
    """The loop's own SSLProtocol: uvloop's (compiled) on a uvloop loop, asyncio's otherwise."""
    try:
        import uvloop
        from uvloop.loop import SSLProtocol as UVSSLProtocol
    except ImportError:  # pragma: no cover - uvloop is a dependency where it exists
        pass
    else:
        if isinstance(loop, uvloop.Loop):
            return UVSSLProtocol
    from asyncio.sslproto import SSLProtocol

    return SSLProtocol


def tls_factory(loop: asyncio.AbstractEventLoop, app_factory: Callable[[], asyncio.Protocol],
                context: ssl.SSLContext, handshake_timeout: float, listener: str,
                on_refused: Callable[[], None]) -> Callable[[], asyncio.BaseProtocol]:
    """A protocol factory for a plain ``create_server`` that speaks TLS and reports refused handshakes."""
    base = _ssl_protocol_class(loop)

    class Handshake(base):  # type: ignore[misc, valid-type]
        """The loop's SSLProtocol, remembering its peer for the log line."""

        def connection_made(self, transport: Any) -> None:
            self.peer = transport.get_extra_info("peername")
            super().connection_made(transport)

    def done(proto: Any, waiter: asyncio.Future[None]) -> None:
        if waiter.cancelled():
            return
        exc = waiter.exception()
        if exc is None:
            return
        peer = getattr(proto, "peer", None)
        address = f"{peer[0]}:{peer[1]}" if peer else "?"
        why = describe(exc)
        if why is None:
            log.debug("TLS connection from %s (%s) closed during the handshake: %r", address, listener, exc)
            return
        on_refused()
        refusals("refused TLS handshake from %s (%s), no client id yet: %s", address, listener, why)

    def factory() -> asyncio.BaseProtocol:
        waiter: asyncio.Future[None] = loop.create_future()
        proto = Handshake(loop, app_factory(), context, waiter, server_side=True,
                          ssl_handshake_timeout=handshake_timeout)
        waiter.add_done_callback(lambda fut: done(proto, fut))
        return proto

    return factory




def plain_port_hint(kind: str, port: int | None, tls_port: int | None, setting: str) -> str:
    """The log text for a TLS ClientHello that reached a plain (non-TLS) port."""
    where = f"use {tls_port}" if tls_port else "use the TLS port"
    shown = port if port is not None else "?"
    return f"a TLS ClientHello on the plain {kind} port {shown}: {where}, or enable {setting}"


__all__ = ["TLS_HELLO", "describe", "plain_port_hint", "refusals", "tls_factory"]
