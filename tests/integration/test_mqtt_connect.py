"""CONNECT rules, session takeover, authorization reason codes, the AWS profile and /metrics counters."""

from __future__ import annotations

import socket
import struct

import pytest
from tests.integration.mqtt_helpers import HOST, V5, V311, PahoClient, RawClient, both_protocols, uid, wait_for

from thingcore.mqtt import packets as P

# -- CONNECT -------------------------------------------------------------------------------------


def test_v311_empty_client_id(thingcore):
    with RawClient(thingcore.mqtt_port, 4) as c:
        ack = c.connect("", clean=True)
        assert (ack.reason_code, ack.session_present) == (0, False)
    with RawClient(thingcore.mqtt_port, 4) as c:
        ack = c.connect("", clean=False, expect=None)
        assert ack.reason_code == 0x02
        assert c.wait_closed() == []


def test_paho_v5_empty_client_id_gets_assigned_one(thingcore):
    with PahoClient(thingcore.mqtt_port, "", protocol=V5) as c:
        ack = c.connect()
        assert getattr(ack.properties, "AssignedClientIdentifier", "")


@pytest.mark.parametrize("level", [4, 5])
def test_second_connect_closes_connection(thingcore, level):
    with RawClient(thingcore.mqtt_port, level) as c:
        cid = uid("twice")
        c.connect(cid)
        c.send(P.Connect(cid, level))
        got = c.wait_closed()
        if level == 5:
            assert [(type(p), p.reason_code) for p in got] == [(P.Disconnect, 0x82)]
        else:
            assert got == []


@pytest.mark.parametrize("version", [2, 6, 7])
def test_unsupported_protocol_level(thingcore, version):
    body = struct.pack("!H", 4) + b"MQTT" + bytes([version, 0x02]) + struct.pack("!H", 60) + struct.pack("!H", 1) + b"x"
    with socket.create_connection((HOST, thingcore.mqtt_port), timeout=5) as s:
        s.sendall(bytes([0x10, len(body)]) + body)
        data = b""
        while True:
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
    assert data == b"\x20\x02\x00\x01"  # CONNACK 0x01, then closed


def test_first_packet_must_be_connect(thingcore):
    with RawClient(thingcore.mqtt_port, 4) as c:
        c.send(P.Pingreq())
        assert c.wait_closed() == []


@both_protocols
def test_session_takeover(thingcore, protocol):
    level = 5 if protocol == V5 else 4
    cid = uid("take")
    with RawClient(thingcore.mqtt_port, level) as old, RawClient(thingcore.mqtt_port, level) as new:
        old.connect(cid)
        new.connect(cid)
        got = old.wait_closed()
        if level == 5:
            assert [(type(p), p.reason_code) for p in got] == [(P.Disconnect, 0x8E)]
        else:
            assert got == []
        new.ping()  # the new connection lives on


def test_takeover_keeps_session_and_publishes_old_will(thingcore):
    cid = uid("takew")
    topic = f"take/{cid}"
    with PahoClient(thingcore.mqtt_port) as sub:
        sub.connect()
        sub.subscribe(topic, 1)
        with RawClient(thingcore.mqtt_port, 5) as old, RawClient(thingcore.mqtt_port, 5) as new:
            old.connect(cid, properties={"session_expiry_interval": 60}, will=P.Will(topic, b"old will", 1))
            old.subscribe(P.Subscription(f"{topic}/in", 1))
            ack = new.connect(cid, clean=False, properties={"session_expiry_interval": 0})
            assert ack.session_present is True
            assert sub.expect().payload == b"old will"
            with PahoClient(thingcore.mqtt_port) as pub:
                pub.connect()
                pub.publish(f"{topic}/in", b"to new", 1)
            assert new.expect(P.Publish).payload == b"to new"


# -- authorization -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory):
    from tests.server import ThingcoreProcess

    config = {"auth": {"acl": [
        {"effect": "deny", "action": "subscribe", "topic": "test/nosubscribe", "reason_code": 128},
        {"effect": "deny", "action": "subscribe", "topic": "test/denied/#"},
        {"effect": "deny", "action": "publish", "topic": "test/nopublish"},
        {"effect": "deny", "action": "receive", "topic": "test/noreceive"},
    ]}}
    with ThingcoreProcess(tmp_path_factory.mktemp("acl"), config) as tc:
        yield tc


@pytest.mark.parametrize("level", [4, 5])
def test_subscribe_denied_reason_codes(acl_server, level):
    with RawClient(acl_server.mqtt_port, level) as c:
        c.connect(uid("acl"))
        codes = c.subscribe(P.Subscription("test/nosubscribe", 1), P.Subscription("test/denied/x", 1),
                            P.Subscription("test/allowed", 1))
        assert codes == [0x80, 0x87 if level == 5 else 0x80, 1]


@both_protocols
def test_subscribe_denied_with_paho(acl_server, protocol):
    with PahoClient(acl_server.mqtt_port, protocol=protocol) as c:
        c.connect()
        assert c.subscribe("test/nosubscribe", 1) == [0x80]


def test_publish_denied(acl_server):
    with RawClient(acl_server.mqtt_port, 5) as c, PahoClient(acl_server.mqtt_port) as sub:
        sub.connect()
        sub.subscribe("test/#", 1)
        c.connect(uid("aclp"))
        assert c.publish("test/nopublish", b"x", 1).reason_code == 0x87
        assert c.publish("test/nopublish", b"x", 2).reason_code == 0x87
        with RawClient(acl_server.mqtt_port, 4) as c3:  # 3.1.1: acknowledged and dropped
            c3.connect(uid("aclp3"))
            assert c3.publish("test/nopublish", b"x", 1).packet_id
        c.publish("test/noreceive", b"hidden", 1)
        c.publish("test/ok", b"fine", 1)
        assert sub.expect().payload == b"fine"
        sub.no_more()


# -- AWS profile ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws_server(tmp_path_factory):
    from tests.server import ThingcoreProcess

    with ThingcoreProcess(tmp_path_factory.mktemp("aws"), {"profile": "aws"}) as tc:
        yield tc


def test_aws_connack_and_keep_alive(aws_server):
    with RawClient(aws_server.mqtt_port, 5) as c:
        ack = c.connect(uid("aws"), keep_alive=5)
        assert ack.properties["maximum_qos"] == 1
        assert ack.properties["server_keep_alive"] == 30


def test_aws_qos2_publish_refused(aws_server):
    with RawClient(aws_server.mqtt_port, 5) as c:
        c.connect(uid("aws"))
        c.send(P.Publish("aws/q2", b"x", 2, False, False, 1))
        assert [(type(p), p.reason_code) for p in c.wait_closed()] == [(P.Disconnect, 0x9B)]


@both_protocols
def test_aws_suback_grants_at_most_qos1(aws_server, protocol):
    with PahoClient(aws_server.mqtt_port, protocol=protocol) as c:
        c.connect()
        assert c.subscribe(f"aws/sub/{uid()}", 2) == [1]


def test_aws_payload_limit(aws_server):
    with RawClient(aws_server.mqtt_port, 5) as c:
        c.connect(uid("aws"))
        c.publish("aws/size", b"x" * (128 * 1024), 1)
        c.send(P.Publish("aws/size", b"x" * (128 * 1024 + 1), 1, False, False, 9))
        assert [(type(p), p.reason_code) for p in c.wait_closed()] == [(P.Disconnect, 0x95)]


def test_aws_topic_levels(aws_server):
    with RawClient(aws_server.mqtt_port, 5) as c:
        c.connect(uid("aws"))
        assert c.publish("a/b/c/d/e/f/g/h", b"x", 1).reason_code == 0  # 8 levels
        assert c.publish("a/b/c/d/e/f/g/h/i", b"x", 1).reason_code >= 0x80  # 9 levels


# -- metrics -------------------------------------------------------------------------------------


def test_message_and_connection_counters(thingcore):
    topic = f"metrics/{uid()}"
    before = thingcore.metrics()
    with PahoClient(thingcore.mqtt_port) as sub, PahoClient(thingcore.mqtt_port, protocol=V311) as pub:
        sub.connect()
        pub.connect()
        sub.subscribe(topic, 1)
        for _ in range(5):
            pub.publish(topic, b"m", 1)
        sub.expect_n(5)
        m = thingcore.metrics()
        assert m["thingcore_connections_accepted_total"] >= before["thingcore_connections_accepted_total"] + 2
        assert m["thingcore_connections"] == before["thingcore_connections"] + 2
        assert m["thingcore_messages_received_total"] >= before["thingcore_messages_received_total"] + 5
        assert m["thingcore_messages_sent_total"] >= before["thingcore_messages_sent_total"] + 5
        assert m["thingcore_subscriptions"] == before["thingcore_subscriptions"] + 1
        assert m["thingcore_bytes_received_total"] > before["thingcore_bytes_received_total"]
    wait_for(lambda: thingcore.metrics()["thingcore_connections"] == before["thingcore_connections"],
             what="connections closed")
