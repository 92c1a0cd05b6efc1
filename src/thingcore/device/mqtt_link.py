"""One paho-mqtt client driven by an asyncio event loop, through paho's interface for external loops.

paho's threaded loop needs a thread per client; a fleet of simulated devices in one process cannot
afford that. Here the loop watches each client's socket (``add_reader``; ``add_writer`` only while
paho has bytes to send, which paho announces through ``on_socket_register_write``), calls
``loop_read`` / ``loop_write`` when the socket is ready and ``loop_misc`` once a second for
keep-alive. A thousand clients cost a thousand sockets and timers, not a thousand threads.

paho's ``reconnect()`` blocks (TCP connect, TLS and WebSocket handshakes), so it runs in a worker
thread; nothing else touches the client meanwhile. Everything else runs on the loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from thingcore.device.errors import ConnectError, NotConnected
from thingcore.device.message import Message, properties_dict

log = logging.getLogger("thingcore.device")

TICK = 1.0  #: seconds between keep-alive checks (loop_misc)
CONNECT_ERRORS = (OSError, ValueError, ConnectionError)  # what paho's reconnect() raises for a failed attempt


class LinkEvents(Protocol):
    def link_message(self, message: Message) -> None: ...
    def link_published(self, mid: int, reason_code: int, reason: str) -> None: ...
    def link_lost(self, reason_code: int, reason: str) -> None: ...


class ConnectionLost(ConnectionError):
    """The connection closed before the awaited acknowledgement came."""


def _code(rc: Any) -> tuple[int, str]:
    if isinstance(rc, ReasonCode):
        return rc.value, rc.getName()
    return int(rc), mqtt.error_string(rc) if isinstance(rc, int) else str(rc)


class MqttLink:
    def __init__(self, client: mqtt.Client, events: LinkEvents) -> None:
        self.client = client
        self.events = events
        self.connected = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None
        self._sock: Any = None
        self._writing = False
        self._reading = False
        self._timer: asyncio.TimerHandle | None = None
        self._connack: asyncio.Future | None = None
        self._closed: asyncio.Future | None = None
        self._acks: dict[int, asyncio.Future] = {}
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_ack
        client.on_unsubscribe = self._on_ack
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write

    # -- connecting -------------------------------------------------------------------------------

    async def connect(self, timeout: float) -> tuple[bool, Any]:
        """Open the socket, send CONNECT, wait for CONNACK: (session present, paho CONNACK properties).

        Raises :class:`ConnectError` for a refusing CONNACK, OSError-like errors for the network,
        TimeoutError when CONNACK does not come within ``timeout``."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._thread_id = threading.get_ident()
        self._connack = loop.create_future()
        self._closed = loop.create_future()
        opening = loop.run_in_executor(None, self.client.reconnect)
        try:
            await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(self._abandon_opening)
            raise
        self._watch(self.client.socket())
        try:
            async with asyncio.timeout(timeout):
                session_present, props = await self._connack
        except BaseException:
            self._drop_socket()
            raise
        return session_present, props

    def _abandon_opening(self, opening: asyncio.Future) -> None:
        """A connect attempt given up while its socket was still opening: close what it opened, and take its
        error (a refused connection), which would otherwise be printed as "Future exception was never
        retrieved" with a traceback."""
        if not opening.cancelled():
            opening.exception()
        self._drop_socket()

    def _drop_socket(self) -> None:
        """Close a socket that never became (or is no longer) a working connection."""
        sock = self.client.socket()
        self._unwatch()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _watch(self, sock: Any) -> None:
        loop = self._loop
        assert loop is not None and sock is not None
        self._sock = sock
        loop.add_reader(sock, self._readable)
        self._reading = True
        self._writing = False
        if self.client.want_write():
            self._writing = True
            loop.add_writer(sock, self._writable)
        self._timer = loop.call_later(TICK, self._tick)

    def _unwatch(self) -> None:
        sock, self._sock = self._sock, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if sock is not None and self._loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(sock)
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_writer(sock)
        self._writing = False
        self._reading = False

    # -- the loop's side --------------------------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop reading the socket (the device's callbacks are behind); TCP pushes back on the server."""
        if self._sock is not None and self._reading and self._loop is not None:
            self._reading = False
            self._loop.remove_reader(self._sock)

    def resume_reading(self) -> None:
        if self._sock is not None and not self._reading and self._loop is not None:
            self._reading = True
            self._loop.add_reader(self._sock, self._readable)
            self._loop.call_soon(self._readable)  # TLS may hold bytes the selector will not report

    def _readable(self) -> None:
        if not self._reading:
            return
        sock = self._sock
        self.client.loop_read()
        # TLS may hold decrypted bytes the selector cannot see
        if sock is not None and sock is self._sock and getattr(sock, "pending", None) and sock.pending():
            assert self._loop is not None
            self._loop.call_soon(self._readable)

    def _writable(self) -> None:
        self.client.loop_write()

    def _tick(self) -> None:
        if self._sock is None:
            return
        self.client.loop_misc()
        if self._sock is not None and self._loop is not None:
            self._timer = self._loop.call_later(TICK, self._tick)

    def _on_loop_thread(self) -> bool:
        return threading.get_ident() == self._thread_id

    def _on_register_write(self, _client: Any, _userdata: Any, sock: Any) -> None:
        if sock is self._sock and not self._writing and self._on_loop_thread():
            self._writing = True
            assert self._loop is not None
            self._loop.add_writer(sock, self._writable)

    def _on_unregister_write(self, _client: Any, _userdata: Any, sock: Any) -> None:
        if sock is self._sock and self._writing and self._on_loop_thread():
            self._writing = False
            assert self._loop is not None
            self._loop.remove_writer(sock)

    def _on_socket_close(self, _client: Any, _userdata: Any, sock: Any) -> None:
        if sock is self._sock and self._on_loop_thread():
            self._unwatch()

    # -- paho's protocol callbacks ----------------------------------------------------------------

    def _on_connect(self, _client: Any, _userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        fut = self._connack
        if fut is None or fut.done():
            return
        code, reason = _code(rc)
        if code >= 0x80:
            fut.set_exception(ConnectError(f"connection refused: {reason} (0x{code:02X})", code))
            return
        self.connected = True
        fut.set_result((bool(flags.session_present), props))

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, rc: Any, _props: Any) -> None:
        code, reason = _code(rc)
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(ConnectionLost(f"connection closed before CONNACK: {reason}"))
        acks, self._acks = self._acks, {}
        for fut in acks.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(reason))
        if self._closed is not None and not self._closed.done():
            self._closed.set_result((code, reason))
        if self.connected:
            self.connected = False
            self.events.link_lost(code, reason)

    def _on_message(self, _client: Any, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        self.events.link_message(Message(msg.topic, msg.payload, msg.qos, bool(msg.retain),
                                         properties_dict(props) if props else {}))

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, rc: Any, _props: Any) -> None:
        code, reason = _code(rc)
        self.events.link_published(mid, code, reason)

    def _on_ack(self, _client: Any, _userdata: Any, mid: int, rcs: Any, _props: Any) -> None:
        fut = self._acks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result([_code(rc) for rc in (rcs if isinstance(rcs, list) else [rcs])])

    # -- operations -------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool, properties: Any) -> int:
        info = self.client.publish(topic, payload, qos, retain, properties)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # pragma: no cover - the device keeps within paho's window
            raise NotConnected("paho's queue is full")
        return info.mid

    def subscribe(self, topics: list[tuple[str, Any]], properties: Any = None) -> asyncio.Future:
        """Send one SUBSCRIBE; the future gets [(reason code, name)] per filter."""
        rc, mid = self.client.subscribe(topics, properties=properties)
        return self._ack_future(rc, mid)

    def unsubscribe(self, filters: list[str]) -> asyncio.Future:
        rc, mid = self.client.unsubscribe(filters)
        return self._ack_future(rc, mid)

    def _ack_future(self, rc: int, mid: int | None) -> asyncio.Future:
        assert self._loop is not None
        fut = self._loop.create_future()
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            fut.set_exception(ConnectionLost(mqtt.error_string(rc)))
        else:
            self._acks[mid] = fut
        return fut

    async def disconnect(self, timeout: float) -> None:
        """Send DISCONNECT and wait until it is written (no will is published)."""
        if self._sock is None:
            return
        closed = self._closed
        self.client.disconnect()
        if closed is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await closed
        self._drop_socket()
        self.connected = False

    def wait_closed(self) -> asyncio.Future:
        assert self._closed is not None
        return self._closed
