"""Streams for the ``kinesis`` and ``firehose`` actions: ordered records with a partition key.

- :class:`FileStream` (default): an append-only JSON-lines file per stream in ``<data dir>/streams/``, one
  record per line ``{"seq", "partitionKey", "time", "data"}`` (``data`` base64, as Kinesis's API shows it).
  Appends are batched: while one batch is written (in a thread, then flushed to the OS, so a ``kill -9``
  keeps it) the next one gathers. A torn last line after a crash is skipped on reading.
- :class:`RedisStream` (``[destinations.streams.NAME] redis = "redis://..."``): ``XADD`` with fields
  ``data`` and ``partitionKey``.
- :class:`NatsStream` (``nats = "nats://..."``): JetStream publish to the subject (default: the stream
  name), the JetStream stream created on first use; the partition key travels as header ``Partition-Key``.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import concurrent.futures
import re
import time
from pathlib import Path
from typing import Any

import orjson

from thingcore.destinations.batching import Batcher

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class StreamError(Exception):
    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def check_stream_name(name: str) -> None:
    if not _NAME.match(name):
        raise StreamError(f"stream name {name!r} is not 1-128 of A-Z a-z 0-9 _ . -")


INDEX_EVERY = 1000  #: lines between two entries of a stream file's read index
Record = tuple[str, bytes]  #: (partition key, data)


class FileStream:
    """One embedded stream; ``path`` None keeps the records in memory (``--no-persistence``)."""

    def __init__(self, name: str, path: Path | None, executor: concurrent.futures.Executor) -> None:
        self.name = name
        self.path = path
        self.executor = executor
        self.memory: list[bytes] = []
        self.next_seq: int | None = None
        self._pending: list[bytes] = []
        self._waiters: list[asyncio.Future] = []
        self._writing = False
        self._task: asyncio.Task | None = None
        self._open_lock = asyncio.Lock()
        self._index: list[tuple[int, int]] = []  #: (seq, byte offset) of every INDEX_EVERY-th line
        self._scanned = 0  #: bytes of the file the index covers
        self._since_indexed = INDEX_EVERY

    def _last_seq(self) -> int:
        if self.path is None or not self.path.exists():
            return 0
        size = self.path.stat().st_size
        window = 65536
        with self.path.open("rb") as f:
            while True:
                f.seek(max(0, size - window))
                lines = f.read().splitlines()
                for line in reversed(lines[1:] if size > window else lines):
                    try:
                        return int(orjson.loads(line)["seq"])
                    except (ValueError, KeyError, TypeError):
                        continue
                if window >= size:
                    return 0
                window *= 4

    async def append(self, records: list[Record]) -> list[int]:
        loop = asyncio.get_running_loop()
        if self.next_seq is None:
            async with self._open_lock:  # concurrent first appends: read the file's last seq once
                if self.next_seq is None:
                    self.next_seq = await loop.run_in_executor(self.executor, self._last_seq) + 1
        seqs = []
        now = int(time.time() * 1000)
        for pk, data in records:
            seq = self.next_seq
            self.next_seq += 1
            seqs.append(seq)
            self._pending.append(orjson.dumps({"seq": seq, "partitionKey": pk, "time": now,
                                               "data": base64.b64encode(data).decode()}) + b"\n")
        fut = loop.create_future()
        self._waiters.append(fut)
        if not self._writing:
            self._writing = True
            self._task = loop.create_task(self._flush())
        await fut
        return seqs

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                lines, self._pending = self._pending, []
                waiters, self._waiters = self._waiters, []
                try:
                    await loop.run_in_executor(self.executor, self._write, b"".join(lines), len(lines))
                except OSError as exc:
                    for w in waiters:
                        if not w.done():
                            w.set_exception(StreamError(f"cannot write stream {self.name}: {exc}", retryable=True))
                    continue
                for w in waiters:
                    if not w.done():
                        w.set_result(None)
        finally:
            self._writing = False

    def _write(self, blob: bytes, count: int) -> None:
        if self.path is None:
            self.memory.extend(blob.splitlines())
            return
        with self.path.open("ab") as f:
            f.write(blob)
            f.flush()

    def read_blocking(self, from_seq: int, limit: int) -> list[dict[str, Any]]:
        """Records with ``seq >= from_seq`` in order (torn or foreign lines skipped).

        A sparse index (the offset of every INDEX_EVERY-th line, extended over new data at each read) lets a
        read start near ``from_seq``, so ``streams read --follow`` does not rescan the file each time."""
        out: list[dict[str, Any]] = []
        if self.path is None:
            lines: Any = self.memory[max(0, from_seq - 1):]  # in memory, seq n is line n-1
            f = None
        elif not self.path.exists():
            return out
        else:
            self._extend_index()
            pos = bisect.bisect_right(self._index, (from_seq, float("inf"))) - 1
            f = lines = self.path.open("rb")
            if pos >= 0:
                f.seek(self._index[pos][1])
        try:
            for line in lines:
                try:
                    rec = orjson.loads(line)
                    if rec["seq"] < from_seq:
                        continue
                except (ValueError, KeyError, TypeError):
                    continue
                out.append(rec)
                if len(out) >= limit:
                    break
        finally:
            if f is not None:
                f.close()
        return out

    def _extend_index(self) -> None:
        assert self.path is not None
        size = self.path.stat().st_size
        if self._scanned >= size:
            return
        with self.path.open("rb") as f:
            f.seek(self._scanned)
            offset = self._scanned
            for line in f:
                if not line.endswith(b"\n"):
                    break  # a line being written (or torn): index it once it is complete
                if self._since_indexed >= INDEX_EVERY:
                    try:
                        self._index.append((int(orjson.loads(line)["seq"]), offset))
                        self._since_indexed = 0
                    except (ValueError, KeyError, TypeError):
                        pass
                self._since_indexed += 1
                offset += len(line)
            self._scanned = offset


class RedisStream:
    def __init__(self, url: str, key: str) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.key = key
        self.client = aioredis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
        self.batcher: Batcher[Record] = Batcher(self._xadd)

    async def append(self, records: list[Record]) -> list[str]:
        return list(await asyncio.gather(*(self.batcher.submit(r) for r in records)))

    async def _xadd(self, records: list[Record]) -> list[str]:
        import redis.exceptions

        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for pk, data in records:
                    pipe.xadd(self.key, {"data": data, "partitionKey": pk})
                ids = await pipe.execute()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise StreamError(f"Redis {self.url} unreachable: {exc}", retryable=True) from None
        except redis.exceptions.RedisError as exc:
            raise StreamError(f"Redis XADD {self.key}: {exc}") from None
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def close(self) -> None:
        await self.client.aclose()


class NatsStream:
    def __init__(self, url: str, stream: str, subject: str) -> None:
        self.url = url
        self.stream = re.sub(r"[^A-Za-z0-9_-]", "_", stream)  # JetStream names: no . * > or spaces
        self.subject = subject
        self._nc: Any = None
        self._js: Any = None
        self._lock = asyncio.Lock()
        self.batcher: Batcher[Record] = Batcher(self._publish, max_batch=256)

    async def _connect(self) -> Any:
        import nats
        from nats.js.errors import NotFoundError

        async with self._lock:
            if self._nc is not None and self._nc.is_connected:
                return self._js
            await self._drop()
            nc = await nats.connect(self.url, connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=0)
            js = nc.jetstream(timeout=5)
            try:
                await js.find_stream_name_by_subject(self.subject)
            except NotFoundError:
                await js.add_stream(name=self.stream, subjects=[self.subject])
            self._nc, self._js = nc, js
            return js

    async def append(self, records: list[Record]) -> list[int]:
        return list(await asyncio.gather(*(self.batcher.submit(r) for r in records)))

    async def _publish(self, records: list[Record]) -> list[int]:
        """Concurrent JetStream publishes (each waits for its ack): one round trip's wait for the batch."""
        from nats.errors import Error as NatsError

        try:
            js = await self._connect()
            acks = await asyncio.gather(*(js.publish(self.subject, data, headers={"Partition-Key": pk} if pk else None)
                                          for pk, data in records))
        except (TimeoutError, NatsError, OSError) as exc:
            await self._drop()
            raise StreamError(f"NATS {self.url} unreachable: {type(exc).__name__} {exc}", retryable=True) from None
        return [a.seq for a in acks]

    async def _drop(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            try:
                await nc.close()
            except Exception:
                pass

    async def close(self) -> None:
        await self._drop()


class Streams:
    """Every stream by name: the configured engine, or an embedded file stream."""

    def __init__(self, config: dict[str, Any], directory: Path | None) -> None:
        self.config = config
        self.directory = directory
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="streams")
        self._streams: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        stream = self._streams.get(name)
        if stream is None:
            check_stream_name(name)
            conf = self.config.get(name)
            if conf is not None and conf.redis:
                stream = RedisStream(conf.redis, conf.key or name)
            elif conf is not None and conf.nats:
                stream = NatsStream(conf.nats, name, conf.key or name)
            else:
                path = None
                if self.directory is not None:
                    self.directory.mkdir(parents=True, exist_ok=True)
                    path = self.directory / f"{name}.jsonl"
                stream = FileStream(name, path, self.executor)
            self._streams[name] = stream
        return stream

    async def append(self, name: str, records: list[Record]) -> list[Any]:
        return await self.get(name).append(records)

    def embedded_names(self) -> list[str]:
        names = {n for n, s in self._streams.items() if isinstance(s, FileStream)}
        if self.directory is not None and self.directory.exists():
            names.update(p.name[:-6] for p in self.directory.glob("*.jsonl"))
        return sorted(names)

    async def read(self, name: str, from_seq: int, limit: int) -> list[dict[str, Any]]:
        stream = self.get(name)
        if not isinstance(stream, FileStream):
            raise StreamError(f"stream {name} is delivered to {stream.url}: read it there")
        return await asyncio.get_running_loop().run_in_executor(self.executor, stream.read_blocking, from_seq, limit)

    async def close(self) -> None:
        for stream in self._streams.values():
            if hasattr(stream, "close"):
                await stream.close()
        self.executor.shutdown(wait=True)
