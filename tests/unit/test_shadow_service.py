"""The shadow service inside a real broker (no sockets): topics, ordering, durability promises, limits.

``GatedStorage`` is the in-memory storage whose commits the test releases by hand, so "accepted
only after the write committed" and "a failed write changes nothing" can be observed exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from thingcore.broker.core import Broker
from thingcore.broker.message import Message
from thingcore.config import Settings
from thingcore.shadow.document import ShadowError
from thingcore.shadow.service import DELETED_NAMESPACE, NAMESPACE, ShadowService
from thingcore.storage import MemoryStorage, SQLiteStorage, Storage


class GatedStorage(MemoryStorage):
    """Writes apply at once (reads see them) but their futures resolve only on ``release()``."""

    def __init__(self) -> None:
        super().__init__()
        self.gated = False
        self.pending: list[asyncio.Future[None]] = []

    def _gate(self, fut: asyncio.Future[None]) -> asyncio.Future[None]:
        if not self.gated:
            return fut
        held: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(held)
        return held

    def put_document(self, namespace: str, key: str, value: bytes) -> asyncio.Future[None]:
        return self._gate(super().put_document(namespace, key, value))

    def delete_document(self, namespace: str, key: str) -> asyncio.Future[None]:
        return self._gate(super().delete_document(namespace, key))

    def release(self, error: Exception | None = None) -> None:
        for fut in self.pending:
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)
        self.pending.clear()


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A broker, the service and a bus subscriber that records every shadow response."""

    def __init__(self, storage: Storage, **kwargs: Any) -> None:
        self.storage = storage
        self.broker = Broker(Settings(), storage)
        self.clock = Clock()
        self.service = ShadowService(self.broker, storage, clock=self.clock, **kwargs)
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.waiters: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []

    async def start(self) -> None:
        await self.storage.open()
        await self.broker.start()
        await self.service.start()
        for f in ("$aws/things/+/shadow/+/+", "$aws/things/+/shadow/name/+/+/+"):
            self.broker.subscribe(f, self._record)

    def _record(self, msg: Message) -> None:
        doc = orjson.loads(msg.payload)
        self.seen.append((msg.topic, doc))
        for topic, fut in list(self.waiters):
            if topic == msg.topic and not fut.done():
                fut.set_result(doc)
                self.waiters.remove((topic, fut))

    def expect(self, topic: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters.append((topic, fut))
        return fut

    def request(self, topic: str, payload: Any, client_id: str | None = "dev") -> None:
        raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        self.broker.publish(Message(topic, raw, 1, client_id=client_id))

    def topics(self) -> list[str]:
        return [t for t, _ in self.seen]


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness(GatedStorage())
    await harness.start()
    yield harness
    await harness.service.stop(timeout=0)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


P = "$aws/things/lamp/shadow"


async def test_update_publishes_accepted_documents_and_delta(h: Harness) -> None:
    accepted = h.expect(f"{P}/update/accepted")
    h.request(f"{P}/update", {"state": {"desired": {"on": True}}, "clientToken": "c1"})
    doc = await asyncio.wait_for(accepted, 5)
    assert doc["state"] == {"desired": {"on": True}} and doc["version"] == 1 and doc["clientToken"] == "c1"
    await settle()
    assert h.topics() == [f"{P}/update/accepted", f"{P}/update/documents", f"{P}/update/delta"]
    documents = dict(h.seen)[f"{P}/update/documents"]
    assert "previous" not in documents and documents["current"]["version"] == 1
    assert dict(h.seen)[f"{P}/update/delta"]["state"] == {"on": True}


async def test_accepted_waits_for_the_commit(h: Harness) -> None:
    h.storage.gated = True
    h.request(f"{P}/update", {"state": {"reported": {"on": True}}})
    await settle()
    assert f"{P}/update/accepted" not in h.topics(), "nothing may be accepted before the write is durable"
    h.request(f"{P}/get", b"")
    await settle()
    assert f"{P}/get/accepted" not in h.topics() and f"{P}/get/rejected" not in h.topics(), \
        "a get queued behind the update sees its result"
    h.storage.release()
    await settle()
    assert h.topics()[-3:] == [f"{P}/update/accepted", f"{P}/update/documents", f"{P}/get/accepted"]
    assert dict(h.seen)[f"{P}/get/accepted"]["state"] == {"reported": {"on": True}}


async def test_a_failed_commit_is_500_and_changes_nothing(h: Harness) -> None:
    h.request(f"{P}/update", {"state": {"reported": {"n": 1}}})
    await settle()
    h.storage.gated = True
    rejected = h.expect(f"{P}/update/rejected")
    h.request(f"{P}/update", {"state": {"reported": {"n": 2}}, "clientToken": "t"})
    await settle()
    h.storage.release(OSError("disk full"))
    assert (await asyncio.wait_for(rejected, 5)) == {"code": 500, "message": "Internal service failure",
                                                     "timestamp": int(h.clock.now), "clientToken": "t"}
    h.storage.gated = False
    got = h.expect(f"{P}/get/accepted")
    h.request(f"{P}/get", b"")
    doc = await asyncio.wait_for(got, 5)
    assert doc["state"] == {"reported": {"n": 1}} and doc["version"] == 1
    assert h.service.stats.storage_failures == 1


async def test_other_shadows_proceed_while_one_waits(h: Harness) -> None:
    h.storage.gated = True
    for thing in ("a", "b", "c"):
        h.request(f"$aws/things/{thing}/shadow/update", {"state": {"reported": {"x": 1}}}, client_id=thing)
    await settle()
    assert len(h.storage.pending) == 3, "three shadows write at once (one storage batch)"
    h.storage.release()
    await settle()
    assert sum(t.endswith("/update/accepted") for t in h.topics()) == 3


async def test_rest_and_mqtt_updates_of_one_shadow_are_serialized(h: Harness) -> None:
    h.storage.gated = True
    rest = [asyncio.ensure_future(h.service.update("lamp", None, orjson.dumps({"state": {"desired": {f"r{i}": i}}})))
            for i in range(5)]
    for i in range(5):
        h.request(f"{P}/update", {"state": {"desired": {f"m{i}": i}}}, client_id=f"c{i}")
    for _ in range(12):
        await settle()
        assert len(h.storage.pending) <= 1, "one write per shadow at a time"
        h.storage.release()
    versions = sorted([orjson.loads(await r)["version"] for r in rest] +
                      [d["version"] for t, d in h.seen if t == f"{P}/update/accepted"])
    assert versions[:5] != versions[5:] and sorted(set(versions)) == list(range(1, 11))
    doc = orjson.loads(await h.service.get("lamp"))
    assert doc["version"] == 10 and set(doc["state"]["desired"]) == {f"r{i}" for i in range(5)} | {
        f"m{i}" for i in range(5)}


async def test_inflight_limit_per_client_is_429(h: Harness) -> None:
    h.storage.gated = True
    for i in range(11):
        h.request(f"$aws/things/t{i}/shadow/update", {"state": {"reported": {"x": 1}}, "clientToken": f"k{i}"})
    await settle()
    rejected = [(t, d) for t, d in h.seen if t.endswith("/rejected")]
    assert rejected == [("$aws/things/t10/shadow/update/rejected",
                         {"code": 429, "message": "Too Many Requests", "timestamp": int(h.clock.now),
                          "clientToken": "k10"})]
    h.storage.gated = False
    h.storage.release()
    await settle()
    h.request("$aws/things/t10/shadow/update", {"state": {"reported": {"x": 1}}})
    await settle()
    assert h.topics()[-2] == "$aws/things/t10/shadow/update/accepted", "answered requests free their slots"


async def test_queue_bound_per_shadow_is_429() -> None:
    h = Harness(GatedStorage(), max_queued_per_shadow=3)
    await h.start()
    await h.service.update("lamp", None, b'{"state":{}}')
    h.storage.gated = True
    calls = [asyncio.ensure_future(h.service.update("lamp", None, b'{"state":{"reported":{"x":1}}}'))
             for _ in range(5)]
    await settle()
    h.storage.gated = False
    h.storage.release()
    results = await asyncio.gather(*calls, return_exceptions=True)
    errors = [r for r in results if isinstance(r, ShadowError)]
    assert [e.code for e in errors] == [429], "1 running + 3 queued; the 5th is refused"


async def test_errors_go_to_the_operation_rejected_topic(h: Harness) -> None:
    h.request(f"{P}/get", b'{"clientToken":"g"}')
    h.request(f"{P}/delete", b"")
    h.request(f"{P}/update", b'{"state": 7}')
    h.request("$aws/things/bad.name/shadow/update", b'{"state":{}}')
    h.request(f"{P}/name/cfg/get", b"")
    await settle()
    got = {t: d for t, d in h.seen if t.endswith("/rejected")}
    assert got[f"{P}/get/rejected"]["message"] == "No shadow exists with name: 'lamp'"
    assert got[f"{P}/get/rejected"]["clientToken"] == "g"
    assert got[f"{P}/delete/rejected"]["code"] == 404
    assert got[f"{P}/update/rejected"]["message"] == "State node must be an object"
    assert got["$aws/things/bad.name/shadow/update/rejected"]["code"] == 400
    assert got[f"{P}/name/cfg/get/rejected"]["message"] == "No shadow exists with name: 'cfg'"


async def test_delete_keeps_version_numbering_for_48_hours(h: Harness) -> None:
    for _ in range(3):
        await h.service.update("lamp", "cfg", b'{"state":{"reported":{"x":1}}}')
    assert orjson.loads(await h.service.delete("lamp", "cfg")) == {"version": 3, "timestamp": int(h.clock.now)}
    assert dict(h.seen)[f"{P}/name/cfg/delete/accepted"]["version"] == 3
    with pytest.raises(ShadowError) as info:
        await h.service.get("lamp", "cfg")
    assert info.value.code == 404
    h.clock.now += 47 * 3600
    assert orjson.loads(await h.service.update("lamp", "cfg", b'{"state":{}}'))["version"] == 4
    await h.service.delete("lamp", "cfg")
    h.clock.now += 48 * 3600 + 1
    assert orjson.loads(await h.service.update("lamp", "cfg", b'{"state":{}}'))["version"] == 1


async def test_state_survives_a_new_service_over_the_same_storage(tmp_path: Any) -> None:
    first = Harness(SQLiteStorage(tmp_path / "db.sqlite"))
    await first.start()
    await first.service.update("lamp", None, b'{"state":{"desired":{"a":1}}}')
    await first.service.update("lamp", "gone", b'{"state":{"desired":{"a":1}}}')
    await first.service.update("lamp", "gone", b'{"state":{"desired":{"a":2}}}')
    await first.service.delete("lamp", "gone")
    await first.service.stop()
    await first.storage.close()
    second = Harness(SQLiteStorage(tmp_path / "db.sqlite"))
    second.clock.now = first.clock.now + 60
    await second.start()
    doc = orjson.loads(await second.service.get("lamp"))
    assert doc["state"] == {"desired": {"a": 1}, "delta": {"a": 1}} and doc["version"] == 1
    again = orjson.loads(await second.service.update("lamp", "gone", b'{"state":{}}'))
    assert again["version"] == 3, "the deletion record survived the restart"
    assert await second.storage.get_document(DELETED_NAMESPACE, "lamp/gone") is None
    await second.storage.close()


async def test_evicted_shadows_reload_from_storage() -> None:
    h = Harness(GatedStorage(), max_cached=2)
    await h.start()
    for thing in ("a", "b", "c", "d"):
        await h.service.update(thing, None, orjson.dumps({"state": {"reported": {"thing": thing}}}))
    assert len(h.service._cache) <= 2
    for thing in ("a", "b", "c", "d"):
        doc = orjson.loads(await h.service.get(thing))
        assert doc["state"]["reported"] == {"thing": thing} and doc["version"] == 1


async def test_list_named_shadows_pages_in_order(h: Harness) -> None:
    await h.service.update("lamp", None, b'{"state":{}}')
    for name in ("e", "a", "d", "c", "b"):
        await h.service.update("lamp", name, b'{"state":{}}')
    await h.service.update("lamp2", "z", b'{"state":{}}')
    await h.service.delete("lamp", "d")
    page = await h.service.list_named("lamp", page_size=2)
    assert page["results"] == ["a", "b"] and "nextToken" in page
    page2 = await h.service.list_named("lamp", page["nextToken"], 2)
    assert page2["results"] == ["c", "e"] and "nextToken" not in page2
    assert (await h.service.list_named("nothing"))["results"] == []
    with pytest.raises(ShadowError):
        await h.service.list_named("lamp", page_size=0)
    with pytest.raises(ShadowError):
        await h.service.list_named("lamp", "%%%")
    assert await h.storage.list_documents(NAMESPACE, prefix="lamp/") != []


async def test_get_document_for_rules(h: Harness) -> None:
    assert await h.service.get_document("lamp") is None
    await h.service.update("lamp", None, b'{"state":{"reported":{"t":20}}}')
    doc = await h.service.get_document("lamp")
    assert doc is not None and doc["state"] == {"reported": {"t": 20}}


async def test_rest_update_also_publishes_to_subscribers(h: Harness) -> None:
    body = await h.service.update("lamp", None, b'{"state":{"desired":{"x":1}},"clientToken":"r"}')
    await settle()
    assert dict(h.seen)[f"{P}/update/accepted"] == orjson.loads(body)
    assert dict(h.seen)[f"{P}/update/delta"]["clientToken"] == "r"
    with pytest.raises(ShadowError):
        await h.service.update("lamp", None, b'{"state": 1}')
    await settle()
    assert not any(t.endswith("/rejected") for t in h.topics()), "REST errors publish nothing"


async def test_updates_queued_behind_a_write_share_the_next_one(h: Harness) -> None:
    await h.service.update("lamp", None, b'{"state":{"desired":{"n":0}}}')
    h.storage.gated = True
    h.request(f"{P}/update", {"state": {"desired": {"n": 1}}, "clientToken": "u1"}, client_id="a")
    await settle()
    for i, extra in ((2, {}), (3, {"version": 1}), (4, {})):
        h.request(f"{P}/update", {"state": {"desired": {"n": i}}, "clientToken": f"u{i}", **extra}, client_id="b")
    await settle()
    assert len(h.storage.pending) == 1
    h.storage.release()
    await settle()
    assert len(h.storage.pending) == 1, "updates 2-4 were merged into one write"
    assert not any(t.endswith("/accepted") and d.get("clientToken") in ("u2", "u4") for t, d in h.seen)
    h.storage.gated = False
    h.storage.release()
    await settle()
    answers = [(t.rsplit("/", 1)[1], d.get("clientToken"), d.get("version", d.get("code")))
               for t, d in h.seen if t.startswith(f"{P}/update/") and t.endswith(("accepted", "rejected"))]
    assert answers == [("accepted", None, 1), ("accepted", "u1", 2), ("accepted", "u2", 3),
                       ("rejected", "u3", 409), ("accepted", "u4", 4)], "answers in request order"
    docs = [d for t, d in h.seen if t == f"{P}/update/documents"]
    assert [(d["previous"]["version"], d["current"]["version"]) for d in docs[1:]] == [(1, 2), (2, 3), (3, 4)]
    assert docs[-1]["previous"]["state"]["desired"] == {"n": 2} and docs[-1]["current"]["state"]["desired"] == {"n": 4}
    assert orjson.loads(await h.service.get("lamp"))["version"] == 4


async def test_messages_nobody_listens_to_are_not_built() -> None:
    h = Harness(GatedStorage())
    await h.storage.open()
    await h.broker.start()
    await h.service.start()
    h.broker.subscribe(f"{P}/update/accepted", h._record)
    await h.service.update("lamp", None, b'{"state":{"desired":{"x":1}}}')
    await settle()
    assert h.topics() == [f"{P}/update/accepted"]
    assert h.broker.stats.msgs_in == 1, "no documents or delta message was published"


async def test_a_failed_merged_write_answers_500_to_each_of_its_updates(h: Harness) -> None:
    h.storage.gated = True
    h.request(f"{P}/update", {"state": {"reported": {"n": 1}}, "clientToken": "a"}, client_id="a")
    await settle()
    h.request(f"{P}/update", {"state": {"reported": {"n": 2}}, "clientToken": "b"}, client_id="b")
    h.request(f"{P}/update", {"state": {"reported": {"n": 3}}, "clientToken": "c"}, client_id="c")
    await settle()
    h.storage.release()
    await settle()
    h.storage.release(OSError("I/O error"))  # the write that carries b and c
    await settle()
    rejected = [(d["clientToken"], d["code"]) for t, d in h.seen if t == f"{P}/update/rejected"]
    assert rejected == [("b", 500), ("c", 500)]
    h.storage.gated = False
    doc = orjson.loads(await h.service.get("lamp"))
    assert doc["version"] == 1 and doc["state"]["reported"] == {"n": 1}
    assert h.service._inflight == {}, "every answered request freed its in-flight slot"
