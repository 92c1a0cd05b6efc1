"""What the broker acknowledged survives a clean restart and `kill -9`.

Retained messages, persistent sessions (subscriptions, queued QoS 1/2 messages, unacknowledged
in-flight messages, inbound QoS 2 state) and session expiry, across restarts of a real process.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tests.integration.rawmqtt import Closed, RawClient
from tests.server import ThingcoreProcess

from thingcore.mqtt.packets import Puback, Pubcomp, Publish, Pubrec, Pubrel, Subscribe, Subscription, Unsubscribe

pytestmark = pytest.mark.integration

Factory = Callable[..., ThingcoreProcess]
EXPIRY = {"session_expiry_interval": 3600}


def down(tc: ThingcoreProcess, how: str) -> None:
    if how == "kill":
        tc.kill()
    else:
        assert tc.stop() == 0


def paho_client(tc: ThingcoreProcess, client_id: str) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect(tc.host, tc.mqtt_port)
    c.loop_start()
    assert connected.wait(10)
    return c


def collect(c: RawClient, want: set[bytes], timeout: float = 10.0, ack: bool = True) -> list[Publish]:
    """Read PUBLISHes (acknowledging QoS 1/2 fully) until every payload in ``want`` has come."""
    got: list[Publish] = []
    deadline = time.monotonic() + timeout
    while not want.issubset({p.payload for p in got}):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            p = c.recv(left)
        except TimeoutError:
            break
        if isinstance(p, Publish):
            got.append(p)
            if ack and p.qos == 1:
                c.send(Puback(p.packet_id))
            elif ack and p.qos == 2:
                c.send(Pubrec(p.packet_id))
        elif isinstance(p, Pubrel) and ack:
            c.send(Pubcomp(p.packet_id))
    return got


def no_more_publishes(c: RawClient) -> list[Publish]:
    """Any PUBLISH that arrives before a marker round trip: subscribe to a marker topic, publish the marker
    on the same connection and read until it comes back (answering PUBRELs still due). The broker writes this
    client's packets in order, so whatever it owed us before the marker has arrived by then."""
    marker = f"sync/{uuid.uuid4().hex[:10]}"
    c.send(Subscribe(65001, [Subscription(marker, 1)]))
    c.publish(marker, b"sync", 1, 65002)
    extra: list[Publish] = []
    while True:
        p = c.recv()
        if isinstance(p, Pubrel):
            c.send(Pubcomp(p.packet_id))
        elif isinstance(p, Publish) and p.topic == marker:
            c.send(Puback(p.packet_id))
            c.send(Unsubscribe(65003, [marker]))
            return extra
        elif isinstance(p, Publish):
            extra.append(p)


# -- retained --------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_retained_survive_restart(thingcore_factory: Factory, how: str) -> None:
    tc = thingcore_factory()
    pub = paho_client(tc, "ret-pub")
    topics = {f"ret/{how}/{i}": f"value-{i}".encode() for i in range(20)}
    for t, v in topics.items():
        info = pub.publish(t, v, qos=1, retain=True)
        info.wait_for_publish(10)
        assert info.is_published()
    # a retained message cleared before the crash stays cleared
    info = pub.publish(f"ret/{how}/0", b"", qos=1, retain=True)
    info.wait_for_publish(10)
    del topics[f"ret/{how}/0"]
    pub.disconnect()
    pub.loop_stop()
    down(tc, how)
    tc.start()
    with RawClient(tc.host, tc.mqtt_port, level=5) as c:
        assert c.connect("ret-sub").reason_code == 0
        c.subscribe(f"ret/{how}/#", 1)
        got = collect(c, set(topics.values()))
        assert {p.topic: p.payload for p in got} == topics
        assert all(p.retain for p in got)
        with pytest.raises(TimeoutError):  # nothing else (not the cleared one)
            c.recv(0.3)
    assert tc.metrics()["thingcore_retained_messages"] == len(topics)


# -- persistent sessions -------------------------------------------------------------------------


def _offline_subscriber(tc: ThingcoreProcess, client_id: str, topic_filter: str, qos: int = 1) -> None:
    with RawClient(tc.host, tc.mqtt_port, level=5) as c:
        assert c.connect(client_id, clean_start=True, properties=EXPIRY).reason_code == 0
        assert c.subscribe(topic_filter, qos).reason_codes == [qos]
        c.disconnect()


def test_acknowledged_messages_survive_kill_mid_stream(thingcore_factory: Factory) -> None:
    """Publish QoS 1 with many in flight and SIGKILL the server mid-stream: every PUBACKed
    message reaches the offline persistent session after the restart."""
    tc = thingcore_factory()
    _offline_subscriber(tc, "dur-sub", "dur/stream/#")
    acked: set[bytes] = set()
    sent: dict[int, bytes] = {}
    pub = RawClient(tc.host, tc.mqtt_port, level=5)
    assert pub.connect("dur-pub").reason_code == 0
    killed = False
    pid = 0
    inflight: set[int] = set()
    try:
        while True:
            while not killed and len(inflight) < 50:  # below the server's receive maximum
                pid += 1
                payload = f"m-{pid}".encode()
                sent[pid] = payload
                inflight.add(pid)
                pub.publish(f"dur/stream/{pid % 7}", payload, 1, pid)
            try:
                p = pub.recv(5)
            except Closed:
                break
            assert isinstance(p, Puback) and p.reason_code == 0, p
            acked.add(sent[p.packet_id])
            inflight.discard(p.packet_id)
            if not killed and len(acked) >= 300:
                tc.kill()  # PUBACKs already on the wire still count: they were sent before the kill
                killed = True
    finally:
        pub.close()
    assert killed and len(acked) >= 300
    tc.start()
    # the subscription survived: a message published after the restart is queued too
    with RawClient(tc.host, tc.mqtt_port, level=5) as p2:
        assert p2.connect("dur-pub2").reason_code == 0
        p2.publish("dur/stream/after", b"after-restart", 1, 1)
        assert p2.expect(Puback).reason_code == 0
    with RawClient(tc.host, tc.mqtt_port, level=5) as c:
        ack = c.connect("dur-sub", clean_start=False, properties=EXPIRY)
        assert ack.reason_code == 0 and ack.session_present
        got = collect(c, acked | {b"after-restart"}, timeout=20)
    payloads = [p.payload for p in got]
    missing = acked - set(payloads)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"
    assert b"after-restart" in payloads
    assert len(payloads) == len(set(payloads)), "a message was delivered twice to a fresh connection"


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_queued_qos1_and_qos2_survive_restart(thingcore_factory: Factory, how: str) -> None:
    tc = thingcore_factory()
    _offline_subscriber(tc, "q-sub", "q/#", qos=2)
    with RawClient(tc.host, tc.mqtt_port, level=5) as pub:
        assert pub.connect("q-pub").reason_code == 0
        for i in range(1, 21):
            pub.publish("q/a", f"q1-{i}".encode(), 1, i)
            assert pub.expect(Puback).reason_code == 0
        for i in range(21, 41):
            pub.publish("q/b", f"q2-{i}".encode(), 2, i)
            assert pub.expect(Pubrec).reason_code == 0
            pub.send(Pubrel(i))
            assert pub.expect(Pubcomp).reason_code == 0
    down(tc, how)
    tc.start()
    want = [f"q1-{i}".encode() for i in range(1, 21)] + [f"q2-{i}".encode() for i in range(21, 41)]
    with RawClient(tc.host, tc.mqtt_port, level=5) as c:
        ack = c.connect("q-sub", clean_start=False, properties=EXPIRY)
        assert ack.session_present
        got = collect(c, set(want))
        assert [p.payload for p in got] == want  # all of them, once, in order
        assert [p.qos for p in got] == [1] * 20 + [2] * 20
        assert no_more_publishes(c) == []
    # all acknowledged: nothing comes again
    with RawClient(tc.host, tc.mqtt_port, level=5) as c:
        assert c.connect("q-sub", clean_start=False, properties=EXPIRY).session_present
        with pytest.raises(TimeoutError):
            c.recv(0.5)


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_inflight_messages_resent_after_restart(thingcore_factory: Factory, how: str) -> None:
    """Delivered but unacknowledged: QoS 1 not PUBACKed and QoS 2 not PUBRECed come again with DUP;
    a QoS 2 message PUBRECed but not PUBCOMPed gets its PUBREL again."""
    tc = thingcore_factory()
    sub = RawClient(tc.host, tc.mqtt_port, level=5)
    assert sub.connect("if-sub", properties=EXPIRY).reason_code == 0
    sub.subscribe("if/#", 2)
    with RawClient(tc.host, tc.mqtt_port, level=5) as pub:
        assert pub.connect("if-pub").reason_code == 0
        pub.publish("if/1", b"qos1-unacked", 1, 1)
        assert pub.expect(Puback).reason_code == 0
        pub.publish("if/2", b"qos2-unreceived", 2, 2)
        assert pub.expect(Pubrec).reason_code == 0
        pub.send(Pubrel(2))
        pub.expect(Pubcomp)
        pub.publish("if/3", b"qos2-received", 2, 3)
        assert pub.expect(Pubrec).reason_code == 0
        pub.send(Pubrel(3))
        pub.expect(Pubcomp)
    first = collect(sub, {b"qos1-unacked", b"qos2-unreceived", b"qos2-received"}, ack=False)
    by_payload = {p.payload: p for p in first}
    assert set(by_payload) == {b"qos1-unacked", b"qos2-unreceived", b"qos2-received"}
    received_pid = by_payload[b"qos2-received"].packet_id
    sub.send(Pubrec(received_pid))
    assert sub.expect(Pubrel).packet_id == received_pid
    # the PUBREL is here, so the server has the PUBREC; give the storage write its group commit
    time.sleep(0.3)
    down(tc, how)
    sub.close()
    tc.start()
    with RawClient(tc.host, tc.mqtt_port, level=5) as c:
        ack = c.connect("if-sub", clean_start=False, properties=EXPIRY)
        assert ack.session_present
        again: list = []
        deadline = time.monotonic() + 10
        while len(again) < 3 and time.monotonic() < deadline:
            again.append(c.recv(deadline - time.monotonic()))
        pubs = {p.payload: p for p in again if isinstance(p, Publish)}
        rels = [p for p in again if isinstance(p, Pubrel)]
        assert set(pubs) == {b"qos1-unacked", b"qos2-unreceived"}, again
        assert all(p.dup for p in pubs.values())
        assert pubs[b"qos1-unacked"].packet_id == by_payload[b"qos1-unacked"].packet_id
        assert pubs[b"qos2-unreceived"].packet_id == by_payload[b"qos2-unreceived"].packet_id
        assert [r.packet_id for r in rels] == [received_pid]
        c.send(Puback(pubs[b"qos1-unacked"].packet_id))
        c.send(Pubrec(pubs[b"qos2-unreceived"].packet_id))
        assert c.expect(Pubrel).packet_id == pubs[b"qos2-unreceived"].packet_id
        c.send(Pubcomp(pubs[b"qos2-unreceived"].packet_id))
        c.send(Pubcomp(received_pid))
        with pytest.raises(TimeoutError):
            c.recv(0.3)


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_inbound_qos2_exactly_once_across_restart(thingcore_factory: Factory, how: str) -> None:
    """v5 QoS 2 from a publisher: PUBREC, server restart, the publisher resumes its session with
    PUBREL and gets PUBCOMP 0; the message is delivered exactly once, even when the publisher also
    resends the PUBLISH with DUP before PUBREL."""
    tc = thingcore_factory()
    _offline_subscriber(tc, "x2-sub", "x2/#", qos=2)
    with RawClient(tc.host, tc.mqtt_port, level=5) as pub:
        assert pub.connect("x2-pub", properties=EXPIRY).reason_code == 0
        pub.publish("x2/t", b"exactly-once", 2, 77)
        assert pub.expect(Pubrec).reason_code == 0
    down(tc, how)
    tc.start()
    with RawClient(tc.host, tc.mqtt_port, level=5) as pub:
        assert pub.connect("x2-pub", clean_start=False, properties=EXPIRY).session_present
        pub.send(Publish("x2/t", b"exactly-once", 2, False, True, 77, {}))  # DUP resend
        assert pub.expect(Pubrec).reason_code == 0
        pub.send(Pubrel(77))
        comp = pub.expect(Pubcomp)
        assert (comp.packet_id, comp.reason_code) == (77, 0)
    with RawClient(tc.host, tc.mqtt_port, level=5) as c:
        assert c.connect("x2-sub", clean_start=False, properties=EXPIRY).session_present
        got = collect(c, {b"exactly-once"})
        assert no_more_publishes(c) == []
    assert [p.payload for p in got] == [b"exactly-once"]


def test_paho_persistent_session_across_kill(thingcore_factory: Factory) -> None:
    """The same promise with paho as the subscriber (MQTT 5, session expiry, clean_start False)."""
    tc = thingcore_factory()
    cid = f"paho-dur-{uuid.uuid4().hex[:6]}"
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    received: list[bytes] = []
    cond = threading.Condition()

    def on_message(_c: object, _u: object, m: paho.MQTTMessage) -> None:
        with cond:
            received.append(m.payload)
            cond.notify_all()

    def subscriber(clean: bool) -> tuple[paho.Client, bool]:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=paho.MQTTv5)
        present: list[bool] = []
        ev = threading.Event()

        def on_connect(_c: object, _u: object, flags: object, rc: object, _p: object) -> None:
            present.append(bool(flags.session_present))  # type: ignore[attr-defined]
            ev.set()

        c.on_connect = on_connect
        c.on_message = on_message
        c.connect(tc.host, tc.mqtt_port, clean_start=clean, properties=props)
        c.loop_start()
        assert ev.wait(10)
        return c, present[0]

    c, present = subscriber(True)
    assert not present
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    c.subscribe("paho/dur/#", qos=1)
    assert done.wait(10)
    c.disconnect()
    c.loop_stop()
    pub = paho_client(tc, "paho-dur-pub")
    want = [f"p-{i}".encode() for i in range(50)]
    for w in want:
        info = pub.publish("paho/dur/x", w, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
    pub.disconnect()
    pub.loop_stop()
    tc.kill()
    tc.start()
    c, present = subscriber(False)
    try:
        assert present
        deadline = time.monotonic() + 10
        with cond:
            while not set(want).issubset(received) and time.monotonic() < deadline:
                cond.wait(0.2)
        assert received == want
    finally:
        c.disconnect()
        c.loop_stop()


# -- session expiry ------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_session_expiry_continues_across_restart(thingcore_factory: Factory, how: str) -> None:
    """A session that expires 6 s after its disconnect expires then, not 6 s after the restart;
    a longer-lived one is still there."""
    expiry = 6  # long enough for a restart on a loaded machine (about 3 s), short enough for a test
    tc = thingcore_factory()
    for cid, seconds in (("short-lived", expiry), ("long-lived", 600)):
        with RawClient(tc.host, tc.mqtt_port, level=5) as c:
            assert c.connect(cid, properties={"session_expiry_interval": seconds}).reason_code == 0
            c.subscribe(f"exp/{cid}", 1)
            c.disconnect()
    disconnected = time.monotonic()
    time.sleep(0.3)  # the disconnect's session write gets its commit (no ack to wait on)
    down(tc, how)
    tc.start()
    started = time.monotonic()
    assert started - disconnected < expiry, "the restart took longer than the expiry: the test cannot tell"
    assert tc.metrics()["thingcore_sessions"] == 2
    deadline = disconnected + expiry + 3
    while tc.metrics()["thingcore_sessions"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    expired_at = time.monotonic()
    assert tc.metrics()["thingcore_sessions"] == 1
    # counted from the disconnect: had the clock restarted with the server it would end at started + expiry
    assert expired_at < started + expiry
    with RawClient(tc.host, tc.mqtt_port, level=5) as c:
        assert not c.connect("short-lived", clean_start=False, properties={"session_expiry_interval": 3}
                             ).session_present
    with RawClient(tc.host, tc.mqtt_port, level=5) as c:
        assert c.connect("long-lived", clean_start=False, properties={"session_expiry_interval": 600}
                         ).session_present


def test_session_expired_while_server_down(thingcore_factory: Factory) -> None:
    tc = thingcore_factory()
    with RawClient(tc.host, tc.mqtt_port, level=5) as c:
        assert c.connect("gone", properties={"session_expiry_interval": 1}).reason_code == 0
        c.subscribe("gone/t", 1)
        c.disconnect()
    time.sleep(0.3)
    tc.stop()
    time.sleep(1.0)
    tc.start()
    deadline = time.monotonic() + 2
    while tc.metrics()["thingcore_sessions"] != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tc.metrics()["thingcore_sessions"] == 0
    with RawClient(tc.host, tc.mqtt_port, level=5) as c:
        assert not c.connect("gone", clean_start=False).session_present
