"""The destinations of one server, reached from any rule action through the broker the action runs on.

Actions get an :class:`~thingcore.rules.actions.base.ActionEnv` (broker, settings); this module attaches one
:class:`LocalDestinations` per broker, so the server, its HTTP API and every action share the same object
stores, metric series, alarms, log files, search indexes and thread pools without new plumbing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")

IO_THREADS = 8  #: blocking deliveries (boto3, apprise, SQLite writes) in flight at once, all actions together

_HUBS: weakref.WeakKeyDictionary[Any, LocalDestinations] = weakref.WeakKeyDictionary()


class LocalDestinations:
    """Lazily built destinations; blocking clients (boto3, apprise, SQLite) run in one bounded thread pool."""

    def __init__(self, settings: Any, broker: Any) -> None:
        from thingcore.destinations.metrics import AlarmStore, MetricSeries

        self.settings = settings
        self.broker = broker
        self.data_dir = Path(settings.data_dir)
        self.metrics = MetricSeries(settings.cloudwatch.max_metric_series)
        self.alarms = AlarmStore(getattr(broker, "storage", None), broker)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._built: dict[str, Any] = {}

    def path(self, *parts: str) -> Path:
        return self.data_dir.joinpath(*parts)

    def once(self, name: str, build: Callable[[], T]) -> T:
        """One shared instance of a destination client (an S3 client, a search index)."""
        value = self._built.get(name)
        if value is None:
            value = self._built[name] = build()
        return value

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the destinations' thread pool: blocking I/O never runs on the event loop."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(IO_THREADS,
                                                               thread_name_prefix="destinations")
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    def close(self) -> None:
        for value in self._built.values():
            close = getattr(value, "close", None)
            if close is not None:
                close()
        self._built.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=False)
            self._pool = None


def destinations_of(broker: Any, settings: Any) -> LocalDestinations:
    hub = _HUBS.get(broker)
    if hub is None:
        hub = _HUBS[broker] = LocalDestinations(settings, broker)
    return hub


def destinations(env: Any) -> LocalDestinations:
    """The destinations of the server an action runs in (``env`` is its ActionEnv)."""
    return destinations_of(env.broker, env.settings)



class LoopBatcher(Generic[T]):
    """Records collected on the event loop and written by one thread-pool call per batch: while a write runs,
    the records of deliveries arriving meanwhile pile up and go together in the next one (one file append or
    one SQLite commit for many records, and one thread hand-off instead of one per record). Each caller
    returns once its record is written, or raises that batch's error."""

    def __init__(self, hub: LocalDestinations, write_batch: Callable[[list[T]], None]) -> None:
        self.hub = hub
        self._write_batch = write_batch
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._draining = False
        self._task: asyncio.Task[None] | None = None

    async def write(self, record: T) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append((record, fut))
        if not self._draining:
            self._draining = True
            self._task = loop.create_task(self._drain())
        await fut

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self.hub.run(self._write_batch, [r for r, _ in batch])
                except Exception as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                else:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_result(None)
        finally:
            self._draining = False
