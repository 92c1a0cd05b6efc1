"""Wills (QoS, retain, delay, DISCONNECT 0x04) and keep-alive enforcement, watched with raw sockets."""

from __future__ import annotations

import time

import pytest
from tests.integration.mqtt_helpers import PahoClient, RawClient, uid, wait_for

from thingcore.mqtt import packets as P


def _will(topic: str, payload: bytes = b"gone", qos: int = 1, retain: bool = False, **properties) -> P.Will:
    return P.Will(topic, payload, qos, retain, properties)


@pytest.mark.parametrize("level", [4, 5])
def test_will_on_socket_loss_with_qos_and_retain(thingcore, level):
    topic = f"will/{uid()}"
    with PahoClient(thingcore.mqtt_port) as sub:
        sub.connect()
        sub.subscribe(topic, 2)
        c = RawClient(thingcore.mqtt_port, level)
        c.connect(uid("w"), will=_will(topic, b"lost", qos=1, retain=True))
        c.close()  # no DISCONNECT
        m = sub.expect()
        assert (m.topic, m.payload, m.qos, m.retain) == (topic, b"lost", 1, False)
    with PahoClient(thingcore.mqtt_port) as late:  # and it was retained
        late.connect()
        late.subscribe(topic, 2)
        m = late.expect()
        assert (m.payload, m.qos, m.retain) == (b"lost", 1, True)
        late.publish(topic, b"", 1, retain=True)


@pytest.mark.parametrize("level", [4, 5])
def test_no_will_after_normal_disconnect(thingcore, level):
    topic = f"will/none/{uid()}"
    with PahoClient(thingcore.mqtt_port) as sub:
        sub.connect()
        sub.subscribe(topic, 1)
        c = RawClient(thingcore.mqtt_port, level)
        c.connect(uid("w"), will=_will(topic))
        c.send(P.Disconnect(0))
        assert c.wait_closed() == []
        c.close()
        sub.no_more()


def test_v5_disconnect_with_will_message_publishes_will(thingcore):
    topic = f"will/04/{uid()}"
    with PahoClient(thingcore.mqtt_port) as sub:
        sub.connect()
        sub.subscribe(topic, 1)
        c = RawClient(thingcore.mqtt_port, 5)
        c.connect(uid("w"), will=_will(topic, b"by request"))
        c.send(P.Disconnect(0x04))
        c.wait_closed()
        c.close()
        assert sub.expect().payload == b"by request"


@pytest.mark.parametrize("level", [4, 5])
def test_will_on_protocol_error(thingcore, level):
    topic = f"will/err/{uid()}"
    with PahoClient(thingcore.mqtt_port) as sub:
        sub.connect()
        sub.subscribe(topic, 1)
        c = RawClient(thingcore.mqtt_port, level)
        c.connect(uid("w"), will=_will(topic, b"broken"))
        c.send_bytes(b"\x00\x02\xff\xff")  # reserved packet type 0
        got = c.wait_closed()
        if level == 5:
            assert len(got) == 1 and isinstance(got[0], P.Disconnect) and got[0].reason_code == 0x81
        else:
            assert got == []
        c.close()
        assert sub.expect().payload == b"broken"


@pytest.mark.parametrize("level", [4, 5])
def test_keep_alive_enforced_at_one_and_a_half_times(thingcore, level):
    topic = f"will/ka/{uid()}"
    with PahoClient(thingcore.mqtt_port) as sub:
        sub.connect()
        sub.subscribe(topic, 1)
        c = RawClient(thingcore.mqtt_port, level)
        c.connect(uid("ka"), keep_alive=1, will=_will(topic, b"timeout"))
        start = time.monotonic()
        got = c.wait_closed(timeout=5)
        elapsed = c.closed_at - start
        c.close()
        assert 1.4 <= elapsed <= 3.0, elapsed
        if level == 5:
            assert [(type(p), p.reason_code) for p in got] == [(P.Disconnect, 0x8D)]
        else:
            assert got == []
        m = sub.expect(timeout=2)
        assert m.payload == b"timeout"


def test_keep_alive_satisfied_by_pings(thingcore):
    with RawClient(thingcore.mqtt_port, 5) as c:
        c.connect(uid("ping"), keep_alive=1)
        for _ in range(4):  # 2.8 s of activity, well past 1.5 s
            time.sleep(0.7)
            c.ping()


def test_paho_client_that_stops_its_loop_gets_its_will_published(thingcore):
    topic = f"will/paho/{uid()}"
    with PahoClient(thingcore.mqtt_port) as sub:
        sub.connect()
        sub.subscribe(topic, 1)
        c = PahoClient(thingcore.mqtt_port, keepalive=1, will=(topic, b"silent", 1, False))
        c.connect()
        c.client.loop_stop()  # no more PINGREQs; the socket stays open
        start = time.monotonic()
        m = sub.expect(timeout=4)
        assert m.payload == b"silent"
        assert time.monotonic() - start <= 3.0
        c.client.socket().close()


def test_v5_will_delay(thingcore):
    topic = f"will/delay/{uid()}"
    with PahoClient(thingcore.mqtt_port) as sub:
        sub.connect()
        sub.subscribe(topic, 1)
        c = RawClient(thingcore.mqtt_port, 5)
        c.connect(uid("wd"), properties={"session_expiry_interval": 60},
                  will=_will(topic, b"late", will_delay_interval=1))
        c.close()
        start = time.monotonic()
        m = sub.expect(timeout=4)
        assert m.payload == b"late"
        assert time.monotonic() - start >= 0.9


def test_v5_will_delay_cancelled_by_reconnect(thingcore):
    topic = f"will/cancel/{uid()}"
    cid = uid("wc")
    will = _will(topic, b"should not", will_delay_interval=1)
    with PahoClient(thingcore.mqtt_port) as sub:
        sub.connect()
        sub.subscribe(topic, 1)
        c = RawClient(thingcore.mqtt_port, 5)
        c.connect(cid, properties={"session_expiry_interval": 60}, will=will)
        c.close()
        with RawClient(thingcore.mqtt_port, 5) as c2:
            assert c2.connect(cid, clean=False, properties={"session_expiry_interval": 60}).session_present
            time.sleep(1.5)  # past the will delay: proving a non-event needs the time to pass
            sub.no_more()
            c2.disconnect()


def test_v5_will_delay_capped_by_session_expiry(thingcore):
    """Session expiry 0 ends the session at once: the will goes out immediately despite a long delay."""
    topic = f"will/cap/{uid()}"
    with PahoClient(thingcore.mqtt_port) as sub:
        sub.connect()
        sub.subscribe(topic, 1)
        c = RawClient(thingcore.mqtt_port, 5)
        c.connect(uid("wcap"), will=_will(topic, b"now", will_delay_interval=100))
        c.close()
        assert sub.expect(timeout=2).payload == b"now"


def test_wills_published_metric(thingcore):
    topic = f"will/metric/{uid()}"
    before = thingcore.metrics()["thingcore_wills_published_total"]
    c = RawClient(thingcore.mqtt_port, 4)
    c.connect(uid("wm"), will=_will(topic))
    c.close()
    wait_for(lambda: thingcore.metrics()["thingcore_wills_published_total"] == before + 1, what="will counted")
