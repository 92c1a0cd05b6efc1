"""The HTTP port with a certificate (``[http] certfile/keyfile``): HTTPS for the data plane and MQTT over
secure WebSockets (wss) at /mqtt, next to plain TCP clients."""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from tests.certs import CertPaths, make_pki
from tests.integration.mqtt_helpers import V311, PahoClient, uid
from tests.integration.wsclients import RawWS, WSPahoClient
from tests.server import HOST, ThingcoreProcess

from thingcore.mqtt.packets import Connack, Connect

pytestmark = pytest.mark.integration


class HTTPSThingcore(ThingcoreProcess):
    """The fixture's process, health-checked over HTTPS."""

    ca: str = ""

    def healthy(self) -> bool:
        ctx = ssl.create_default_context(cafile=self.ca)
        try:
            with urllib.request.urlopen(f"https://localhost:{self.http_port}/healthz", timeout=1, context=ctx) as r:
                return r.status == 200
        except OSError:
            return False


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertPaths]:
    return make_pki(tmp_path_factory.mktemp("wss-pki"))


@pytest.fixture(scope="module")
def server(pki: dict[str, CertPaths], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    tc = HTTPSThingcore(tmp_path_factory.mktemp("wss"), {"http": {"certfile": pki["server"].cert,
                                                                  "keyfile": pki["server"].key}})
    tc.ca = str(pki["ca"].cert)
    with tc:
        yield tc


def test_paho_over_wss_exchanges_messages_with_tcp_client(server: ThingcoreProcess,
                                                          pki: dict[str, CertPaths]) -> None:
    topic = f"wss/{uid()}"
    with WSPahoClient(server.http_port, protocol=V311, ca=str(pki["ca"].cert)) as wss, \
            PahoClient(server.mqtt_port) as tcp:
        wss.connect()  # the server certificate names 127.0.0.1 too
        tcp.connect()
        wss.subscribe(f"{topic}/down", 1)
        tcp.subscribe(f"{topic}/up", 1)
        tcp.publish(f"{topic}/down", b"tcp to wss", 1)
        assert wss.expect().payload == b"tcp to wss"
        wss.publish(f"{topic}/up", b"wss to tcp", 1)
        assert tcp.expect().payload == b"wss to tcp"


def test_raw_wss_upgrade_echoes_the_subprotocol(server: ThingcoreProcess, pki: dict[str, CertPaths]) -> None:
    ctx = ssl.create_default_context(cafile=str(pki["ca"].cert))
    with RawWS(server.http_port, subprotocols=["mqttv3.1.1"], tls=ctx, level=4) as ws:
        assert (ws.status, ws.headers["sec-websocket-protocol"]) == (101, "mqttv3.1.1")
        ws.send_packet(Connect(uid("wss"), 4, "MQTT", True, 30, None, None, None, {}))
        assert ws.expect(Connack).reason_code == 0


def test_boto3_publishes_over_https(server: ThingcoreProcess, pki: dict[str, CertPaths]) -> None:
    topic = f"wss/https/{uid()}"
    iot: Any = boto3.client("iot-data", endpoint_url=f"https://localhost:{server.http_port}", region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            verify=str(pki["ca"].cert), config=Config(retries={"max_attempts": 1}))
    with PahoClient(server.mqtt_port) as tcp:
        tcp.connect()
        tcp.subscribe(topic, 1)
        iot.publish(topic=topic, qos=1, payload=b"over https")
        assert tcp.expect().payload == b"over https"


def test_plain_http_is_not_served_on_the_tls_port(server: ThingcoreProcess) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"http://{HOST}:{server.http_port}/topics/a", content=b"x", timeout=5)


def test_device_sdk_websocket_builder_over_wss(server: ThingcoreProcess, pki: dict[str, CertPaths]) -> None:
    """The SDK's own builder, unchanged from what AWS users write, pointed at thingcore's wss endpoint."""
    try:
        from awscrt import auth, mqtt
        from awsiot import mqtt_connection_builder
    except ImportError as exc:  # pragma: no cover - the test extra installs awsiotsdk
        pytest.skip(f"awsiotsdk cannot be imported: {exc}")
    topic = f"wss/sdk/{uid()}"
    conn = mqtt_connection_builder.websockets_with_default_aws_signing(
        endpoint="localhost", port=server.http_port, region="us-east-1", ca_filepath=str(pki["ca"].cert),
        credentials_provider=auth.AwsCredentialsProvider.new_static("testing", "testing"),
        client_id=f"sdk-wss-{uid()}", clean_session=True, keep_alive_secs=30, reconnect_min_timeout_secs=30,
    )
    with PahoClient(server.mqtt_port) as tcp:
        tcp.connect()
        tcp.subscribe(topic, 1)
        conn.connect().result(10)
        try:
            done, _ = conn.publish(topic, b"sdk over wss", mqtt.QoS.AT_LEAST_ONCE)
            done.result(10)
            assert tcp.expect().payload == b"sdk over wss"
        finally:
            conn.disconnect().result(10)
