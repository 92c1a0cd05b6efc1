"""The resource bounds of issue 12 (finding 19) as pure logic: retained store accounting, profile defaults."""

from __future__ import annotations

from thingcore.broker.core import Broker
from thingcore.broker.message import Message
from thingcore.broker.retained import RetainedStore
from thingcore.config import LimitSettings, Settings


def retained(topic: str, payload: bytes) -> Message:
    return Message(topic, payload, 1, True, {})


def test_a_new_topic_past_the_count_is_refused_but_replacing_and_deleting_fit() -> None:
    store = RetainedStore(max_messages=2)
    for topic in ("a", "b"):
        assert store.refusal(retained(topic, b"1")) is None
        store.set(retained(topic, b"1"))
    assert store.refusal(retained("c", b"1")) == "retained message limit reached (2 topics)"
    assert store.refusal(retained("a", b"much longer")) is None
    assert store.refusal(retained("c", b"")) is None  # a delete of nothing is no growth
    store.delete("a")
    assert store.refusal(retained("c", b"1")) is None


def test_payload_bytes_are_counted_through_set_replace_and_delete() -> None:
    store = RetainedStore(max_bytes=10)
    store.set(retained("a/b", b"12345"))
    store.set(retained("a", b"123"))
    assert store.payload_bytes == 8
    store.set(retained("a/b", b"1"))
    assert store.payload_bytes == 4
    assert store.refusal(retained("c", b"1234567")) == "retained payload limit reached (10 bytes)"
    assert store.refusal(retained("a/b", b"1234567")) is None  # 3 + 7: exactly the bound
    assert store.refusal(retained("a/b", b"12345678")) is not None
    store.delete("a/b")
    assert store.payload_bytes == 3 and len(store) == 1


def test_an_unbounded_store_refuses_nothing() -> None:
    store = RetainedStore()
    assert not store.bounded
    store.set(retained("a", b"x" * 1000))
    assert store.refusal(retained("b", b"y" * 10**6)) is None


def test_subscriptions_per_client_default_to_1000_and_50_in_the_aws_profile() -> None:
    assert Broker(Settings()).max_subscriptions == 1000
    assert Broker(Settings(profile="aws")).max_subscriptions == 50
    assert Broker(Settings(profile="aws", limits=LimitSettings(max_subscriptions=200))).max_subscriptions == 200
    assert Broker(Settings(limits=LimitSettings(max_subscriptions=0))).max_subscriptions == 0  # unlimited
