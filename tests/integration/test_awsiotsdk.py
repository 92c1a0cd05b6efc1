"""The AWS IoT Device SDK v2 for Python (awscrt) against thingcore: MQTT 3.1.1 and MQTT 5, over
plain TCP and over mutual TLS with a test CA.

The SDK puts metrics in the CONNECT user name (``?SDK=IoTDeviceSDK/Python&Platform=...``, no
password). The server here has a password file, so a user name that were taken for a login
without its password would be refused with 0x86: these connections prove it is read as metadata.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from tests.certs import CertPaths, make_pki
from tests.integration.rawmqtt import RawClient
from tests.server import ThingcoreProcess

from thingcore.auth import PasswordFile
from thingcore.mqtt import Decoder

try:
    from awscrt import io, mqtt, mqtt5
    from awsiot import mqtt5_client_builder, mqtt_connection_builder
except ImportError as exc:  # pragma: no cover - the test extra installs awsiotsdk
    pytest.skip(f"awsiotsdk / awscrt cannot be imported ({exc}); install the awsiotsdk package",
                allow_module_level=True)

pytestmark = pytest.mark.integration

TIMEOUT = 10
DEVICE = "sdk-device"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertPaths]:
    return make_pki(tmp_path_factory.mktemp("pki"), DEVICE, "sdk-other")


@pytest.fixture(scope="module")
def server(pki: dict[str, CertPaths], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    d = tmp_path_factory.mktemp("aws-sdk")
    pw = PasswordFile(d / "passwd")
    pw.set("alice", "secret")
    pw.save()
    config = {
        "auth": {
            "password_file": d / "passwd",
            "acl": [  # only the SDK device's certificate subject may use sdk/secure/#
                {"effect": "allow", "action": "all", "topic": "sdk/secure/#", "principal": pki[DEVICE].subject},
                {"effect": "deny", "action": "all", "topic": "sdk/secure/#"},
            ],
        },
        "tls": {"certfile": pki["server"].cert, "keyfile": pki["server"].key, "cafile": pki["ca"].cert,
                "require_client_cert": True},
    }
    with ThingcoreProcess(d, config, tls=True) as tc:
        yield tc


def _topic(prefix: str = "sdk/test") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:10]}"


# -- what the SDK sends -----------------------------------------------------------------------------


def _capture_connect(start: Any, stop: Any) -> Any:
    """Start an SDK client against a one-shot socket and return the CONNECT it sends."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(TIMEOUT)
    port = srv.getsockname()[1]
    client = start(port)
    try:
        s, _ = srv.accept()
        with s:
            s.settimeout(TIMEOUT)
            dec = Decoder()
            while True:
                chunk = s.recv(4096)
                assert chunk, "the SDK closed before sending CONNECT"
                packets = dec.feed(chunk)
                if packets:
                    return packets[0]
    finally:
        srv.close()
        stop(client)


def test_sdk_sends_metrics_as_user_name() -> None:
    def start3(port: int) -> mqtt.Connection:
        conn = mqtt.Connection(client=mqtt.Client(None, None), host_name="127.0.0.1", port=port,
                               client_id="capture-3", reconnect_min_timeout_secs=30)
        conn.connect()
        return conn

    def start5(port: int) -> mqtt5.Client:
        c = mqtt5.Client(mqtt5.ClientOptions("127.0.0.1", port, connect_options=mqtt5.ConnectPacket(
            client_id="capture-5"), min_reconnect_delay_ms=30000))
        c.start()
        return c

    c3 = _capture_connect(start3, lambda c: c.disconnect())
    c5 = _capture_connect(start5, lambda c: c.stop())
    for packet, level in ((c3, 4), (c5, 5)):
        assert packet.protocol_level == level
        assert packet.username and packet.username.startswith("?SDK="), packet.username
        assert packet.password is None


def test_login_without_password_is_refused_but_sdk_metadata_is_not(server: ThingcoreProcess) -> None:
    """The contrast that gives the SDK tests their meaning."""
    with RawClient(server.host, server.mqtt_port, level=5) as c:
        assert c.connect("not-sdk", username="alice").reason_code == 0x86
    with RawClient(server.host, server.mqtt_port, level=5) as c:
        assert c.connect("sdk-like", username="?SDK=Python&Version=1.31.0").reason_code == 0


# -- MQTT 3.1.1 (awscrt.mqtt.Connection) ----------------------------------------------------------


def _mqtt3_roundtrip(conn: mqtt.Connection, topic: str) -> None:
    received: Future = Future()

    def on_message(topic: str, payload: bytes, **_kw: Any) -> None:
        if not received.done():
            received.set_result((topic, payload))

    result = conn.connect().result(TIMEOUT)
    assert result["session_present"] is False
    try:
        sub_future, _ = conn.subscribe(topic, mqtt.QoS.AT_LEAST_ONCE, on_message)
        suback = sub_future.result(TIMEOUT)
        assert suback["qos"] == mqtt.QoS.AT_LEAST_ONCE
        payload = f"hello from awscrt mqtt3 {uuid.uuid4().hex}".encode()
        pub_future, _ = conn.publish(topic, payload, mqtt.QoS.AT_LEAST_ONCE)
        pub_future.result(TIMEOUT)  # PUBACK
        assert received.result(TIMEOUT) == (topic, payload)
    finally:
        conn.disconnect().result(TIMEOUT)


def test_mqtt3_plain_tcp(server: ThingcoreProcess) -> None:
    conn = mqtt.Connection(client=mqtt.Client(None, None), host_name=server.host, port=server.mqtt_port,
                           client_id=f"sdk3-plain-{uuid.uuid4().hex[:6]}", clean_session=True,
                           keep_alive_secs=30)
    _mqtt3_roundtrip(conn, _topic())


def test_mqtt3_mutual_tls(server: ThingcoreProcess, pki: dict[str, CertPaths]) -> None:
    conn = mqtt_connection_builder.mtls_from_path(
        endpoint="localhost", port=server.mqtts_port, cert_filepath=str(pki[DEVICE].cert),
        pri_key_filepath=str(pki[DEVICE].key), ca_filepath=str(pki["ca"].cert),
        client_id=f"sdk3-mtls-{uuid.uuid4().hex[:6]}", clean_session=True, keep_alive_secs=30,
    )
    _mqtt3_roundtrip(conn, _topic("sdk/secure"))  # allowed only for this certificate's subject


def test_mqtt3_mutual_tls_other_subject_is_not_the_principal(server: ThingcoreProcess,
                                                             pki: dict[str, CertPaths]) -> None:
    conn = mqtt_connection_builder.mtls_from_path(
        endpoint="localhost", port=server.mqtts_port, cert_filepath=str(pki["sdk-other"].cert),
        pri_key_filepath=str(pki["sdk-other"].key), ca_filepath=str(pki["ca"].cert),
        client_id=f"sdk3-other-{uuid.uuid4().hex[:6]}", clean_session=True, keep_alive_secs=30,
    )
    conn.connect().result(TIMEOUT)
    try:
        sub_future, _ = conn.subscribe(_topic("sdk/secure"), mqtt.QoS.AT_LEAST_ONCE, lambda **kw: None)
        with pytest.raises(mqtt.SubscribeError):  # awscrt's way of reporting SUBACK 0x80
            sub_future.result(TIMEOUT)
        sub_future, _ = conn.subscribe(_topic("sdk/open"), mqtt.QoS.AT_LEAST_ONCE, lambda **kw: None)
        assert sub_future.result(TIMEOUT)["qos"] == mqtt.QoS.AT_LEAST_ONCE
    finally:
        conn.disconnect().result(TIMEOUT)


def test_mqtt3_mutual_tls_without_client_cert_fails(server: ThingcoreProcess, pki: dict[str, CertPaths]) -> None:
    opts = io.TlsContextOptions()
    opts.override_default_trust_store_from_path(None, str(pki["ca"].cert))
    conn = mqtt.Connection(client=mqtt.Client(None, io.ClientTlsContext(opts)), host_name="localhost",
                           port=server.mqtts_port, client_id="sdk3-nocert", reconnect_min_timeout_secs=30)
    with pytest.raises(Exception) as info:
        conn.connect().result(TIMEOUT)
    assert "AwsCrtError" in type(info.value).__name__ or "TLS" in str(info.value).upper()


# -- MQTT 5 (awscrt.mqtt5.Client) ---------------------------------------------------------------


class Mqtt5Events:
    def __init__(self) -> None:
        self.connected: Future = Future()
        self.stopped = threading.Event()
        self.messages: list[mqtt5.PublishPacket] = []
        self.got = threading.Event()

    def options(self) -> dict[str, Any]:
        return {
            "on_publish_callback_fn": self.on_publish,
            "on_lifecycle_event_connection_success_fn": self.on_success,
            "on_lifecycle_event_connection_failure_fn": self.on_failure,
            "on_lifecycle_event_stopped_fn": lambda _d: self.stopped.set(),
        }

    def builder_options(self) -> dict[str, Any]:
        """The same callbacks under the names awsiot.mqtt5_client_builder takes."""
        return {
            "on_publish_received": self.on_publish,
            "on_lifecycle_connection_success": self.on_success,
            "on_lifecycle_connection_failure": self.on_failure,
            "on_lifecycle_stopped": lambda _d: self.stopped.set(),
        }

    def on_publish(self, data: mqtt5.PublishReceivedData) -> None:
        self.messages.append(data.publish_packet)
        self.got.set()

    def on_success(self, data: mqtt5.LifecycleConnectSuccessData) -> None:
        if not self.connected.done():
            self.connected.set_result(data.connack_packet)

    def on_failure(self, data: mqtt5.LifecycleConnectFailureData) -> None:
        if not self.connected.done():
            self.connected.set_exception(RuntimeError(f"connect failed: {data.exception} {data.connack_packet}"))


def _mqtt5_roundtrip(client: mqtt5.Client, events: Mqtt5Events, topic: str) -> None:
    client.start()
    try:
        connack = events.connected.result(TIMEOUT)
        assert connack.reason_code == mqtt5.ConnectReasonCode.SUCCESS
        suback = client.subscribe(mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription(topic_filter=topic, qos=mqtt5.QoS.AT_LEAST_ONCE)])).result(TIMEOUT)
        assert suback.reason_codes == [mqtt5.SubackReasonCode.GRANTED_QOS_1]
        payload = f"hello from awscrt mqtt5 {uuid.uuid4().hex}".encode()
        done = client.publish(mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE,
                                                  user_properties=[mqtt5.UserProperty("k", "v")])).result(TIMEOUT)
        assert done.puback.reason_code == mqtt5.PubackReasonCode.SUCCESS
        assert events.got.wait(TIMEOUT), "own message not received"
        msg = events.messages[0]
        assert (msg.topic, msg.payload) == (topic, payload)
        assert [(p.name, p.value) for p in msg.user_properties or []] == [("k", "v")]
    finally:
        client.stop(mqtt5.DisconnectPacket())
        assert events.stopped.wait(TIMEOUT)


def test_mqtt5_plain_tcp(server: ThingcoreProcess) -> None:
    events = Mqtt5Events()
    client = mqtt5.Client(mqtt5.ClientOptions(
        server.host, server.mqtt_port,
        connect_options=mqtt5.ConnectPacket(client_id=f"sdk5-plain-{uuid.uuid4().hex[:6]}", keep_alive_interval_sec=30),
        **events.options(),
    ))
    _mqtt5_roundtrip(client, events, _topic())


def test_mqtt5_mutual_tls(server: ThingcoreProcess, pki: dict[str, CertPaths]) -> None:
    events = Mqtt5Events()
    client = mqtt5_client_builder.mtls_from_path(
        endpoint="localhost", port=server.mqtts_port, cert_filepath=str(pki[DEVICE].cert),
        pri_key_filepath=str(pki[DEVICE].key), ca_filepath=str(pki["ca"].cert),
        client_id=f"sdk5-mtls-{uuid.uuid4().hex[:6]}", **events.builder_options(),
    )
    _mqtt5_roundtrip(client, events, _topic("sdk/secure"))


def test_mqtt5_mutual_tls_other_subject_refused_on_secure_topic(server: ThingcoreProcess,
                                                                pki: dict[str, CertPaths]) -> None:
    events = Mqtt5Events()
    client = mqtt5_client_builder.mtls_from_path(
        endpoint="localhost", port=server.mqtts_port, cert_filepath=str(pki["sdk-other"].cert),
        pri_key_filepath=str(pki["sdk-other"].key), ca_filepath=str(pki["ca"].cert),
        client_id=f"sdk5-other-{uuid.uuid4().hex[:6]}", **events.builder_options(),
    )
    client.start()
    try:
        events.connected.result(TIMEOUT)
        suback = client.subscribe(mqtt5.SubscribePacket(subscriptions=[
            mqtt5.Subscription(topic_filter=_topic("sdk/secure"), qos=mqtt5.QoS.AT_LEAST_ONCE)])).result(TIMEOUT)
        assert suback.reason_codes == [mqtt5.SubackReasonCode.NOT_AUTHORIZED]
    finally:
        client.stop()
        assert events.stopped.wait(TIMEOUT)
