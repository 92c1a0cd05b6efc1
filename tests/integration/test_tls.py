"""MQTT over TLS on a real `thingcore serve`: server certificates, mutual TLS, the certificate
subject as the principal, and no MQTTS listener without a certificate."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from tests.certs import CertPaths, make_cert, make_pki
from tests.integration.rawmqtt import Closed, RawClient
from tests.server import ThingcoreProcess

from thingcore.mqtt.packets import Puback, Publish

pytestmark = pytest.mark.integration

Factory = Callable[..., ThingcoreProcess]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertPaths]:
    return make_pki(tmp_path_factory.mktemp("pki"), "device-1", "device-2")


@pytest.fixture(scope="module")
def mtls(pki: dict[str, CertPaths], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    """Mutual TLS required; only the device-1 certificate's subject may use secure/#."""
    config = {
        "limits": {"connect_timeout": 1},
        "auth": {"acl": [
            {"effect": "allow", "action": "all", "topic": "secure/#", "principal": pki["device-1"].subject},
            {"effect": "deny", "action": "all", "topic": "secure/#"},
        ]},
    }
    tc = ThingcoreProcess(
        tmp_path_factory.mktemp("mtls"), config, tls=True,
        args=["--tls-cert", str(pki["server"].cert), "--tls-key", str(pki["server"].key),
              "--tls-ca", str(pki["ca"].cert), "--require-client-cert"],
    )
    with tc:
        yield tc


def client_ctx(pki: dict[str, CertPaths], cert: str | None = None, *, ca: str = "ca",
               max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki[ca].cert))
    if cert is not None:
        ctx.load_cert_chain(str(pki[cert].cert), str(pki[cert].key))
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


class PahoTLS:
    """A paho client over TLS that records connect results and messages."""

    def __init__(self, port: int, client_id: str, *, ca: Path, cert: CertPaths | None = None,
                 protocol: int = paho.MQTTv5) -> None:
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        self.c.tls_set(ca_certs=str(ca), certfile=str(cert.cert) if cert else None,
                       keyfile=str(cert.key) if cert else None)
        self.connected = threading.Event()
        self.rc: Any = None
        self.messages: list[paho.MQTTMessage] = []
        self.got = threading.Event()
        self.subacks: list[Any] = []
        self.subscribed = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda _c, _u, m: (self.messages.append(m), self.got.set())
        self.c.on_subscribe = lambda _c, _u, _mid, codes, _p: (self.subacks.append(codes), self.subscribed.set())
        self.c.connect("localhost", port)
        self.c.loop_start()

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, rc: Any, _p: Any = None) -> None:
        self.rc = rc
        self.connected.set()

    def subscribe(self, topic: str) -> list[Any]:
        self.subscribed.clear()
        self.c.subscribe(topic, qos=1)
        assert self.subscribed.wait(10)
        return self.subacks[-1]

    def roundtrip(self, topic: str, payload: bytes) -> None:
        self.got.clear()
        info = self.c.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
        assert self.got.wait(10), f"own message on {topic} not received over TLS"
        assert self.messages[-1].payload == payload

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_paho_over_tls_with_the_test_ca(thingcore_factory: Factory, pki: dict[str, CertPaths]) -> None:
    """Server certificate only (no client certificate required), configured in the TOML file."""
    tls = {"certfile": pki["server"].cert, "keyfile": pki["server"].key, "cafile": pki["ca"].cert}
    tc = thingcore_factory({"tls": tls}, tls=True)
    assert f"mqtts listener on mqtts://127.0.0.1:{tc.mqtts_port}" in tc.log()
    for protocol in (paho.MQTTv311, paho.MQTTv5):
        c = PahoTLS(tc.mqtts_port, f"tls-{protocol}", ca=pki["ca"].cert, protocol=protocol)
        try:
            assert c.connected.wait(10) and c.rc == 0
            c.subscribe("tls/plain")
            c.roundtrip("tls/plain", f"hello over TLS {protocol}".encode())
        finally:
            c.close()
    # a client certificate is optional here, but it is verified and used when given
    with RawClient("localhost", tc.mqtts_port, ssl_context=client_ctx(pki, "device-1")) as c:
        assert c.connect("tls-with-cert").reason_code == 0
    with pytest.raises((ssl.SSLError, ConnectionResetError, Closed, BrokenPipeError)), \
            RawClient("localhost", tc.mqtts_port, ssl_context=client_ctx(pki, "rogue")) as c:
        c.connect("tls-rogue")
    # plain MQTT still on its own port
    with RawClient(tc.host, tc.mqtt_port) as c:
        assert c.connect("plain-next-to-tls").reason_code == 0


def test_mutual_tls_client_cert_connects(mtls: ThingcoreProcess, pki: dict[str, CertPaths]) -> None:
    c = PahoTLS(mtls.mqtts_port, "mtls-device-1", ca=pki["ca"].cert, cert=pki["device-1"])
    try:
        assert c.connected.wait(10) and c.rc == 0
        assert [int(x.value) for x in c.subscribe("devices/device-1/#")] == [1]
        c.roundtrip("devices/device-1/state", b"on")
    finally:
        c.close()


@pytest.mark.parametrize("max_version", [ssl.TLSVersion.TLSv1_2, None], ids=["tls1.2", "tls1.3"])
@pytest.mark.parametrize("cert", [None, "rogue"], ids=["no-cert", "other-ca"])
def test_mutual_tls_refuses_at_handshake(mtls: ThingcoreProcess, pki: dict[str, CertPaths], cert: str | None,
                                         max_version: ssl.TLSVersion | None) -> None:
    """No certificate, or one from another CA: the TLS handshake fails; no CONNACK ever comes.

    With TLS 1.2 the client sees the failure in the handshake itself; with TLS 1.3 the server's
    alert arrives on the client's first read (the client's handshake ends before the server has
    checked its certificate)."""
    before = mtls.metrics()["thingcore_connections_accepted_total"]
    ctx = client_ctx(pki, cert, max_version=max_version)
    sock = socket.create_connection((mtls.host, mtls.mqtts_port), timeout=5)
    try:
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            tls = ctx.wrap_socket(sock, server_hostname="localhost")
            if max_version is not None:
                pytest.fail("the TLS 1.2 handshake succeeded without a valid client certificate")
            tls.sendall(b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01x")
            data = tls.recv(100)
            if data == b"":
                raise ConnectionResetError("closed")
            pytest.fail(f"got {data!r} without a valid client certificate")
    finally:
        sock.close()
    # the connection never reached MQTT
    assert mtls.metrics()["thingcore_connections_accepted_total"] == before


def test_principal_is_the_certificate_subject(mtls: ThingcoreProcess, pki: dict[str, CertPaths]) -> None:
    """ACL rules match `principal = "<subject>"`: device-1 may use secure/#, device-2 may not."""
    assert pki["device-1"].subject == "CN=device-1"
    one = RawClient("localhost", mtls.mqtts_port, ssl_context=client_ctx(pki, "device-1"))
    two = RawClient("localhost", mtls.mqtts_port, ssl_context=client_ctx(pki, "device-2"))
    try:
        # the user name is not an identity here: the certificate is
        assert one.connect("acl-one", username="device-2").reason_code == 0
        assert two.connect("acl-two", username="device-1").reason_code == 0
        assert one.subscribe("secure/#", 1).reason_codes == [1]
        assert two.subscribe("secure/#", 1).reason_codes == [0x87]
        assert two.subscribe("open/#", 1).reason_codes == [1]
        two.publish("secure/x", b"from-two", 1, 5)
        ack = two.expect(Puback)
        assert (ack.packet_id, ack.reason_code) == (5, 0x87)
        one.publish("secure/x", b"from-one", 1, 6)
        msgs = [one.recv(), one.recv()]
        ack = next(p for p in msgs if isinstance(p, Puback))
        pub = next(p for p in msgs if isinstance(p, Publish))
        assert (ack.packet_id, ack.reason_code) == (6, 0)
        assert (pub.topic, pub.payload) == ("secure/x", b"from-one")
        one.send(Puback(pub.packet_id))
        with pytest.raises(TimeoutError):  # from-two was refused, never delivered
            one.recv(0.3)
    finally:
        one.close()
        two.close()


def test_tls_port_refuses_plaintext_and_silence(mtls: ThingcoreProcess) -> None:
    """Plain MQTT on the TLS port, or a socket that never starts a handshake: closed, quickly."""
    for data in (b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01x", b""):
        start = time.monotonic()
        with socket.create_connection((mtls.host, mtls.mqtts_port), timeout=10) as s:
            if data:
                s.sendall(data)
            try:
                rest = b""
                while chunk := s.recv(4096):
                    rest += chunk
            except ConnectionResetError:
                rest = b""
        assert not rest.startswith(b"\x20"), "a CONNACK came back over plain TCP"
        assert time.monotonic() - start < 5


def test_certificate_for_an_unknown_name_is_not_trusted(tmp_path: Path, thingcore_factory: Factory,
                                                        pki: dict[str, CertPaths]) -> None:
    """A server certificate for another host name fails the client's check (hostname verification)."""
    other = make_cert(tmp_path, pki["ca"], "not-this-host.example", server=False)
    tc = thingcore_factory({"tls": {"certfile": other.cert, "keyfile": other.key}}, tls=True)
    with pytest.raises(ssl.SSLCertVerificationError):
        RawClient("localhost", tc.mqtts_port, ssl_context=client_ctx(pki))


def test_no_mqtts_listener_without_tls(thingcore_factory: Factory) -> None:
    tc = thingcore_factory(tls=True)  # an MQTTS port is passed, but no certificate
    assert "mqtts listener" not in tc.log()
    assert "mqtt listener on mqtt://" in tc.log()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((tc.host, tc.mqtts_port), timeout=5).close()
    body = tc.http_get("/healthz")[1].decode()
    assert "mqtts" not in body
