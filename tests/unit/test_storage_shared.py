"""Messages stored once for many sessions, read back a page at a time, and schema 2 databases migrated."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest
from tests.legacy_storage import SCHEMA_2

from thingcore.broker.message import Message
from thingcore.broker.session import QUEUED, RELEASED, SENT, Outgoing
from thingcore.storage import MemoryStorage, SQLiteStorage, Storage, StoredSession
from thingcore.storage.sqlite import SCHEMA_VERSION

BIG = 1 << 40


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path):
    s: Storage = MemoryStorage() if request.param == "memory" else SQLiteStorage(tmp_path / "thingcore.db")
    await s.open()
    yield s
    await s.close()


def bodies_on_disk(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COUNT(*), COALESCE(SUM(length(body)), 0) FROM messages").fetchone()
    finally:
        conn.close()


async def test_one_body_for_ten_sessions(storage: Storage, tmp_path: Path) -> None:
    body = b"p" * 10_000
    mid = storage.next_message_id()
    for i in range(10):  # as a fan-out does it: the body goes with the first session's row only
        storage.save_session(f"c{i}", b"m")
        storage.add_messages(f"c{i}", [(1, mid, f"d{i}".encode())], None if i else (mid, body, len(body)))
        assert storage.recently_put(mid)
    await storage.flush()
    assert storage.queued_bytes == len(body)  # once, not ten times
    if isinstance(storage, SQLiteStorage):
        assert bodies_on_disk(tmp_path / "thingcore.db") == (1, len(body))
    for i in range(10):
        [row] = await storage.load_messages(f"c{i}", 0, 10, BIG)
        assert (row.seq, row.message_id, row.body, row.delivery) == (1, mid, body, f"d{i}".encode())
    # the body stays while any session refers to it
    for i in range(9):
        storage.remove_messages(f"c{i}", [1])
    await storage.delete_session("c0")
    assert storage.queued_bytes == len(body)
    assert not storage.recently_put(mid)  # a removal happened: the next fan-out puts it again
    await storage.remove_messages("c9", [1])
    assert storage.queued_bytes == 0
    if isinstance(storage, SQLiteStorage):
        assert bodies_on_disk(tmp_path / "thingcore.db") == (0, 0)


async def test_delete_session_frees_only_its_own_bodies(storage: Storage) -> None:
    shared, own = storage.next_message_id(), storage.next_message_id()
    storage.add_messages("a", [(1, shared, b"")], (shared, b"s" * 100, 100))
    storage.add_messages("a", [(2, own, b"")], (own, b"o" * 50, 50))
    storage.add_messages("b", [(7, shared, b"")])
    await storage.flush()
    assert storage.queued_bytes == 150
    await storage.delete_session("a")
    assert storage.queued_bytes == 100
    assert [(r.seq, r.body) for r in await storage.load_messages("b", 0, 10, BIG)] == [(7, b"s" * 100)]


async def test_put_again_keeps_one_copy(storage: Storage) -> None:
    mid = storage.next_message_id()
    storage.add_messages("a", [(1, mid, b"")], (mid, b"x" * 10, 10))
    storage.add_messages("b", [(1, mid, b"")], (mid, b"x" * 10, 10))  # e.g. a retained message delivered again
    await storage.flush()
    assert storage.queued_bytes == 10
    # once every reference is gone, a put with the same id stores it again
    storage.remove_messages("a", [1])
    await storage.remove_messages("b", [1])
    assert storage.queued_bytes == 0
    await storage.add_messages("c", [(1, mid, b"")], (mid, b"x" * 10, 10))
    assert storage.queued_bytes == 10
    assert [r.body for r in await storage.load_messages("c", 0, 10, BIG)] == [b"x" * 10]


async def test_pages_by_count_and_bytes(storage: Storage) -> None:
    storage.save_session("c", b"m")
    for seq in range(1, 21):
        mid = storage.next_message_id()
        storage.add_messages("c", [(seq, mid, b"")], (mid, bytes([seq]) * 100, 100))
    page = await storage.load_messages("c", 0, 5, BIG)
    assert [r.seq for r in page] == [1, 2, 3, 4, 5]
    page = await storage.load_messages("c", 5, 100, 250)  # ends with the message that reaches 250 bytes
    assert [r.seq for r in page] == [6, 7, 8]
    page = await storage.load_messages("c", 8, 100, 1)  # at least one, however large
    assert [r.seq for r in page] == [9]
    assert [r.seq for r in await storage.load_messages("c", 18, 100, BIG)] == [19, 20]
    assert await storage.load_messages("c", 20, 100, BIG) == []
    assert await storage.load_messages("nobody", 0, 100, BIG) == []
    [s] = await storage.load_sessions()
    assert (s.queued, s.last_seq) == (20, 20)


async def test_message_ids_continue_after_reopen_and_orphans_go(tmp_path: Path) -> None:
    path = tmp_path / "thingcore.db"
    s = SQLiteStorage(path)
    await s.open()
    kept, orphan = s.next_message_id(), s.next_message_id()
    s.add_messages("c", [(1, kept, b"")], (kept, b"k" * 10, 10))
    s.add_messages("gone", [(1, orphan, b"")], (orphan, b"o" * 99, 99))
    await s.flush()
    conn = sqlite3.connect(path)  # as if a crash had left a body without rows
    conn.execute("DELETE FROM session_messages WHERE client_id = 'gone'")
    conn.commit()
    conn.close()
    await s.close()
    s = SQLiteStorage(path)
    await s.open()
    try:
        assert s.queued_bytes == 10
        assert bodies_on_disk(path) == (1, 10)
        assert s.next_message_id() > kept
    finally:
        await s.close()


async def test_bodies_count_before_their_commit(tmp_path: Path) -> None:
    s = SQLiteStorage(tmp_path / "thingcore.db")
    await s.open()
    try:
        mid = s.next_message_id()
        fut = s.add_messages("c", [(1, mid, b"")], (mid, b"z" * 1000, 1000))
        assert s.queued_bytes == 1000  # counted before its commit: a burst cannot overshoot the bound
        await fut
        assert s.queued_bytes == 1000
        await s.add_messages("d", [(1, mid, b"")], (mid, b"z" * 1000, 1000))  # already stored: not twice
        assert s.queued_bytes == 1000
    finally:
        await s.close()


# --- schema 2 (before messages were stored once) ------------------------------------------------



def old_record(payload: bytes, qos: int, pid: int, st: int) -> bytes:
    """A session message as schema 2 stored it: the whole message with the delivery state inside."""
    return Message("old/t", payload, qos, False, {}, "pub").to_record(qos=qos, retain=False, sids=[], pid=pid, st=st)


def write_schema_2(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(SCHEMA_2)
        meta = orjson.dumps({"expiry": 0xFFFFFFFF, "level": 4, "subs": [["old/#", 1, False, False, 0, None]],
                             "disconnected_at": 1.0})
        conn.execute("INSERT INTO sessions VALUES (?, ?)", ("dev", meta))
        rows = [("dev", 1, old_record(b"in-flight", 1, 5, SENT)), ("dev", 2, old_record(b"released", 2, 6, RELEASED)),
                ("dev", 3, old_record(b"queued-1", 1, 0, QUEUED)), ("dev", 4, old_record(b"queued-2", 1, 0, QUEUED)),
                ("other", 9, old_record(b"another", 1, 0, QUEUED))]
        conn.executemany("INSERT INTO session_messages VALUES (?, ?, ?)", rows)
        conn.execute("INSERT INTO sessions VALUES (?, ?)", ("other", meta))
        conn.execute("INSERT INTO inbound_qos2 VALUES ('dev', 12)")
        conn.execute("INSERT INTO retained VALUES ('r', ?)", (Message("r", b"kept").to_record(),))
        conn.execute("INSERT INTO documents VALUES ('things', 't1', x'7b7d')")
        conn.commit()
    finally:
        conn.close()


async def test_schema_2_database_is_migrated_at_open(tmp_path: Path) -> None:
    path = tmp_path / "thingcore.db"
    write_schema_2(path)
    s = SQLiteStorage(path)
    await s.open()
    try:
        sessions = {x.client_id: x for x in await s.load_sessions()}
        assert sessions["dev"] == StoredSession("dev", sessions["dev"].meta, 4, 4, [12])
        assert (sessions["other"].queued, sessions["other"].last_seq) == (1, 9)
        rows = await s.load_messages("dev", 0, 100, BIG)
        outs = [Outgoing.from_stored(r) for r in rows]
        assert [(o.seq, o.message.payload, o.qos, o.packet_id, o.state) for o in outs] == [
            (1, b"in-flight", 1, 5, SENT), (2, b"released", 2, 6, RELEASED),
            (3, b"queued-1", 1, 0, QUEUED), (4, b"queued-2", 1, 0, QUEUED)]
        assert all(o.message.topic == "old/t" and o.message.client_id == "pub" for o in outs)
        # a migrated row takes new-style delivery state from then on
        outs[2].packet_id, outs[2].state = 9, SENT
        await s.replace_message("dev", 3, outs[2].delivery_record())
        again = Outgoing.from_stored((await s.load_messages("dev", 2, 1, BIG))[0])
        assert (again.packet_id, again.state, again.message.payload) == (9, SENT, b"queued-1")
        assert [t for t, _ in await s.load_retained()] == ["r"]
        assert await s.get_document("things", "t1") == b"{}"
        # new messages get ids of their own
        mid = s.next_message_id()
        await s.add_messages("dev", [(5, mid, b"")], (mid, b"new", 3))
        assert [r.body for r in await s.load_messages("dev", 4, 10, BIG)] == [b"new"]
        await s.remove_messages("other", [9])
    finally:
        await s.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 5  # 'another' went with its row
    finally:
        conn.close()


async def test_many_writers_one_body_each(storage: Storage) -> None:
    """Group commit still applies: a fan-out is one write per session, the body with the first."""
    mid = storage.next_message_id()
    futures = [storage.add_messages(f"s{i}", [(1, mid, b"")], None if i else (mid, b"b" * 64, 64))
               for i in range(200)]
    assert await asyncio.gather(*futures) == [None] * 200
    assert storage.queued_bytes == 64


async def test_remove_with_known_message_ids(storage: Storage) -> None:
    """The broker passes the ids it knows; a wrong or stale id never deletes a body still referred to."""
    a, b = storage.next_message_id(), storage.next_message_id()
    storage.add_messages("x", [(1, a, b"")], (a, b"a" * 10, 10))
    storage.add_messages("x", [(2, b, b"")], (b, b"b" * 20, 20))
    storage.add_messages("y", [(1, a, b"")])
    await storage.remove_messages("x", [1, 2], [a, b])
    assert storage.queued_bytes == 10  # a is still queued for y
    await storage.remove_messages("y", [99], [a])  # not y's seq: nothing happens to a
    assert [r.body for r in await storage.load_messages("y", 0, 10, BIG)] == [b"a" * 10]
    await storage.remove_messages("y", [1], [a])
    assert storage.queued_bytes == 0
