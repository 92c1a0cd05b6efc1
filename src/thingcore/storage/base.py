"""The storage interface the broker persists through.

The broker keeps its working state in memory and uses storage only to persist changes and to
reload them at start-up. Records are opaque ``bytes`` serialized by the broker, so a backend knows
nothing about MQTT and another backend would need no change in any caller. Two exist: SQLite and memory.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import NamedTuple


@dataclass(slots=True)
class StoredSession:
    """A persistent session as reloaded at start-up: its meta, not its messages (see ``load_messages``)."""

    client_id: str
    #: Opaque to storage: the broker's serialization of expiry interval, protocol, subscriptions...
    meta: bytes
    #: How many outbound messages (queued or in flight) the session has stored.
    queued: int = 0
    #: The highest seq among them (0 when none), so new messages get later seqs.
    last_seq: int = 0
    #: Packet ids of received QoS 2 publishes awaiting PUBREL (sorted).
    inbound_qos2: list[int] = field(default_factory=list)


class StoredMessage(NamedTuple):
    """One outbound message of a session as read back by ``load_messages``."""

    seq: int
    message_id: int
    #: The message itself, shared by every session it is queued for (opaque: the broker's record).
    body: bytes
    #: This session's delivery state (opaque: QoS, packet id, ...); ``b""`` for rows migrated from schema 2,
    #: whose body carries it.
    delivery: bytes


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

    Outbound messages are stored once however many sessions they are queued for: a body is stored once
    under a message id (with the first :meth:`add_messages` that refers to it) and each session's row holds
    only that id and its own delivery state. A body goes when no session row refers to it any more. Session
    queues are read lazily, a page at a time (:meth:`load_messages`), so start-up does not read what is queued.
    """

    stats: StorageStats
    persistent: bool = True  #: False when nothing survives the process: callers may skip work meant for a restart
    #: The message id of the latest body written, reset by every removal (see :meth:`recently_put`).
    _last_put: int = 0

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
        """All sessions with their inbound ids and message counts, after every write issued so far."""

    @abstractmethod
    async def load_messages(self, client_id: str, after_seq: int, limit: int,
                            max_bytes: int) -> list[StoredMessage]:
        """A page of a session's messages in seq order, after every write issued so far: those after
        ``after_seq``, at most ``limit``, ending with the one whose body brings the page to ``max_bytes``."""

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
    def next_message_id(self) -> int:
        """A message id never used before by this storage, for :meth:`add_messages` (no I/O)."""

    def recently_put(self, message_id: int) -> bool:
        """True when ``message_id`` is the latest body given to :meth:`add_messages` and nothing was removed since:
        it is stored or on its way, so the other sessions of one fan-out need not pass it again."""
        return message_id == self._last_put

    @property
    @abstractmethod
    def queued_bytes(self) -> int:
        """Payload bytes of the message bodies stored (each counted once), including writes not yet committed."""

    @abstractmethod
    def add_messages(self, client_id: str, items: list[tuple[int, int, bytes]],
                     body: tuple[int, bytes, int] | None = None) -> asyncio.Future[None]:
        """Queue stored messages for a session: ``(seq, message_id, delivery)``; an existing seq is overwritten.

        ``body``, ``(message_id, record, size)``, stores a message first, in the same transaction, unless one
        is already stored under that id; ``size`` (its payload bytes) counts in :attr:`queued_bytes` while it
        is stored. A body no row refers to any more is deleted (at the latest when the storage opens).
        """

    @abstractmethod
    def replace_message(self, client_id: str, seq: int, delivery: bytes) -> asyncio.Future[None]:
        """Replace the delivery state of a queued message (packet id assigned, PUBREC received...).

        A no-op if the message is not stored, so a late replace cannot resurrect a removed message.
        """

    @abstractmethod
    def remove_messages(self, client_id: str, seqs: list[int],
                        message_ids: list[int] | None = None) -> asyncio.Future[None]:
        """Remove messages by seq (acknowledged, expired or dropped); unknown seqs are ignored. Bodies no
        session refers to any more are deleted. ``message_ids``, the ids of those messages when the caller
        knows them, spares the backend finding them."""

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
