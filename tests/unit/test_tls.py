"""TLS contexts and client-certificate identity over a real loopback handshake."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from tests.certs import CertPaths, make_ca, make_cert, make_pki

from thingcore.broker.tls import client_ssl_context, peer_identity, server_ssl_context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertPaths]:
    return make_pki(tmp_path_factory.mktemp("pki"), "device-1")


async def _handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> tuple[tuple[str | None, str | None] | None, str | None, bytes | Exception]:
    """Run one connection; returns (peer_identity on the server or None, server ALPN, client read)."""
    seen: list[tuple[str | None, str | None]] = []
    alpn: list[str | None] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        obj = writer.get_extra_info("ssl_object")
        seen.append(peer_identity(obj))
        alpn.append(obj.selected_alpn_protocol())
        writer.write(b"hello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        result: bytes | Exception
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
            )
            try:
                result = await asyncio.wait_for(reader.read(100), 5)
            finally:
                writer.close()
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            result = exc
        await asyncio.sleep(0.05)
    finally:
        server.close()
        await server.wait_closed()
    return (seen[0] if seen else None), (alpn[0] if alpn else None), result


async def test_client_cert_identity(pki: dict[str, CertPaths]) -> None:
    srv = server_ssl_context(
        pki["server"].cert, pki["server"].key, cafile=pki["ca"].cert, require_client_cert=True
    )
    assert srv.minimum_version >= ssl.TLSVersion.TLSv1_2
    dev = pki["device-1"]
    cli = client_ssl_context(pki["ca"].cert, dev.cert, dev.key, alpn_protocols=["x-amzn-mqtt-ca"])
    ident, alpn, data = await _handshake(srv, cli)
    assert data == b"hello"
    assert ident == ("CN=device-1", dev.fingerprint)
    assert alpn == "x-amzn-mqtt-ca"


async def test_subject_is_rfc4514(tmp_path: Path, pki: dict[str, CertPaths]) -> None:
    dev = make_cert(tmp_path, pki["ca"], "thing,with=odd", organization="Acme")
    srv = server_ssl_context(pki["server"].cert, pki["server"].key, cafile=pki["ca"].cert)
    cli = client_ssl_context(pki["ca"].cert, dev.cert, dev.key, alpn_protocols=["mqtt"])
    ident, alpn, data = await _handshake(srv, cli)
    assert data == b"hello"
    assert ident == (r"CN=thing\,with=odd,O=Acme", dev.fingerprint)
    assert alpn == "mqtt"


async def test_optional_client_cert(pki: dict[str, CertPaths]) -> None:
    srv = server_ssl_context(pki["server"].cert, pki["server"].key, cafile=pki["ca"].cert)
    assert srv.verify_mode == ssl.CERT_OPTIONAL
    # No certificate, no ALPN (or an unknown one): still connects, anonymous.
    cli = client_ssl_context(pki["ca"].cert, alpn_protocols=["h2"])
    ident, alpn, data = await _handshake(srv, cli)
    assert data == b"hello"
    assert ident == (None, None)
    assert alpn is None


async def test_rogue_client_cert_refused(pki: dict[str, CertPaths]) -> None:
    for require in (True, False):  # refused whether required or merely verified if given
        srv = server_ssl_context(
            pki["server"].cert, pki["server"].key, cafile=pki["ca"].cert, require_client_cert=require
        )
        rogue = pki["rogue"]
        cli = client_ssl_context(pki["ca"].cert, rogue.cert, rogue.key)
        ident, _, data = await _handshake(srv, cli)
        assert ident is None, "the server handler must never run"
        assert data == b"" or isinstance(data, Exception)


async def test_missing_client_cert_refused_when_required(pki: dict[str, CertPaths]) -> None:
    srv = server_ssl_context(
        pki["server"].cert, pki["server"].key, cafile=pki["ca"].cert, require_client_cert=True
    )
    cli = client_ssl_context(pki["ca"].cert)
    ident, _, data = await _handshake(srv, cli)
    assert ident is None
    assert data == b"" or isinstance(data, Exception)


async def test_no_verification_means_no_identity(pki: dict[str, CertPaths]) -> None:
    srv = server_ssl_context(pki["server"].cert, pki["server"].key, verify_client_cert_if_given=False)
    assert srv.verify_mode == ssl.CERT_NONE
    dev = pki["device-1"]
    ident, _, data = await _handshake(srv, client_ssl_context(pki["ca"].cert, dev.cert, dev.key))
    assert data == b"hello"
    assert ident == (None, None)


def test_server_cert_for_localhost_and_ip(tmp_path: Path) -> None:
    from cryptography import x509

    ca = make_ca(tmp_path)
    server = make_cert(tmp_path, ca, "localhost", server=True)
    cert = x509.load_pem_x509_certificate(server.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def test_require_client_cert_needs_ca(pki: dict[str, CertPaths]) -> None:
    with pytest.raises(ValueError, match="cafile"):
        server_ssl_context(pki["server"].cert, pki["server"].key, require_client_cert=True)


def test_peer_identity_without_ssl() -> None:
    assert peer_identity(None) == (None, None)
