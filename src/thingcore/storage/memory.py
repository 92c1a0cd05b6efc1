"""In-memory storage: the :class:`Storage` contract held in dicts.

Used for ``--no-persistence`` and tests. Nothing survives the process; every write "commits" at
once, so its future is already resolved when returned.
"""

from __future__ import annotations

import asyncio

from .base import Storage, StorageStats, StoredMessage, StoredSession


class MemoryStorage(Storage):
    """Same semantics as :class:`~thingcore.storage.sqlite.SQLiteStorage`, without a disk."""

    persistent = False

    def __init__(self) -> None:
        self.stats = StorageStats()
        self._retained: dict[str, bytes] = {}
        self._sessions: dict[str, bytes] = {}
        # client id -> seq -> (message id, delivery); message id -> [references, size, body]
        self._messages: dict[str, dict[int, tuple[int, bytes]]] = {}
        self._bodies: dict[int, list] = {}
        self._next_id = 1
        self._bytes = 0
        self._inbound: dict[str, set[int]] = {}
        self._documents: dict[str, dict[str, bytes]] = {}
        self._closed = False

    async def open(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    async def load_retained(self) -> list[tuple[str, bytes]]:
        return list(self._retained.items())

    async def load_sessions(self) -> list[StoredSession]:
        sessions = []
        for client_id, meta in self._sessions.items():
            messages = self._messages.get(client_id, {})
            sessions.append(StoredSession(client_id, meta, len(messages), max(messages, default=0),
                                          sorted(self._inbound.get(client_id, ()))))
        return sessions

    async def load_messages(self, client_id: str, after_seq: int, limit: int,
                            max_bytes: int) -> list[StoredMessage]:
        messages = self._messages.get(client_id, {})
        page: list[StoredMessage] = []
        total = 0
        for seq in sorted(s for s in messages if s > after_seq):
            if len(page) >= limit or (page and total >= max_bytes):
                break
            message_id, delivery = messages[seq]
            entry = self._bodies.get(message_id)
            if entry is None:
                continue
            body = entry[2]
            total += len(body)
            page.append(StoredMessage(seq, message_id, body, delivery))
        return page

    def _done(self) -> asyncio.Future[None]:
        # Checked here rather than silently accepted, so a write after shutdown shows up as the
        # same bug it is with SQLite.
        if self._closed:
            raise RuntimeError("storage is closed")
        stats = self.stats
        stats.operations += 1
        stats.commits += 1
        stats.max_batch = max(stats.max_batch, 1)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def set_retained(self, topic: str, record: bytes | None) -> asyncio.Future[None]:
        fut = self._done()
        if record is None:
            self._retained.pop(topic, None)
        else:
            self._retained[topic] = bytes(record)
        return fut

    def save_session(self, client_id: str, meta: bytes) -> asyncio.Future[None]:
        fut = self._done()
        self._sessions[client_id] = bytes(meta)
        return fut

    def delete_session(self, client_id: str) -> asyncio.Future[None]:
        fut = self._done()
        self._last_put = 0
        self._sessions.pop(client_id, None)
        for message_id, _ in self._messages.pop(client_id, {}).values():
            self._unref(message_id)
        self._inbound.pop(client_id, None)
        return fut

    def next_message_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def _unref(self, message_id: int) -> None:
        entry = self._bodies.get(message_id)
        if entry is not None:
            entry[0] -= 1
            if entry[0] <= 0:
                del self._bodies[message_id]
                self._bytes -= entry[1]

    def add_messages(self, client_id: str, items: list[tuple[int, int, bytes]],
                     body: tuple[int, bytes, int] | None = None) -> asyncio.Future[None]:
        fut = self._done()
        if body is not None:
            message_id, record, size = body
            self._last_put = message_id
            if message_id not in self._bodies:
                self._bodies[message_id] = [0, size, bytes(record)]
                self._bytes += size
        if items:
            messages = self._messages.setdefault(client_id, {})
            for seq, message_id, delivery in items:
                old = messages.get(seq)
                entry = self._bodies.get(message_id)
                if entry is not None:  # a row without its body is skipped by load_messages, as with SQLite
                    entry[0] += 1
                messages[seq] = (message_id, bytes(delivery))
                if old is not None:
                    self._unref(old[0])
        return fut

    def replace_message(self, client_id: str, seq: int, delivery: bytes) -> asyncio.Future[None]:
        fut = self._done()
        messages = self._messages.get(client_id)
        if messages is not None and seq in messages:
            messages[seq] = (messages[seq][0], bytes(delivery))
        return fut

    def remove_messages(self, client_id: str, seqs: list[int],
                        message_ids: list[int] | None = None) -> asyncio.Future[None]:
        fut = self._done()
        self._last_put = 0
        messages = self._messages.get(client_id)
        if messages is not None:
            for seq in seqs:
                old = messages.pop(seq, None)
                if old is not None:
                    self._unref(old[0])
            if not messages:
                del self._messages[client_id]
        return fut

    def add_inbound_qos2(self, client_id: str, packet_id: int) -> asyncio.Future[None]:
        fut = self._done()
        self._inbound.setdefault(client_id, set()).add(packet_id)
        return fut

    def remove_inbound_qos2(self, client_id: str, packet_id: int) -> asyncio.Future[None]:
        fut = self._done()
        ids = self._inbound.get(client_id)
        if ids is not None:
            ids.discard(packet_id)
            if not ids:
                del self._inbound[client_id]
        return fut

    async def flush(self) -> None:
        return None

    def put_document(self, namespace: str, key: str, value: bytes) -> asyncio.Future[None]:
        fut = self._done()
        self._documents.setdefault(namespace, {})[key] = bytes(value)
        return fut

    def delete_document(self, namespace: str, key: str) -> asyncio.Future[None]:
        fut = self._done()
        self._documents.get(namespace, {}).pop(key, None)
        return fut

    def write_documents(self, namespace: str, puts: list[tuple[str, bytes]],
                        deletes: list[str]) -> asyncio.Future[None]:
        fut = self._done()
        docs = self._documents.setdefault(namespace, {})
        for key, value in puts:
            docs[key] = bytes(value)
        for key in deletes:
            docs.pop(key, None)
        return fut

    async def get_document(self, namespace: str, key: str) -> bytes | None:
        return self._documents.get(namespace, {}).get(key)

    async def list_documents(
        self, namespace: str, *, prefix: str = "", start_after: str | None = None, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        keys = sorted(k for k in self._documents.get(namespace, {}) if k.startswith(prefix)
                      and (start_after is None or k > start_after))
        if limit is not None:
            keys = keys[:limit]
        docs = self._documents[namespace] if keys else {}
        return [(k, docs[k]) for k in keys]
