"""Queues for the ``sqs`` action: message bodies in arrival order.

- :class:`EmbeddedQueues` (default): each message is a document of the server's storage (namespace
  ``queue:<name>``, key = a nanosecond sequence), so it is group-committed and kept across a ``kill -9``;
  :meth:`EmbeddedQueues.receive` hands out the oldest messages and deletes them (or only peeks).
- :class:`RedisQueue` (``[destinations.queues.NAME] redis = "redis://..."``): ``RPUSH`` of the body to a list,
  so consumers ``LPOP``/``BLPOP`` in order.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson

from thingcore.destinations.batching import Batcher

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$")
_META_NS = "queues"


class QueueError(Exception):
    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def queue_name(queue_url: str) -> str:
    """The queue a ``queueUrl`` names: its last path segment (``https://sqs.../123456789012/name``)."""
    name = queue_url.rstrip("/").rsplit("/", 1)[-1]
    if not _NAME.match(name):
        raise QueueError(f"queue URL {queue_url!r} does not end in a queue name (1-80 of A-Z a-z 0-9 _ -)")
    return name


class EmbeddedQueues:
    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self._last = 0
        self._known: set[str] = set()

    def _seq(self) -> str:
        self._last = max(time.time_ns(), self._last + 1)
        return f"{self._last:020d}"

    async def send(self, name: str, body: str) -> str:
        message_id = str(uuid.uuid4())
        record = orjson.dumps({"messageId": message_id, "body": body, "sentAt": int(time.time() * 1000)})
        fut = self.storage.put_document("queue:" + name, self._seq(), record)
        if name not in self._known:
            self._known.add(name)
            self.storage.put_document(_META_NS, name, b"{}")
        await fut
        return message_id

    async def receive(self, name: str, max_messages: int, delete: bool = True) -> list[dict[str, Any]]:
        rows = await self.storage.list_documents("queue:" + name, limit=max_messages)
        out = []
        for key, value in rows:
            out.append(orjson.loads(value))
            if delete:
                self.storage.delete_document("queue:" + name, key)
        if delete and rows:
            await self.storage.flush()
        return out

    async def names(self) -> list[str]:
        return [k for k, _ in await self.storage.list_documents(_META_NS)]

    async def close(self) -> None:
        return None


class RedisQueue:
    def __init__(self, url: str, key: str) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.key = key
        self.client = aioredis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
        self.batcher: Batcher[str] = Batcher(self._rpush)

    async def send(self, body: str) -> None:
        await self.batcher.submit(body)

    async def _rpush(self, bodies: list[str]) -> list[None]:
        import redis.exceptions

        try:
            await self.client.rpush(self.key, *bodies)  # one command: the batch stays in order
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise QueueError(f"Redis {self.url} unreachable: {exc}", retryable=True) from None
        except redis.exceptions.RedisError as exc:
            raise QueueError(f"Redis RPUSH {self.key}: {exc}") from None
        return [None] * len(bodies)

    async def close(self) -> None:
        await self.client.aclose()


class Queues:
    """Every queue by name: a configured Redis list, or the embedded queue."""

    def __init__(self, config: dict[str, Any], storage: Any) -> None:
        self.config = config
        self.embedded = EmbeddedQueues(storage)
        self._redis: dict[str, RedisQueue] = {}

    def remote(self, name: str) -> RedisQueue | None:
        conf = self.config.get(name)
        if conf is None or not conf.redis:
            return None
        queue = self._redis.get(name)
        if queue is None:
            queue = self._redis[name] = RedisQueue(conf.redis, conf.key or name)
        return queue

    async def send(self, name: str, body: str) -> None:
        remote = self.remote(name)
        if remote is not None:
            await remote.send(body)
        else:
            await self.embedded.send(name, body)

    async def close(self) -> None:
        for queue in self._redis.values():
            await queue.close()
