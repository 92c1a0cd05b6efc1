"""Refusals are logged at INFO with the client id, peer and reason, and counted: a refused TLS handshake
(python ssl, openssl s_client), a refused SUBSCRIBE and PUBLISH (paho); a TLS ClientHello on the plain
MQTT or HTTP port is named as such."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
from collections.abc import Iterator

import pytest
from tests.certs import CertPaths, make_pki
from tests.conftest import require_tool
from tests.integration.mqtt_helpers import V5, PahoClient, uid, wait_for
from tests.server import ThingcoreProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertPaths]:
    return make_pki(tmp_path_factory.mktemp("pki"), "device-1")


@pytest.fixture(scope="module")
def mtls(pki: dict[str, CertPaths], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    config = {"auth": {"acl": [{"effect": "deny", "action": "all", "topic": "secret/#"},
                               {"effect": "allow", "action": "all", "topic": "#"}]}}
    tc = ThingcoreProcess(tmp_path_factory.mktemp("mtls"), config, tls=True, args=[
        "--tls-cert", str(pki["server"].cert), "--tls-key", str(pki["server"].key), "--tls-ca", str(pki["ca"].cert),
        "--require-client-cert"])
    with tc:
        yield tc


def _handshake(port: int, pki: dict[str, CertPaths], cert: str | None) -> bytes:
    """Connect, send a CONNECT-sized hello, return what the server answers (b"" when it closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            _context(pki, cert).wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"\x10\x00")  # TLS 1.3: the server's verdict on our certificate arrives with the first read
        return tls.recv(10)


def _context(pki: dict[str, CertPaths], cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca"].cert))
    if cert is not None:
        ctx.load_cert_chain(str(pki[cert].cert), str(pki[cert].key))
    return ctx


def _refused_total(tc: ThingcoreProcess) -> float:
    return tc.metrics()["thingcore_tls_handshakes_refused_total"]


def test_refused_tls_handshakes_are_logged_and_counted(mtls: ThingcoreProcess, pki: dict[str, CertPaths]) -> None:
    before = _refused_total(mtls)
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        assert _handshake(mtls.mqtts_port, pki, None) == b""
    wait_for(lambda: "no client certificate" in mtls.log(), what="the missing-certificate refusal in the log")
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        assert _handshake(mtls.mqtts_port, pki, "rogue") == b""  # signed by another CA
    wait_for(lambda: "client certificate refused: " in mtls.log(), what="the unknown-CA refusal in the log")
    line = next(x for x in mtls.log().splitlines() if "client certificate refused" in x)
    assert "INFO" in line and "refused TLS handshake from 127.0.0.1:" in line and "(mqtts)" in line
    wait_for(lambda: _refused_total(mtls) == before + 2, what="two refused handshakes counted")
    with socket.create_connection(("127.0.0.1", mtls.mqtts_port), timeout=5) as raw, \
            _context(pki, "device-1").wrap_socket(raw, server_hostname="localhost") as tls:  # a good one connects
        tls.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
        assert tls.recv(4) == b"\x20\x02\x00\x00"  # CONNACK accepted
    assert _refused_total(mtls) == before + 2


def test_openssl_s_client_refusals_are_logged(mtls: ThingcoreProcess, pki: dict[str, CertPaths]) -> None:
    openssl = require_tool("openssl")
    before = _refused_total(mtls)
    subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{mtls.mqtts_port}", "-CAfile",
                    str(pki["ca"].cert), "-cert", str(pki["rogue"].cert), "-key", str(pki["rogue"].key)],
                   input=b"", capture_output=True, timeout=30)
    wait_for(lambda: _refused_total(mtls) == before + 1, what="the s_client refusal counted")
    # plain MQTT on the TLS port
    with socket.create_connection(("127.0.0.1", mtls.mqtts_port), timeout=5) as raw:
        raw.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
        raw.recv(100)
    wait_for(lambda: "not TLS: plain MQTT on the TLS port" in mtls.log(), what="the plain-MQTT-on-TLS hint")


def test_tls_on_the_plain_ports_is_named(mtls: ThingcoreProcess) -> None:
    ctx = ssl.create_default_context()
    for port in (mtls.mqtt_port, mtls.http_port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            ctx.wrap_socket(raw, server_hostname="localhost")
    wait_for(lambda: f"a TLS ClientHello on the plain MQTT port {mtls.mqtt_port}: use {mtls.mqtts_port}, "
                     "or enable [tls]" in mtls.log(), what="the MQTT port hint")
    wait_for(lambda: f"a TLS ClientHello on the plain HTTP port {mtls.http_port}" in mtls.log(),
             what="the HTTP port hint")
    assert "Invalid HTTP request received" not in mtls.log()


def test_refused_subscribe_and_publish_are_logged_with_client_and_peer(thingcore_factory) -> None:
    tc = thingcore_factory({"auth": {"acl": [{"effect": "deny", "action": "all", "topic": "secret/#"},
                                             {"effect": "allow", "action": "all", "topic": "#"}]}})
    client_id = uid("snoop")
    with PahoClient(tc.mqtt_port, client_id, protocol=V5) as c:
        c.connect()
        assert c.subscribe("secret/plans", 1) == [0x87]
        assert c.publish("secret/plans", b"x", 1) == 0x87
    log = tc.log()
    sub = next(x for x in log.splitlines() if "refused a subscription to 'secret/plans'" in x)
    assert "INFO" in sub and repr(client_id) in sub and "127.0.0.1" in sub and "not authorized" in sub
    pub = next(x for x in log.splitlines() if "refused a publish to 'secret/plans'" in x)
    assert repr(client_id) in pub and "127.0.0.1" in pub
    metrics = tc.metrics()
    assert metrics["thingcore_subscriptions_refused_total"] == 1
    assert metrics["thingcore_publishes_refused_total"] == 1
