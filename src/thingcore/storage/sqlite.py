"""SQLite storage: one writer thread, group commit, WAL.

The event loop never touches the disk. Each write call puts an operation on a thread-safe queue
and returns a future; one dedicated writer thread takes everything waiting (up to ``max_batch``
operations), applies it in one transaction, commits, and resolves the whole batch's futures with a
single ``call_soon_threadsafe``. Under load, many writes share one commit; when idle, a write is
committed alone straight away, so latency stays low.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .base import Storage, StorageStats, StoredMessage, StoredSession

log = logging.getLogger(__name__)

#: Stored in ``PRAGMA user_version``; bump it and add an entry to ``_MIGRATIONS`` to change the schema.
SCHEMA_VERSION = 3

#: Upper bound on operations per transaction: bounds the time a batch holds its futures and the
#: size of the WAL frame set written by one commit.
DEFAULT_MAX_BATCH = 5000

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS retained (
    topic TEXT PRIMARY KEY,
    record BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    client_id TEXT PRIMARY KEY,
    meta BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS session_messages (
    client_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (client_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbound_qos2 (
    client_id TEXT NOT NULL,
    packet_id INTEGER NOT NULL,
    PRIMARY KEY (client_id, packet_id)
) WITHOUT ROWID;
"""

_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS documents (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (namespace, key)
);
"""

# Messages stored once: a body per message id, and per session only the message id and that session's delivery
# state. Rows of schema 2 carried the whole message with the delivery state inside it: each becomes a message of
# its own with an empty delivery (the broker reads the state from the body then), so no record is parsed here.
_SCHEMA_V3 = """
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE session_queue (
    client_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    delivery BLOB NOT NULL,
    PRIMARY KEY (client_id, seq)
) WITHOUT ROWID;
INSERT INTO messages (id, size, body)
    SELECT ROW_NUMBER() OVER (ORDER BY client_id, seq), length(record), record FROM session_messages;
INSERT INTO session_queue (client_id, seq, message_id, delivery)
    SELECT client_id, seq, ROW_NUMBER() OVER (ORDER BY client_id, seq), X'' FROM session_messages;
DROP TABLE session_messages;
ALTER TABLE session_queue RENAME TO session_messages;
CREATE INDEX session_messages_by_message ON session_messages (message_id);
"""

#: ``from_version -> script`` that brings a database from that version to the next one.
_MIGRATIONS: dict[int, str] = {0: _SCHEMA_V1, 1: _SCHEMA_V2, 2: _SCHEMA_V3}

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

# An operation: (apply(cursor, *args) or None for a marker, args, future or None). A message operation returns
# what it did to the shared bodies: (bytes stored, ids of bodies that may have lost their last reference); the
# writer deletes the unreferenced ones once per batch and counts the bytes when the transaction commits.
_Effect = tuple[int, list[int]]
_Apply = Callable[..., _Effect | None]
_NO_EFFECT: _Effect = (0, [])
_Op = tuple[_Apply | None, tuple[Any, ...], "asyncio.Future[Any] | None"]


# --- operations, run in the writer thread ------------------------------------------------------


def _op_set_retained(cur: sqlite3.Cursor, topic: str, record: bytes | None) -> None:
    if record is None:
        cur.execute("DELETE FROM retained WHERE topic = ?", (topic,))
    else:
        cur.execute(
            "INSERT INTO retained (topic, record) VALUES (?, ?)"
            " ON CONFLICT (topic) DO UPDATE SET record = excluded.record",
            (topic, record),
        )


def _op_save_session(cur: sqlite3.Cursor, client_id: str, meta: bytes) -> None:
    cur.execute(
        "INSERT INTO sessions (client_id, meta) VALUES (?, ?)"
        " ON CONFLICT (client_id) DO UPDATE SET meta = excluded.meta",
        (client_id, meta),
    )


def _op_delete_session(cur: sqlite3.Cursor, client_id: str) -> _Effect:
    cur.execute("DELETE FROM sessions WHERE client_id = ?", (client_id,))
    ids = [row[0] for row in cur.execute(
        "DELETE FROM session_messages WHERE client_id = ? RETURNING message_id", (client_id,)).fetchall()]
    cur.execute("DELETE FROM inbound_qos2 WHERE client_id = ?", (client_id,))
    return 0, ids


def _drop_unreferenced(cur: sqlite3.Cursor, message_ids: set[int]) -> int:
    """Delete the bodies no session row refers to any more; returns the bytes freed."""
    freed = 0
    for message_id in message_ids:
        row = cur.execute(
            "DELETE FROM messages WHERE id = ? AND NOT EXISTS"
            " (SELECT 1 FROM session_messages WHERE message_id = ?) RETURNING size",
            (message_id, message_id),
        ).fetchone()
        if row is not None:
            freed += row[0]
    return freed


def _op_add_messages(cur: sqlite3.Cursor, client_id: str, items: list[tuple[int, int, bytes]],
                     body: tuple[int, bytes, int] | None) -> _Effect:
    stored = 0
    if body is not None:
        cur.execute("INSERT OR IGNORE INTO messages (id, body, size) VALUES (?, ?, ?)", body)
        if cur.rowcount == 1:
            stored = body[2]
    replaced: list[int] = []
    for seq, message_id, delivery in items:
        try:
            cur.execute(
                "INSERT INTO session_messages (client_id, seq, message_id, delivery) VALUES (?, ?, ?, ?)",
                (client_id, seq, message_id, delivery),
            )
        except sqlite3.IntegrityError:  # the seq is taken (never by the broker): overwrite, free the old body
            row = cur.execute(
                "SELECT message_id FROM session_messages WHERE client_id = ? AND seq = ?", (client_id, seq)
            ).fetchone()
            cur.execute(
                "UPDATE session_messages SET message_id = ?, delivery = ? WHERE client_id = ? AND seq = ?",
                (message_id, delivery, client_id, seq),
            )
            if row is not None and row[0] != message_id:
                replaced.append(row[0])
    return stored, replaced


def _op_replace_message(cur: sqlite3.Cursor, client_id: str, seq: int, delivery: bytes) -> None:
    cur.execute(
        "UPDATE session_messages SET delivery = ? WHERE client_id = ? AND seq = ?",
        (delivery, client_id, seq),
    )


def _op_remove_messages(cur: sqlite3.Cursor, client_id: str, seqs: list[int],
                        message_ids: list[int] | None) -> _Effect:
    if message_ids is not None:  # the caller knows which bodies may be left without rows
        cur.executemany("DELETE FROM session_messages WHERE client_id = ? AND seq = ?",
                        [(client_id, seq) for seq in seqs])
        return 0, message_ids
    ids: list[int] = []
    for seq in seqs:
        row = cur.execute(
            "DELETE FROM session_messages WHERE client_id = ? AND seq = ? RETURNING message_id", (client_id, seq)
        ).fetchone()
        if row is not None:
            ids.append(row[0])
    return 0, ids


def _op_add_inbound_qos2(cur: sqlite3.Cursor, client_id: str, packet_id: int) -> None:
    cur.execute("INSERT OR IGNORE INTO inbound_qos2 (client_id, packet_id) VALUES (?, ?)", (client_id, packet_id))


def _op_remove_inbound_qos2(cur: sqlite3.Cursor, client_id: str, packet_id: int) -> None:
    cur.execute("DELETE FROM inbound_qos2 WHERE client_id = ? AND packet_id = ?", (client_id, packet_id))


def _op_put_document(cur: sqlite3.Cursor, namespace: str, key: str, value: bytes) -> None:
    cur.execute(
        "INSERT INTO documents (namespace, key, value) VALUES (?, ?, ?)"
        " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
        (namespace, key, value),
    )


def _op_delete_document(cur: sqlite3.Cursor, namespace: str, key: str) -> None:
    cur.execute("DELETE FROM documents WHERE namespace = ? AND key = ?", (namespace, key))


def _op_write_documents(cur: sqlite3.Cursor, namespace: str, puts: list[tuple[str, bytes]], deletes: list[str]) -> None:
    if puts:
        cur.executemany(
            "INSERT INTO documents (namespace, key, value) VALUES (?, ?, ?)"
            " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
            [(namespace, key, value) for key, value in puts],
        )
    if deletes:
        cur.executemany("DELETE FROM documents WHERE namespace = ? AND key = ?", [(namespace, key) for key in deletes])


def _resolve(futures: list[asyncio.Future[Any]], errors: list[BaseException | None] | None) -> None:
    """Runs on the event loop: resolve one batch's futures (skipping any the caller cancelled)."""
    if errors is None:
        for fut in futures:
            if not fut.done():
                fut.set_result(None)
    else:
        for fut, exc in zip(futures, errors, strict=True):
            if not fut.done():
                if exc is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(exc)


class SQLiteStorage(Storage):
    """Storage in one SQLite file in WAL mode, written by one dedicated thread with group commit.

    Durability: a future resolves only after its transaction has committed. With WAL and
    ``synchronous="NORMAL"`` (the default) a commit reaches the operating system's page cache but is
    not fsynced, which is enough for the promise thingcore makes: what the broker acknowledged
    survives ``kill -9`` or a crash of the process. It does not survive power loss or a kernel
    crash; use ``synchronous="FULL"`` for that, at the cost of one fsync per commit (group commit
    shares that fsync among all the writes in the batch, so throughput under load drops far less
    than per-write latency rises).

    Reads (``load_*``) first wait for pending writes, then run in a worker thread on their own
    connection, which WAL lets proceed alongside the writer.
    """

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL", max_batch: int = DEFAULT_MAX_BATCH) -> None:
        synchronous = synchronous.upper()
        if synchronous not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, not {synchronous!r}")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.path = Path(path)
        self.synchronous = synchronous
        self.max_batch = max_batch
        self.stats = StorageStats()
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closing: asyncio.Future[None] | None = None
        self._accepting = False
        self._next_id = 1  # set from the database at open
        # Payload bytes of bodies: committed, and passed to add_messages (event loop) / done with (writer thread)
        # so that those on their way count too. Each is written by one thread only.
        self._stored_bytes = 0
        self._bytes_submitted = 0
        self._bytes_done = 0

    # --- life cycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._thread is not None or self._closing is not None:
            raise RuntimeError("SQLiteStorage.open() may be called only once")
        self._loop = loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._writer, args=(loop, ready), name="thingcore-storage-writer", daemon=True
        )
        self._thread.start()
        await ready  # raises if the file could not be opened or migrated
        if self._closing is not None:  # close() ran while we were opening: it is joining the thread
            self._queue.put((None, ("stop",), None))
            return
        self._accepting = True

    async def close(self) -> None:
        if self._closing is None:
            loop = asyncio.get_running_loop()
            self._closing = loop.create_future()
            running, self._accepting = self._accepting, False
            thread = self._thread
            if not running:  # never opened, or open() failed: the writer is gone or on its way out
                if thread is not None:
                    await asyncio.to_thread(thread.join)
                self._closing.set_result(None)
            else:
                assert thread is not None
                done: asyncio.Future[None] = loop.create_future()
                self._queue.put((None, ("stop",), done))  # after every write already queued
                try:
                    await done
                finally:
                    await asyncio.to_thread(thread.join)
                    self._closing.set_result(None)
        await asyncio.shield(self._closing)

    async def flush(self) -> None:
        if self._closing is not None:  # close() flushes; a marker queued after its stop would hang
            await asyncio.shield(self._closing)
            return
        if not self._accepting:
            return
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        self._queue.put((None, (), fut))
        await fut

    # --- reads ---------------------------------------------------------------------------------

    async def load_retained(self) -> list[tuple[str, bytes]]:
        await self.flush()
        return await asyncio.to_thread(self._read, self._read_retained)

    async def load_sessions(self) -> list[StoredSession]:
        await self.flush()
        return await asyncio.to_thread(self._read, self._read_sessions)

    async def get_document(self, namespace: str, key: str) -> bytes | None:
        await self.flush()

        def read(conn: sqlite3.Connection) -> bytes | None:
            sql = "SELECT value FROM documents WHERE namespace = ? AND key = ?"
            row = conn.execute(sql, (namespace, key)).fetchone()
            return row[0] if row else None

        return await asyncio.to_thread(self._read, read)

    async def list_documents(
        self, namespace: str, *, prefix: str = "", start_after: str | None = None, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        await self.flush()
        sql = "SELECT key, value FROM documents WHERE namespace = ?"
        args: list[Any] = [namespace]
        if prefix:  # a range scan on the primary key rather than LIKE (which would need escaping)
            sql += " AND key >= ? AND key < ?"
            args += [prefix, prefix + "\U0010ffff"]
        if start_after is not None:
            sql += " AND key > ?"
            args.append(start_after)
        sql += " ORDER BY key"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)

        def read(conn: sqlite3.Connection) -> list[tuple[str, bytes]]:
            return conn.execute(sql, args).fetchall()

        return await asyncio.to_thread(self._read, read)

    def _read(self, reader: Callable[[sqlite3.Connection], Any]) -> Any:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("BEGIN")  # one snapshot across the queries of a load
            return reader(conn)
        finally:
            conn.close()

    @staticmethod
    def _read_retained(conn: sqlite3.Connection) -> list[tuple[str, bytes]]:
        return conn.execute("SELECT topic, record FROM retained").fetchall()

    @staticmethod
    def _read_sessions(conn: sqlite3.Connection) -> list[StoredSession]:
        sessions = {
            client_id: StoredSession(client_id, meta)
            for client_id, meta in conn.execute("SELECT client_id, meta FROM sessions")
        }
        # Counts only: the messages themselves are read a page at a time when their client is back.
        for client_id, count, last_seq in conn.execute(
            "SELECT client_id, COUNT(*), MAX(seq) FROM session_messages GROUP BY client_id"
        ):
            session = sessions.get(client_id)
            if session is not None:
                session.queued, session.last_seq = count, last_seq
        for client_id, packet_id in conn.execute(
            "SELECT client_id, packet_id FROM inbound_qos2 ORDER BY client_id, packet_id"
        ):
            session = sessions.get(client_id)
            if session is not None:
                session.inbound_qos2.append(packet_id)
        return list(sessions.values())

    async def load_messages(self, client_id: str, after_seq: int, limit: int,
                            max_bytes: int) -> list[StoredMessage]:
        await self.flush()

        def read(conn: sqlite3.Connection) -> list[StoredMessage]:
            page: list[StoredMessage] = []
            total = 0
            for row in conn.execute(
                "SELECT q.seq, q.message_id, m.body, q.delivery FROM session_messages q"
                " JOIN messages m ON m.id = q.message_id WHERE q.client_id = ? AND q.seq > ?"
                " ORDER BY q.seq LIMIT ?",
                (client_id, after_seq, limit),
            ):
                page.append(StoredMessage(*row))
                total += len(row[2])
                if total >= max_bytes:
                    break
            return page

        return await asyncio.to_thread(self._read, read)

    # --- writes (event loop side) --------------------------------------------------------------

    def _submit(self, apply: _Apply, args: tuple[Any, ...]) -> asyncio.Future[None]:
        if not self._accepting:
            raise RuntimeError("storage is not open" if self._closing is None else "storage is closed")
        fut: asyncio.Future[None] = self._loop.create_future()  # type: ignore[union-attr]
        self._queue.put((apply, args, fut))
        return fut

    def set_retained(self, topic: str, record: bytes | None) -> asyncio.Future[None]:
        return self._submit(_op_set_retained, (topic, record))

    def save_session(self, client_id: str, meta: bytes) -> asyncio.Future[None]:
        return self._submit(_op_save_session, (client_id, meta))

    def delete_session(self, client_id: str) -> asyncio.Future[None]:
        self._last_put = 0
        return self._submit(_op_delete_session, (client_id,))

    def next_message_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    @property
    def queued_bytes(self) -> int:
        return self._stored_bytes + self._bytes_submitted - self._bytes_done

    def add_messages(self, client_id: str, items: list[tuple[int, int, bytes]],
                     body: tuple[int, bytes, int] | None = None) -> asyncio.Future[None]:
        # Copied: the caller may reuse or mutate its list before the writer gets to it.
        fut = self._submit(_op_add_messages, (client_id, list(items), body))
        if body is not None:
            self._last_put = body[0]
            self._bytes_submitted += body[2]
        return fut

    def replace_message(self, client_id: str, seq: int, delivery: bytes) -> asyncio.Future[None]:
        return self._submit(_op_replace_message, (client_id, seq, delivery))

    def remove_messages(self, client_id: str, seqs: list[int],
                        message_ids: list[int] | None = None) -> asyncio.Future[None]:
        self._last_put = 0
        ids = list(message_ids) if message_ids is not None else None
        return self._submit(_op_remove_messages, (client_id, list(seqs), ids))

    def add_inbound_qos2(self, client_id: str, packet_id: int) -> asyncio.Future[None]:
        return self._submit(_op_add_inbound_qos2, (client_id, packet_id))

    def remove_inbound_qos2(self, client_id: str, packet_id: int) -> asyncio.Future[None]:
        return self._submit(_op_remove_inbound_qos2, (client_id, packet_id))

    def put_document(self, namespace: str, key: str, value: bytes) -> asyncio.Future[None]:
        return self._submit(_op_put_document, (namespace, key, value))

    def delete_document(self, namespace: str, key: str) -> asyncio.Future[None]:
        return self._submit(_op_delete_document, (namespace, key))

    def write_documents(self, namespace: str, puts: list[tuple[str, bytes]],
                        deletes: list[str]) -> asyncio.Future[None]:
        return self._submit(_op_write_documents, (namespace, list(puts), list(deletes)))

    # --- writer thread -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are opened and committed explicitly, one per batch.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{self.path}: cannot switch to WAL journal mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA busy_timeout=5000")
            self._migrate(conn)
            self._open_messages(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: schema version {version} is newer than this thingcore ({SCHEMA_VERSION})")
        while version < SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                version += 1
                conn.execute(f"PRAGMA user_version={version}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _open_messages(self, conn: sqlite3.Connection) -> None:
        """Delete bodies left without a session row (a crash between a put and its rows), then read the id
        counter and the stored bytes."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM messages WHERE NOT EXISTS"
                         " (SELECT 1 FROM session_messages WHERE message_id = messages.id)")
            last_id, stored = conn.execute("SELECT COALESCE(MAX(id), 0), COALESCE(SUM(size), 0) FROM messages"
                                           ).fetchone()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._next_id, self._stored_bytes = last_id + 1, stored

    def _writer(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            log.error("cannot open storage %s: %s", self.path, exc)
            loop.call_soon_threadsafe(_set_exception_if_pending, ready, exc)
            return
        loop.call_soon_threadsafe(_resolve, [ready], None)
        try:
            self._write_loop(conn, loop)
        finally:
            conn.close()

    def _write_loop(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> None:
        get, get_nowait, max_batch = self._queue.get, self._queue.get_nowait, self.max_batch
        cur = conn.cursor()
        stats = self.stats
        stopping = False
        while not stopping:
            batch = [get()]
            while len(batch) < max_batch:
                try:
                    batch.append(get_nowait())
                except queue.Empty:
                    break
            writes = 0
            for op in batch:
                if op[0] is not None:
                    writes += 1
                elif op[1]:  # the stop marker: close() queues it after every other write
                    stopping = True
            futures = [op[2] for op in batch if op[2] is not None]
            errors: list[BaseException | None] | None = None
            if writes:
                try:
                    try:
                        stored, orphans = 0, set()
                        cur.execute("BEGIN")
                        for apply, args, _ in batch:
                            if apply is not None:
                                effect = apply(cur, *args)
                                if effect is not None:
                                    stored += effect[0]
                                    orphans.update(effect[1])
                        if orphans:
                            stored -= _drop_unreferenced(cur, orphans)
                        cur.execute("COMMIT")
                        self._stored_bytes += stored
                        stats.commits += 1
                        stats.max_batch = max(stats.max_batch, writes)
                    except Exception as exc:
                        _rollback(conn)
                        errors = self._retry_one_by_one(conn, cur, batch, exc)
                except Exception as exc:  # a bug here must not kill the writer and hang every caller
                    log.exception("storage writer: unexpected error")
                    _rollback(conn)
                    errors = [exc] * len(futures)
                    stats.failures += writes
                stats.operations += writes
                # bodies passed to add_messages are now stored (counted above) or failed: no longer on their way
                self._bytes_done += sum(op[1][2][2] for op in batch if op[0] is _op_add_messages and op[1][2])
            try:
                loop.call_soon_threadsafe(_resolve, futures, errors)
            except RuntimeError:  # the event loop is closed: nobody is waiting any more
                log.warning("storage writer: event loop closed, %d futures not resolved", len(futures))

    def _retry_one_by_one(
        self, conn: sqlite3.Connection, cur: sqlite3.Cursor, batch: list[_Op], exc: Exception
    ) -> list[BaseException | None]:
        """After a failed batch, apply each write in its own transaction, in order.

        One bad write (a wrong type, a constraint) then fails only its own future instead of every
        write that happened to share its transaction. If the cause is the disk (full, I/O error),
        every write fails again and each future gets its exception.
        """
        log.warning("storage batch of %d operations failed (%s); retrying one by one", len(batch), exc)
        errors: list[BaseException | None] = []
        failed = 0
        for apply, args, fut in batch:
            error: BaseException | None = None
            if apply is not None:
                try:
                    cur.execute("BEGIN")
                    stored, orphans = apply(cur, *args) or _NO_EFFECT
                    if orphans:
                        stored -= _drop_unreferenced(cur, set(orphans))
                    cur.execute("COMMIT")
                    self._stored_bytes += stored
                    self.stats.commits += 1
                    self.stats.max_batch = max(self.stats.max_batch, 1)
                except Exception as op_exc:
                    _rollback(conn)
                    error = op_exc
                    failed += 1
            if fut is not None:
                errors.append(error)
        if failed:
            self.stats.failures += failed
            log.error("storage: %d of %d operations failed; first error: %s", failed, len(batch), exc)
        return errors


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("storage: rollback failed")


def _set_exception_if_pending(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
