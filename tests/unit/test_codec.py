"""MQTT codec: round trips, hand-written byte vectors, validation errors, stream feeding."""

from __future__ import annotations

import pytest

from thingcore.mqtt import Decoder, encode, encode_publish_template, packet_size
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
from thingcore.mqtt.properties import decode_properties, encode_properties
from thingcore.mqtt.reason_codes import (
    MalformedPacket,
    MQTTError,
    PacketTooLarge,
    ProtocolError,
    UnsupportedProtocolVersion,
)

V5_PROPS_PUBLISH = {
    "payload_format_indicator": 1,
    "message_expiry_interval": 3600,
    "content_type": "application/json",
    "response_topic": "reply/here",
    "correlation_data": b"\x00\x01corr",
    "subscription_identifier": [1, 268_435_455],
    "topic_alias": 5,
    "user_property": [("k", "v"), ("k", "v2"), ("é", "ü")],
}


def packets_311() -> list:
    return [
        Connect("client-1", 4, keep_alive=30),
        Connect("", 4, clean_start=False, keep_alive=0, username="u", password=b"\x00pw"),
        Connect("c", 4, will=Will("last/will", b"bye", qos=2, retain=True), username="user"),
        Connect("old", 3, protocol_name="MQIsdp"),
        Connack(False, 0),
        Connack(True, 5),
        Publish("a/b", b"hello"),
        Publish("a/b", b"", qos=1, packet_id=1, retain=True),
        Publish("a/\u00e9/c", b"\x00" * 300, qos=2, dup=True, packet_id=65535),
        Puback(1),
        Pubrec(2),
        Pubrel(3),
        Pubcomp(4),
        Subscribe(5, [Subscription("a/#", 0), Subscription("+/b", 2)]),
        Suback(5, [0, 1, 2, 0x80]),
        Unsubscribe(6, ["a/#", "x"]),
        Unsuback(6),
        Pingreq(),
        Pingresp(),
        Disconnect(),
    ]


def packets_5() -> list:
    return [
        Connect("client-1", 5, keep_alive=30),
        Connect(
            "c",
            5,
            clean_start=False,
            username="u",
            password=b"p",
            will=Will("w", b"x", qos=1, retain=False, properties={"will_delay_interval": 10,
                                                                  "content_type": "text/plain"}),
            properties={
                "session_expiry_interval": 0xFFFFFFFF,
                "receive_maximum": 10,
                "maximum_packet_size": 1024,
                "topic_alias_maximum": 8,
                "request_response_information": 1,
                "request_problem_information": 0,
                "authentication_method": "SCRAM",
                "authentication_data": b"abc",
                "user_property": [("a", "b")],
            },
        ),
        Connect("", 5, password=b"password-without-user-is-fine-in-v5"),
        Connack(False, 0),
        Connack(
            True,
            0,
            {
                "assigned_client_identifier": "auto-1",
                "server_keep_alive": 120,
                "maximum_qos": 1,
                "retain_available": 0,
                "wildcard_subscription_available": 1,
                "subscription_identifier_available": 1,
                "shared_subscription_available": 0,
                "response_information": "resp",
                "server_reference": "other:1883",
                "reason_string": "ok",
                "topic_alias_maximum": 10,
                "receive_maximum": 100,
                "maximum_packet_size": 65536,
            },
        ),
        Connack(False, 0x87),
        Publish("a/b", b"hello"),
        Publish("a/b", b"hello", qos=1, packet_id=9, properties=V5_PROPS_PUBLISH),
        Publish("", b"alias", qos=2, dup=True, retain=True, packet_id=7, properties={"topic_alias": 3}),
        Puback(1),
        Puback(1, 0x10),
        Puback(1, 0x80, {"reason_string": "nope", "user_property": [("x", "y")]}),
        Pubrec(2, 0x91),
        Pubrel(3, 0x92, {"reason_string": "lost"}),
        Pubcomp(4),
        Subscribe(
            5,
            [
                Subscription("a/#", 0),
                Subscription("+/b", 2, no_local=True, retain_as_published=True, retain_handling=2),
                Subscription("$share/g/x", 1, retain_handling=1),
            ],
            {"subscription_identifier": 42, "user_property": [("a", "1")]},
        ),
        Suback(5, [0, 1, 2, 0x80, 0x8F, 0xA2], {"reason_string": "partial"}),
        Unsubscribe(6, ["a/#"], {"user_property": [("u", "v")]}),
        Unsuback(6, [0, 0x11]),
        Pingreq(),
        Pingresp(),
        Disconnect(),
        Disconnect(0x04),
        Disconnect(0x8E, {"reason_string": "taken over", "session_expiry_interval": 0}),
        Auth(),
        Auth(0x18, {"authentication_method": "SCRAM", "authentication_data": b"\x01\x02"}),
    ]


@pytest.mark.parametrize("packet", packets_311(), ids=lambda p: type(p).__name__)
def test_round_trip_311(packet):
    level = 3 if isinstance(packet, Connect) and packet.protocol_level == 3 else 4
    data = encode(packet, level)
    d = Decoder(protocol_level=level)
    assert d.feed(data) == [packet]
    assert packet_size(packet, level) == len(data)


@pytest.mark.parametrize("packet", packets_5(), ids=lambda p: type(p).__name__)
def test_round_trip_5(packet):
    data = encode(packet, 5)
    assert Decoder(protocol_level=5).feed(data) == [packet]


def test_connect_sets_protocol_level_for_following_packets():
    for level, pk in ((4, packets_311()), (5, packets_5())):
        rest = [p for p in pk if not isinstance(p, Connect)]
        data = encode(Connect("x", level), level) + b"".join(encode(p, level) for p in rest)
        d = Decoder()
        assert d.protocol_level is None
        out = d.feed(data)
        assert d.protocol_level == level
        assert out == [Connect("x", level), *rest]


def test_feed_byte_by_byte_and_random_chunks():
    import random

    rnd = random.Random(1)
    pk = packets_5()
    data = b"".join(encode(p, 5) for p in pk)
    d = Decoder(protocol_level=5)
    out = []
    for i in range(len(data)):
        out += d.feed(data[i : i + 1])
    assert out == pk
    assert d.buffered == 0
    for _ in range(20):
        d = Decoder(protocol_level=5)
        out, i = [], 0
        while i < len(data):
            n = rnd.randint(1, 40)
            out += d.feed(bytearray(data[i : i + n]))
            i += n
        assert out == pk


def test_large_packet_in_small_chunks():
    big = Publish("t", b"z" * 300_000, qos=1, packet_id=2)
    data = encode(big, 4) * 2
    d = Decoder(protocol_level=4)
    out = []
    for i in range(0, len(data), 1000):
        out += d.feed(data[i : i + 1000])
    assert out == [big, big]


# --- hand-written vectors --------------------------------------------------------------------


def test_vector_connect_311():
    data = bytes.fromhex("100d00044d5154540402003c000161")
    assert encode(Connect("a", 4, keep_alive=60), 4) == data
    d = Decoder()
    assert d.feed(data) == [Connect("a", 4, keep_alive=60)]
    assert d.protocol_level == 4


def test_vector_connect_5():
    data = bytes.fromhex("100e00044d5154540502003c00000161")
    assert encode(Connect("a", 5, keep_alive=60), 5) == data
    assert Decoder().feed(data) == [Connect("a", 5, keep_alive=60)]


def test_vector_connect_31():
    data = bytes.fromhex("100f00064d51497364700302003c000161")
    pk = Connect("a", 3, protocol_name="MQIsdp", keep_alive=60)
    assert encode(pk, 3) == data
    assert Decoder().feed(data) == [pk]


def test_vector_publish():
    pk = Publish("a/b", b"hi", qos=1, packet_id=10)
    assert encode(pk, 4) == bytes.fromhex("320900036 12f62000a6869".replace(" ", ""))
    assert encode(pk, 5) == bytes.fromhex("320a0003612f62000a006869")
    pk5 = Publish("a/b", b"hi", properties={"payload_format_indicator": 1, "message_expiry_interval": 10})
    data = bytes.fromhex("300f0003612f6207010102 0000000a6869".replace(" ", ""))
    assert encode(pk5, 5) == data
    assert Decoder(protocol_level=5).feed(data) == [pk5]


def test_vector_acks_and_short_forms():
    assert encode(Puback(10), 5) == bytes.fromhex("4002000a")
    assert encode(Puback(10, 0x10), 5) == bytes.fromhex("4003000a10")
    assert encode(Puback(10, 0x10), 4) == bytes.fromhex("4002000a")
    assert encode(Pubrel(10), 4) == bytes.fromhex("6202000a")
    assert encode(Disconnect(), 5) == b"\xe0\x00"
    assert encode(Disconnect(0x81), 5) == b"\xe0\x01\x81"
    assert encode(Disconnect(0x81), 4) == b"\xe0\x00"
    assert encode(Auth(), 5) == b"\xf0\x00"
    assert encode(Pingreq(), 4) == b"\xc0\x00"
    assert encode(Unsuback(3, [0x11]), 4) == bytes.fromhex("b0020003")
    assert encode(Suback(3, [1, 0x80]), 4) == bytes.fromhex("9004000301 80".replace(" ", ""))
    assert encode(Connack(True, 5), 4) == bytes.fromhex("20020105")
    assert encode(Connack(False, 0), 5) == bytes.fromhex("2003000000")
    # v5 acks with remaining length 2 / 3 decode with defaults
    assert Decoder(protocol_level=5).feed(bytes.fromhex("5002000a")) == [Pubrec(10)]
    assert Decoder(protocol_level=5).feed(bytes.fromhex("7003000a92")) == [Pubcomp(10, 0x92)]
    assert Decoder(protocol_level=5).feed(b"\xe0\x01\x04") == [Disconnect(4)]


def test_vector_subscribe():
    data = bytes.fromhex("82080001 0003612f62 01".replace(" ", ""))
    pk = Subscribe(1, [Subscription("a/b", 1)])
    assert encode(pk, 4) == data
    assert Decoder(protocol_level=4).feed(data) == [pk]
    pk5 = Subscribe(1, [Subscription("a/b", 2, no_local=True, retain_as_published=True, retain_handling=2)])
    data5 = bytes.fromhex("82090001 00 0003612f62 2e".replace(" ", ""))
    assert encode(pk5, 5) == data5
    assert Decoder(protocol_level=5).feed(data5) == [pk5]


def test_remaining_length_multibyte():
    pk = Publish("t", b"x" * 200)
    data = encode(pk, 4)
    assert data[:3] == bytes((0x30, (203 & 0x7F) | 0x80, 1))  # 203 = 0x4B + 1 * 128
    assert Decoder().feed(data) == [pk]


# --- template splicing --------------------------------------------------------------------------


@pytest.mark.parametrize("level", [4, 5])
@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("size", [0, 100, 20_000])
def test_publish_template(level, qos, size):
    props = {"user_property": [("a", "b")], "content_type": "x"} if level == 5 else {}
    pub = Publish("t/\u00fc", b"p" * size, qos=qos, retain=True, properties=props, packet_id=999)
    head, tail = encode_publish_template(pub, level)
    for pid in (1, 300, 65535):
        if qos:
            pub.packet_id = pid
            full = head + pid.to_bytes(2, "big") + tail
        else:
            pub.packet_id = None
            full = head + tail
        assert full == encode(pub, level)
        assert Decoder(protocol_level=level).feed(full) == [pub]


# --- validation -------------------------------------------------------------------------------

C311 = bytes.fromhex("100d00044d5154540402003c000161")
C5 = bytes.fromhex("100e00044d5154540502003c00000161")


def pub5(props: bytes, qos: int = 0) -> bytes:
    body = b"\x00\x01t" + (b"\x00\x01" if qos else b"") + props + b"pay"
    return bytes((0x30 | qos << 1, len(body))) + body


BAD = [
    # (level, bytes, exception class, reason code)
    (4, b"\x00\x00", MalformedPacket, 0x81),  # reserved type 0
    (4, b"\x31\x00", MalformedPacket, 0x81),  # PUBLISH too short (retain flag fine)
    (4, b"\x36\x05\x00\x01t\x00\x01", MalformedPacket, 0x81),  # QoS 3
    (4, b"\x38\x04\x00\x01tx", MalformedPacket, 0x81),  # DUP on QoS 0
    (4, b"\x32\x05\x00\x01t\x00\x00", ProtocolError, 0x82),  # packet id 0
    (4, b"\x30\x04\x00\x05tt", MalformedPacket, 0x81),  # topic overruns
    (4, b"\x30\x04\x00\x02\xc3\x28", MalformedPacket, 0x81),  # invalid utf-8
    (4, b"\x30\x04\x00\x02t\x00", MalformedPacket, 0x81),  # U+0000
    (4, b"\x30\x05\x00\x03\xed\xa0\x80", MalformedPacket, 0x81),  # encoded surrogate U+D800
    (4, b"\x30\xff\xff\xff\xff\x01", MalformedPacket, 0x81),  # remaining length > 4 bytes
    (4, b"\x40\x02\x00\x00", ProtocolError, 0x82),  # PUBACK packet id 0
    (4, b"\x41\x02\x00\x01", MalformedPacket, 0x81),  # PUBACK flags
    (4, b"\x60\x02\x00\x01", MalformedPacket, 0x81),  # PUBREL flags must be 0010
    (4, b"\x80\x06\x00\x01\x00\x01a\x00", MalformedPacket, 0x81),  # SUBSCRIBE flags
    (4, b"\xa0\x05\x00\x01\x00\x01a", MalformedPacket, 0x81),  # UNSUBSCRIBE flags
    (4, b"\x40\x03\x00\x01\x00", MalformedPacket, 0x81),  # 3.1.1 PUBACK trailing byte
    (4, b"\xc0\x01\x00", MalformedPacket, 0x81),  # PINGREQ with body
    (4, b"\xd0\x01\x00", MalformedPacket, 0x81),  # PINGRESP with body
    (4, b"\xe0\x01\x00", MalformedPacket, 0x81),  # 3.1.1 DISCONNECT with body
    (4, b"\xf0\x00", MalformedPacket, 0x81),  # AUTH in 3.1.1
    (4, b"\x82\x02\x00\x01", ProtocolError, 0x82),  # SUBSCRIBE without filters
    (4, b"\xa2\x02\x00\x01", ProtocolError, 0x82),  # UNSUBSCRIBE without filters
    (4, b"\x82\x06\x00\x01\x00\x01a\x03", MalformedPacket, 0x81),  # SUBSCRIBE QoS 3
    (4, b"\x82\x06\x00\x01\x00\x01a\x04", MalformedPacket, 0x81),  # 3.1.1 upper bits of requested QoS
    (4, b"\x82\x05\x00\x01\x00\x01a", MalformedPacket, 0x81),  # missing options byte
    (4, b"\x82\x06\x00\x00\x00\x01a\x00", ProtocolError, 0x82),  # SUBSCRIBE packet id 0
    (4, b"\x90\x03\x00\x01\x03", ProtocolError, 0x82),  # 3.1.1 SUBACK bad return code
    (4, b"\x20\x02\x02\x00", MalformedPacket, 0x81),  # CONNACK reserved ack flags
    (4, b"\x20\x03\x00\x00\x00", MalformedPacket, 0x81),  # 3.1.1 CONNACK trailing
    (5, b"\x82\x07\x00\x01\x00\x00\x01a\x40", MalformedPacket, 0x81),  # v5 reserved option bits
    (5, b"\x82\x07\x00\x01\x00\x00\x01a\x30", ProtocolError, 0x82),  # retain handling 3
    (5, b"\x40\x03\x00\x01\x05", ProtocolError, 0x82),  # PUBACK invalid reason code
    (5, b"\xe0\x01\x05", ProtocolError, 0x82),  # DISCONNECT invalid reason code
    (5, b"\xf0\x01\x05", ProtocolError, 0x82),  # AUTH invalid reason code
    (5, b"\xe0\x03\x00\x00\x00", MalformedPacket, 0x81),  # trailing after properties
    (5, b"\xe0\x02\x00\x05", MalformedPacket, 0x81),  # property length overruns
    (5, pub5(b"\x04\x01\x00\x01\x00"), ProtocolError, 0x82),  # duplicate payload_format_indicator
    (5, pub5(b"\x02\x01\x02"), ProtocolError, 0x82),  # payload_format_indicator 2
    (5, pub5(b"\x03\x23\x00\x00"), ProtocolError, 0x82),  # topic_alias 0
    (5, pub5(b"\x02\x0b\x00"), ProtocolError, 0x82),  # subscription_identifier 0
    (5, pub5(b"\x05\x11\x00\x00\x00\x01"), MalformedPacket, 0x81),  # session expiry not allowed in PUBLISH
    (5, pub5(b"\x02\x7f\x00"), MalformedPacket, 0x81),  # unknown property id
    (5, pub5(b"\x03\x02\x00\x00"), MalformedPacket, 0x81),  # truncated four byte int
    (5, pub5(b"\x03\x03\x00\x05"), MalformedPacket, 0x81),  # truncated string property
    (5, pub5(b"\x04\x03\x00\x01\x00"), MalformedPacket, 0x81),  # U+0000 in content type
    (5, pub5(b"\x06\x0b\x80\x80\x80\x80\x01"), MalformedPacket, 0x81),  # 5-byte varint
    (5, b"\x82\x0a\x00\x01\x04\x0b\x01\x0b\x02\x00\x01a\x00", ProtocolError, 0x82),  # sub id twice
    (5, b"\x20\x06\x00\x00\x03\x21\x00\x00", ProtocolError, 0x82),  # receive_maximum 0
    (5, b"\x20\x08\x00\x00\x05\x27\x00\x00\x00\x00", ProtocolError, 0x82),  # maximum_packet_size 0
    (5, b"\x20\x05\x00\x00\x02\x24\x02", ProtocolError, 0x82),  # maximum_qos 2
    (5, b"\x20\x03\x00\x05\x00", ProtocolError, 0x82),  # CONNACK invalid reason code
]


@pytest.mark.parametrize(("level", "data", "exc", "code"), BAD, ids=[d[1].hex() for d in BAD])
def test_invalid_packets(level, data, exc, code):
    with pytest.raises(exc) as info:
        Decoder(protocol_level=level).feed(data)
    assert info.value.reason_code == code


def connect_bytes(flags: int, level: int = 4, tail: bytes = b"\x00\x01a", name: bytes = b"MQTT") -> bytes:
    body = len(name).to_bytes(2, "big") + name + bytes((level, flags)) + b"\x00\x3c"
    if level == 5:
        body += b"\x00"
    body += tail
    return bytes((0x10, len(body))) + body


BAD_CONNECT = [
    (connect_bytes(0x03), MalformedPacket),  # reserved flag
    (connect_bytes(0x08), MalformedPacket),  # will qos without will flag
    (connect_bytes(0x20), MalformedPacket),  # will retain without will flag
    (connect_bytes(0x1C, tail=b"\x00\x01a\x00\x01t\x00\x00"), MalformedPacket),  # will qos 3
    (connect_bytes(0x40, tail=b"\x00\x01a\x00\x01p"), ProtocolError),  # 3.1.1 password without user
    (connect_bytes(0x80), MalformedPacket),  # user name flag but no user name
    (connect_bytes(0x02, tail=b"\x00\x01a\x00"), MalformedPacket),  # trailing byte
    (connect_bytes(0x02, tail=b"\x00\x02a\x00"), MalformedPacket),  # U+0000 in client id
    (connect_bytes(0x02, level=5, tail=b"\x00\x01a\x00"), MalformedPacket),  # v5 trailing
]


@pytest.mark.parametrize(("data", "exc"), BAD_CONNECT, ids=[d[0].hex() for d in BAD_CONNECT])
def test_invalid_connect(data, exc):
    d = Decoder()
    with pytest.raises(exc) as info:
        d.feed(data)
    assert info.value.protocol_level == data[8]
    assert d.protocol_level == data[8]


def test_v5_connect_password_without_user_is_fine():
    data = connect_bytes(0x42, level=5, tail=b"\x00\x01a\x00\x01p")
    assert Decoder().feed(data) == [Connect("a", 5, keep_alive=60, password=b"p")]


@pytest.mark.parametrize(
    ("name", "level"), [(b"MQTT", 3), (b"MQTT", 6), (b"MQIsdp", 4), (b"HTTP", 4), (b"MQTT", 0)]
)
def test_unsupported_protocol(name, level):
    d = Decoder()
    with pytest.raises(UnsupportedProtocolVersion) as info:
        d.feed(connect_bytes(0x02, level=level, name=name))
    assert info.value.reason_code == 0x84
    assert info.value.protocol_level == level
    assert info.value.protocol_name == name.decode()
    assert d.protocol_level is None


def test_will_properties_not_allowed_in_connect_block():
    props = encode_properties({"will_delay_interval": 5})
    with pytest.raises(MalformedPacket):
        decode_properties(props, 0, len(props), 1)
    assert decode_properties(props, 0, len(props), 0) == ({"will_delay_interval": 5}, len(props))


def test_packet_too_large_without_buffering_body():
    d = Decoder(max_packet_size=100)
    # only the fixed header of a 1 MB PUBLISH has arrived
    with pytest.raises(PacketTooLarge) as info:
        d.feed(b"\x30\x80\x80\x40")
    assert info.value.reason_code == 0x95
    d = Decoder(max_packet_size=100)
    assert d.feed(encode(Publish("t", b"x" * 95), 4)) == [Publish("t", b"x" * 95)]  # 100 bytes total
    with pytest.raises(PacketTooLarge):
        d.feed(encode(Publish("t", b"x" * 96), 4))


def test_error_carries_preceding_packets():
    d = Decoder(protocol_level=4)
    with pytest.raises(MQTTError) as info:
        d.feed(encode(Pingreq(), 4) + encode(Puback(3), 4) + b"\xc0\x01\x00")
    assert info.value.packets == [Pingreq(), Puback(3)]


def test_incomplete_header_kept():
    d = Decoder(protocol_level=4)
    data = encode(Publish("t", b"x" * 1000), 4)
    assert d.feed(data[:1]) == []
    assert d.feed(data[1:2]) == []
    assert d.feed(data[2:3]) == []
    assert d.feed(data[3:]) == [Publish("t", b"x" * 1000)]
    assert d.feed(b"") == []
