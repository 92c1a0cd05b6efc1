"""WebSocket clients for the integration tests: paho-mqtt's websockets transport, and a raw-socket
WebSocket client that writes exactly the frames a test asks for (split packets, fragments, broken frames).
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import struct
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from tests.integration.mqtt_helpers import HOST, TIMEOUT, V5, PahoClient

from thingcore.mqtt import Decoder, encode

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


class WSPahoClient(PahoClient):
    """:class:`PahoClient` over paho's websockets transport (``ws://host:port/mqtt``, or wss with ``ca``)."""

    def __init__(self, port: int, client_id: str | None = None, *, protocol: int = V5, path: str = "/mqtt",
                 ca: str | None = None, headers: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(port, client_id, protocol=protocol, **kwargs)
        old = self.client
        args: dict[str, Any] = {"client_id": self.client_id, "protocol": protocol, "transport": "websockets",
                                "manual_ack": kwargs.get("manual_ack", False)}
        if not self.v5:
            args["clean_session"] = self.clean
        c = mqtt.Client(CallbackAPIVersion.VERSION2, **args)
        c.reconnect_delay_set(60, 60)
        c.ws_set_options(path=path, headers=headers)
        if ca is not None:
            c.tls_set(ca_certs=ca)
        for name in ("on_connect", "on_subscribe", "on_unsubscribe", "on_publish", "on_message", "on_disconnect"):
            setattr(c, name, getattr(old, name))
        self.client = c


class RawWS:
    """A WebSocket client on a plain socket: the handshake, then frames exactly as the test writes them."""

    def __init__(self, port: int, *, path: str = "/mqtt", subprotocols: list[str] | None = None,
                 headers: dict[str, str] | None = None, tls: ssl.SSLContext | None = None, level: int = 5,
                 rcvbuf: int | None = None) -> None:
        sock = socket.socket()
        if rcvbuf is not None:  # a small receive buffer keeps the kernel from hiding a backlog
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(TIMEOUT)
        sock.connect((HOST, port))
        self.sock = tls.wrap_socket(sock, server_hostname="localhost") if tls else sock
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if subprotocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        head = self._read_until(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        self.body = b""
        if self.status != 101:
            n = int(self.headers.get("content-length", "0"))
            while len(self.buf) < n and self._fill():
                pass
            self.body, self.buf = self.buf[:n], self.buf[n:]
        self.level = level
        self.decoder = Decoder(protocol_level=level)
        self.packets: list[Any] = []
        self.close_code: int | None = None

    def _fill(self, timeout: float = TIMEOUT) -> bool:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionError, ssl.SSLError):
            data = b""
        self.buf += data
        return bool(data)

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if not self._fill():
                raise AssertionError(f"connection closed during the handshake: {self.buf!r}")
        head, _, self.buf = self.buf.partition(marker)
        return head

    # -- frames ----------------------------------------------------------------------------------

    def frame(self, payload: bytes, opcode: int = BINARY, *, fin: bool = True, mask: bool = True,
              rsv: int = 0) -> bytes:
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
        else:
            head = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
        if not mask:
            return head + payload
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

    def send(self, payload: bytes, opcode: int = BINARY, **kwargs: Any) -> None:
        self.sock.sendall(self.frame(payload, opcode, **kwargs))

    def send_packet(self, packet: Any) -> None:
        self.send(encode(packet, self.level))

    def recv_frame(self, timeout: float = TIMEOUT) -> tuple[int, bytes] | None:
        """The next frame from the server; None once the connection is closed."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                b0, b1 = self.buf[0], self.buf[1]
                n, off = b1 & 0x7F, 2
                if n == 126 and len(self.buf) >= 4:
                    n, off = struct.unpack("!H", self.buf[2:4])[0], 4
                elif n == 127 and len(self.buf) >= 10:
                    n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
                if ((b1 & 0x7F) < 126 or off > 2) and len(self.buf) >= off + n:
                    payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
                    return b0 & 0x0F, payload
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no WebSocket frame within {timeout} s")
            if not self._fill(left):
                return None

    def recv_packet(self, timeout: float = TIMEOUT) -> Any:
        """The next MQTT packet from binary frames; None when the server closed (close frame or socket)."""
        deadline = time.monotonic() + timeout
        while not self.packets:
            frame = self.recv_frame(max(deadline - time.monotonic(), 0.01))
            if frame is None:
                return None
            opcode, payload = frame
            if opcode == CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return None
            if opcode in (BINARY, CONT):
                self.packets.extend(self.decoder.feed(payload))
        return self.packets.pop(0)

    def expect(self, kind: type, timeout: float = TIMEOUT) -> Any:
        packet = self.recv_packet(timeout)
        assert isinstance(packet, kind), f"expected {kind.__name__}, got {packet!r}"
        return packet

    def wait_closed(self, timeout: float = TIMEOUT) -> int | None:
        """Read until the server closes; returns the close frame's code (None if the socket just closed)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv_frame(max(deadline - time.monotonic(), 0.01))
            if frame is None:
                return self.close_code
            if frame[0] == CLOSE:
                self.close_code = struct.unpack("!H", frame[1][:2])[0] if len(frame[1]) >= 2 else 1005
                return self.close_code

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawWS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
