"""The device SDK over TLS against thingcore with a test CA: MQTT over TLS with a client certificate
(mutual TLS, the certificate subject as the principal), MQTT over secure WebSockets (wss) and HTTPS
publish; a server the device cannot verify is refused at once with a clear error.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Iterator

import pytest
from tests.certs import CertPaths, make_pki
from tests.integration.device_helpers import FAST, TIMEOUT, Inbox, uid
from tests.server import ThingcoreProcess

from thingcore.device import ConnectError, Device, PublishError

pytestmark = pytest.mark.integration

DEVICE = "tls-device"


class HTTPSThingcore(ThingcoreProcess):
    """Health-checked over HTTPS (the HTTP port has the certificate too)."""

    ca = ""

    def healthy(self) -> bool:
        ctx = ssl.create_default_context(cafile=self.ca)
        try:
            with urllib.request.urlopen(f"https://localhost:{self.http_port}/healthz", timeout=1, context=ctx) as r:
                return r.status == 200
        except OSError:
            return False


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertPaths]:
    return make_pki(tmp_path_factory.mktemp("device-pki"), DEVICE, "tls-other")


@pytest.fixture(scope="module")
def server(pki: dict[str, CertPaths], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    config = {
        "tls": {"certfile": pki["server"].cert, "keyfile": pki["server"].key, "cafile": pki["ca"].cert,
                "require_client_cert": True},
        "http": {"certfile": pki["server"].cert, "keyfile": pki["server"].key},
        "auth": {"acl": [  # only the device's certificate may publish to secure/#
            {"effect": "allow", "action": "publish", "topic": "secure/#", "principal": pki[DEVICE].subject},
            {"effect": "deny", "action": "publish", "topic": "secure/#"},
        ]},
    }
    tc = HTTPSThingcore(tmp_path_factory.mktemp("device-tls"), config, tls=True)
    tc.ca = str(pki["ca"].cert)
    with tc:
        yield tc


def _mtls(server: ThingcoreProcess, pki: dict[str, CertPaths], name: str, **options: object) -> Device:
    return Device("localhost", uid(name), port=server.mqtts_port, ca=pki["ca"].cert, cert=pki[name].cert,
                  key=pki[name].key, backoff=FAST, **options)


@pytest.mark.parametrize("protocol", [5, 4], ids=["v5", "v311"])
def test_mqtt_over_tls_with_a_client_certificate(server: ThingcoreProcess, pki: dict[str, CertPaths],
                                                 protocol: int) -> None:
    topic = f"secure/{uid('t')}"
    inbox = Inbox()
    with _mtls(server, pki, DEVICE, protocol=protocol) as dev:
        dev.subscribe(topic, inbox)
        dev.publish(topic, {"secure": True}, qos=1).wait(TIMEOUT)
        assert inbox.get().json() == {"secure": True}


def test_certificate_subject_is_the_principal(server: ThingcoreProcess, pki: dict[str, CertPaths]) -> None:
    """Another valid certificate connects, but the access rule for secure/# names the device's subject."""
    with _mtls(server, pki, "tls-other") as other:
        refused = other.publish(f"secure/{uid('t')}", "x", qos=1)
        with pytest.raises(PublishError) as info:
            refused.wait(TIMEOUT)
        assert info.value.reason_code == 0x87


@pytest.mark.parametrize("transport", ["websockets", "http"])
def test_wss_and_https(server: ThingcoreProcess, pki: dict[str, CertPaths], transport: str) -> None:
    topic = f"open/{uid(transport)}"
    inbox = Inbox()
    with _mtls(server, pki, DEVICE) as listener, \
            Device("localhost", uid(transport), transport=transport, port=server.http_port, ca=pki["ca"].cert,
                   backoff=FAST) as dev:
        listener.subscribe(topic, inbox)
        dev.publish(topic, f"over {transport}", qos=1).wait(TIMEOUT)
        assert inbox.get().text == f"over {transport}"


@pytest.mark.parametrize("transport", ["mqtt", "websockets", "http"])
def test_unverifiable_server_is_refused_at_once(server: ThingcoreProcess, pki: dict[str, CertPaths],
                                                transport: str) -> None:
    """A server certificate from a CA the device does not trust: a ConnectError naming TLS, not retries."""
    port = server.mqtts_port if transport == "mqtt" else server.http_port
    dev = Device("localhost", uid("untrusting"), transport=transport, port=port, ca=pki["other_ca"].cert,
                 cert=pki[DEVICE].cert, key=pki[DEVICE].key, backoff=FAST)
    try:
        if transport == "http":
            dev.connect()
            with pytest.raises(ConnectError, match="TLS"):
                dev.publish("open/x", "x", qos=1).wait(TIMEOUT)
        else:
            with pytest.raises(ConnectError, match="TLS"):
                dev.connect(timeout=None)
    finally:
        dev.disconnect()
