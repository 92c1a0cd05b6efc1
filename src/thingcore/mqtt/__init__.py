"""MQTT 3.1.1 / 5.0 protocol: packets, codec, properties, reason codes, topics. No I/O."""

from . import packets
from .codec import Decoder, encode, encode_publish_template, packet_size
from .packets import MQTT_5, MQTT_31, MQTT_311, Packet, PacketType
from .reason_codes import (
    MalformedPacket,
    MQTTError,
    PacketTooLarge,
    ProtocolError,
    ReasonCode,
    UnsupportedProtocolVersion,
)
from .topics import parse_shared, topic_matches, validate_topic_filter, validate_topic_name

__all__ = [
    "MQTT_5",
    "MQTT_31",
    "MQTT_311",
    "Decoder",
    "MQTTError",
    "MalformedPacket",
    "Packet",
    "PacketTooLarge",
    "PacketType",
    "ProtocolError",
    "ReasonCode",
    "UnsupportedProtocolVersion",
    "encode",
    "encode_publish_template",
    "packet_size",
    "packets",
    "parse_shared",
    "topic_matches",
    "validate_topic_filter",
    "validate_topic_name",
]
