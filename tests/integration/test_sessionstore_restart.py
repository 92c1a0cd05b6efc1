"""Sessions across a restart with the shared, lazily read message store.

A data directory written by the previous schema (2: one full copy per session message) still starts, with its
sessions, subscriptions, queued and in-flight messages; a restored queue larger than a page drains in order
before live messages; a stored session resumed without persistence still gets what it had.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import orjson
import pytest
from tests.integration.rawmqtt import RawClient
from tests.legacy_storage import SCHEMA_2
from tests.server import ThingcoreProcess

from thingcore.mqtt.packets import Puback, Pubcomp, Publish, Pubrel

pytestmark = pytest.mark.integration

# The records as schema 2 wrote them: a 4-byte header length, a JSON header whose "e" holds the delivery
# state, then the payload.


def record(topic: str, payload: bytes, msg_qos: int, **extra: object) -> bytes:
    header = {"t": topic, "q": msg_qos, "r": False, "p": {}, "c": "old-pub", "pr": None, "a": "127.0.0.1",
              "at": time.time() - 60, "x": None}
    if extra:
        header["e"] = extra
    head = orjson.dumps(header)
    return len(head).to_bytes(4, "big") + head + payload


def write_old_data_dir(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    conn = sqlite3.connect(data_dir / "thingcore.db")
    try:
        conn.executescript(SCHEMA_2 + "PRAGMA journal_mode = WAL;\n")
        # a 3.1.1 clean-session-0 device, stored as never expiring, disconnected a day ago
        meta = orjson.dumps({"expiry": 0xFFFFFFFF, "level": 4, "subs": [["legacy/#", 2, False, False, 0, None]],
                             "disconnected_at": time.time() - 86400})
        conn.execute("INSERT INTO sessions VALUES ('legacy-dev', ?)", (meta,))

        def row(seq: int, payload: bytes, qos: int, pid: int, st: int) -> tuple[str, int, bytes]:
            return "legacy-dev", seq, record("legacy/t", payload, qos, qos=qos, retain=False, sids=[], pid=pid, st=st)

        conn.executemany("INSERT INTO session_messages VALUES (?, ?, ?)", [
            row(1, b"was-in-flight", 1, 7, 1),   # SENT, not acknowledged
            row(2, b"was-released", 2, 8, 2),   # PUBREC received, PUBREL owed
            *(row(2 + i, f"queued-{i}".encode(), 1, 0, 0) for i in range(1, 6)),
        ])
        conn.execute("INSERT INTO retained VALUES ('legacy/retained', ?)", (record("legacy/retained", b"r", 1),))
        conn.commit()
    finally:
        conn.close()


def test_schema_2_data_dir_starts_with_its_sessions(tmp_path: Path) -> None:
    tc = ThingcoreProcess(tmp_path / "old")
    write_old_data_dir(tc.data_dir)
    with tc:
        assert tc.metrics()["thingcore_sessions"] == 1
        assert tc.metrics()["thingcore_queued_messages"] == 7
        with RawClient(tc.host, tc.mqtt_port, level=5) as pub:  # the subscription came through too
            assert pub.connect("new-pub").reason_code == 0
            pub.publish("legacy/after", b"after-upgrade", 1, 1)
            assert pub.expect(Puback).reason_code == 0
        with RawClient(tc.host, tc.mqtt_port, level=4) as c:
            assert c.connect("legacy-dev", clean_start=False).session_present
            first = [c.recv(10), c.recv(10)]
            resent = next(p for p in first if isinstance(p, Publish))
            rel = next(p for p in first if isinstance(p, Pubrel))
            assert (resent.payload, resent.packet_id, resent.dup) == (b"was-in-flight", 7, True)
            assert rel.packet_id == 8
            c.send(Puback(7))
            c.send(Pubcomp(8))
            rest = []
            while len(rest) < 6:
                p = c.expect(Publish, 10)
                rest.append(p.payload)
                c.send(Puback(p.packet_id))
            assert rest == [f"queued-{i}".encode() for i in range(1, 6)] + [b"after-upgrade"]
            with pytest.raises(TimeoutError):
                c.recv(0.5)
        assert tc.metrics()["thingcore_queued_messages"] == 0


def _fill(tc: ThingcoreProcess, topic: str, payloads: list[bytes]) -> None:
    with RawClient(tc.host, tc.mqtt_port, level=5) as pub:
        assert pub.connect("filler").reason_code == 0
        for i, payload in enumerate(payloads, 1):
            pub.publish(topic, payload, 1, i)
            assert pub.expect(Puback).reason_code == 0


def test_restored_queue_is_read_in_pages_before_live_messages(tmp_path: Path) -> None:
    """More than a page on disk, a small receive window, and live messages arriving while the backlog drains:
    all of them, once, in publish order."""
    stored = [f"stored-{i:04}".encode() for i in range(700)]
    live = [f"live-{i:02}".encode() for i in range(30)]
    props = {"session_expiry_interval": 600, "receive_maximum": 5}
    with ThingcoreProcess(tmp_path / "pages") as tc:
        with RawClient(tc.host, tc.mqtt_port, level=5) as c:
            assert c.connect("pager", properties=props).reason_code == 0
            c.subscribe("pages/#", 1)
            c.disconnect()
        _fill(tc, "pages/x", stored)
        tc.restart()
        got: list[bytes] = []
        with RawClient(tc.host, tc.mqtt_port, level=5) as c:
            assert c.connect("pager", clean_start=False, properties=props).session_present
            for _ in range(3):
                p = c.expect(Publish, 10)
                got.append(p.payload)
                c.send(Puback(p.packet_id))
            _fill(tc, "pages/y", live)
            while len(got) < len(stored) + len(live):
                p = c.expect(Publish, 10)
                got.append(p.payload)
                c.send(Puback(p.packet_id))
            with pytest.raises(TimeoutError):
                c.recv(0.5)
        assert got == stored + live


def test_restored_session_resumed_without_persistence_still_gets_its_messages(tmp_path: Path) -> None:
    """MQTT 5: resuming a stored session with session expiry 0 delivers what it had, then the session ends."""
    want = [f"m-{i}".encode() for i in range(300)]
    with ThingcoreProcess(tmp_path / "ending") as tc:
        with RawClient(tc.host, tc.mqtt_port, level=5) as c:
            assert c.connect("ending", properties={"session_expiry_interval": 600}).reason_code == 0
            c.subscribe("ending/#", 1)
            c.disconnect()
        _fill(tc, "ending/x", want)
        tc.restart()
        got = []
        with RawClient(tc.host, tc.mqtt_port, level=5) as c:
            assert c.connect("ending", clean_start=False).session_present  # expiry 0 from now on
            while len(got) < len(want):
                p = c.expect(Publish, 10)
                got.append(p.payload)
                c.send(Puback(p.packet_id))
            c.disconnect()
        assert got == want
        tc.restart()
        assert tc.metrics()["thingcore_sessions"] == 0
        with RawClient(tc.host, tc.mqtt_port, level=5) as c:
            assert not c.connect("ending", clean_start=False).session_present
