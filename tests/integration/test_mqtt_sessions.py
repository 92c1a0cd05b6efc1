"""Persistent sessions: session present, kept subscriptions, queued QoS 1/2, expiry, queue bound, redelivery."""

from __future__ import annotations

from paho.mqtt.packettypes import PacketTypes
from tests.integration.mqtt_helpers import V5, PahoClient, RawClient, both_protocols, props, uid, wait_for

from thingcore.mqtt import packets as P


def _persistent(port: int, protocol: int, client_id: str, expiry: int = 300) -> PahoClient:
    if protocol == V5:
        return PahoClient(port, client_id, protocol=V5, clean=False,
                          properties=props(PacketTypes.CONNECT, SessionExpiryInterval=expiry))
    return PahoClient(port, client_id, protocol=protocol, clean=False)


@both_protocols
def test_offline_messages_queued_and_delivered_on_reconnect(thingcore, protocol):
    cid = uid("sess")
    topic = f"sess/{cid}"
    with PahoClient(thingcore.mqtt_port) as pub:
        pub.connect()
        c = _persistent(thingcore.mqtt_port, protocol, cid)
        ack = c.connect(clean=True)
        assert ack.session_present is False
        c.subscribe(topic, 2)
        c.disconnect()
        for qos in (0, 1, 2, 1):
            pub.publish(topic, f"q{qos}", qos)
        c = _persistent(thingcore.mqtt_port, protocol, cid)
        with c:
            ack = c.connect(clean=False)
            assert ack.session_present is True
            got = c.expect_n(3)  # (paho hands a QoS 2 message over at PUBREL, so compare without order)
            assert sorted((m.payload, m.qos) for m in got) == [(b"q1", 1), (b"q1", 1), (b"q2", 2)]  # no QoS 0
            pub.publish(topic, b"live", 1)  # the subscription was kept
            assert c.expect().payload == b"live"
            c.no_more()
            c.disconnect()
        # a clean connect discards it
        with PahoClient(thingcore.mqtt_port, cid, protocol=protocol, clean=True) as c:
            assert c.connect(clean=True).session_present is False
            pub.publish(topic, b"gone", 1)
            c.no_more()


def test_v311_clean_session_has_no_session_present(thingcore):
    cid = uid("clean")
    with PahoClient(thingcore.mqtt_port, cid, protocol=4, clean=True) as c:
        assert c.connect().session_present is False
        c.disconnect()
    with PahoClient(thingcore.mqtt_port, cid, protocol=4, clean=True) as c:
        assert c.connect().session_present is False


def test_v5_session_expiry_zero_means_no_session(thingcore):
    cid = uid("exp0")
    with PahoClient(thingcore.mqtt_port, cid, protocol=V5) as c:
        c.connect(clean=False)
        c.subscribe(f"exp0/{cid}", 1)
        c.disconnect()
    with PahoClient(thingcore.mqtt_port, cid, protocol=V5) as c:
        assert c.connect(clean=False).session_present is False


def test_v5_session_expires(thingcore):
    cid = uid("exp")
    topic = f"exp/{cid}"
    with _persistent(thingcore.mqtt_port, V5, cid, expiry=1) as c:
        c.connect(clean=True)
        c.subscribe(topic, 1)
        sessions = thingcore.metrics()["thingcore_sessions"]
        c.disconnect()
    with PahoClient(thingcore.mqtt_port) as pub:
        pub.connect()
        pub.publish(topic, b"queued-then-expired", 1)
    wait_for(lambda: thingcore.metrics()["thingcore_sessions"] < sessions, timeout=5, what="session expiry")
    with _persistent(thingcore.mqtt_port, V5, cid) as c:
        assert c.connect(clean=False).session_present is False
        c.no_more()


def test_v5_session_kept_within_expiry(thingcore):
    cid = uid("keep")
    topic = f"keep/{cid}"
    with _persistent(thingcore.mqtt_port, V5, cid, expiry=30) as c:
        c.connect(clean=True)
        c.subscribe(topic, 1)
        c.disconnect()
    with PahoClient(thingcore.mqtt_port) as pub:
        pub.connect()
        pub.publish(topic, b"waiting", 1)
    with _persistent(thingcore.mqtt_port, V5, cid, expiry=0) as c:
        assert c.connect(clean=False).session_present is True
        assert c.expect().payload == b"waiting"
        c.disconnect()
    with _persistent(thingcore.mqtt_port, V5, cid) as c:  # the expiry 0 of the last connection ended it
        assert c.connect(clean=False).session_present is False


def test_queue_bound_drops_excess_and_counts(thingcore_factory):
    tc = thingcore_factory({"limits": {"max_queued_messages": 3}})
    cid = uid("qb")
    topic = f"qb/{cid}"
    with _persistent(tc.mqtt_port, V5, cid) as c:
        c.connect(clean=True)
        c.subscribe(topic, 1)
        c.disconnect()
    dropped = tc.metrics().get("thingcore_messages_dropped_total", 0)
    with PahoClient(tc.mqtt_port) as pub:
        pub.connect()
        for i in range(10):
            pub.publish(topic, str(i), 1)
    assert tc.metrics()["thingcore_messages_dropped_total"] == dropped + 7
    with _persistent(tc.mqtt_port, V5, cid) as c:
        assert c.connect(clean=False).session_present is True
        assert [m.payload for m in c.expect_n(3)] == [b"0", b"1", b"2"]
        c.no_more()


@both_protocols
def test_unacknowledged_messages_redelivered_with_dup(thingcore, protocol):
    level = 5 if protocol == V5 else 4
    cid = uid("dup")
    topic = f"dup/{cid}"
    conn_props = {"session_expiry_interval": 300} if level == 5 else {}
    with RawClient(thingcore.mqtt_port, level) as c:
        c.connect(cid, clean=level == 5, properties=conn_props)  # 3.1.1: clean session 0 is the persistence
        c.subscribe(P.Subscription(topic, 2))
        with PahoClient(thingcore.mqtt_port) as pub:
            pub.connect()
            pub.publish(topic, b"one", 1)
            pub.publish(topic, b"two", 2)
            pub.publish(topic, b"three", 2)
        p1 = c.expect(P.Publish)
        p2 = c.expect(P.Publish)
        p3 = c.expect(P.Publish)
        assert (p1.payload, p1.qos, p1.dup) == (b"one", 1, False)
        assert (p2.payload, p2.qos, p2.dup) == (b"two", 2, False)
        c.send(P.Pubrec(p3.packet_id))  # "three" reached us: only the PUBREL is owed
        assert c.expect(P.Pubrel).packet_id == p3.packet_id
    # socket closed without DISCONNECT, nothing acknowledged (three: no PUBCOMP)
    with RawClient(thingcore.mqtt_port, level) as c:
        ack = c.connect(cid, clean=False, properties=conn_props)
        assert ack.session_present is True
        r1 = c.expect(P.Publish)
        r2 = c.expect(P.Publish)
        assert (r1.payload, r1.qos, r1.dup, r1.packet_id) == (b"one", 1, True, p1.packet_id)
        assert (r2.payload, r2.qos, r2.dup, r2.packet_id) == (b"two", 2, True, p2.packet_id)
        rel = c.expect(P.Pubrel)
        assert rel.packet_id == p3.packet_id
        c.send(P.Puback(p1.packet_id))
        c.send(P.Pubrec(p2.packet_id))
        assert c.expect(P.Pubrel).packet_id == p2.packet_id
        c.send(P.Pubcomp(p2.packet_id))
        c.send(P.Pubcomp(p3.packet_id))
        c.ping()
        c.disconnect()
    with RawClient(thingcore.mqtt_port, level) as c:  # all acknowledged: nothing comes again
        assert c.connect(cid, clean=False, properties=conn_props).session_present is True
        c.ping()


def test_paho_manual_ack_redelivery(thingcore):
    cid = uid("mack")
    topic = f"mack/{cid}"
    c = PahoClient(thingcore.mqtt_port, cid, protocol=4, clean=False, manual_ack=True)
    c.connect(clean=False)
    c.subscribe(topic, 1)
    with PahoClient(thingcore.mqtt_port) as pub:
        pub.connect()
        pub.publish(topic, b"unacked", 1)
    m = c.expect()
    assert (m.payload, m.dup) == (b"unacked", False)
    c.drop()
    with PahoClient(thingcore.mqtt_port, cid, protocol=4, clean=False) as c2:
        assert c2.connect().session_present is True
        m = c2.expect()
        assert (m.payload, m.dup, m.qos) == (b"unacked", True, 1)
        c2.disconnect()
    with PahoClient(thingcore.mqtt_port, cid, protocol=4, clean=True) as c3:
        c3.connect()


def test_session_and_connection_gauges(thingcore):
    before = thingcore.metrics()
    cid = uid("gauge")
    with _persistent(thingcore.mqtt_port, V5, cid) as c:
        c.connect(clean=True)
        m = thingcore.metrics()
        assert m["thingcore_clients_connected"] == before["thingcore_clients_connected"] + 1
        assert m["thingcore_sessions"] == before["thingcore_sessions"] + 1
        c.disconnect()
    wait_for(lambda: thingcore.metrics()["thingcore_clients_connected"] == before["thingcore_clients_connected"],
             what="connection gone")
    assert thingcore.metrics()["thingcore_sessions"] == before["thingcore_sessions"] + 1  # kept offline
    with PahoClient(thingcore.mqtt_port, cid, protocol=V5) as c:
        c.connect(clean=True)  # clean start, expiry 0: the session ends with this connection
        c.disconnect()
    wait_for(lambda: thingcore.metrics()["thingcore_sessions"] == before["thingcore_sessions"], what="session gone")
