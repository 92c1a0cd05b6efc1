"""MQTT 5 features end to end: properties forwarded, expiry, aliases, packet sizes, flow control, server keep-alive."""

from __future__ import annotations

import time

from paho.mqtt.packettypes import PacketTypes
from tests.integration.mqtt_helpers import V5, PahoClient, RawClient, props, uid

from thingcore.mqtt import packets as P


def test_properties_forwarded_unchanged(thingcore):
    topic = f"v5/props/{uid()}"
    with PahoClient(thingcore.mqtt_port) as sub, PahoClient(thingcore.mqtt_port) as pub:
        sub.connect()
        pub.connect()
        sub.subscribe(topic, 1)
        p = props(UserProperty=[("a", "1"), ("b", "2"), ("a", "3")], ContentType="application/json",
                  PayloadFormatIndicator=1, ResponseTopic="reply/here", CorrelationData=b"\x00\x01corr")
        assert pub.publish(topic, b'{"x": 1}', 1, properties=p) == 0
        m = sub.expect()
        assert m.prop("UserProperty") == [("a", "1"), ("b", "2"), ("a", "3")]
        assert m.prop("ContentType") == "application/json"
        assert m.prop("PayloadFormatIndicator") == 1
        assert m.prop("ResponseTopic") == "reply/here"
        assert m.prop("CorrelationData") == b"\x00\x01corr"


def test_invalid_utf8_with_payload_format_indicator_refused(thingcore):
    topic = f"v5/pfi/{uid()}"
    with RawClient(thingcore.mqtt_port, 5) as c, PahoClient(thingcore.mqtt_port) as sub:
        sub.connect()
        sub.subscribe(topic, 1)
        c.connect(uid("pfi"))
        ack = c.publish(topic, b"\xff\xfe", 1, properties={"payload_format_indicator": 1})
        assert ack.reason_code == 0x99
        rec = c.publish(topic, b"\xff\xfe", 2, properties={"payload_format_indicator": 1})
        assert rec.reason_code == 0x99
        assert c.publish(topic, b"\xff\xfe", 1).reason_code == 0  # no indicator: bytes are fine
        assert sub.expect().payload == b"\xff\xfe"
        sub.no_more()


def test_message_expiry_forwarded_with_remaining_time(thingcore):
    cid = uid("mexp")
    topic = f"v5/mexp/{cid}"
    connect_props = props(PacketTypes.CONNECT, SessionExpiryInterval=60)
    with PahoClient(thingcore.mqtt_port) as pub:
        pub.connect()
        with PahoClient(thingcore.mqtt_port, cid, properties=connect_props) as sub:
            sub.connect()
            sub.subscribe(topic, 1)
            pub.publish(topic, b"live", 1, properties=props(MessageExpiryInterval=30))
            m = sub.expect()
            assert 29 <= m.prop("MessageExpiryInterval") <= 30
            sub.disconnect()
        pub.publish(topic, b"short", 1, properties=props(MessageExpiryInterval=1))
        pub.publish(topic, b"long", 1, properties=props(MessageExpiryInterval=100))
        time.sleep(1.2)  # let the short one expire while the session is offline
        with PahoClient(thingcore.mqtt_port, cid, properties=connect_props) as sub:
            assert sub.connect(clean=False).session_present
            m = sub.expect()
            assert m.payload == b"long"
            assert 97 <= m.prop("MessageExpiryInterval") < 100  # the time spent waiting was taken off
            sub.no_more()
            sub.disconnect()
        with PahoClient(thingcore.mqtt_port, cid) as sub:  # end the session
            sub.connect()


def test_expired_retained_message_not_delivered(thingcore):
    topic = f"v5/rexp/{uid()}"
    with PahoClient(thingcore.mqtt_port) as pub:
        pub.connect()
        pub.publish(topic, b"brief", 1, retain=True, properties=props(MessageExpiryInterval=1))
        time.sleep(1.2)
        with PahoClient(thingcore.mqtt_port) as sub:
            sub.connect()
            sub.subscribe(topic, 1)
            sub.no_more()


def test_request_response_information(thingcore):
    with PahoClient(thingcore.mqtt_port, properties=props(PacketTypes.CONNECT, RequestResponseInformation=1)) as c:
        ack = c.connect()
        info = getattr(ack.properties, "ResponseInformation", None)
        assert isinstance(info, str) and info
    with PahoClient(thingcore.mqtt_port) as c:
        assert getattr(c.connect().properties, "ResponseInformation", None) is None


def test_assigned_client_identifier(thingcore):
    with RawClient(thingcore.mqtt_port, 5) as c:
        ack = c.connect("")
        assigned = ack.properties.get("assigned_client_identifier")
        assert assigned
    with RawClient(thingcore.mqtt_port, 5) as c:
        assert c.connect("").properties["assigned_client_identifier"] != assigned


def test_topic_alias_client_to_server(thingcore):
    topic = f"v5/alias/{uid()}"
    with RawClient(thingcore.mqtt_port, 5) as c, PahoClient(thingcore.mqtt_port) as sub:
        sub.connect()
        sub.subscribe(topic, 1)
        ack = c.connect(uid("al"))
        assert ack.properties["topic_alias_maximum"] >= 1
        c.publish(topic, b"first", 1, properties={"topic_alias": 1})
        c.publish("", b"second", 1, properties={"topic_alias": 1})
        assert [(m.topic, m.payload) for m in sub.expect_n(2)] == [(topic, b"first"), (topic, b"second")]
        # unknown alias with an empty topic: protocol error
        c.send(P.Publish("", b"x", 1, False, False, c.next_pid(), {"topic_alias": 2}))
        got = c.wait_closed()
        assert [(type(p), p.reason_code) for p in got] == [(P.Disconnect, 0x82)]


def test_topic_alias_above_maximum(thingcore):
    with RawClient(thingcore.mqtt_port, 5) as c:
        ack = c.connect(uid("al"))
        c.send(P.Publish("a", b"x", 0, False, False, None,
                         {"topic_alias": ack.properties["topic_alias_maximum"] + 1}))
        assert [(type(p), p.reason_code) for p in c.wait_closed()] == [(P.Disconnect, 0x94)]


def test_topic_alias_server_to_client(thingcore):
    topic = f"v5/salias/{uid()}"
    # (paho-mqtt 2.2 does not resolve incoming topic aliases, so only a raw client can take them)
    with RawClient(thingcore.mqtt_port, 5) as raw, PahoClient(thingcore.mqtt_port) as pub, \
            PahoClient(thingcore.mqtt_port) as plain:
        raw.connect(uid("sal"), properties={"topic_alias_maximum": 2})
        raw.subscribe(P.Subscription(topic, 0))
        plain.connect()
        plain.subscribe(topic, 0)
        pub.connect()
        for i in range(3):
            pub.publish(topic, str(i), 1)
        first = raw.expect(P.Publish)
        assert first.topic == topic and first.properties.get("topic_alias") in (1, 2)
        alias = first.properties["topic_alias"]
        for i in (1, 2):
            p = raw.expect(P.Publish)
            assert (p.topic, p.properties.get("topic_alias"), p.payload) == ("", alias, str(i).encode())
        # a client that did not allow aliases gets full topics
        assert [(m.topic, m.payload) for m in plain.expect_n(3)] == [(topic, b"0"), (topic, b"1"), (topic, b"2")]


def test_client_maximum_packet_size(thingcore):
    topic = f"v5/cmps/{uid()}"
    with RawClient(thingcore.mqtt_port, 5) as small, PahoClient(thingcore.mqtt_port) as pub:
        small.connect(uid("mps"), properties={"maximum_packet_size": 100})
        small.subscribe(P.Subscription(topic, 1))
        pub.connect()
        pub.publish(topic, b"x" * 200, 1)  # too big for this client: not sent at all
        pub.publish(topic, b"small", 1)
        p = small.expect(P.Publish)
        assert p.payload == b"small"
        small.send(P.Puback(p.packet_id))
        small.ping()


def test_server_maximum_packet_size(thingcore_factory):
    tc = thingcore_factory({"limits": {"max_packet_size": 1024}})
    with RawClient(tc.mqtt_port, 5) as c:
        ack = c.connect(uid("smps"))
        assert ack.properties["maximum_packet_size"] == 1024
        c.publish("mps/ok", b"x" * 900, 1)
        c.send(P.Publish("mps/big", b"x" * 2000, 1, False, False, 2))
        assert [(type(p), p.reason_code) for p in c.wait_closed()] == [(P.Disconnect, 0x95)]
    with RawClient(tc.mqtt_port, 4) as c:
        c.connect(uid("smps3"))
        c.send(P.Publish("mps/big", b"x" * 2000, 0))
        assert c.wait_closed() == []


def test_server_keep_alive(thingcore_factory):
    tc = thingcore_factory({"limits": {"max_keepalive": 2}})
    with RawClient(tc.mqtt_port, 5) as c:
        assert c.connect(uid("ska"), keep_alive=60).properties["server_keep_alive"] == 2
        start = time.monotonic()
        got = c.wait_closed(timeout=6)  # enforced with the server's value: 3 s
        assert [(type(p), p.reason_code) for p in got] == [(P.Disconnect, 0x8D)]
        assert 2.8 <= c.closed_at - start <= 5
    with RawClient(tc.mqtt_port, 5) as c:
        assert "server_keep_alive" not in c.connect(uid("ska"), keep_alive=1).properties


def test_outbound_window_honours_client_receive_maximum(thingcore):
    topic = f"v5/rm/{uid()}"
    with RawClient(thingcore.mqtt_port, 5) as c, PahoClient(thingcore.mqtt_port) as pub:
        c.connect(uid("rm"), properties={"receive_maximum": 2})
        c.subscribe(P.Subscription(topic, 1))
        pub.connect()
        for i in range(5):
            pub.publish(topic, str(i), 1)
        a, b = c.expect(P.Publish), c.expect(P.Publish)
        assert (a.payload, b.payload) == (b"0", b"1")
        c.ping()  # only two in flight: nothing more until an ack
        c.send(P.Puback(a.packet_id))
        assert c.expect(P.Publish).payload == b"2"
        c.ping()
        c.send(P.Puback(b.packet_id))
        assert c.expect(P.Publish).payload == b"3"


def test_outbound_window_with_paho_manual_ack(thingcore):
    topic = f"v5/rmp/{uid()}"
    with PahoClient(thingcore.mqtt_port, manual_ack=True,
                    properties=props(PacketTypes.CONNECT, ReceiveMaximum=2)) as sub, \
            PahoClient(thingcore.mqtt_port) as pub:
        sub.connect()
        sub.subscribe(topic, 1)
        pub.connect()
        for i in range(4):
            pub.publish(topic, str(i), 1)
        first = sub.expect_n(2)
        sub.no_more(via=pub, qos=0)  # a QoS 0 marker is not held by the window: "2" would be ahead of it
        for m in first:
            sub.ack(m)
        rest = sub.expect_n(2)
        assert [m.payload for m in first + rest] == [b"0", b"1", b"2", b"3"]
        for m in rest:
            sub.ack(m)


def test_inbound_receive_maximum_exceeded(thingcore_factory):
    tc = thingcore_factory({"limits": {"receive_maximum": 3}})
    with RawClient(tc.mqtt_port, 5) as c:
        assert c.connect(uid("rmx")).properties["receive_maximum"] == 3
        for pid in (1, 2, 3):
            c.send(P.Publish("rm/x", b"x", 2, False, False, pid))
            assert c.expect(P.Pubrec).packet_id == pid
        c.send(P.Publish("rm/x", b"x", 2, False, False, 4))
        assert [(type(p), p.reason_code) for p in c.wait_closed()] == [(P.Disconnect, 0x93)]


def test_reason_string_on_refusal(thingcore):
    with RawClient(thingcore.mqtt_port, 5) as c:
        c.connect(uid("rs"))
        ack = c.publish("rs/x", b"\xff", 1, properties={"payload_format_indicator": 1})
        assert ack.reason_code == 0x99 and ack.properties.get("reason_string")
    with RawClient(thingcore.mqtt_port, 5) as c:  # request problem information 0: no reason string
        c.connect(uid("rs"), properties={"request_problem_information": 0})
        ack = c.publish("rs/x", b"\xff", 1, properties={"payload_format_indicator": 1})
        assert ack.reason_code == 0x99 and "reason_string" not in ack.properties


def test_subscription_identifier_on_retained(thingcore):
    topic = f"v5/sidr/{uid()}"
    with PahoClient(thingcore.mqtt_port, protocol=V5) as c:
        c.connect()
        c.publish(topic, b"r", 1, retain=True)
        c.subscribe(topic, 1, sub_id=77)
        m = c.expect()
        assert m.retain and m.prop("SubscriptionIdentifier") == [77]
        c.publish(topic, b"", 1, retain=True)
