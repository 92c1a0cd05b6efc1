"""TCP and TLS listeners: asyncio servers whose protocol is a broker `Connection`."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from thingcore.broker.connection import Connection
from thingcore.broker.core import Broker
from thingcore.broker.handshake import tls_factory

log = logging.getLogger("thingcore.listeners")


@dataclass(slots=True)
class Listener:
    name: str
    host: str
    port: int
    server: asyncio.AbstractServer

    def close(self) -> None:
        self.server.close()


async def start_mqtt_listener(broker: Broker, name: str, host: str, port: int,
                              ssl_context: ssl.SSLContext | None = None) -> Listener:
    """Bind and start accepting; the returned port is the real one when 0 was asked for."""
    loop = asyncio.get_running_loop()

    def factory() -> Connection:
        return Connection(broker, name)

    protocol_factory: Callable[[], asyncio.BaseProtocol] = factory
    if ssl_context is not None:  # TLS by our own SSLProtocol, so that a refused handshake is logged and counted
        def refused() -> None:
            broker.stats.tls_handshakes_refused += 1

        protocol_factory = tls_factory(loop, factory, ssl_context, broker.connect_timeout, name, refused)
    server = await loop.create_server(protocol_factory, host, port, backlog=4096, reuse_address=True)
    sock = server.sockets[0]
    for s in server.sockets:
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
    real_port = sock.getsockname()[1]
    scheme = "mqtts" if ssl_context else "mqtt"
    log.info("%s listener on %s://%s:%d", name, scheme, host, real_port)
    return Listener(name, host, real_port, server)
