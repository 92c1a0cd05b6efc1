"""thingcore's device SDK: MQTT (TCP, TLS, WebSockets) and HTTP publish, with device shadows.

    from thingcore.device import Device

    with Device("localhost", "sensor-1") as dev:
        dev.publish("sensors/sensor-1/telemetry", {"celsius": 21.5}, qos=1).wait(5)

The same topics and shadow protocol as AWS IoT Core, so the code runs unchanged against an AWS
endpoint (with TLS client certificates, or SigV4 credentials for WebSockets and HTTP). The asyncio
twin is :class:`AsyncDevice`. Reference: docs/device-sdk.md.
"""

from thingcore.device.aio import AsyncDevice, Connected, DeviceStats, Disconnected
from thingcore.device.delivery import Delivery
from thingcore.device.errors import (
    ConnectError,
    ConnectTimeout,
    DeviceError,
    MessageDropped,
    NotConnected,
    OperationTimeout,
    PublishError,
    QueueFull,
    ShadowBadRequest,
    ShadowError,
    ShadowForbidden,
    ShadowInternalError,
    ShadowNotFound,
    ShadowRejected,
    ShadowThrottled,
    ShadowTimeout,
    ShadowTooLarge,
    ShadowUnauthorized,
    ShadowUnsupportedEncoding,
    ShadowVersionConflict,
    SubscribeError,
    UnsupportedOperation,
)
from thingcore.device.message import Message
from thingcore.device.options import AwsCredentials, Backoff, Will
from thingcore.device.shadow import UNSET, AsyncShadow, Delta
from thingcore.device.sync import Device, Shadow

__all__ = [
    "UNSET",
    "AsyncDevice",
    "AsyncShadow",
    "AwsCredentials",
    "Backoff",
    "ConnectError",
    "ConnectTimeout",
    "Connected",
    "Delivery",
    "Delta",
    "Device",
    "DeviceError",
    "DeviceStats",
    "Disconnected",
    "Message",
    "MessageDropped",
    "NotConnected",
    "OperationTimeout",
    "PublishError",
    "QueueFull",
    "Shadow",
    "ShadowBadRequest",
    "ShadowError",
    "ShadowForbidden",
    "ShadowInternalError",
    "ShadowNotFound",
    "ShadowRejected",
    "ShadowThrottled",
    "ShadowTimeout",
    "ShadowTooLarge",
    "ShadowUnauthorized",
    "ShadowUnsupportedEncoding",
    "ShadowVersionConflict",
    "SubscribeError",
    "UnsupportedOperation",
    "Will",
]
