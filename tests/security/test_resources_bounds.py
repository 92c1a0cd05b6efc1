"""Retained messages, subscriptions per client and sessions are bounded (issue 12, finding 19).

Before, none of them was: 100 000 subscriptions from one client cost 160 MB, and any client could
store retained messages or open sessions until memory ran out. Past each bound the caller gets a clear
refusal (MQTT 5 0x97 Quota exceeded, its 3.1.1 or HTTP equivalent), the refusal is logged and counted,
and the broker serves everyone else as before.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import httpx
import pytest
from paho.mqtt.packettypes import PacketTypes
from tests.conftest import require_tool
from tests.integration.mqtt_helpers import V5, V311, PahoClient, mosquitto_pub, props, uid, wait_for
from tests.integration.rawmqtt import PahoPair
from tests.server import ThingcoreProcess

pytestmark = pytest.mark.integration

QUOTA_EXCEEDED = 0x97


def stats(server: ThingcoreProcess) -> dict[str, int]:
    status, body = server.http_get("/api/v1/stats")
    assert status == 200, body
    return json.loads(body)["broker"]


def serves_others(server: ThingcoreProcess) -> None:
    pair = PahoPair(server.host, server.mqtt_port)
    try:
        pair.check()
    finally:
        pair.close()


# -- retained messages ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def retained_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    limits = {"max_retained_messages": 3, "max_retained_bytes": 64}
    with ThingcoreProcess(tmp_path_factory.mktemp("retained-bounds"), {"limits": limits}) as tc:
        yield tc


def retained_topics(server: ThingcoreProcess, prefix: str) -> dict[str, bytes]:
    """What a new subscriber gets as retained messages (mosquitto_sub --retained-only)."""
    require_tool("mosquitto_sub")
    out = subprocess.run(
        ["mosquitto_sub", "-h", server.host, "-p", str(server.mqtt_port), "-t", f"{prefix}/#", "-v",
         "--retained-only", "-W", "1", "-i", uid("msub")],
        capture_output=True, text=True, timeout=10, check=False).stdout
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1].encode() for line in out.splitlines() if line}


def test_retained_messages_past_the_bound_are_refused_with_quota_exceeded(retained_server: ThingcoreProcess) -> None:
    require_tool("mosquitto_pub")
    server = retained_server
    p = "bounded"
    with PahoClient(server.mqtt_port, uid("retainer")) as c, PahoClient(server.mqtt_port, uid("watcher")) as w:
        c.connect()
        w.connect()
        w.subscribe(f"{p}/#", 1)
        for i in (1, 2, 3):
            assert c.publish(f"{p}/{i}", b"aaaaa", 1, retain=True) == 0
        # a fourth topic is past max_retained_messages: refused as a whole (not routed either)
        assert c.publish(f"{p}/4", b"aaaaa", 1, retain=True) == QUOTA_EXCEEDED
        # replacing and deleting existing retained topics always works, and deleting makes room
        assert c.publish(f"{p}/1", b"bbbbb", 1, retain=True) == 0
        assert c.publish(f"{p}/2", b"", 1, retain=True) == 0
        assert c.publish(f"{p}/4", b"ccccc", 1, retain=True) == 0
        # max_retained_bytes (64): growing a retained message is fine up to it, refused past it
        assert c.publish(f"{p}/1", b"x" * 50, 1, retain=True) == 0  # 50 + 5 + 5 bytes
        assert c.publish(f"{p}/3", b"y" * 10, 1, retain=True) == QUOTA_EXCEEDED  # would be 65
        assert c.publish(f"{p}/3", b"z", 1, retain=True) == 0  # shrinking always fits
        # a publish without retain is not concerned
        assert c.publish(f"{p}/5", b"live", 1) == 0
        live = [(m.topic, m.payload) for m in w.expect_n(9)]
        assert (f"{p}/4", b"aaaaa") not in live and (f"{p}/3", b"y" * 10) not in live
        assert live[-1] == (f"{p}/5", b"live")

    # MQTT 3.1.1 cannot say no: the publish is acknowledged (as mosquitto does) and not stored
    assert mosquitto_pub(server.mqtt_port, f"{p}/6", "late", version="mqttv311", qos=1, retain=True).returncode == 0
    # HTTP: 429 ThrottlingException, as AWS throttles retained publishes past the account quota
    r = httpx.post(f"http://{server.host}:{server.http_port}/topics/{p}/7?qos=1&retain=true", content=b"h")
    assert r.status_code == 429
    assert r.headers["x-amzn-ErrorType"].startswith("ThrottlingException")
    assert "retained message limit" in r.json()["message"]

    assert retained_topics(server, p) == {f"{p}/1": b"x" * 50, f"{p}/3": b"z", f"{p}/4": b"ccccc"}
    broker = stats(server)
    assert broker["retained"] == 3 and broker["retained_bytes"] == 56
    assert broker["retained_refused"] == 4
    assert server.metrics()["thingcore_retained_refused_total"] == 4
    assert "retained message limit reached" in server.log()
    serves_others(server)


# -- subscriptions per client --------------------------------------------------------------------


@pytest.fixture(scope="module")
def subscriptions_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    with ThingcoreProcess(tmp_path_factory.mktemp("sub-bounds"), {"limits": {"max_subscriptions": 5}}) as tc:
        yield tc


def test_subscriptions_past_the_bound_get_quota_exceeded(subscriptions_server: ThingcoreProcess) -> None:
    server = subscriptions_server
    before = stats(server)["subscriptions_refused"]
    p = f"subs/{uid()}"
    with PahoClient(server.mqtt_port, uid("subscriber")) as c, PahoClient(server.mqtt_port, uid("pub")) as pub:
        c.connect()
        pub.connect()
        assert c.subscribe([f"{p}/{i}" for i in range(6)], 1) == [1, 1, 1, 1, 1, QUOTA_EXCEEDED]
        assert c.subscribe(f"{p}/0", 0) == [0]  # changing an existing subscription always works
        assert c.subscribe(f"{p}/extra", 1) == [QUOTA_EXCEEDED]
        pub.publish(f"{p}/5", b"not subscribed", 1)
        pub.publish(f"{p}/4", b"subscribed", 1)
        assert c.expect().payload == b"subscribed"
        c.unsubscribe(f"{p}/1")  # unsubscribing makes room
        assert c.subscribe(f"{p}/extra", 1) == [1]
    with PahoClient(server.mqtt_port, uid("subscriber311"), protocol=V311) as c:
        c.connect()
        assert c.subscribe([f"{p}/{i}" for i in range(6)], 1) == [1, 1, 1, 1, 1, 0x80]
    assert stats(server)["subscriptions_refused"] == before + 3
    assert server.metrics()["thingcore_subscriptions_refused_total"] == before + 3
    assert "5 subscriptions is the limit per client" in server.log()
    serves_others(server)


def test_mosquitto_sub_sees_the_refused_filter(subscriptions_server: ThingcoreProcess) -> None:
    require_tool("mosquitto_sub")
    server = subscriptions_server
    cmd = ["mosquitto_sub", "-h", server.host, "-p", str(server.mqtt_port), "-V", "mqttv311", "-d", "-W", "1",
           "-i", uid("msub")]
    for i in range(7):
        cmd += ["-t", f"subs/m/{i}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False).stdout
    assert "Subscribed (mid: 1): 0, 0, 0, 0, 0, 128, 128" in out, out


# -- sessions ------------------------------------------------------------------------------------


def test_new_sessions_past_the_bound_are_refused(thingcore_factory) -> None:
    server = thingcore_factory({"limits": {"max_sessions": 3}})
    expiry = props(PacketTypes.CONNECT, SessionExpiryInterval=300)
    ids = [uid("persistent") for _ in range(3)]
    for client_id in ids:  # three offline persistent sessions fill the bound
        c = PahoClient(server.mqtt_port, client_id, clean=False, properties=expiry)
        c.connect()
        c.disconnect()
    assert stats(server)["sessions"] == 3

    newcomer = PahoClient(server.mqtt_port, uid("newcomer"))
    assert newcomer.connect(expect=None).reason_code == QUOTA_EXCEEDED
    newcomer.close()
    require_tool("mosquitto_sub")
    old = subprocess.run(["mosquitto_sub", "-h", server.host, "-p", str(server.mqtt_port), "-V", "mqttv311",
                          "-t", "x", "-W", "2", "-i", uid("msub")], capture_output=True, text=True, timeout=10)
    assert old.returncode != 0 and "broker unavailable" in old.stderr, old.stderr  # CONNACK 3

    # an existing session is still resumed; one that ends makes room
    back = PahoClient(server.mqtt_port, ids[0], clean=False, properties=expiry)
    assert back.connect().session_present
    back.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))
    wait_for(lambda: stats(server)["sessions"] == 2, what="the ended session to go")
    assert stats(server)["sessions_refused"] == 2
    assert server.metrics()["thingcore_sessions_refused_total"] == 2
    assert "session limit reached (3 sessions)" in server.log()
    with PahoClient(server.mqtt_port, uid("late"), protocol=V5) as late:
        late.connect()
    with PahoClient(server.mqtt_port, ids[1]) as ending:  # a clean start ends that session at disconnect
        ending.connect()
    wait_for(lambda: stats(server)["sessions"] == 1, what="the clean sessions to go")
    serves_others(server)  # two more sessions: the bound again, and both fit
