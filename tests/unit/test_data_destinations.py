"""The embedded tables, streams and queues and their helpers, on real files and the real SQLite storage."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
from pathlib import Path

import pytest

from thingcore.config import Settings, redacted
from thingcore.destinations.batching import Batcher
from thingcore.destinations.queues import EmbeddedQueues, QueueError, queue_name
from thingcore.destinations.streams import FileStream, StreamError, check_stream_name
from thingcore.destinations.tables import EmbeddedTables, TableError, check_table_name, key_text
from thingcore.storage import create_storage


@pytest.fixture
async def storage(tmp_path: Path):
    s = create_storage(tmp_path)
    await s.open()
    yield s
    await s.close()


def test_key_text_finds_numbers_and_strings_alike() -> None:
    assert key_text(7) == key_text("7") == key_text(7.0) == "7"
    assert key_text(1.5) == "1.5"
    assert key_text(True) == "true"


def test_names_are_checked() -> None:
    with pytest.raises(TableError):
        check_table_name("ab")  # DynamoDB: at least 3 characters
    with pytest.raises(StreamError):
        check_stream_name("a/b")
    assert queue_name("https://sqs.eu-west-1.amazonaws.com/123456789012/orders") == "orders"
    assert queue_name("https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo/") == "orders.fifo"
    with pytest.raises(QueueError):
        queue_name("https://sqs.eu-west-1.amazonaws.com/123456789012/bad name")


async def test_embedded_table_pages_and_updates_survive_a_reopen(tmp_path: Path, storage) -> None:
    tables = EmbeddedTables(storage)
    await tables.register("Readings", "device", "ts")
    for i in range(5):
        await tables.put("Readings", ("d1", str(i)), {"device": "d1", "ts": i, "v": i})
    await tables.update("Readings", ("d1", "0"), {"v": "new", "extra": True})
    await tables.delete("Readings", ("d1", "4"))
    page, token = await tables.scan("Readings", None, 2)
    assert [i["ts"] for i in page] == [0, 1] and token
    rest, end = await tables.scan("Readings", token, 10)
    assert [i["ts"] for i in rest] == [2, 3] and end is None
    await storage.close()
    again = create_storage(tmp_path)
    await again.open()
    try:
        reopened = EmbeddedTables(again)
        assert await reopened.get("Readings", ("d1", "0")) == {"device": "d1", "ts": 0, "v": "new", "extra": True}
        assert await reopened.schema("Readings") == {"name": "Readings", "hashKey": "device", "rangeKey": "ts"}
    finally:
        await again.close()


async def test_file_stream_continues_its_sequence_and_skips_a_torn_line(tmp_path: Path) -> None:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    path = tmp_path / "s.jsonl"
    s1 = FileStream("s", path, pool)
    assert await asyncio.gather(s1.append([("a", b"1")]), s1.append([("b", b"2"), ("c", b"3")])) == [[1], [2, 3]]
    with path.open("ab") as f:
        f.write(b'{"seq": 4, "partitionKey"')  # a write cut short by a crash
    s2 = FileStream("s", path, pool)
    assert await s2.append([("d", b"4")]) == [4]
    records = s2.read_blocking(2, 10)
    assert [(r["seq"], base64.b64decode(r["data"])) for r in records] == [(2, b"2"), (3, b"3")]
    pool.shutdown()


async def test_embedded_queue_receives_in_order_and_removes(storage) -> None:
    queues = EmbeddedQueues(storage)
    for i in range(3):
        await queues.send("orders", f"m{i}")
    assert [m["body"] for m in await queues.receive("orders", 2, delete=False)] == ["m0", "m1"]
    assert [m["body"] for m in await queues.receive("orders", 2)] == ["m0", "m1"]
    assert [m["body"] for m in await queues.receive("orders", 5)] == ["m2"]
    assert await queues.names() == ["orders"]


async def test_batcher_groups_concurrent_items_and_fails_them_together() -> None:
    sizes: list[int] = []

    async def flush(items: list[int]) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0)
        if 13 in items:
            raise RuntimeError("down")
        return [i * 2 for i in items]

    b: Batcher[int] = Batcher(flush)
    assert await asyncio.gather(*(b.submit(i) for i in range(10))) == [i * 2 for i in range(10)]
    assert sizes == [10]  # submitted in one loop turn: one batch
    results = await asyncio.gather(*(b.submit(i) for i in (12, 13)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


def test_destination_passwords_are_redacted() -> None:
    s = Settings(destinations={"tables": {"dsn": "postgresql://iot:pw@db/iot"},
                               "streams": {"t": {"redis": "redis://:pw@r:6379/0"}}, "queues": {"q": {"redis": "redis://r"}}})
    d = redacted(s)["destinations"]
    assert d["tables"]["dsn"] == "postgresql://iot:***@db/iot"
    assert d["streams"]["t"]["redis"] == "redis://:***@r:6379/0"
    assert d["queues"]["q"]["redis"] == "redis://r"


async def test_file_stream_reads_from_any_seq_through_its_index(tmp_path: Path, monkeypatch) -> None:
    import thingcore.destinations.streams as streams

    monkeypatch.setattr(streams, "INDEX_EVERY", 3)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    s = FileStream("s", tmp_path / "s.jsonl", pool)
    for i in range(1, 8):
        await s.append([("k", str(i).encode())])
    assert [r["seq"] for r in s.read_blocking(1, 100)] == list(range(1, 8))
    assert len(s._index) == 3  # lines 1, 4 and 7
    for i in range(8, 12):  # new data after a read: the index grows over it
        await s.append([("k", str(i).encode())])
    for start in (1, 3, 4, 5, 9, 11):
        got = s.read_blocking(start, 2)
        assert [(r["seq"], base64.b64decode(r["data"])) for r in got] == \
            [(n, str(n).encode()) for n in range(start, min(start + 2, 12))]
    assert s.read_blocking(12, 5) == []
    memory = FileStream("m", None, pool)
    await memory.append([("k", b"a"), ("k", b"b"), ("k", b"c")])
    assert [r["seq"] for r in memory.read_blocking(2, 5)] == [2, 3]
    pool.shutdown()
