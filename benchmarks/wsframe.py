"""MQTT over WebSocket for the load generator: an asyncio protocol that does the HTTP upgrade, then
frames every write of the MQTT client it carries and unframes what the broker sends.

Client frames must be masked; the generator uses the all-zero masking key, which is valid on the
wire and makes masking free, so the generator's cost per message stays that of TCP plus a frame
header per write. Every write is one binary message, which may hold many MQTT packets (a
publisher's batch of 256), as real clients that coalesce writes do.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from typing import Any

_ZERO_MASK = b"\x00\x00\x00\x00"


def frame(payload: bytes) -> bytes:
    """One final binary frame, masked with the zero key."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x82, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x82, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x82, 0x80 | 127, n)
    return head + _ZERO_MASK + payload


class _InnerTransport:
    """What the MQTT client sees: writes become frames on the real transport."""

    def __init__(self, outer: WebSocketClient) -> None:
        self.outer = outer

    def write(self, data: bytes) -> None:
        self.outer.transport.write(frame(data))

    def close(self) -> None:
        self.outer.transport.close()

    def is_closing(self) -> bool:
        return self.outer.transport.is_closing()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.outer.transport.set_write_buffer_limits(high=high, low=low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.outer.transport.get_extra_info(name, default)


class WebSocketClient(asyncio.Protocol):
    """The socket's protocol; ``inner`` is the MQTT client protocol it carries."""

    def __init__(self, inner: asyncio.Protocol, host: str, port: int, path: str) -> None:
        self.inner = inner
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: mqtt\r\n\r\n"
        ).encode()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.upgraded = asyncio.get_running_loop().create_future()
        self.buf = b""
        self.handshake = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if self.handshake:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            status = buf[:end].split(b"\r\n", 1)[0]
            if b" 101 " not in status + b" ":
                self.upgraded.set_exception(ConnectionError(f"WebSocket upgrade refused: {status.decode()}"))
                self.transport.close()
                return
            self.handshake = False
            self.inner.connection_made(_InnerTransport(self))  # type: ignore[arg-type]
            self.upgraded.set_result(None)
            buf = buf[end + 4:]
        pos, n = 0, len(buf)
        deliver = self.inner.data_received
        while n - pos >= 2:
            length = buf[pos + 1] & 0x7F
            off = pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                off = pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = struct.unpack_from("!Q", buf, pos + 2)[0]
                off = pos + 10
            if off + length > n:
                break
            if buf[pos] & 0x0F in (0x0, 0x2):  # continuation or binary: MQTT bytes
                deliver(buf[off:off + length])
            pos = off + length
        self.buf = buf[pos:]

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed during the WebSocket upgrade ({exc})"))
        self.inner.connection_lost(exc)
