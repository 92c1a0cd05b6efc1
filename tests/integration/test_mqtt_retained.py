"""Retained messages: stored, sent on subscribe with RETAIN=1 (also to wildcards), live copies RETAIN=0."""

from __future__ import annotations

import pytest
from tests.conftest import require_tool
from tests.integration.mqtt_helpers import PahoClient, RawClient, both_protocols, mosquitto_pub, mosquitto_sub, uid

from thingcore.mqtt import packets as P


@both_protocols
def test_retained_lifecycle(thingcore, protocol):
    base = uid("ret")
    topic = f"{base}/a/b"
    with PahoClient(thingcore.mqtt_port, protocol=protocol) as pub:
        pub.connect()
        pub.publish(topic, b"first", 1, retain=True)
        pub.publish(topic, b"second", 1, retain=True)  # replaces
        for flt in (topic, f"{base}/#", f"{base}/+/b", "+/a/b".replace("+", base)):
            with PahoClient(thingcore.mqtt_port, protocol=protocol) as sub:
                sub.connect()
                sub.subscribe(flt, 2)
                m = sub.expect()
                assert (m.topic, m.payload, m.retain, m.qos) == (topic, b"second", True, 1)
                sub.no_more()
        with PahoClient(thingcore.mqtt_port, protocol=protocol) as live:
            live.connect()
            live.subscribe(f"{base}/#", 1)
            assert live.expect().retain is True
            pub.publish(topic, b"third", 1, retain=True)
            m = live.expect()
            assert (m.payload, m.retain) == (b"third", False)  # a live forward is not flagged
            pub.publish(topic, b"", 1, retain=True)  # clears
            m = live.expect()  # the empty message itself is still forwarded to live subscribers
            assert (m.payload, m.retain) == (b"", False)
        with PahoClient(thingcore.mqtt_port, protocol=protocol) as late:
            late.connect()
            late.subscribe(f"{base}/#", 1)
            late.no_more()


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_retained_delivered_at_min_qos(thingcore, qos):
    topic = f"retq/{uid()}"
    with RawClient(thingcore.mqtt_port, 5) as pub, RawClient(thingcore.mqtt_port, 5) as sub:
        pub.connect(uid("p"))
        pub.publish(topic, b"r", 2, retain=True)
        sub.connect(uid("s"))
        assert sub.subscribe(P.Subscription(topic, qos)) == [qos]
        m = sub.expect(P.Publish)
        assert (m.retain, m.qos, m.payload) == (True, qos, b"r")
        pub.publish(topic, b"", 1, retain=True)


def test_retained_many_topics_on_wildcard(thingcore):
    base = uid("retmany")
    with PahoClient(thingcore.mqtt_port) as pub:
        pub.connect()
        for i in range(10):
            pub.publish(f"{base}/{i}", str(i), 1, retain=True)
        with PahoClient(thingcore.mqtt_port) as sub:
            sub.connect()
            sub.subscribe(f"{base}/+", 1)
            got = sub.expect_n(10)
            assert sorted(int(m.payload) for m in got) == list(range(10))
            assert all(m.retain for m in got)
        for i in range(10):
            pub.publish(f"{base}/{i}", b"", 1, retain=True)


def test_retained_count_in_metrics(thingcore):
    base = uid("retm")
    before = thingcore.metrics()["thingcore_retained_messages"]
    with PahoClient(thingcore.mqtt_port) as pub:
        pub.connect()
        pub.publish(f"{base}/1", b"x", 1, retain=True)
        pub.publish(f"{base}/2", b"x", 1, retain=True)
        assert thingcore.metrics()["thingcore_retained_messages"] == before + 2
        pub.publish(f"{base}/1", b"", 1, retain=True)
        pub.publish(f"{base}/2", b"", 1, retain=True)
        assert thingcore.metrics()["thingcore_retained_messages"] == before


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_mosquitto_retained(thingcore, version):
    require_tool("mosquitto_pub")
    topic = f"retmosq/{uid()}"
    r = mosquitto_pub(thingcore.mqtt_port, topic, "kept", version=version, qos=1, retain=True)
    assert r.returncode == 0, r.stderr
    proc = mosquitto_sub(thingcore.mqtt_port, [topic], count=1, version=version, extra=["-F", "%r %t %p"])
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out.strip() == f"1 {topic} kept"
    r = mosquitto_pub(thingcore.mqtt_port, topic, None, version=version, qos=1, retain=True)  # clears
    assert r.returncode == 0, r.stderr
    with PahoClient(thingcore.mqtt_port) as sub:
        sub.connect()
        sub.subscribe(topic, 1)
        sub.no_more()
