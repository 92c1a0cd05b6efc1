"""Composition root: builds every part from the settings and runs them in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import Any

import uvicorn

from thingcore.auth import build_authenticator, build_authorizer, is_trivial
from thingcore.broker.core import Broker
from thingcore.broker.lifecycle import LifecycleEvents
from thingcore.broker.listeners import Listener, start_mqtt_listener
from thingcore.broker.tls import server_ssl_context
from thingcore.config import ConfigError, Settings
from thingcore.destinations.data import DataDestinations
from thingcore.destinations.local import destinations_of
from thingcore.http.websocket import accept_signed_websockets
from thingcore.registry import Registry
from thingcore.rules.engine import RulesEngine
from thingcore.services.unserved import UnservedTopics
from thingcore.shadow.service import ShadowService
from thingcore.storage import create_storage

log = logging.getLogger("thingcore")


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn inside our loop: the process's signals are ours, not uvicorn's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Server:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ready = False
        self.stopping = False
        self.listeners: list[Listener] = []
        self.http_port: int | None = None
        self._http: _EmbeddedUvicorn | None = None
        self._http_task: asyncio.Task | None = None
        self._stop_event = asyncio.Event()
        data_dir = settings.data_dir if settings.persistence else None
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        self.storage = create_storage(data_dir, synchronous=settings.sqlite_synchronous)
        auth = settings.auth
        require_cert = ["mqtts"] if settings.tls.require_client_cert else []
        self.authenticate = accept_signed_websockets(build_authenticator(
            allow_anonymous=auth.allow_anonymous, password_file=auth.password_file,
            require_client_cert_listeners=require_cert,
        ))
        try:
            authorize = build_authorizer([r.model_dump(exclude_none=True) for r in auth.acl])
        except ValueError as exc:  # a rule that cannot mean what it says: refuse to start, naming it
            raise ConfigError(f"in [[auth.acl]], {exc}") from None
        self.broker = Broker(settings, self.storage, self.authenticate, authorize,
                             authorize_is_trivial=is_trivial(authorize))
        self.lifecycle = LifecycleEvents(self.broker)
        self.registry = Registry(self.storage, settings)
        self.rules = RulesEngine(settings, self.broker, self.storage)
        self.metric_collectors: list[Any] = [self.rules.collector]  # read by /metrics at scrape time
        self.shadows = ShadowService(self.broker, self.storage)
        self.unserved = UnservedTopics(self.broker)  # jobs, defender, provisioning: answered on /rejected
        self.outputs = destinations_of(self.broker, settings)  # objects, metrics, alarms, logs, sns, search
        self.metric_collectors.append(self.outputs.metrics)
        self.data = DataDestinations(settings, self.storage, self.broker)  # tables, streams, queues of actions
        self.rules.services.tables = self.data.tables

    def listener_info(self) -> list[dict[str, Any]]:
        info = [{"name": lst.name, "host": lst.host, "port": lst.port} for lst in self.listeners]
        if self.http_port is not None:
            info.append({"name": "http", "host": self.settings.host, "port": self.http_port})
        return info

    async def start(self) -> None:
        s = self.settings
        await self.storage.open()
        await self.broker.start()
        await self.shadows.start()
        self.unserved.start()
        self.lifecycle.start()
        await self.rules.start(shadows=getattr(self, "shadows", None), registry=self.registry)
        self.listeners.append(await start_mqtt_listener(self.broker, "mqtt", s.host, s.mqtt_port))
        if s.tls.enabled:
            try:
                ctx = server_ssl_context(s.tls.certfile, s.tls.keyfile, cafile=s.tls.cafile,
                                         require_client_cert=s.tls.require_client_cert)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot load the TLS certificate: {exc}") from exc
            self.listeners.append(await start_mqtt_listener(self.broker, "mqtts", s.host, s.mqtts_port, ctx))
        await self._start_http()
        self.ready = True
        log.info("thingcore is ready (data in %s)", s.data_dir if s.persistence else "memory")

    async def _start_http(self) -> None:
        from thingcore.http.app import create_app
        from thingcore.http.connections import bounded_protocol

        s = self.settings
        tls = s.http.tls
        # proxy_headers off: uvicorn would believe X-Forwarded-For from 127.0.0.1; the guard middleware
        # believes it only from [http] trusted_proxies
        config = uvicorn.Config(create_app(self), host=s.host, port=s.http_port, log_level="warning",
                                lifespan="off", access_log=False, loop="none", proxy_headers=False,
                                http=bounded_protocol(s.http.idle_timeout, s.http.max_connections),
                                timeout_keep_alive=s.http.idle_timeout,  # type: ignore[arg-type]
                                ssl_certfile=s.http.certfile if tls else None, ssl_keyfile=s.http.keyfile,
                                ws="websockets-sansio", ws_max_size=2 * s.limits.max_packet_size,
                                ws_per_message_deflate=False, ws_ping_interval=None)
        self._http = _EmbeddedUvicorn(config)
        self._http_task = asyncio.create_task(self._http.serve())
        while not self._http.started:
            if self._http_task.done():
                exc = self._http_task.exception()
                raise ConfigError(f"HTTP listener could not start on {s.host}:{s.http_port}: {exc or 'bind failed'}")
            await asyncio.sleep(0.01)
        sock = self._http.servers[0].sockets[0]
        self.http_port = sock.getsockname()[1]
        log.info("http listener on %s://%s:%d (/healthz, /metrics, /mqtt)", "https" if tls else "http", s.host,
                 self.http_port)

    def request_stop(self) -> None:
        self._stop_event.set()

    async def wait(self) -> None:
        await self._stop_event.wait()

    async def stop(self) -> None:
        """Stop accepting, tell clients (v5 0x8B), flush state to disk."""
        if self.stopping:
            return
        self.stopping = True
        self.ready = False
        log.info("shutting down")
        for lst in self.listeners:
            lst.close()
        await self.shadows.stop()
        self.unserved.stop()
        await self.rules.stop(self.settings.shutdown_grace)
        await self.broker.stop(self.settings.shutdown_grace)
        self.lifecycle.stop()
        if self._http is not None:
            self._http.should_exit = True
            if self._http_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._http_task, 5)
        await self.data.close()
        await asyncio.to_thread(self.outputs.close)
        await self.storage.close()
        log.info("stopped")


async def serve(settings: Settings) -> None:
    server = Server(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, server.request_stop)
    try:
        await server.start()
    except OSError as exc:
        await server.stop()
        raise ConfigError(f"cannot start: {exc}") from exc
    except BaseException:
        await server.stop()
        raise
    await server.wait()
    await server.stop()


def raise_fd_limit() -> None:
    """Every connection is a file descriptor: lift the soft RLIMIT_NOFILE to the hard limit."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open file limit from %d to %d: %s", soft, target, exc)
    else:
        log.info("open file limit raised from %d to %d", soft, target)


def run(settings: Settings) -> None:
    raise_fd_limit()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every platform we support
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))
