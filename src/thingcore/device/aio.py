"""AsyncDevice: the whole device logic on one asyncio event loop (the threaded ``Device`` drives this).

What a device needs beyond a bare MQTT client lives here, once: a supervisor that reconnects with
back-off and jitter, a registry of subscriptions restored after every clean reconnect, a bounded
queue that holds QoS 1 publishes while offline and feeds paho no more than an in-flight window, the
connect/disconnect/message callbacks, and the shadow clients. The network is either an
:class:`MqttLink` (MQTT over TCP, TLS or WebSockets) or an :class:`HttpLink` (HTTP publish).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from thingcore.device import sigv4
from thingcore.device.delivery import Delivery, Outgoing, PublishQueue
from thingcore.device.errors import (
    ConnectError,
    ConnectTimeout,
    MessageDropped,
    NotConnected,
    OperationTimeout,
    PublishError,
    SubscribeError,
    UnsupportedOperation,
)
from thingcore.device.http_link import HttpLink, TransientHTTPError
from thingcore.device.message import Message, Payload, encode_payload, normalize_properties, paho_properties
from thingcore.device.mqtt_link import CONNECT_ERRORS, ConnectionLost, MqttLink
from thingcore.device.options import (
    QUEUE_POLICIES,
    TRANSPORTS,
    AwsCredentials,
    Backoff,
    Will,
    check_choice,
    default_port,
    tls_context,
)
from thingcore.device.topics import TopicMatcher, check_filter, check_topic

if TYPE_CHECKING:
    from thingcore.device.shadow import AsyncShadow

log = logging.getLogger("thingcore.device")

Callback = Callable[..., Any]
#: dispatch(fn, args, done): run fn(*args) somewhere, then call done() (from any thread)
Dispatch = Callable[[Callback, tuple, Callable[[], None]], None]
MAX_FILTERS_PER_SUBSCRIBE = 8  # AWS IoT's limit per SUBSCRIBE packet
#: CONNACK codes that another attempt with the same settings cannot fix (first connection only)
PERMANENT_REFUSALS = frozenset({0x84, 0x85, 0x86, 0x87, 0x8C})


@dataclass(frozen=True, slots=True)
class Connected:
    """Passed to ``on_connect``."""

    session_present: bool
    reconnect: bool  # False for the first connection of this device object
    properties: Any = None  # paho CONNACK properties (MQTT 5)


@dataclass(frozen=True, slots=True)
class Disconnected:
    """Passed to ``on_disconnect``."""

    reason_code: int
    reason: str
    will_reconnect: bool


@dataclass(slots=True)
class DeviceStats:
    connects: int = 0
    disconnects: int = 0
    published: int = 0  # publish() calls accepted
    delivered: int = 0  # acknowledged (QoS 1/2) or written (QoS 0)
    dropped: int = 0  # QoS 0 while offline, queue overflow, closed with messages pending
    failed: int = 0  # refused by the server
    received: int = 0
    reading_paused: int = 0  # times the socket was left unread because callbacks fell max_backlog behind


@dataclass(slots=True, eq=False)
class _Subscription:
    topic_filter: str
    callback: Callback | None
    qos: int
    options: dict[str, Any]
    internal: bool  # the SDK's own (shadow responses): called on the loop, never through dispatch
    matcher: TopicMatcher
    ready: asyncio.Future | None = None
    active: bool = False  # acknowledged in the current MQTT session
    granted: int | None = None

    def paho_spec(self, v5: bool) -> tuple[str, Any]:
        if not v5:
            return self.topic_filter, self.qos
        return self.topic_filter, SubscribeOptions(qos=self.qos, noLocal=self.options["no_local"],
                                                   retainAsPublished=self.options["retain_as_published"],
                                                   retainHandling=self.options["retain_handling"])


@dataclass(slots=True)
class _Background:
    tasks: set[asyncio.Task] = field(default_factory=set)

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("device background task failed", exc_info=task.exception())


class AsyncDevice:
    """A device connection for asyncio programs. See docs/device-sdk.md for the whole API.

    ``publish()`` is a plain method returning a :class:`Delivery` (``await`` it to wait for the
    acknowledgement); ``connect``, ``subscribe``, ``unsubscribe``, ``disconnect`` and the shadow
    calls are coroutines. Callbacks may be plain functions or coroutine functions.
    """

    def __init__(
        self,
        endpoint: str,
        client_id: str,
        *,
        transport: str = "mqtt",
        port: int | None = None,
        protocol: int = 5,
        tls: bool | None = None,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        alpn: list[str] | None = None,
        ssl_context: Any = None,
        username: str | None = None,
        password: str | None = None,
        aws_credentials: AwsCredentials | None = None,
        keepalive: int = 60,
        clean_session: bool = True,
        session_expiry: int | None = None,
        will: Will | None = None,
        queue_size: int = 1000,
        queue_full: str = "error",
        inflight: int = 20,
        max_backlog: int = 1000,
        backoff: Backoff | None = None,
        connect_timeout: float = 10.0,
        operation_timeout: float = 10.0,
        ws_path: str = "/mqtt",
        ws_headers: dict[str, str] | None = None,
        on_connect: Callback | None = None,
        on_disconnect: Callback | None = None,
        on_message: Callback | None = None,
        dispatch: Dispatch | None = None,
    ) -> None:
        check_choice("transport", transport, TRANSPORTS)
        check_choice("protocol", protocol, (5, 4))
        check_choice("queue_full", queue_full, QUEUE_POLICIES)
        if not client_id and transport != "http":
            raise ValueError("client_id must not be empty")
        if inflight < 1:
            raise ValueError("inflight must be at least 1")
        self.endpoint = endpoint
        self.client_id = client_id
        self.transport = transport
        self.protocol = protocol
        use_tls = bool(tls) or (tls is None and (ca is not None or cert is not None or ssl_context is not None))
        self.port = port or default_port(transport, use_tls, cert is not None)
        if use_tls and alpn is None and transport == "mqtt" and self.port == 443 and cert is not None:
            alpn = ["x-amzn-mqtt-ca"]  # AWS IoT: MQTT with a client certificate on 443
        self._ssl = (ssl_context or tls_context(ca, cert, key, alpn)) if use_tls else None
        self.aws_credentials = aws_credentials
        self.connect_timeout = connect_timeout
        self.operation_timeout = operation_timeout
        self.backoff = backoff or Backoff()
        self.clean_session = clean_session
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.on_message = on_message  # messages that match no subscription (e.g. from a resumed session)
        self.stats = DeviceStats()
        self.connected = False
        self._dispatch = dispatch or self._call_here
        # callbacks dispatched but not finished; past max_backlog the socket is not read (back-pressure)
        self.max_backlog = max(1, max_backlog)
        self._dispatched = 0
        self._finished = 0
        self._reading_paused = False
        self._resume_scheduled = False
        self._queue = PublishQueue(queue_size, queue_full)
        self._window = inflight if transport != "http" else 1  # HTTP: one QoS 1 request at a time keeps order
        self._inflight = 0
        self._sent: dict[int, Delivery] = {}
        self._subs: dict[str, _Subscription] = {}
        self._shadows: dict[tuple[str, str | None], AsyncShadow] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bg = _Background()
        self._supervisor: asyncio.Task | None = None
        self._connected_event: asyncio.Event | None = None
        self._refused: asyncio.Future | None = None
        self._closing = False
        self._closed = False
        self._last_error: BaseException | None = None
        self._warned_v4_props = False
        self._rng = random.Random()
        self._ws_path = ws_path
        self._ws_headers = ws_headers
        self._http: HttpLink | None = None
        self._link: MqttLink | None = None
        if transport == "http":
            self._http = HttpLink(endpoint, self.port, tls=self._ssl, credentials=aws_credentials,
                                  timeout=operation_timeout)
        else:
            self._link = MqttLink(self._make_client(username, password, keepalive, session_expiry, will, inflight),
                                  self)

    def __repr__(self) -> str:
        state = "connected" if self.connected else ("closed" if self._closed else "offline")
        return f"<{type(self).__name__} {self.client_id!r} {self.transport}://{self.endpoint}:{self.port} {state}>"

    def _make_client(self, username: str | None, password: str | None, keepalive: int, session_expiry: int | None,
                     will: Will | None, inflight: int) -> mqtt.Client:
        v5 = self.protocol == 5
        kwargs: dict[str, Any] = {"client_id": self.client_id, "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                                  "transport": "websockets" if self.transport == "websockets" else "tcp",
                                  "reconnect_on_failure": False}
        if not v5:
            kwargs["clean_session"] = self.clean_session
        client = mqtt.Client(CallbackAPIVersion.VERSION2, **kwargs)
        client.enable_logger(logging.getLogger("thingcore.device.paho"))
        client.connect_timeout = self.connect_timeout  # TCP connect, TLS and WebSocket handshakes
        client.max_inflight_messages_set(inflight)
        client.max_queued_messages_set(0)
        if username is not None or password is not None:
            client.username_pw_set(username or "", password)
        if self._ssl is not None:
            client.tls_set_context(self._ssl)
        if will is not None:
            client.will_set(will.topic, encode_payload(will.payload), will.qos, will.retain)
        props = None
        if v5:
            expiry = session_expiry if session_expiry is not None else (0 if self.clean_session else 3600)
            if expiry:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = expiry
            client.connect_async(self.endpoint, self.port, keepalive, clean_start=self.clean_session,
                                 properties=props)
        else:
            client.connect_async(self.endpoint, self.port, keepalive)
        return client

    # -- the loop this device lives on ------------------------------------------------------------

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError("AsyncDevice must be used inside a running asyncio event loop "
                                   "(use thingcore.device.Device from threads)") from None
            self._connected_event = asyncio.Event()
        return self._loop

    def _call_here(self, fn: Callback, args: tuple, done: Callable[[], None] | None = None) -> None:
        """Default dispatch: call on the loop; a coroutine result becomes a task."""
        try:
            result = fn(*args)
        except Exception:
            log.exception("device callback %r failed", fn)
            result = None
        if inspect.isawaitable(result):
            task = self._bg.spawn(result)
            if done is not None:
                task.add_done_callback(lambda _t: done())
        elif done is not None:
            done()

    def _notify(self, fn: Callback | None, *args: Any, internal: bool = False) -> None:
        if fn is None:
            return
        if internal:  # the SDK's own (shadow answers): inline, never held back
            self._call_here(fn, args)
            return
        self._dispatched += 1
        self._dispatch(fn, args, self._callback_done)
        if not self._reading_paused and self._dispatched - self._finished > self.max_backlog:
            self._reading_paused = True
            self.stats.reading_paused += 1
            if self._link is not None:
                self._link.pause_reading()

    def _callback_done(self) -> None:
        """A dispatched callback finished (on any thread): resume reading once the backlog is half gone."""
        self._finished += 1
        if (self._reading_paused and not self._resume_scheduled
                and self._dispatched - self._finished <= self.max_backlog // 2 and self._loop is not None):
            self._resume_scheduled = True
            self._loop.call_soon_threadsafe(self._resume_reading)

    def _resume_reading(self) -> None:
        self._resume_scheduled = False
        if self._reading_paused and self._dispatched - self._finished <= self.max_backlog // 2:
            self._reading_paused = False
            if self._link is not None:
                self._link.resume_reading()

    # -- connecting -------------------------------------------------------------------------------

    async def connect(self, timeout: float | None = 30.0) -> None:
        """Connect, retrying with back-off until ``timeout`` seconds have passed (None: forever).

        Raises :class:`ConnectError` at once when the server refuses the credentials or client id,
        :class:`ConnectTimeout` (naming the last error) when no attempt succeeded in time. Once
        connected, the device reconnects by itself until :meth:`disconnect`.
        """
        loop = self._bind_loop()
        if self._closed:
            raise NotConnected("this device was disconnected; create a new one")
        if self._http is not None:
            self.connected = True
            self._pump()  # QoS 1 publishes made before connect()
            return
        assert self._connected_event is not None
        if self._supervisor is None or self._supervisor.done():
            self._refused = loop.create_future()
            self._refused.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._supervisor = loop.create_task(self._supervise(), name=f"device-{self.client_id}")
        waiter = loop.create_task(self._connected_event.wait())
        supervisor = self._supervisor
        try:
            done, _ = await asyncio.wait({waiter, self._refused, supervisor}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if waiter in done or self.connected:
            return
        if supervisor in done and not supervisor.cancelled() and supervisor.exception() is not None:
            raise supervisor.exception()  # type: ignore[misc]  # a bug, not a network condition: show it
        await self._stop_supervisor()
        if self._refused in done:
            raise self._refused.exception()  # type: ignore[misc]
        raise ConnectTimeout(f"could not connect to {self._where()} within {timeout} s"
                             f"{f': {self._last_error}' if self._last_error else ''}")

    def _where(self) -> str:
        scheme = {"mqtt": "mqtts" if self._ssl else "mqtt", "websockets": "wss" if self._ssl else "ws"}
        return f"{scheme.get(self.transport, self.transport)}://{self.endpoint}:{self.port}"

    def _prepare_attempt(self) -> None:
        link = self._link
        assert link is not None
        if self.transport == "websockets":
            path = self._ws_path
            if self.aws_credentials is not None:
                host = sigv4.host_header(self.endpoint, self.port, self._ssl is not None)
                path = sigv4.presign_websocket(self.aws_credentials, host, path)
            link.client.ws_set_options(path=path, headers=self._ws_headers)

    async def _supervise(self) -> None:
        link = self._link
        assert link is not None and self._loop is not None
        loop = self._loop
        attempt = 0
        ever_connected = False
        while not self._closing:
            self._prepare_attempt()
            try:
                session_present, props = await link.connect(self.connect_timeout)
            except ConnectError as exc:
                self._last_error = exc
                if not ever_connected and exc.reason_code in PERMANENT_REFUSALS:
                    if self._refused is not None and not self._refused.done():
                        self._refused.set_exception(exc)
                    return
                log.log(logging.DEBUG if attempt else logging.INFO, "%s: %s", self.client_id, exc)
            except (TimeoutError, ConnectionLost, *CONNECT_ERRORS) as exc:
                self._last_error = exc
                if not ever_connected and isinstance(exc, ssl.SSLCertVerificationError):
                    # the server's certificate will not become trustworthy by retrying
                    if self._refused is not None and not self._refused.done():
                        self._refused.set_exception(ConnectError(f"TLS: cannot verify the server of "
                                                                 f"{self._where()}: {exc}"))
                    return
                log.log(logging.DEBUG if attempt else logging.INFO, "%s: cannot connect to %s: %r",
                        self.client_id, self._where(), exc)
            else:
                ever_connected = True
                started = loop.time()
                self._link_up(session_present, props)
                await asyncio.shield(link.wait_closed())
                if loop.time() - started >= self.backoff.reset_after:
                    attempt = 0
            if self._closing:
                break
            delay = self.backoff.delay(attempt, self._rng)
            attempt += 1
            log.debug("%s: reconnecting in %.2f s (attempt %d)", self.client_id, delay, attempt)
            await asyncio.sleep(delay)

    async def _stop_supervisor(self) -> None:
        task, self._supervisor = self._supervisor, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _link_up(self, session_present: bool, props: Any) -> None:
        self.connected = True
        assert self._connected_event is not None and self._loop is not None
        self._connected_event.set()
        self.stats.connects += 1
        receive_max = getattr(props, "ReceiveMaximum", None) if props is not None else None
        if receive_max:
            self._window = max(1, min(self._window, receive_max))
        pending = [s for s in self._subs.values() if not (session_present and s.active)]
        for sub in pending:
            sub.active = False
        if pending:
            self._bg.spawn(self._send_subscriptions(pending))
        if self._reading_paused and self._link is not None:
            self._link.pause_reading()  # still behind with callbacks from the last connection
        # after paho has re-sent what was in flight when the last connection dropped, keeping order
        self._loop.call_soon(self._pump)
        self._notify(self.on_connect, Connected(session_present, self.stats.connects > 1, props))

    # -- the link's events ------------------------------------------------------------------------

    def link_lost(self, reason_code: int, reason: str) -> None:
        self.connected = False
        if self._connected_event is not None:
            self._connected_event.clear()
        self.stats.disconnects += 1
        for mid in [m for m, d in self._sent.items() if d.qos == 0]:
            self.stats.dropped += 1
            self._sent.pop(mid).resolve(NotConnected("the connection closed before the QoS 0 message was sent"))
        if not self._closing:
            log.info("%s: connection lost: %s (0x%02X)", self.client_id, reason, reason_code)
        self._notify(self.on_disconnect, Disconnected(reason_code, reason, not self._closing))

    def link_published(self, mid: int, reason_code: int, reason: str) -> None:
        delivery = self._sent.pop(mid, None)
        if delivery is None:
            return
        if delivery.qos:
            self._inflight -= 1
        if reason_code >= 0x80:
            self.stats.failed += 1
            delivery.resolve(PublishError(f"publish to {delivery.topic!r} refused: {reason} (0x{reason_code:02X})",
                                          reason_code=reason_code))
        else:
            self.stats.delivered += 1
            delivery.resolve()
        if delivery.qos:
            self._pump()

    def link_message(self, message: Message) -> None:
        self.stats.received += 1
        matched = False
        for sub in list(self._subs.values()):
            if sub.callback is not None and sub.matcher.matches(message.topic):
                matched = True
                self._notify(sub.callback, message, internal=sub.internal)
        if not matched:
            self._notify(self.on_message, message)

    # -- publishing -------------------------------------------------------------------------------

    def publish(self, topic: str, payload: Payload = None, qos: int = 0, retain: bool = False,
                **properties: Any) -> Delivery:
        """Publish; returns at once with a :class:`Delivery` (await it for the acknowledgement).

        ``payload``: bytes, str, or anything JSON-serialisable. ``properties`` (MQTT 5 and HTTP):
        ``content_type``, ``response_topic``, ``correlation_data``, ``message_expiry`` (seconds),
        ``payload_format_indicator`` (0/1), ``user_properties`` (dict or pairs); ignored with a
        warning on MQTT 3.1.1. QoS 0 while offline is dropped (the delivery fails with
        :class:`NotConnected`); QoS 1/2 wait in the bounded queue and go out in order.
        """
        loop = self._bind_loop()
        if self._closed or self._closing:
            raise NotConnected("the device is disconnected")
        check_topic(topic)
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")
        data = encode_payload(payload)
        props = normalize_properties(properties)
        if props and self.protocol == 4 and self.transport != "http":
            if not self._warned_v4_props:
                log.warning("%s: MQTT 3.1.1 has no message properties; %s ignored", self.client_id,
                            ", ".join(props))
                self._warned_v4_props = True
            props = {}
        delivery = Delivery(loop, topic, qos)
        self.stats.published += 1
        if qos == 0:
            if self._http is not None:
                self._bg.spawn(self._http_send(Outgoing(topic, data, 0, retain, props, delivery)))
            elif not self.connected:
                self.stats.dropped += 1
                delivery.resolve(NotConnected(f"offline: QoS 0 publish to {topic!r} dropped"))
            else:
                self._send(Outgoing(topic, data, 0, retain, props, delivery))
            return delivery
        before = self._queue.dropped
        self._queue.put(Outgoing(topic, data, qos, retain, props, delivery))
        self.stats.dropped += self._queue.dropped - before
        self._pump()
        return delivery

    def _send(self, item: Outgoing) -> None:
        assert self._link is not None
        mid = self._link.publish(item.topic, item.payload, item.qos, item.retain,
                                 paho_properties(item.properties) if self.protocol == 5 else None)
        item.delivery.mid = mid
        self._sent[mid] = item.delivery

    def _pump(self) -> None:
        """Hand queued QoS 1/2 publishes to the network, oldest first, within the in-flight window."""
        queue = self._queue
        while queue and self.connected and self._inflight < self._window:
            item = queue.popleft()
            self._inflight += 1
            if self._http is not None:
                self._bg.spawn(self._http_send(item))
            else:
                self._send(item)

    async def _http_send(self, item: Outgoing) -> None:
        """One HTTP publish; a QoS 1 one is retried with back-off while the server is unreachable or failing."""
        assert self._http is not None
        attempt = 0
        try:
            while True:
                try:
                    await self._http.publish(item.topic, item.payload, item.qos, item.retain, item.properties)
                except TransientHTTPError as exc:
                    self._last_error = exc
                    if item.qos == 0 or self._closing:
                        self.stats.dropped += 1
                        item.delivery.resolve(NotConnected(str(exc)))
                        return
                    await asyncio.sleep(self.backoff.delay(attempt, self._rng))
                    attempt += 1
                    continue
                except (PublishError, ConnectError) as exc:
                    self.stats.failed += 1
                    item.delivery.resolve(exc)
                    return
                self.stats.delivered += 1
                item.delivery.resolve()
                return
        except asyncio.CancelledError:
            item.delivery.resolve(MessageDropped(f"device closed before the publish to {item.topic!r} was sent"))
            raise
        finally:
            if item.qos:
                self._inflight -= 1
                self._pump()

    @property
    def pending(self) -> int:
        """QoS 1/2 publishes not yet acknowledged (queued or in flight)."""
        return len(self._queue) + self._inflight

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every QoS 1/2 publish made so far is acknowledged; False if ``timeout`` passed first."""
        loop = self._bind_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self.pending:
            if deadline is not None and loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    # -- subscriptions ----------------------------------------------------------------------------

    async def subscribe(self, topic_filter: str, callback: Callback | None = None, qos: int = 1, *,
                        no_local: bool = False, retain_as_published: bool = False, retain_handling: int = 0,
                        timeout: float | None = None) -> int:
        """Subscribe and wait for the SUBACK; returns the granted QoS. ``callback(message)`` gets every
        message matching the filter. The subscription is restored after each reconnect. Offline, it
        is sent when the connection is back (this call waits up to ``timeout``)."""
        sub = self._register(topic_filter, callback, qos, no_local, retain_as_published, retain_handling, False)
        granted = await self._activate([sub], timeout)
        return granted[0]

    def _register(self, topic_filter: str, callback: Callback | None, qos: int, no_local: bool,
                  retain_as_published: bool, retain_handling: int, internal: bool) -> _Subscription:
        loop = self._bind_loop()
        if self._http is not None:
            raise UnsupportedOperation("HTTP is publish-only (as on AWS IoT): use transport='mqtt' or "
                                       "'websockets' to subscribe")
        if self._closed or self._closing:
            raise NotConnected("the device is disconnected")
        check_filter(topic_filter)
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")
        if retain_handling not in (0, 1, 2):
            raise ValueError("retain_handling must be 0, 1 or 2")
        sub = _Subscription(topic_filter, callback, qos,
                            {"no_local": no_local, "retain_as_published": retain_as_published,
                             "retain_handling": retain_handling}, internal, TopicMatcher(topic_filter))
        sub.ready = loop.create_future()
        sub.ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._subs[topic_filter] = sub
        return sub

    async def _activate(self, subs: list[_Subscription], timeout: float | None) -> list[int]:
        if self.connected:
            self._bg.spawn(self._send_subscriptions(subs))
        futures = [s.ready for s in subs]
        try:
            async with asyncio.timeout(self.operation_timeout if timeout is None else timeout):
                return list(await asyncio.gather(*(asyncio.shield(f) for f in futures)))  # type: ignore[arg-type]
        except TimeoutError:
            raise OperationTimeout(f"no SUBACK for {', '.join(s.topic_filter for s in subs)} "
                                   f"({'connected' if self.connected else 'offline'}); the subscription stays "
                                   "registered and is sent on the next connection") from None

    async def _send_subscriptions(self, subs: list[_Subscription]) -> None:
        link = self._link
        assert link is not None
        v5 = self.protocol == 5
        for i in range(0, len(subs), MAX_FILTERS_PER_SUBSCRIBE):
            batch = [s for s in subs[i:i + MAX_FILTERS_PER_SUBSCRIBE] if self._subs.get(s.topic_filter) is s]
            if not batch or not self.connected:
                continue
            try:
                results = await link.subscribe([s.paho_spec(v5) for s in batch])
            except ConnectionLost:
                return  # sent again on the next connection
            for sub, (code, reason) in zip(batch, results, strict=False):
                assert sub.ready is not None
                if code >= 0x80:
                    if self._subs.get(sub.topic_filter) is sub:
                        del self._subs[sub.topic_filter]
                    log.warning("%s: subscription to %r refused: %s", self.client_id, sub.topic_filter, reason)
                    if not sub.ready.done():
                        sub.ready.set_exception(SubscribeError(sub.topic_filter, code, reason))
                    continue
                sub.active = True
                sub.granted = code
                if not sub.ready.done():
                    sub.ready.set_result(code)

    async def unsubscribe(self, topic_filter: str, timeout: float | None = None) -> None:
        """Forget the subscription and, when connected, send UNSUBSCRIBE and wait for the UNSUBACK."""
        self._bind_loop()
        sub = self._subs.pop(topic_filter, None)
        if sub is None or not self.connected or self._link is None:
            return
        try:
            async with asyncio.timeout(self.operation_timeout if timeout is None else timeout):
                await self._link.unsubscribe([topic_filter])
        except ConnectionLost:
            pass
        except TimeoutError:
            raise OperationTimeout(f"no UNSUBACK for {topic_filter!r}") from None

    # -- shadows ----------------------------------------------------------------------------------

    def shadow(self, name: str | None = None, *, thing: str | None = None) -> AsyncShadow:
        """The client of the thing's classic shadow (``name=None``) or of a named shadow. ``thing``
        defaults to the client id (AWS IoT's convention). One object per shadow per device."""
        from thingcore.device.shadow import AsyncShadow

        thing_name = thing or self.client_id
        key = (thing_name, name)
        if key not in self._shadows:
            self._shadows[key] = AsyncShadow(self, thing_name, name)
        return self._shadows[key]

    # -- closing ----------------------------------------------------------------------------------

    async def disconnect(self, drain: float = 5.0) -> None:
        """Wait up to ``drain`` seconds for queued QoS 1 publishes (if connected), then send DISCONNECT
        and stop reconnecting. What is still unsent then fails with :class:`MessageDropped`."""
        if self._closed or self._loop is None:
            self._closed = True
            if self._http is not None:
                await self._http.close()
            return
        if self.connected and drain > 0:
            await self.flush(drain)
        self._closing = True
        await self._stop_supervisor()
        if self._link is not None:
            await self._link.disconnect(self.connect_timeout)
        if self._http is not None:
            await self._http.close()
        self.connected = False
        self._closed = True
        for shadow in self._shadows.values():
            shadow.close()

        def dropped(item: Outgoing) -> BaseException:
            return MessageDropped(f"device closed before the publish to {item.topic!r} was sent")

        self.stats.dropped += len(self._queue) + len(self._sent)
        self._queue.fail_all(dropped)
        sent, self._sent = self._sent, {}
        for delivery in sent.values():
            delivery.resolve(MessageDropped(f"device closed before {delivery.topic!r} was acknowledged"))
        for task in list(self._bg.tasks):
            task.cancel()

    async def __aenter__(self) -> AsyncDevice:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()
