"""Device: the AsyncDevice for ordinary threaded programs.

It owns one event-loop thread running an :class:`AsyncDevice` (the same code, not a second
implementation) and one callback thread: subscription, delta and connection callbacks run there in
order, so they may block and may call the device (``shadow.report()`` inside a delta callback
works) without stalling the network.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from thingcore.device.aio import AsyncDevice, Callback, DeviceStats
from thingcore.device.delivery import Delivery
from thingcore.device.errors import NotConnected
from thingcore.device.message import Payload
from thingcore.device.shadow import UNSET, AsyncShadow

log = logging.getLogger("thingcore.device")
T = TypeVar("T")


class _LoopThread:
    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

    def here(self) -> bool:
        return threading.current_thread() is self.thread

    def _check_open(self) -> None:
        if self.loop.is_closed() or not self.thread.is_alive():
            raise NotConnected("the device is disconnected; create a new one")

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.loop.is_closed() or not self.thread.is_alive():
            coro.close()
            self._check_open()
        if self.here():
            coro.close()
            raise RuntimeError("a blocking Device call from the device's network thread would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self.here():
            return fn(*args, **kwargs)
        self._check_open()
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                result.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return result.result()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            if not self.here():
                self.thread.join(10)


class Device:
    """A device connection for threaded programs; the same arguments as :class:`AsyncDevice`.

    ``connect``, ``subscribe``, ``unsubscribe``, ``disconnect`` and the shadow calls block until
    done; ``publish`` returns a :class:`Delivery` at once (``.wait()`` for the acknowledgement).
    """

    def __init__(self, endpoint: str, client_id: str, **options: Any) -> None:
        self._thread = _LoopThread(f"thingcore-device-{client_id}")
        self._callbacks = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"thingcore-cb-{client_id}")
        try:
            self._aio = AsyncDevice(endpoint, client_id, dispatch=self._dispatch, **options)
        except BaseException:
            self._thread.stop()
            self._callbacks.shutdown(wait=False)
            raise
        self._shadows: dict[tuple[str, str | None], Shadow] = {}

    def __repr__(self) -> str:
        return repr(self._aio).replace("AsyncDevice", "Device", 1)

    # callbacks, settings and state are the async device's
    on_connect = property(lambda self: self._aio.on_connect, lambda self, fn: setattr(self._aio, "on_connect", fn))
    on_disconnect = property(lambda self: self._aio.on_disconnect,
                             lambda self, fn: setattr(self._aio, "on_disconnect", fn))
    on_message = property(lambda self: self._aio.on_message, lambda self, fn: setattr(self._aio, "on_message", fn))

    @property
    def client_id(self) -> str:
        return self._aio.client_id

    @property
    def transport(self) -> str:
        return self._aio.transport

    @property
    def port(self) -> int:
        return self._aio.port

    @property
    def connected(self) -> bool:
        return self._aio.connected

    @property
    def stats(self) -> DeviceStats:
        return self._aio.stats

    @property
    def pending(self) -> int:
        return self._thread.call(lambda: self._aio.pending)

    def _dispatch(self, fn: Callback, args: tuple, done: Callable[[], None]) -> None:
        try:
            self._callbacks.submit(self._invoke, fn, args, done)
        except RuntimeError:  # shut down: the device is closed
            done()

    def _invoke(self, fn: Callback, args: tuple, done: Callable[[], None]) -> None:
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                asyncio.run_coroutine_threadsafe(result, self._thread.loop).result()  # type: ignore[arg-type]
        except Exception:
            log.exception("device callback %r failed", fn)
        finally:
            done()

    # -- the API ----------------------------------------------------------------------------------

    def connect(self, timeout: float | None = 30.0) -> None:
        self._thread.run(self._aio.connect(timeout))

    def publish(self, topic: str, payload: Payload = None, qos: int = 0, retain: bool = False,
                **properties: Any) -> Delivery:
        return self._thread.call(self._aio.publish, topic, payload, qos, retain, **properties)

    def subscribe(self, topic_filter: str, callback: Callback | None = None, qos: int = 1, **options: Any) -> int:
        return self._thread.run(self._aio.subscribe(topic_filter, callback, qos, **options))

    def unsubscribe(self, topic_filter: str, timeout: float | None = None) -> None:
        self._thread.run(self._aio.unsubscribe(topic_filter, timeout))

    def flush(self, timeout: float | None = None) -> bool:
        return self._thread.run(self._aio.flush(timeout))

    def shadow(self, name: str | None = None, *, thing: str | None = None) -> Shadow:
        aio = self._thread.call(self._aio.shadow, name, thing=thing)
        key = (aio.thing, aio.name)
        if key not in self._shadows:
            self._shadows[key] = Shadow(self, aio)
        return self._shadows[key]

    def disconnect(self, drain: float = 5.0) -> None:
        """Send the queue (up to ``drain`` s), DISCONNECT, then stop the device's threads."""
        if not self._thread.thread.is_alive():
            return
        try:
            self._thread.run(self._aio.disconnect(drain))
        finally:
            self._thread.stop()
            self._callbacks.shutdown(wait=threading.current_thread().name.startswith("thingcore-cb-") is False)

    def __enter__(self) -> Device:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()


class Shadow:
    """The blocking twin of :class:`AsyncShadow` (same methods, same documents, same errors)."""

    def __init__(self, device: Device, aio: AsyncShadow) -> None:
        self._device = device
        self._aio = aio

    def __repr__(self) -> str:
        return repr(self._aio).replace("AsyncShadow", "Shadow", 1)

    thing = property(lambda self: self._aio.thing)
    name = property(lambda self: self._aio.name)
    topic = property(lambda self: self._aio.topic)
    version = property(lambda self: self._aio.version)
    stale_deltas = property(lambda self: self._aio.stale_deltas)

    def get(self, *, timeout: float | None = None) -> dict[str, Any]:
        return self._device._thread.run(self._aio.get(timeout=timeout))

    def update(self, desired: Any = UNSET, reported: Any = UNSET, *, version: int | None = None,
               client_token: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        return self._device._thread.run(self._aio.update(desired, reported, version=version,
                                                         client_token=client_token, timeout=timeout))

    def report(self, reported: dict[str, Any] | None = None, /, **values: Any) -> dict[str, Any]:
        return self._device._thread.run(self._aio.report(reported, **values))

    def delete(self, *, timeout: float | None = None) -> dict[str, Any]:
        return self._device._thread.run(self._aio.delete(timeout=timeout))

    def on_delta(self, callback: Callback) -> None:
        self._device._thread.run(self._aio.on_delta(callback))
