"""Finding 18: offline persistent sessions must not turn one publisher's messages into N copies on disk and
all of them in memory at restart; their total is bounded, and MQTT 3.1.1 persistent sessions expire.

The hostile caller here is a publisher (or a fleet of idle devices) filling offline queues: ten sessions
subscribed to one topic, one publisher sending megabytes they never come to fetch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.integration.rawmqtt import RawClient
from tests.server import ThingcoreProcess

from thingcore.config import LimitSettings
from thingcore.mqtt.packets import Puback, Publish

pytestmark = pytest.mark.integration

Factory = Callable[..., ThingcoreProcess]
SESSIONS = [f"idle-dev-{i}" for i in range(10)]
V5_PERSISTENT = {"session_expiry_interval": 3600}


def rss_kib(tc: ThingcoreProcess) -> int:
    assert tc.proc is not None
    for line in Path(f"/proc/{tc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/<pid>/status")


def settled_rss_kib(tc: ThingcoreProcess) -> int:
    """RSS once start-up work is done (the largest of a few readings, so a late load is not missed)."""
    readings = []
    for _ in range(5):
        readings.append(rss_kib(tc))
        time.sleep(0.2)
    return max(readings)


def db_bytes(tc: ThingcoreProcess) -> int:
    return sum(p.stat().st_size for p in tc.data_dir.glob("thingcore.db*"))


def subscribe_offline(tc: ThingcoreProcess, client_ids: list[str], topic_filter: str, *, level: int = 4) -> None:
    """Persistent sessions (3.1.1 clean session 0, or v5 with an expiry) that subscribe and go away."""
    for cid in client_ids:
        with RawClient(tc.host, tc.mqtt_port, level=level) as c:
            props = V5_PERSISTENT if level == 5 else {}
            assert c.connect(cid, clean_start=level == 5, properties=props).reason_code == 0
            assert c.subscribe(topic_filter, 1).reason_codes == [1]
            c.disconnect()


def publish_all(tc: ThingcoreProcess, topic: str, payloads: list[bytes], codes: list[int] | None = None) -> None:
    """MQTT 5 QoS 1 publishes, each acknowledged with its reason code in ``codes`` (default: all 0)."""
    with RawClient(tc.host, tc.mqtt_port, level=5) as pub:
        assert pub.connect("flooder").reason_code == 0
        for i, payload in enumerate(payloads, 1):
            pub.publish(topic, payload, 1, i)
            assert pub.expect(Puback, timeout=20).reason_code == (codes[i - 1] if codes else 0)


def drain(tc: ThingcoreProcess, cid: str, n: int, *, level: int = 4, quiet: float = 0.5) -> list[bytes]:
    """Resume the session and take (and acknowledge) what comes: ``n`` messages, then ``quiet`` s of nothing."""
    got: list[bytes] = []
    with RawClient(tc.host, tc.mqtt_port, level=level) as c:
        props = V5_PERSISTENT if level == 5 else {}
        ack = c.connect(cid, clean_start=False, properties=props)
        assert ack.reason_code == 0 and ack.session_present
        while True:
            try:
                p = c.recv(20 if len(got) < n else quiet)
            except TimeoutError:
                break
            if isinstance(p, Publish):
                got.append(p.payload)
                if p.qos:
                    c.send(Puback(p.packet_id))
        c.disconnect()
    return got


def test_ten_offline_sessions_store_one_copy_and_restart_reads_none(thingcore_factory: Factory) -> None:
    """10 sessions x 16 MB: the database grows by about one copy, not ten; after a restart the server's memory
    stays near its idle figure while everything is still queued on disk; then every session gets all of it,
    in order."""
    tc = thingcore_factory()
    subscribe_offline(tc, SESSIONS, "fleet/config")
    n, size = 32, 512 * 1024
    payloads = [i.to_bytes(4, "big") + bytes([i]) * (size - 4) for i in range(n)]
    total = n * size
    assert tc.stop() == 0
    before = db_bytes(tc)
    tc.start()
    idle = settled_rss_kib(tc)

    publish_all(tc, "fleet/config", payloads)
    assert tc.stop() == 0
    grown = db_bytes(tc) - before
    assert grown < 2 * total, f"the database grew by {grown / total:.1f} copies of what was published"

    tc.start()
    restarted = settled_rss_kib(tc)
    ratio = restarted / idle
    print(f"idle RSS {idle} KiB, after restart with {10 * total >> 20} MiB queued: {restarted} KiB ({ratio:.2f}x)")
    assert ratio < 1.3, f"RSS after restart is {ratio:.2f}x idle ({restarted} vs {idle} KiB)"
    assert tc.metrics()["thingcore_queued_messages"] == 10 * n  # all still queued (on disk)

    for cid in SESSIONS:
        got = drain(tc, cid, n)
        assert [p[:4] for p in got] == [p[:4] for p in payloads], f"{cid} got its messages out of order or not all"
        assert got == payloads
    assert tc.metrics()["thingcore_queued_messages"] == 0


def test_max_queued_bytes_bounds_offline_queues_counting_each_message_once(thingcore_factory: Factory) -> None:
    tc = thingcore_factory({"limits": {"max_queued_bytes": 1_000_000}})
    subscribe_offline(tc, SESSIONS, "fleet/+", level=5)
    dropped = tc.metrics().get("thingcore_messages_dropped_total", 0)
    first = [b"a" * 400_000, b"b" * 400_000]
    # the third would take the total past 1 MB: no session could take it, 0x97 Quota exceeded (issue 13)
    publish_all(tc, "fleet/x", [*first, b"c" * 400_000], [0, 0, 0x97])
    # once per session it was meant for; the first two counted once for all ten sessions
    assert tc.metrics()["thingcore_messages_dropped_total"] == dropped + len(SESSIONS)
    assert "max_queued_bytes" in tc.log()
    for cid in SESSIONS:
        assert drain(tc, cid, 2, level=5) == first
    # delivered and acknowledged: the room is back
    publish_all(tc, "fleet/y", [b"d" * 400_000])
    assert drain(tc, SESSIONS[0], 1, level=5) == [b"d" * 400_000]


def test_v311_persistent_session_expires(thingcore_factory: Factory) -> None:
    """A 3.1.1 client with clean session 0 no longer holds a session (and its queue) forever."""
    assert LimitSettings().persistent_session_expiry == 3600  # AWS IoT's default: one hour
    tc = thingcore_factory({"limits": {"persistent_session_expiry": 2}})
    sessions = tc.metrics()["thingcore_sessions"]
    subscribe_offline(tc, ["gone-dev"], "gone/#")
    publish_all(tc, "gone/x", [b"queued"])
    assert tc.metrics()["thingcore_sessions"] == sessions + 1
    deadline = time.monotonic() + 10
    while tc.metrics()["thingcore_sessions"] > sessions and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tc.metrics()["thingcore_sessions"] == sessions, "the 3.1.1 persistent session did not expire"
    assert tc.metrics()["thingcore_queued_messages"] == 0
    with RawClient(tc.host, tc.mqtt_port, level=4) as c:
        assert not c.connect("gone-dev", clean_start=False).session_present
