"""Group commit for external engines: writes that arrive while one batch is in flight go out together.

A rule action delivers one message per call, from several workers at once; sending each on its own costs one
round trip per message to Redis, NATS or PostgreSQL. :class:`Batcher` queues the items of concurrent calls
and hands them to ``flush`` as one list (a Redis pipeline, parallel JetStream publishes, one PostgreSQL
transaction), so the round trips are shared. A failed batch fails every call in it (each is then retried by
its action on its own), which keeps delivery at least once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    def __init__(self, flush: Callable[[list[T]], Awaitable[list[Any]]], max_batch: int = 500) -> None:
        self.flush = flush
        self.max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    async def submit(self, item: T) -> Any:
        """The result ``flush`` gave for this item, once its batch is done."""
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return await fut

    async def _run(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
                try:
                    results = await self.flush([item for item, _ in batch])
                except Exception as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, fut), result in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)
        finally:
            self._task = None
