"""Edge cases where sessions, wills, expiry and flow control meet."""

from __future__ import annotations

import time

from tests.integration.mqtt_helpers import PahoClient, RawClient, uid

from thingcore.mqtt import packets as P


def test_v5_delayed_will_published_when_clean_start_ends_the_session(thingcore):
    """MQTT 5 3.1.2.5: the will waits for the delay *or the end of the session*, whichever is first."""
    cid = uid("wclean")
    topic = f"edge/wclean/{cid}"
    with PahoClient(thingcore.mqtt_port) as sub:
        sub.connect()
        sub.subscribe(topic, 1)
        c = RawClient(thingcore.mqtt_port, 5)
        c.connect(cid, properties={"session_expiry_interval": 60},
                  will=P.Will(topic, b"session over", 1, False, {"will_delay_interval": 30}))
        c.close()
        with RawClient(thingcore.mqtt_port, 5) as c2:
            assert c2.connect(cid, clean=True).session_present is False  # ends the old session
            assert sub.expect(timeout=2).payload == b"session over"
            c2.disconnect()


def test_v5_delayed_will_published_when_session_expires_first(thingcore):
    topic = f"edge/wexp/{uid()}"
    with PahoClient(thingcore.mqtt_port) as sub:
        sub.connect()
        sub.subscribe(topic, 1)
        c = RawClient(thingcore.mqtt_port, 5)
        c.connect(uid("wexp"), properties={"session_expiry_interval": 1},
                  will=P.Will(topic, b"expired", 1, False, {"will_delay_interval": 30}))
        c.close()
        start = time.monotonic()
        assert sub.expect(timeout=4).payload == b"expired"
        assert 0.8 <= time.monotonic() - start <= 3


def test_expired_inflight_message_does_not_block_the_window(thingcore):
    """A message sent but not acknowledged, expired by the reconnect, must not keep its in-flight slot."""
    cid = uid("xinf")
    topic = f"edge/xinf/{cid}"
    conn = {"session_expiry_interval": 60, "receive_maximum": 1}
    with PahoClient(thingcore.mqtt_port) as pub:
        pub.connect()
        with RawClient(thingcore.mqtt_port, 5) as c:
            c.connect(cid, properties=conn)
            c.subscribe(P.Subscription(topic, 1))
            pub.publish(topic, b"brief", 1, properties=_expiry(1))
            first = c.expect(P.Publish)
            assert first.payload == b"brief"  # not acknowledged
        time.sleep(1.2)
        with RawClient(thingcore.mqtt_port, 5) as c:
            assert c.connect(cid, clean=False, properties=conn).session_present
            pub.publish(topic, b"next", 1)
            p = c.expect(P.Publish)
            if p.payload == b"brief":  # resending it (as the spec allows for a started delivery) is fine
                assert p.dup
                c.send(P.Puback(p.packet_id))
                p = c.expect(P.Publish)
            assert p.payload == b"next"
            c.send(P.Puback(p.packet_id))
            c.disconnect()
        with RawClient(thingcore.mqtt_port, 5) as c:
            c.connect(cid, clean=True)


def test_offline_queue_keeps_order_across_qos(thingcore):
    cid = uid("qord")
    topic = f"edge/qord/{cid}"
    with RawClient(thingcore.mqtt_port, 5) as c:
        c.connect(cid, properties={"session_expiry_interval": 60})
        c.subscribe(P.Subscription(topic, 2))
    with PahoClient(thingcore.mqtt_port) as pub:
        pub.connect()
        for i in range(30):
            pub.publish(topic, str(i), 1 + i % 2)
    with RawClient(thingcore.mqtt_port, 5) as c:
        assert c.connect(cid, clean=False).session_present
        got = []
        while len(got) < 30:
            p = c.recv()
            if isinstance(p, P.Pubrel):
                c.send(P.Pubcomp(p.packet_id))
                continue
            assert isinstance(p, P.Publish), p
            got.append(int(p.payload))
            c.send(P.Puback(p.packet_id) if p.qos == 1 else P.Pubrec(p.packet_id))
        assert got == list(range(30))


def test_session_expiry_set_on_disconnect_after_zero_is_protocol_error(thingcore):
    with RawClient(thingcore.mqtt_port, 5) as c:
        c.connect(uid("sx0"))
        c.send(P.Disconnect(0, {"session_expiry_interval": 30}))
        assert [(type(p), p.reason_code) for p in c.wait_closed()] == [(P.Disconnect, 0x82)]


def test_session_expiry_changed_on_disconnect(thingcore):
    cid = uid("sxd")
    with RawClient(thingcore.mqtt_port, 5) as c:
        c.connect(cid, properties={"session_expiry_interval": 60})
        c.disconnect(0, {"session_expiry_interval": 0})  # ends the session now
    with RawClient(thingcore.mqtt_port, 5) as c:
        assert c.connect(cid, clean=False, properties={"session_expiry_interval": 60}).session_present is False
        c.disconnect(0, {"session_expiry_interval": 0})


def test_no_local_on_shared_subscription_is_protocol_error(thingcore):
    with RawClient(thingcore.mqtt_port, 5) as c:
        c.connect(uid("nls"))
        c.send(P.Subscribe(1, [P.Subscription("$share/g/x", 1, no_local=True)]))
        assert [(type(p), p.reason_code) for p in c.wait_closed()] == [(P.Disconnect, 0x82)]


def test_shared_subscription_prefers_connected_member(thingcore):
    base = uid("shoff")
    off_id = uid("off")
    with RawClient(thingcore.mqtt_port, 5) as off:
        off.connect(off_id, properties={"session_expiry_interval": 60})
        off.subscribe(P.Subscription(f"$share/g/{base}", 1))
    with PahoClient(thingcore.mqtt_port) as on, PahoClient(thingcore.mqtt_port) as pub:
        on.connect()
        on.subscribe(f"$share/g/{base}", 1)
        pub.connect()
        for i in range(6):
            pub.publish(base, str(i), 1)
        assert [m.payload for m in on.expect_n(6)] == [str(i).encode() for i in range(6)]
    with RawClient(thingcore.mqtt_port, 5) as off:
        off.connect(off_id, clean=True)


def _expiry(seconds: int):
    from paho.mqtt.packettypes import PacketTypes
    from tests.integration.mqtt_helpers import props

    return props(PacketTypes.PUBLISH, MessageExpiryInterval=seconds)


def test_message_expired_on_arrival_does_not_leak_an_inflight_slot(thingcore):
    topic = f"edge/x0/{uid()}"
    with RawClient(thingcore.mqtt_port, 5) as c, RawClient(thingcore.mqtt_port, 5) as pub:
        c.connect(uid("x0"), properties={"receive_maximum": 1})
        c.subscribe(P.Subscription(topic, 1))
        pub.connect(uid("x0p"))
        pub.publish(topic, b"stale", 1, properties={"message_expiry_interval": 0})
        pub.publish(topic, b"fresh", 1)
        p = c.expect(P.Publish)
        assert p.payload == b"fresh"
