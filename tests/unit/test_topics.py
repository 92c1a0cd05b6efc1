"""Topic names, filters, shared subscriptions and the reference matcher."""

from __future__ import annotations

import pytest

from thingcore.mqtt.reason_codes import MQTTError
from thingcore.mqtt.topics import parse_shared, topic_matches, validate_topic_filter, validate_topic_name


@pytest.mark.parametrize("topic", ["a", "a/b", "/", "a//b", "$SYS/x", "\u00e9/\u4e2d", " ", "a/b/"])
def test_valid_topic_names(topic):
    validate_topic_name(topic)


@pytest.mark.parametrize("topic", ["", "a/+", "#", "a/#", "a+b", "a\x00b"])
def test_invalid_topic_names(topic):
    with pytest.raises(MQTTError) as info:
        validate_topic_name(topic)
    assert info.value.reason_code == 0x90


def test_topic_name_limits():
    validate_topic_name("a" * 10, max_bytes=10)
    with pytest.raises(MQTTError):
        validate_topic_name("a" * 11, max_bytes=10)
    with pytest.raises(MQTTError):
        validate_topic_name("\u00e9" * 6, max_bytes=10)  # 12 bytes
    with pytest.raises(MQTTError):
        validate_topic_name("a" * 65536)
    validate_topic_name("a/b/c", max_levels=3)
    with pytest.raises(MQTTError):
        validate_topic_name("a/b/c/d", max_levels=3)


@pytest.mark.parametrize(
    "f", ["#", "+", "a/#", "+/+", "a/+/b", "/+", "+/", "$share/g/a/#", "$share/g/#", "$SYS/#", "a//b"]
)
def test_valid_filters(f):
    validate_topic_filter(f)


@pytest.mark.parametrize(
    "f",
    ["", "a/#/b", "a#", "a/b#", "#/", "a+", "a/+b", "+a/b", "$share/g", "$share//a", "$share/g/",
     "$share/g+/a", "$share/g#/a", "$share/g/a/#/b", "a\x00"],
)
def test_invalid_filters(f):
    with pytest.raises(MQTTError) as info:
        validate_topic_filter(f)
    assert info.value.reason_code == 0x8F


def test_filter_limits():
    with pytest.raises(MQTTError):
        validate_topic_filter("a/b/c", max_levels=2)
    validate_topic_filter("$share/g/a/b", max_levels=2)
    with pytest.raises(MQTTError):
        validate_topic_filter("a" * 11, max_bytes=10)


def test_parse_shared():
    assert parse_shared("a/b") == (None, "a/b")
    assert parse_shared("$share/grp/a/b") == ("grp", "a/b")
    assert parse_shared("$share/grp/#") == ("grp", "#")
    assert parse_shared("$shared/x") == (None, "$shared/x")
    for bad in ("$share/grp", "$share//f", "$share/g+/f", "$share/#/f", "$share/"):
        with pytest.raises(MQTTError) as info:
            parse_shared(bad)
        assert info.value.reason_code == 0x8F


MATCHES = [
    ("a/b", "a/b", True),
    ("a/b", "a/c", False),
    ("a/+", "a/b", True),
    ("a/+", "a/b/c", False),
    ("a/+", "a", False),
    ("a/+", "a/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("#", "a/b/c", True),
    ("a/#", "a", True),
    ("a/#", "a/b/c", True),
    ("a/#", "ab", False),
    ("a/b/#", "a", False),
    ("+/b/#", "x/b", True),
    ("#", "$SYS/x", False),
    ("+/x", "$SYS/x", False),
    ("$SYS/#", "$SYS/x", True),
    ("$SYS/+", "$SYS/x", True),
    ("a/+/c", "a//c", True),
    ("a", "a/b", False),
]


@pytest.mark.parametrize(("f", "t", "expected"), MATCHES)
def test_topic_matches(f, t, expected):
    assert topic_matches(f, t) is expected
