"""QoS 0/1/2 in both directions with real clients: min(publish, subscription), packet ids, ordering."""

from __future__ import annotations

import pytest
from tests.conftest import require_tool
from tests.integration.mqtt_helpers import (
    V5,
    V311,
    PahoClient,
    RawClient,
    both_protocols,
    mosquitto_pub,
    mosquitto_sub,
    uid,
    wait_for,
)

from thingcore.mqtt import packets as P


@both_protocols
@pytest.mark.parametrize("pub_qos", [0, 1, 2])
@pytest.mark.parametrize("sub_qos", [0, 1, 2])
def test_delivered_qos_is_min_of_publish_and_subscription(thingcore, protocol, pub_qos, sub_qos):
    topic = f"qos/{uid()}"
    with PahoClient(thingcore.mqtt_port, protocol=protocol) as sub, \
            PahoClient(thingcore.mqtt_port, protocol=protocol) as pub:
        sub.connect()
        pub.connect()
        assert sub.subscribe(topic, sub_qos) == [sub_qos]
        assert pub.publish(topic, f"{pub_qos}->{sub_qos}", pub_qos) == 0
        msg = sub.expect()
        assert msg.topic == topic
        assert msg.payload == f"{pub_qos}->{sub_qos}".encode()
        assert msg.qos == min(pub_qos, sub_qos)
        assert not msg.retain and not msg.dup
        sub.no_more()


@pytest.mark.parametrize("level", [4, 5])
def test_packet_ids_and_qos2_handshake_on_the_wire(thingcore, level):
    """Raw subscriber: QoS 1 and 2 PUBLISHes carry distinct non-zero ids, QoS 0 none; the QoS 2 flow completes."""
    topic = f"qos/raw/{uid()}"
    with RawClient(thingcore.mqtt_port, level) as sub, RawClient(thingcore.mqtt_port, level) as pub:
        sub.connect(uid("rs"))
        pub.connect(uid("rp"))
        assert sub.subscribe(P.Subscription(topic, 2)) == [2]
        pub.publish(topic, b"zero", 0)
        ack = pub.publish(topic, b"one", 1)
        assert ack.reason_code == 0
        rec = pub.publish(topic, b"two", 2)
        assert rec.reason_code == 0
        p0 = sub.expect(P.Publish)
        assert (p0.payload, p0.qos, p0.packet_id) == (b"zero", 0, None)
        p1 = sub.expect(P.Publish)
        assert (p1.payload, p1.qos) == (b"one", 1) and p1.packet_id
        sub.send(P.Puback(p1.packet_id))
        p2 = sub.expect(P.Publish)
        assert (p2.payload, p2.qos, p2.dup) == (b"two", 2, False) and p2.packet_id
        sub.send(P.Pubrec(p2.packet_id))
        rel = sub.expect(P.Pubrel)
        assert rel.packet_id == p2.packet_id
        sub.send(P.Pubcomp(p2.packet_id))
        sub.ping()  # nothing else pending: the next packet is our PINGRESP


def test_unacknowledged_qos1_have_distinct_packet_ids(thingcore):
    topic = f"qos/ids/{uid()}"
    with RawClient(thingcore.mqtt_port, 5) as sub, PahoClient(thingcore.mqtt_port) as pub:
        sub.connect(uid("rs"))
        pub.connect()
        sub.subscribe(P.Subscription(topic, 1))
        for i in range(20):
            pub.publish(topic, str(i), 1)
        got = [sub.expect(P.Publish) for _ in range(20)]
        assert [g.payload for g in got] == [str(i).encode() for i in range(20)]
        ids = [g.packet_id for g in got]
        assert all(1 <= i <= 65535 for i in ids)
        assert len(set(ids)) == 20


@both_protocols
def test_qos2_publish_is_delivered_exactly_once_on_resent_publish(thingcore, protocol):
    """A QoS 2 PUBLISH resent (DUP) before PUBREL is not routed twice."""
    level = 5 if protocol == V5 else 4
    topic = f"qos/once/{uid()}"
    with PahoClient(thingcore.mqtt_port, protocol=protocol) as sub, RawClient(thingcore.mqtt_port, level) as pub:
        sub.connect()
        sub.subscribe(topic, 2)
        pub.connect(uid("rp"))
        pub.send(P.Publish(topic, b"x", 2, False, False, 7))
        assert pub.expect(P.Pubrec).packet_id == 7
        pub.send(P.Publish(topic, b"x", 2, False, True, 7))
        assert pub.expect(P.Pubrec).packet_id == 7
        pub.send(P.Pubrel(7))
        assert pub.expect(P.Pubcomp).packet_id == 7
        assert sub.expect().payload == b"x"
        sub.no_more()


@both_protocols
@pytest.mark.parametrize("qos", [1, 2])
def test_per_topic_order_of_500_messages(thingcore, protocol, qos):
    topic = f"qos/order/{uid()}"
    n = 500 if qos == 1 else 200
    with PahoClient(thingcore.mqtt_port, protocol=protocol) as sub, \
            PahoClient(thingcore.mqtt_port, protocol=protocol) as pub:
        sub.connect()
        pub.connect()
        sub.subscribe(topic, qos)
        for i in range(n):
            pub.publish(topic, str(i), qos, wait=False)
        got = sub.expect_n(n, timeout=20)
        assert [int(m.payload) for m in got] == list(range(n))
        assert all(m.qos == qos for m in got)


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_clients(thingcore, version, qos):
    require_tool("mosquitto_pub")
    require_tool("mosquitto_sub")
    topic = f"qos/mosq/{uid()}"
    before = thingcore.metrics()["thingcore_subscriptions"]
    proc = mosquitto_sub(thingcore.mqtt_port, [topic], count=3, version=version, qos=qos, extra=["-v"])
    try:
        wait_for(lambda: thingcore.metrics()["thingcore_subscriptions"] > before, what="mosquitto_sub subscribed")
        for i in range(3):
            r = mosquitto_pub(thingcore.mqtt_port, topic, f"m{i}", version=version, qos=qos)
            assert r.returncode == 0, r.stderr
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.splitlines() == [f"{topic} m{i}" for i in range(3)]


def test_mosquitto_pub_reaches_paho_v5_and_v311(thingcore):
    require_tool("mosquitto_pub")
    topic = f"qos/mix/{uid()}"
    with PahoClient(thingcore.mqtt_port, protocol=V5) as a, PahoClient(thingcore.mqtt_port, protocol=V311) as b:
        a.connect()
        b.connect()
        a.subscribe(topic, 2)
        b.subscribe(topic, 1)
        r = mosquitto_pub(thingcore.mqtt_port, topic, "hello", version="mqttv5", qos=2,
                          extra=["-D", "publish", "user-property", "k", "v"])
        assert r.returncode == 0, r.stderr
        ma, mb = a.expect(), b.expect()
        assert (ma.payload, ma.qos) == (b"hello", 2)
        assert ma.prop("UserProperty") == [("k", "v")]
        assert (mb.payload, mb.qos) == (b"hello", 1)
