"""Topic filters and subscription options: wildcards, $-topics, overlaps, shared subscriptions, v5 options."""

from __future__ import annotations

import pytest
from tests.integration.mqtt_helpers import V5, PahoClient, RawClient, both_protocols, uid

from thingcore.mqtt import packets as P


@both_protocols
def test_plus_and_hash_wildcards(thingcore, protocol):
    base = uid("wc")
    with PahoClient(thingcore.mqtt_port, protocol=protocol) as plus, \
            PahoClient(thingcore.mqtt_port, protocol=protocol) as hash_, \
            PahoClient(thingcore.mqtt_port, protocol=protocol) as pub:
        for c in (plus, hash_, pub):
            c.connect()
        assert plus.subscribe(f"{base}/+/temp", 1) == [1]
        assert hash_.subscribe(f"{base}/a/#", 1) == [1]
        topics = [f"{base}/a", f"{base}/a/temp", f"{base}/b/temp", f"{base}/a/b/temp", f"{base}/a/b", f"{base}/ab"]
        for t in topics:
            pub.publish(t, t, 1)
        plus.sync()
        hash_.sync()
        got_plus = [plus.expect().topic for _ in range(2)]
        plus.expect_none(0)
        assert got_plus == [f"{base}/a/temp", f"{base}/b/temp"]
        got_hash = [hash_.expect().topic for _ in range(4)]
        hash_.expect_none(0)
        # "#" matches the parent level itself
        assert got_hash == [f"{base}/a", f"{base}/a/temp", f"{base}/a/b/temp", f"{base}/a/b"]


@both_protocols
def test_dollar_topics_not_matched_by_leading_wildcards(thingcore, protocol):
    name = uid("d")
    with PahoClient(thingcore.mqtt_port, protocol=protocol) as wild, \
            PahoClient(thingcore.mqtt_port, protocol=protocol) as explicit, \
            PahoClient(thingcore.mqtt_port, protocol=protocol) as pub:
        for c in (wild, explicit, pub):
            c.connect()
        assert wild.subscribe("#", 0) == [0]
        assert wild.subscribe("+/x/#", 0) == [0]
        assert explicit.subscribe(f"$SYSX/{name}/#", 0) == [0]
        assert explicit.subscribe(f"$SYSX/+/{name}", 0) == [0]
        pub.publish(f"$SYSX/{name}/a", b"1", 1)
        pub.publish(f"$SYSX/x/{name}", b"2", 1)
        m1, m2 = explicit.expect(), explicit.expect()
        assert {m1.topic, m2.topic} == {f"$SYSX/{name}/a", f"$SYSX/x/{name}"}
        wild.sync(f"zz/{name}")
        while not wild.messages.empty():  # other tests' traffic may reach "#"; none of it may be ours
            assert not wild.messages.get().topic.startswith("$")
        explicit.no_more()


def test_overlapping_subscriptions_one_copy_highest_qos_all_identifiers(thingcore):
    base = uid("ov")
    with PahoClient(thingcore.mqtt_port, protocol=V5) as sub, PahoClient(thingcore.mqtt_port) as pub:
        sub.connect()
        pub.connect()
        sub.subscribe(f"{base}/#", 0, sub_id=11)
        sub.subscribe(f"{base}/+/c", 2, sub_id=22)
        sub.subscribe(f"{base}/b/c", 1, sub_id=33)
        pub.publish(f"{base}/b/c", b"x", 2)
        m = sub.expect()
        assert m.qos == 2
        assert sorted(m.prop("SubscriptionIdentifier")) == [11, 22, 33]
        sub.no_more()
        pub.publish(f"{base}/q", b"y", 2)
        m = sub.expect()
        assert m.qos == 0 and m.prop("SubscriptionIdentifier") == [11]


def test_overlapping_subscriptions_v311_one_copy(thingcore):
    base = uid("ov3")
    with PahoClient(thingcore.mqtt_port, protocol=4) as sub, PahoClient(thingcore.mqtt_port) as pub:
        sub.connect()
        pub.connect()
        assert sub.subscribe([f"{base}/#", f"{base}/+"], 1) == [1, 1]
        pub.publish(f"{base}/k", b"x", 1)
        assert sub.expect().qos == 1
        sub.no_more()


@both_protocols
def test_shared_subscription_splits_messages_and_normal_subscriber_gets_all(thingcore, protocol):
    base = uid("sh")
    n = 40
    with PahoClient(thingcore.mqtt_port, protocol=protocol) as m1, \
            PahoClient(thingcore.mqtt_port, protocol=protocol) as m2, \
            PahoClient(thingcore.mqtt_port, protocol=protocol) as normal, \
            PahoClient(thingcore.mqtt_port, protocol=V5) as pub:
        for c in (m1, m2, normal, pub):
            c.connect()
        assert m1.subscribe(f"$share/g/{base}/+", 1) == [1]
        assert m2.subscribe(f"$share/g/{base}/+", 1) == [1]
        assert normal.subscribe(f"{base}/#", 1) == [1]
        for i in range(n):
            pub.publish(f"{base}/t", str(i), 1)
        assert sorted(int(m.payload) for m in normal.expect_n(n)) == list(range(n))
        m1.sync()
        m2.sync()
        got1 = [int(m1.messages.get().payload) for _ in range(m1.messages.qsize())]
        got2 = [int(m2.messages.get().payload) for _ in range(m2.messages.qsize())]
        assert sorted(got1 + got2) == list(range(n))  # each exactly once
        assert got1 and got2  # split across both members


def test_shared_subscription_gets_no_retained(thingcore):
    base = uid("shr")
    with PahoClient(thingcore.mqtt_port) as m, PahoClient(thingcore.mqtt_port) as pub:
        m.connect()
        pub.connect()
        pub.publish(f"{base}/r", b"kept", 1, retain=True)
        m.subscribe(f"$share/g/{base}/#", 1)
        m.no_more()
        pub.publish(f"{base}/r", b"", 1, retain=True)


def test_no_local(thingcore):
    topic = f"nl/{uid()}"
    with PahoClient(thingcore.mqtt_port, protocol=V5) as c, PahoClient(thingcore.mqtt_port, protocol=V5) as other:
        c.connect()
        other.connect()
        c.subscribe(topic, 1, no_local=True)
        other.subscribe(topic, 1)
        c.publish(topic, b"mine", 1)
        assert other.expect().payload == b"mine"
        other.publish(topic, b"theirs", 1)
        assert c.expect().payload == b"theirs"
        assert other.expect().payload == b"theirs"
        c.no_more()


@pytest.mark.parametrize("rap", [False, True])
def test_retain_as_published(thingcore, rap):
    topic = f"rap/{uid()}"
    with PahoClient(thingcore.mqtt_port, protocol=V5) as sub, PahoClient(thingcore.mqtt_port) as pub:
        sub.connect()
        pub.connect()
        sub.subscribe(topic, 1, rap=rap)
        pub.publish(topic, b"r", 1, retain=True)
        m = sub.expect()
        assert m.retain is rap
        pub.publish(topic, b"n", 1, retain=False)
        assert sub.expect().retain is False
        pub.publish(topic, b"", 1, retain=True)


def test_retain_handling(thingcore):
    topic = f"rh/{uid()}"
    with PahoClient(thingcore.mqtt_port, protocol=V5) as sub, PahoClient(thingcore.mqtt_port) as pub:
        sub.connect()
        pub.connect()
        pub.publish(topic, b"kept", 1, retain=True)
        # 2: never send retained
        sub.subscribe(topic, 1, retain_handling=2)
        sub.no_more()
        sub.unsubscribe(topic)
        # 1: only when the subscription is new
        sub.subscribe(topic, 1, retain_handling=1)
        m = sub.expect()
        assert (m.payload, m.retain) == (b"kept", True)
        sub.subscribe(topic, 1, retain_handling=1)  # exists already: nothing
        sub.no_more()
        # 0: on every subscribe
        sub.subscribe(topic, 1, retain_handling=0)
        assert sub.expect().payload == b"kept"
        sub.subscribe(topic, 1, retain_handling=0)
        assert sub.expect().payload == b"kept"
        sub.no_more()
        pub.publish(topic, b"", 1, retain=True)


@pytest.mark.parametrize("level", [4, 5])
def test_suback_codes_on_the_wire(thingcore, level):
    with RawClient(thingcore.mqtt_port, level) as c:
        c.connect(uid("sa"))
        codes = c.subscribe(P.Subscription("a/b", 0), P.Subscription("a/+", 1), P.Subscription("a/#", 2),
                            P.Subscription("a/#/b", 1), P.Subscription("$share/g/x", 2))
        bad = 0x80 if level == 4 else 0x8F  # invalid filter: 3.1.1 failure / v5 Topic Filter invalid
        assert codes == [0, 1, 2, bad, 2]
        c.ping()


def test_unsubscribe_stops_delivery_and_unsuback_codes(thingcore):
    topic = f"unsub/{uid()}"
    with RawClient(thingcore.mqtt_port, 5) as c, PahoClient(thingcore.mqtt_port) as pub:
        c.connect(uid("us"))
        pub.connect()
        c.subscribe(P.Subscription(topic, 0))
        c.send(P.Unsubscribe(9, [topic, "never/subscribed"]))
        ack = c.expect(P.Unsuback)
        assert (ack.packet_id, ack.reason_codes) == (9, [0x00, 0x11])
        pub.publish(topic, b"x", 1)
        c.ping()  # the PINGRESP comes first: nothing was delivered
