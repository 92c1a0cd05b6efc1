"""The outcome of one publish, and the bounded queue QoS 1 publishes wait in until the network takes them."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from thingcore.device.errors import MessageDropped, OperationTimeout, QueueFull


def _retrieve(future: asyncio.Future) -> None:
    """Mark a failure as seen: an unawaited dropped QoS 0 publish is normal, not a logged error."""
    if not future.cancelled():
        future.exception()


class Delivery:
    """What became of a publish. ``await delivery`` (asyncio) or ``delivery.wait(timeout)`` (threads)
    returns once the server acknowledged it (QoS 1/2: PUBACK/PUBCOMP; QoS 0: written to the socket;
    HTTP: 200) and raises if it failed (dropped, refused, device closed)."""

    __slots__ = ("_future", "_loop", "mid", "qos", "topic")

    def __init__(self, loop: asyncio.AbstractEventLoop, topic: str, qos: int) -> None:
        self.topic = topic
        self.qos = qos
        self.mid: int | None = None
        self._loop = loop
        self._future: asyncio.Future[None] = loop.create_future()
        self._future.add_done_callback(_retrieve)

    def __repr__(self) -> str:
        state = "pending" if not self.done() else ("failed" if self.exception() else "delivered")
        return f"<Delivery {self.topic!r} qos={self.qos} {state}>"

    def done(self) -> bool:
        return self._future.done()

    def exception(self) -> BaseException | None:
        """The failure, or None while pending or after success."""
        if not self._future.done():
            return None
        if self._future.cancelled():
            return MessageDropped("cancelled")
        return self._future.exception()

    @property
    def delivered(self) -> bool:
        return self._future.done() and self.exception() is None

    def __await__(self) -> Generator[Any, None, None]:
        return asyncio.shield(self._future).__await__()

    def wait(self, timeout: float | None = None) -> None:
        """Block the calling thread until the outcome is known (not from the device's network thread)."""
        if self._future.done():
            exc = self.exception()
            if exc is not None:
                raise exc
            return
        if _running_loop() is self._loop:
            raise RuntimeError("Delivery.wait() would block the device's own event loop; use await")
        cf = asyncio.run_coroutine_threadsafe(self._wait(), self._loop)
        try:
            cf.result(timeout)
        except concurrent.futures.TimeoutError:
            cf.cancel()
            raise OperationTimeout(f"publish to {self.topic!r} not acknowledged within {timeout} s") from None

    async def _wait(self) -> None:
        await asyncio.shield(self._future)

    def add_done_callback(self, fn: Any) -> None:
        """``fn(delivery)`` once the outcome is known (called on the device's event loop)."""
        self._future.add_done_callback(lambda _f: fn(self))

    # -- for the device ---------------------------------------------------------------------------

    def resolve(self, exc: BaseException | None = None) -> None:
        if self._future.done():
            return
        if exc is None:
            self._future.set_result(None)
        else:
            self._future.set_exception(exc)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@dataclass(slots=True)
class Outgoing:
    """A publish waiting for the network."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: dict[str, Any]
    delivery: Delivery


class PublishQueue:
    """Bounded FIFO of QoS 1/2 publishes not yet handed to the network (offline, or beyond the in-flight
    window). Full: ``"error"`` raises :class:`QueueFull` to the publisher, ``"drop_oldest"`` fails the
    oldest queued message's delivery with :class:`MessageDropped`, ``"drop_new"`` fails the new one's."""

    def __init__(self, maxsize: int, policy: str = "error") -> None:
        if maxsize < 1:
            raise ValueError("queue_size must be at least 1")
        self.maxsize = maxsize
        self.policy = policy
        self.dropped = 0
        self._items: deque[Outgoing] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Outgoing) -> None:
        if len(self._items) >= self.maxsize:
            if self.policy == "error":
                raise QueueFull(f"{self.maxsize} QoS 1 publishes are already waiting to be sent "
                                f"(queue_size); publish to {item.topic!r} refused")
            self.dropped += 1
            if self.policy == "drop_new":
                item.delivery.resolve(MessageDropped(f"queue full ({self.maxsize}): publish to {item.topic!r} dropped"))
                return
            old = self._items.popleft()
            old.delivery.resolve(MessageDropped(f"queue full ({self.maxsize}): oldest publish to {old.topic!r} "
                                                "dropped for a newer one"))
        self._items.append(item)

    def peek(self) -> Outgoing | None:
        return self._items[0] if self._items else None

    def popleft(self) -> Outgoing:
        return self._items.popleft()

    def fail_all(self, exc_factory: Any) -> None:
        while self._items:
            item = self._items.popleft()
            item.delivery.resolve(exc_factory(item))
