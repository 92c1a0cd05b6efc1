"""Property-based tests of the MQTT codec: the decoder never raises anything but MQTTError,
and encode/decode round trips are stable for generated packets of both versions."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thingcore.mqtt import Decoder, encode, encode_publish_template
from thingcore.mqtt.packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)
from thingcore.mqtt.reason_codes import MQTTError

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONNECT_311 = bytes.fromhex("100d00044d5154540402003c000161")
CONNECT_5 = bytes.fromhex("100e00044d5154540502003c00000161")


def _feed_all(decoder: Decoder, data: bytes, cut: int) -> list:
    out = []
    try:
        out += decoder.feed(data[:cut])
        out += decoder.feed(data[cut:])
    except MQTTError:
        pass
    return out


@SETTINGS
@given(st.binary(max_size=300), st.integers(0, 300))
def test_any_bytes_only_mqtt_errors(data, cut):
    _feed_all(Decoder(), data, cut)


@SETTINGS
@given(st.sampled_from([CONNECT_311, CONNECT_5]), st.binary(max_size=300), st.integers(0, 300))
def test_any_bytes_after_connect_only_mqtt_errors(connect, data, cut):
    _feed_all(Decoder(), connect + data, cut)


@SETTINGS
@given(st.sampled_from([3, 4, 5]), st.binary(max_size=300), st.integers(0, 300))
def test_any_bytes_client_side_only_mqtt_errors(level, data, cut):
    _feed_all(Decoder(protocol_level=level), data, cut)


# --- generated packets ------------------------------------------------------------------------

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
blob = st.binary(max_size=20)
pid = st.integers(1, 65535)
u16 = st.integers(0, 65535)
u32 = st.integers(0, 2**32 - 1)
user_props = st.lists(st.tuples(text, text), min_size=1, max_size=3)


def props(**fields):
    return st.fixed_dictionaries({}, optional=fields)


publish_props = props(
    payload_format_indicator=st.integers(0, 1),
    message_expiry_interval=u32,
    content_type=text,
    response_topic=text,
    correlation_data=blob,
    subscription_identifier=st.lists(st.integers(1, 268_435_455), min_size=1, max_size=3),
    topic_alias=st.integers(1, 65535),
    user_property=user_props,
)
will_props = props(
    payload_format_indicator=st.integers(0, 1),
    message_expiry_interval=u32,
    content_type=text,
    will_delay_interval=u32,
    user_property=user_props,
)
connect_props = props(
    session_expiry_interval=u32,
    receive_maximum=st.integers(1, 65535),
    maximum_packet_size=st.integers(1, 2**32 - 1),
    topic_alias_maximum=u16,
    request_response_information=st.integers(0, 1),
    request_problem_information=st.integers(0, 1),
    authentication_method=text,
    authentication_data=blob,
    user_property=user_props,
)
connack_props = props(
    session_expiry_interval=u32,
    assigned_client_identifier=text,
    server_keep_alive=u16,
    maximum_qos=st.integers(0, 1),
    retain_available=st.integers(0, 1),
    reason_string=text,
    server_reference=text,
    user_property=user_props,
)
ack_props = props(reason_string=text, user_property=user_props)


def packets(level: int):
    v5 = level == 5

    def p(s):
        return s if v5 else st.just({})

    will = st.builds(Will, text, blob, st.integers(0, 2), st.booleans(), p(will_props))
    connect = st.builds(
        Connect,
        text,
        st.just(level),
        st.just("MQTT"),
        st.booleans(),
        u16,
        st.none() | text,
        st.none() | blob,
        st.none() | will,
        p(connect_props),
    ).filter(lambda c: v5 or c.password is None or c.username is not None)
    qos_pub = st.integers(0, 2).flatmap(
        lambda q: st.builds(
            Publish,
            text,
            st.binary(max_size=200),
            st.just(q),
            st.booleans(),
            st.booleans() if q else st.just(False),
            pid if q else st.none(),
            p(publish_props),
        )
    )

    def ack(cls, codes):
        return st.builds(cls, pid, st.sampled_from(codes) if v5 else st.just(0), p(ack_props))

    sub = st.builds(
        Subscription,
        text,
        st.integers(0, 2),
        st.booleans() if v5 else st.just(False),
        st.booleans() if v5 else st.just(False),
        st.integers(0, 2) if v5 else st.just(0),
    )
    sub_props = props(subscription_identifier=st.integers(1, 268_435_455), user_property=user_props)
    suback_codes = [0, 1, 2, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2] if v5 else [0, 1, 2, 0x80]
    choices = [
        connect,
        st.builds(Connack, st.booleans(), st.sampled_from([0, 0x80, 0x87, 0x9C]) if v5 else st.integers(0, 5),
                  p(connack_props)),
        qos_pub,
        ack(Puback, [0, 0x10, 0x80, 0x97]),
        ack(Pubrec, [0, 0x10, 0x91]),
        ack(Pubrel, [0, 0x92]),
        ack(Pubcomp, [0, 0x92]),
        st.builds(Subscribe, pid, st.lists(sub, min_size=1, max_size=4), p(sub_props)),
        st.builds(Suback, pid, st.lists(st.sampled_from(suback_codes), max_size=4), p(ack_props)),
        st.builds(Unsubscribe, pid, st.lists(text, min_size=1, max_size=4), p(props(user_property=user_props))),
        st.builds(Unsuback, pid, st.lists(st.sampled_from([0, 0x11, 0x80]), max_size=4) if v5 else st.just([]),
                  p(ack_props)),
        st.just(Pingreq()),
        st.just(Pingresp()),
        st.builds(Disconnect, st.sampled_from([0, 4, 0x80, 0x8E]) if v5 else st.just(0),
                  p(props(reason_string=text, session_expiry_interval=u32))),
    ]
    if v5:
        choices.append(
            st.builds(Auth, st.sampled_from([0, 0x18, 0x19]),
                      props(authentication_method=text, authentication_data=blob, reason_string=text))
        )
    return st.one_of(choices)


@SETTINGS
@given(st.sampled_from([4, 5]).flatmap(lambda lv: st.tuples(st.just(lv), st.lists(packets(lv), max_size=5))),
       st.integers(1, 50))
def test_round_trip(level_and_packets, chunk):
    level, pks = level_and_packets
    data = b"".join(encode(pk, level) for pk in pks)
    d = Decoder(protocol_level=level)
    out = []
    for i in range(0, len(data), chunk):
        out += d.feed(data[i : i + chunk])
    assert out == pks
    assert b"".join(encode(pk, level) for pk in out) == data


@SETTINGS
@given(st.sampled_from([4, 5]).flatmap(lambda lv: st.tuples(st.just(lv), packets(lv))), pid)
def test_template_equals_encode(level_and_packet, packet_id):
    level, pk = level_and_packet
    if not isinstance(pk, Publish):
        return
    head, tail = encode_publish_template(pk, level)
    if pk.qos:
        pk.packet_id = packet_id
        assert head + packet_id.to_bytes(2, "big") + tail == encode(pk, level)
    else:
        assert head + tail == encode(pk, level)


@SETTINGS
@given(st.sampled_from([4, 5]).flatmap(lambda lv: st.tuples(st.just(lv), packets(lv))), st.data())
def test_mutated_packets_only_mqtt_errors(level_and_packet, data):
    level, pk = level_and_packet
    raw = bytearray(encode(pk, level))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _feed_all(Decoder(protocol_level=level), bytes(raw), cut)
    _feed_all(Decoder(), (CONNECT_5 if level == 5 else CONNECT_311) + bytes(raw), cut)
