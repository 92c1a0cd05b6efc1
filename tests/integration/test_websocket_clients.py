"""Real WebSocket MQTT clients against /mqtt, each exchanging messages with a TCP client: MQTT.js (Node,
MQTT 3.1, 3.1.1 and 5) and the AWS IoT Device SDK v2 (awscrt, MQTT 3.1.1 and 5) signing its upgrade
with SigV4 as it does for AWS.

The SDK's builders always wrap WebSockets in TLS; against ``ws://`` the same parts are assembled by
hand: an awscrt client without a TLS context, ``use_websockets`` and the SDK's SigV4 handshake
transform (a presigned query string, service ``iotdevicegateway``, the session token appended after
signing).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from tests.integration.mqtt_helpers import PahoClient, uid
from tests.server import ThingcoreProcess

pytestmark = pytest.mark.integration

JS_DIR = Path(__file__).resolve().parents[1] / "js"
TIMEOUT = 10
FLEET = ("AKIDFLEET00000000001", "fleet-secret")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    config = {
        "http": {"access_keys": [{"access_key_id": FLEET[0], "secret_access_key": FLEET[1], "principal": "fleet"}]},
        "auth": {"acl": [{"effect": "deny", "action": "publish", "topic": "signed-only/#", "anonymous": True}]},
    }
    with ThingcoreProcess(tmp_path_factory.mktemp("ws-clients"), config) as tc:
        yield tc


# -- MQTT.js ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (Node.js 18+ is needed for the MQTT.js tests)")
    if not (JS_DIR / "node_modules" / "mqtt").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed (needed once to install MQTT.js into tests/js)")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, timeout=300,
                       capture_output=True)
    return node


@pytest.mark.parametrize("version", [3, 4, 5], ids=["mqtt3.1", "mqtt3.1.1", "mqtt5"])
def test_mqttjs_over_websocket_exchanges_messages_with_tcp_client(
        server: ThingcoreProcess, node: str, version: int) -> None:
    topic = f"js/{uid()}"
    with PahoClient(server.mqtt_port) as tcp:
        tcp.connect()
        tcp.subscribe(f"{topic}/out", 1)
        proc = subprocess.Popen([node, str(JS_DIR / "mqtt_client.mjs"), f"ws://127.0.0.1:{server.http_port}/mqtt",
                                 str(version), uid("js"), f"{topic}/in", f"{topic}/out"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = json.loads(proc.stdout.readline() or '{"event": "exited"}')
            assert first == {"event": "subscribed", "granted": [1]}, (first, proc.stderr.read())
            tcp.publish(f"{topic}/in", b"hello mqtt.js", 1)
            got = tcp.expect(timeout=TIMEOUT)
            assert (got.topic, got.payload, got.qos) == (f"{topic}/out", b"echo:hello mqtt.js", 1)
            if version == 5:
                assert got.prop("UserProperty") == [("via", "mqtt.js")]
            assert proc.wait(TIMEOUT) == 0
            events = [json.loads(line) for line in proc.stdout.read().splitlines()]
            assert events[0]["event"] == "message" and events[0]["payload"] == "hello mqtt.js"
            assert events[-1] == {"event": "done"}
        finally:
            proc.kill()
            proc.wait()


# -- AWS IoT Device SDK v2 (awscrt) --------------------------------------------------------------------


@pytest.fixture(scope="module")
def crt() -> Any:
    try:
        from awscrt import auth, mqtt, mqtt5
    except ImportError as exc:  # pragma: no cover - the test extra installs awsiotsdk
        pytest.skip(f"awscrt (AWS IoT Device SDK v2) cannot be imported: {exc}")
    return auth, mqtt, mqtt5


def sigv4_transform(auth: Any, key_id: str, secret: str) -> Callable[..., None]:
    """The SDK's websocket handshake transform: presign the upgrade for service iotdevicegateway."""
    credentials = auth.AwsCredentialsProvider.new_static(key_id, secret, "a-session-token")

    def transform(transform_args: Any, **_kwargs: Any) -> None:
        try:
            config = auth.AwsSigningConfig(
                algorithm=auth.AwsSigningAlgorithm.V4, signature_type=auth.AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
                credentials_provider=credentials, region="us-east-1", service="iotdevicegateway",
                omit_session_token=True,
            )
            future = auth.aws_sign_request(transform_args.http_request, config)
            future.add_done_callback(lambda f: transform_args.set_done(f.exception()))
        except Exception as exc:
            transform_args.set_done(exc)

    return transform


def test_device_sdk_mqtt3_over_signed_websocket(server: ThingcoreProcess, crt: Any) -> None:
    auth, mqtt, _ = crt
    down, up = f"sdk3/{uid()}/down", f"signed-only/sdk3/{uid()}/up"
    received: Future = Future()
    conn = mqtt.Connection(client=mqtt.Client(None, None), host_name="127.0.0.1", port=server.http_port,
                           client_id=f"sdk3-ws-{uuid.uuid4().hex[:6]}", clean_session=True, keep_alive_secs=30,
                           use_websockets=True, websocket_handshake_transform=sigv4_transform(auth, *FLEET),
                           reconnect_min_timeout_secs=30)
    with PahoClient(server.mqtt_port) as tcp:
        tcp.connect()
        tcp.subscribe(up, 1)
        assert tcp.publish(up, b"anonymous", 1) == 0x87  # signed-only/# refuses anonymous publishers
        conn.connect().result(TIMEOUT)
        try:
            sub, _ = conn.subscribe(down, mqtt.QoS.AT_LEAST_ONCE,
                                    lambda topic, payload, **_kw: received.set_result((topic, payload)))
            assert sub.result(TIMEOUT)["qos"] == mqtt.QoS.AT_LEAST_ONCE
            assert tcp.publish(down, b"tcp to sdk", 1) == 0
            assert received.result(TIMEOUT) == (down, b"tcp to sdk")
            pub, _ = conn.publish(up, b"sdk to tcp", mqtt.QoS.AT_LEAST_ONCE)  # authenticated by its signature
            pub.result(TIMEOUT)
            got = tcp.expect()
            assert (got.topic, got.payload) == (up, b"sdk to tcp")
        finally:
            conn.disconnect().result(TIMEOUT)


class _Events:
    def __init__(self) -> None:
        self.connected: Future = Future()
        self.stopped = threading.Event()
        self.messages: Future = Future()

    def options(self) -> dict[str, Any]:
        return {
            "on_publish_callback_fn": lambda d: self.messages.done() or self.messages.set_result(d.publish_packet),
            "on_lifecycle_event_connection_success_fn": lambda d: self.connected.set_result(d.connack_packet),
            "on_lifecycle_event_connection_failure_fn": self._failed,
            "on_lifecycle_event_stopped_fn": lambda _d: self.stopped.set(),
        }

    def _failed(self, data: Any) -> None:
        if not self.connected.done():
            self.connected.set_exception(RuntimeError(f"connect failed: {data.exception}"))


def _mqtt5_client(mqtt5: Any, server: ThingcoreProcess, transform: Callable[..., None], events: _Events) -> Any:
    return mqtt5.Client(mqtt5.ClientOptions(
        "127.0.0.1", server.http_port,
        connect_options=mqtt5.ConnectPacket(client_id=f"sdk5-ws-{uuid.uuid4().hex[:6]}", keep_alive_interval_sec=30),
        websocket_handshake_transform=transform, min_reconnect_delay_ms=30000, **events.options(),
    ))


def test_device_sdk_mqtt5_over_signed_websocket(server: ThingcoreProcess, crt: Any) -> None:
    auth, _, mqtt5 = crt
    down, up = f"sdk5/{uid()}/down", f"signed-only/sdk5/{uid()}/up"
    events = _Events()
    client = _mqtt5_client(mqtt5, server, sigv4_transform(auth, *FLEET), events)
    with PahoClient(server.mqtt_port) as tcp:
        tcp.connect()
        tcp.subscribe(up, 1)
        client.start()
        try:
            assert events.connected.result(TIMEOUT).reason_code == mqtt5.ConnectReasonCode.SUCCESS
            suback = client.subscribe(mqtt5.SubscribePacket(subscriptions=[
                mqtt5.Subscription(topic_filter=down, qos=mqtt5.QoS.AT_LEAST_ONCE)])).result(TIMEOUT)
            assert suback.reason_codes == [mqtt5.SubackReasonCode.GRANTED_QOS_1]
            assert tcp.publish(down, b"tcp to sdk5", 1) == 0
            msg = events.messages.result(TIMEOUT)
            assert (msg.topic, msg.payload) == (down, b"tcp to sdk5")
            done = client.publish(mqtt5.PublishPacket(topic=up, payload=b"sdk5 to tcp",
                                                      qos=mqtt5.QoS.AT_LEAST_ONCE,
                                                      user_properties=[mqtt5.UserProperty("k", "v")])).result(TIMEOUT)
            assert done.puback.reason_code == mqtt5.PubackReasonCode.SUCCESS
            got = tcp.expect()
            assert (got.payload, got.prop("UserProperty")) == (b"sdk5 to tcp", [("k", "v")])
        finally:
            client.stop(mqtt5.DisconnectPacket())
            assert events.stopped.wait(TIMEOUT)


def test_device_sdk_with_a_wrong_secret_cannot_connect(server: ThingcoreProcess, crt: Any) -> None:
    auth, _, mqtt5 = crt
    events = _Events()
    client = _mqtt5_client(mqtt5, server, sigv4_transform(auth, FLEET[0], "wrong-secret"), events)
    client.start()
    try:
        with pytest.raises(RuntimeError, match="connect failed"):
            events.connected.result(TIMEOUT)
    finally:
        client.stop()
        assert events.stopped.wait(TIMEOUT)
