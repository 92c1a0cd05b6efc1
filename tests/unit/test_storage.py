"""The storage contract, run against every backend."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from thingcore.storage import (
    MemoryStorage,
    SQLiteStorage,
    Storage,
    StoredSession,
    create_storage,
)
from thingcore.storage.sqlite import SCHEMA_VERSION


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path):
    s: Storage = MemoryStorage() if request.param == "memory" else SQLiteStorage(tmp_path / "thingcore.db")
    await s.open()
    yield s
    await s.close()


def by_id(sessions: list[StoredSession]) -> dict[str, StoredSession]:
    return {s.client_id: s for s in sessions}


async def test_retained_set_overwrite_delete(storage: Storage) -> None:
    assert await storage.load_retained() == []
    await storage.set_retained("a/b", b"1")
    storage.set_retained("a/c", b"2")
    await storage.set_retained("a/b", b"3")
    assert sorted(await storage.load_retained()) == [("a/b", b"3"), ("a/c", b"2")]
    await storage.set_retained("a/b", None)
    storage.set_retained("nope", None)  # deleting what is not there is fine
    assert await storage.load_retained() == [("a/c", b"2")]


def add(storage: Storage, client_id: str, seq: int, body: bytes, delivery: bytes = b"d") -> asyncio.Future[None]:
    """Queue one message for one session the way the broker does: its body, then the session's row."""
    mid = storage.next_message_id()
    return storage.add_messages(client_id, [(seq, mid, delivery)], (mid, body, len(body)))


async def messages(storage: Storage, client_id: str) -> list[tuple[int, bytes, bytes]]:
    """Every stored message of a session as (seq, body, delivery)."""
    return [(m.seq, m.body, m.delivery) for m in await storage.load_messages(client_id, 0, 1 << 30, 1 << 40)]


async def test_session_meta_upsert(storage: Storage) -> None:
    assert await storage.load_sessions() == []
    storage.save_session("c1", b"m1")
    add(storage, "c1", 1, b"x")
    await storage.save_session("c1", b"m2")  # keeps messages
    [s] = await storage.load_sessions()
    assert s == StoredSession("c1", b"m2", 1, 1, [])
    assert await messages(storage, "c1") == [(1, b"x", b"d")]


async def test_messages_add_replace_remove(storage: Storage) -> None:
    storage.save_session("c1", b"meta")
    add(storage, "c1", 3, b"r3")
    add(storage, "c1", 1, b"r1")
    add(storage, "c1", 2, b"r2")
    storage.add_messages("c1", [])
    storage.replace_message("c1", 2, b"d2'")
    storage.replace_message("c1", 99, b"ghost")  # not stored: no-op, no resurrection
    storage.remove_messages("c1", [3, 42])
    await storage.flush()
    assert await messages(storage, "c1") == [(1, b"r1", b"d"), (2, b"r2", b"d2'")]
    # an existing seq is overwritten by add_messages
    await add(storage, "c1", 1, b"again")
    assert await messages(storage, "c1") == [(1, b"again", b"d"), (2, b"r2", b"d2'")]
    # a replace after remove does not bring the message back
    storage.remove_messages("c1", [1])
    await storage.replace_message("c1", 1, b"late")
    assert await messages(storage, "c1") == [(2, b"r2", b"d2'")]
    [s] = await storage.load_sessions()
    assert (s.queued, s.last_seq) == (1, 2)
    assert storage.queued_bytes == 2  # "r2" only: the overwritten and removed bodies are gone


async def test_messages_in_seq_order_not_insert_order(storage: Storage) -> None:
    storage.save_session("c", b"m")
    for seq in (10, 2, 7, 100, 1):
        add(storage, "c", seq, str(seq).encode())
    assert [seq for seq, _, _ in await messages(storage, "c")] == [1, 2, 7, 10, 100]
    [s] = await storage.load_sessions()
    assert (s.queued, s.last_seq) == (5, 100)


async def test_inbound_qos2(storage: Storage) -> None:
    storage.save_session("c1", b"meta")
    storage.add_inbound_qos2("c1", 7)
    storage.add_inbound_qos2("c1", 3)
    storage.add_inbound_qos2("c1", 7)  # duplicate is harmless
    storage.add_inbound_qos2("c1", 9)
    await storage.remove_inbound_qos2("c1", 9)
    storage.remove_inbound_qos2("c1", 1234)
    [s] = await storage.load_sessions()
    assert s.inbound_qos2 == [3, 7]


async def test_delete_session_removes_everything(storage: Storage) -> None:
    for cid in ("c1", "c2"):
        storage.save_session(cid, cid.encode())
        add(storage, cid, 1, b"a")
        add(storage, cid, 2, b"b")
        storage.add_inbound_qos2(cid, 5)
    await storage.delete_session("c1")
    assert list(by_id(await storage.load_sessions())) == ["c2"]
    assert await messages(storage, "c1") == []
    # a new session with the same id starts empty
    await storage.save_session("c1", b"fresh")
    sessions = by_id(await storage.load_sessions())
    assert sessions["c1"] == StoredSession("c1", b"fresh", 0, 0, [])
    assert sessions["c2"] == StoredSession("c2", b"c2", 2, 2, [5])
    assert await messages(storage, "c2") == [(1, b"a", b"d"), (2, b"b", b"d")]
    assert storage.queued_bytes == 2


async def test_data_without_session_meta_is_not_loaded(storage: Storage) -> None:
    add(storage, "orphan", 1, b"x")
    storage.add_inbound_qos2("orphan", 1)
    assert await storage.load_sessions() == []
    # ... but it is kept, and shows up once the session is saved
    await storage.save_session("orphan", b"m")
    assert await storage.load_sessions() == [StoredSession("orphan", b"m", 1, 1, [1])]
    assert await messages(storage, "orphan") == [(1, b"x", b"d")]


async def test_writes_applied_in_call_order(storage: Storage) -> None:
    futures = []
    for i in range(500):
        futures.append(storage.set_retained("t", str(i).encode()))
        if i % 3 == 0:
            futures.append(storage.set_retained("t", None))
        futures.append(storage.save_session("c", str(i).encode()))
        if i % 5 == 0:
            futures.append(storage.delete_session("c"))
        futures.append(add(storage, "c", i, b"m"))
        if i % 2:
            futures.append(storage.remove_messages("c", [i - 1]))
    assert await asyncio.gather(*futures) == [None] * len(futures)
    assert await storage.load_retained() == [("t", b"499")]
    [s] = await storage.load_sessions()
    # the last delete_session was at i=495 (before its add); 496 and 498 were removed after
    assert s == StoredSession("c", b"499", 3, 499, [])
    assert await messages(storage, "c") == [(495, b"m", b"d"), (497, b"m", b"d"), (499, b"m", b"d")]
    assert storage.queued_bytes == 3


async def test_futures_resolve_to_none_and_stats(storage: Storage) -> None:
    assert await storage.set_retained("x", b"y") is None
    await storage.flush()
    assert storage.stats.operations >= 1
    assert storage.stats.commits >= 1
    assert storage.stats.max_batch >= 1
    assert set(storage.stats.as_dict()) >= {"commits", "operations", "max_batch"}


async def test_close_is_idempotent_and_rejects_later_writes(storage: Storage) -> None:
    fut = storage.set_retained("x", b"y")
    await storage.close()
    assert fut.done() and fut.result() is None
    await storage.close()
    await asyncio.gather(storage.close(), storage.close())
    await storage.flush()
    with pytest.raises(RuntimeError):
        storage.set_retained("x", b"z")


async def test_non_bytes_records_are_copied(storage: Storage) -> None:
    buf = bytearray(b"abc")
    storage.save_session("c", b"m")
    await add(storage, "c", 1, bytes(buf))
    buf[0] = ord("z")
    assert await messages(storage, "c") == [(1, b"abc", b"d")]


# --- SQLite-specific -----------------------------------------------------------------------------


async def test_sqlite_reopen_gives_back_the_data(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "thingcore.db"  # parent directory is created
    s = SQLiteStorage(path)
    await s.open()
    s.set_retained("r/1", b"one")
    s.set_retained("r/2", b"two")
    s.set_retained("r/2", None)
    s.save_session("c1", b"meta1")
    for i in range(50):
        add(s, "c1", i, bytes([i]) * 200)
    s.remove_messages("c1", list(range(0, 50, 2)))
    s.replace_message("c1", 1, b"changed")
    s.add_inbound_qos2("c1", 77)
    s.save_session("c2", b"meta2")
    await s.close()  # no explicit flush: close must commit what is pending

    s2 = SQLiteStorage(path)
    await s2.open()
    try:
        assert await s2.load_retained() == [("r/1", b"one")]
        sessions = by_id(await s2.load_sessions())
        assert sessions["c2"] == StoredSession("c2", b"meta2", 0, 0, [])
        c1 = sessions["c1"]
        assert c1.meta == b"meta1"
        assert c1.inbound_qos2 == [77]
        assert (c1.queued, c1.last_seq) == (25, 49)
        stored = await messages(s2, "c1")
        assert stored[0] == (1, bytes([1]) * 200, b"changed")
        assert [seq for seq, _, _ in stored] == list(range(1, 50, 2))
        assert stored[1] == (3, bytes([3]) * 200, b"d")
        assert s2.queued_bytes == 25 * 200
    finally:
        await s2.close()


async def test_sqlite_wal_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "thingcore.db"
    s = SQLiteStorage(path, synchronous="full")
    await s.open()
    await s.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables >= {"retained", "sessions", "messages", "session_messages", "inbound_qos2", "documents"}
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    finally:
        conn.close()
    newer = SQLiteStorage(path)
    with pytest.raises(RuntimeError, match="newer"):
        await newer.open()
    await newer.close()


def test_sqlite_rejects_bad_synchronous(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SQLiteStorage(tmp_path / "x.db", synchronous="sometimes")


async def test_sqlite_failed_write_fails_only_its_future(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = SQLiteStorage(tmp_path / "thingcore.db")
    await s.open()
    try:
        s.save_session("c", b"m")
        before = s.set_retained("ok/1", b"1")
        bad = s.set_retained("bad", object())  # type: ignore[arg-type]  # not bindable
        after = s.set_retained("ok/2", b"2")
        with caplog.at_level(logging.WARNING, logger="thingcore.storage.sqlite"):
            await s.flush()
        assert before.result() is None and after.result() is None
        with pytest.raises(sqlite3.Error):
            bad.result()
        assert s.stats.failures == 1
        assert "failed" in caplog.text
        # the writer keeps going
        await s.set_retained("ok/3", b"3")
        assert sorted(t for t, _ in await s.load_retained()) == ["ok/1", "ok/2", "ok/3"]
    finally:
        await s.close()


async def test_sqlite_write_before_open_raises(tmp_path: Path) -> None:
    s = SQLiteStorage(tmp_path / "thingcore.db")
    with pytest.raises(RuntimeError, match="not open"):
        s.set_retained("x", b"y")
    await s.close()  # closing a never-opened storage is fine


async def test_create_storage(tmp_path: Path) -> None:
    assert isinstance(create_storage(None), MemoryStorage)
    s = create_storage(tmp_path / "data", synchronous="FULL")
    assert isinstance(s, SQLiteStorage)
    assert s.path == tmp_path / "data" / "thingcore.db"
    assert s.synchronous == "FULL"
    await s.open()
    await s.close()
    assert (tmp_path / "data" / "thingcore.db").exists()


async def test_documents_put_get_list_delete(storage: Storage) -> None:
    for key in ("thing-b", "thing-a", "other", "thing-c"):
        storage.put_document("things", key, key.encode())
    storage.put_document("rules", "thing-a", b"not a thing")
    storage.put_document("things", "thing-b", b"replaced")
    assert await storage.get_document("things", "thing-b") == b"replaced"
    assert await storage.get_document("things", "missing") is None
    listed = await storage.list_documents("things", prefix="thing-")
    assert listed == [("thing-a", b"thing-a"), ("thing-b", b"replaced"), ("thing-c", b"thing-c")]
    page = await storage.list_documents("things", start_after="thing-a", limit=1)
    assert page == [("thing-b", b"replaced")]
    await storage.delete_document("things", "thing-a")
    storage.delete_document("things", "never-there")
    assert [k for k, _ in await storage.list_documents("things")] == ["other", "thing-b", "thing-c"]
    assert await storage.get_document("rules", "thing-a") == b"not a thing"


async def test_write_documents_puts_then_deletes_in_one_call(storage: Storage) -> None:
    storage.put_document("outbox", "a", b"old a")
    storage.put_document("outbox", "b", b"b")
    storage.put_document("other", "b", b"kept: another namespace")
    await storage.flush()
    before = storage.stats.operations
    fut = storage.write_documents("outbox", [("a", b"new a"), ("c", b"c"), ("d", b"d")], ["b", "d", "missing"])
    assert await fut is None
    assert await storage.list_documents("outbox") == [("a", b"new a"), ("c", b"c")]  # d: put, then deleted
    assert await storage.get_document("other", "b") == b"kept: another namespace"
    if isinstance(storage, SQLiteStorage):
        assert storage.stats.operations == before + 1  # one operation in the writer, whatever the count
    assert await storage.write_documents("outbox", [], []) is None


def test_only_memory_storage_is_not_persistent(tmp_path: Path) -> None:
    assert MemoryStorage.persistent is False
    assert SQLiteStorage(tmp_path / "x.db").persistent is True
