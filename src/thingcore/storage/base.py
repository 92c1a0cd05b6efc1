"""The storage interface the broker persists through.

The broker keeps its working state in memory and uses storage only to persist changes and to
reload them at start-up. Records are opaque ``bytes`` serialized by the broker, so a backend knows
nothing about MQTT and a new backend (PostgreSQL) needs no change in any caller.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field


@dataclass(slots=True)
class StoredSession:
    """A persistent session as reloaded at start-up."""

    client_id: str
    #: Opaque to storage: the broker's serialization of expiry interval, protocol, subscriptions...
    meta: bytes
    #: ``(seq, record)`` in seq order: queued and in-flight outbound messages.
    messages: list[tuple[int, bytes]] = field(default_factory=list)
    #: Packet ids of received QoS 2 publishes awaiting PUBREL (sorted).
    inbound_qos2: list[int] = field(default_factory=list)


@dataclass(slots=True)
class StorageStats:
    """Counters for metrics. Updated by the writer; read without locking (plain ints)."""

    commits: int = 0  #: transactions committed
    operations: int = 0  #: write calls applied (committed or failed)
    max_batch: int = 0  #: most write calls in one transaction: shows group commit at work
    failures: int = 0  #: write calls whose future got an exception

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Storage(ABC):
    """Persistence for retained messages and persistent sessions.

    Writes never block the event loop: each returns an :class:`asyncio.Future` that resolves to
    ``None`` once the write is durably committed (or to the exception if it failed). A caller that
    must not acknowledge before the data is safe (a QoS 1/2 PUBLISH) awaits it; others ignore it.
    Writes are applied in call order, so a later write always wins over an earlier one.

    Messages and inbound ids belong to a session by ``client_id``; :meth:`load_sessions` returns
    only clients that have session meta (saved with :meth:`save_session`), because the broker cannot
    rebuild a session without it.
    """

    stats: StorageStats
    persistent: bool = True  #: False when nothing survives the process: callers may skip work meant for a restart

    @abstractmethod
    async def open(self) -> None:
        """Create the schema if needed and start the writer. Call once, from the event loop."""

    @abstractmethod
    async def close(self) -> None:
        """Commit everything pending, stop the writer and release files. Idempotent."""

    @abstractmethod
    async def load_retained(self) -> list[tuple[str, bytes]]:
        """All retained messages as ``(topic, record)``, after every write issued so far."""

    @abstractmethod
    async def load_sessions(self) -> list[StoredSession]:
        """All sessions with their messages and inbound ids, after every write issued so far."""

    @abstractmethod
    def set_retained(self, topic: str, record: bytes | None) -> asyncio.Future[None]:
        """Set the retained message of ``topic``; ``None`` deletes it (empty retained publish)."""

    @abstractmethod
    def save_session(self, client_id: str, meta: bytes) -> asyncio.Future[None]:
        """Insert or replace the session meta; queued messages and inbound ids are kept."""

    @abstractmethod
    def delete_session(self, client_id: str) -> asyncio.Future[None]:
        """Delete the session meta, its messages and its inbound QoS 2 ids (clean start, expiry)."""

    @abstractmethod
    def add_messages(self, client_id: str, items: list[tuple[int, bytes]]) -> asyncio.Future[None]:
        """Store outbound messages ``(seq, record)``; an existing seq is overwritten."""

    @abstractmethod
    def replace_message(self, client_id: str, seq: int, record: bytes) -> asyncio.Future[None]:
        """Replace the record of a stored message (packet id assigned, PUBREC received...).

        A no-op if the message is not stored, so a late replace cannot resurrect a removed message.
        """

    @abstractmethod
    def remove_messages(self, client_id: str, seqs: list[int]) -> asyncio.Future[None]:
        """Remove messages by seq (acknowledged, expired or dropped); unknown seqs are ignored."""

    @abstractmethod
    def add_inbound_qos2(self, client_id: str, packet_id: int) -> asyncio.Future[None]:
        """Remember a received QoS 2 publish until PUBREL, so a resend is not delivered twice."""

    @abstractmethod
    def remove_inbound_qos2(self, client_id: str, packet_id: int) -> asyncio.Future[None]:
        """Forget an inbound QoS 2 packet id (PUBREL received)."""

    # --- documents: small JSON-ish records of the services (shadows, things, rules, ...) ----------
    # Keyed by (namespace, key); values are opaque bytes. Reads see every write issued before them.

    @abstractmethod
    def put_document(self, namespace: str, key: str, value: bytes) -> asyncio.Future[None]:
        """Insert or replace one document."""

    @abstractmethod
    def delete_document(self, namespace: str, key: str) -> asyncio.Future[None]:
        """Delete one document; a missing key is not an error."""

    def write_documents(self, namespace: str, puts: list[tuple[str, bytes]],
                        deletes: list[str]) -> asyncio.Future[None]:
        """Insert or replace ``puts``, then delete ``deletes``: many small documents for the price of one write
        call (the rules outbox writes and deletes one per delivery). A backend may override it with one statement.
        """
        futures = [self.put_document(namespace, key, value) for key, value in puts]
        futures += [self.delete_document(namespace, key) for key in deletes]
        return asyncio.gather(*futures)  # type: ignore[return-value]

    @abstractmethod
    async def get_document(self, namespace: str, key: str) -> bytes | None:
        """One document, or None."""

    @abstractmethod
    async def list_documents(
        self, namespace: str, *, prefix: str = "", start_after: str | None = None, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        """Documents of a namespace in key order: those starting with ``prefix``, after ``start_after``."""

    @abstractmethod
    async def flush(self) -> None:
        """Wait until every write issued so far is committed (or has failed)."""
