"""MQTT 5 reason codes and the MQTT 3.1.1 CONNACK return codes they map to."""

from __future__ import annotations

from enum import IntEnum


class ReasonCode(IntEnum):
    SUCCESS = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    REAUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


class ConnackCode311(IntEnum):
    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


_CONNACK_V5_TO_311 = {
    ReasonCode.SUCCESS: ConnackCode311.ACCEPTED,
    ReasonCode.UNSUPPORTED_PROTOCOL_VERSION: ConnackCode311.UNACCEPTABLE_PROTOCOL_VERSION,
    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID: ConnackCode311.IDENTIFIER_REJECTED,
    ReasonCode.SERVER_UNAVAILABLE: ConnackCode311.SERVER_UNAVAILABLE,
    ReasonCode.SERVER_BUSY: ConnackCode311.SERVER_UNAVAILABLE,
    ReasonCode.SERVER_SHUTTING_DOWN: ConnackCode311.SERVER_UNAVAILABLE,
    ReasonCode.BAD_USER_NAME_OR_PASSWORD: ConnackCode311.BAD_USERNAME_OR_PASSWORD,
    ReasonCode.NOT_AUTHORIZED: ConnackCode311.NOT_AUTHORIZED,
    ReasonCode.BANNED: ConnackCode311.NOT_AUTHORIZED,
}


def connack_code_311(reason: int) -> int:
    """The 3.1.1 CONNACK return code closest to an MQTT 5 CONNACK reason code."""
    return int(_CONNACK_V5_TO_311.get(reason, ConnackCode311.SERVER_UNAVAILABLE))


class MQTTError(Exception):
    """A protocol violation found while decoding or handling a packet.

    Carries the MQTT 5 reason code the server sends (in DISCONNECT or CONNACK) before it
    closes the connection; for 3.1.1 the connection is simply closed.
    """

    def __init__(self, reason_code: int, message: str) -> None:
        super().__init__(message)
        self.reason_code = int(reason_code)
        self.message = message


class MalformedPacket(MQTTError):
    def __init__(self, message: str) -> None:
        super().__init__(ReasonCode.MALFORMED_PACKET, message)


class ProtocolError(MQTTError):
    def __init__(self, message: str) -> None:
        super().__init__(ReasonCode.PROTOCOL_ERROR, message)


class PacketTooLarge(MQTTError):
    def __init__(self, message: str) -> None:
        super().__init__(ReasonCode.PACKET_TOO_LARGE, message)


class UnsupportedProtocolVersion(MQTTError):
    """A CONNECT whose protocol name/level is not MQTT/4, MQTT/5 or MQIsdp/3.

    ``protocol_level`` and ``protocol_name`` are what the client sent (``protocol_level`` is
    None when the packet ended before the level byte); the server answers with a 3.1.1-format
    CONNACK (return code 1) and closes.
    """

    def __init__(
        self, message: str, protocol_level: int | None = None, protocol_name: str | None = None
    ) -> None:
        super().__init__(ReasonCode.UNSUPPORTED_PROTOCOL_VERSION, message)
        self.protocol_level = protocol_level
        self.protocol_name = protocol_name
