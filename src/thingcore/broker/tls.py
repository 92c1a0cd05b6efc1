"""TLS contexts for the MQTT-over-TLS listener, and the client identity a handshake yields."""

from __future__ import annotations

import hashlib
import os
import ssl
from collections.abc import Sequence

from cryptography import x509

PathLike = str | os.PathLike[str]

# "x-amzn-mqtt-ca" is what AWS IoT device SDKs offer to speak MQTT with certificates on port 443.
DEFAULT_ALPN = ("mqtt", "x-amzn-mqtt-ca")


def server_ssl_context(
    certfile: PathLike,
    keyfile: PathLike | None,
    *,
    cafile: PathLike | None = None,
    require_client_cert: bool = False,
    verify_client_cert_if_given: bool = True,
    alpn_protocols: Sequence[str] | None = DEFAULT_ALPN,
) -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer, the given certificate chain and key.

    Client certificates are checked against ``cafile``: mandatory with ``require_client_cert``,
    otherwise (with ``verify_client_cert_if_given``) requested, and a presented certificate that
    does not verify fails the handshake. The ALPN protocols are selected only if the client offers
    one of them; a client that offers none (or other names) still connects.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.load_cert_chain(os.fspath(certfile), os.fspath(keyfile) if keyfile is not None else None)
    if cafile is not None:
        ctx.load_verify_locations(cafile=os.fspath(cafile))
    if require_client_cert:
        if cafile is None:
            raise ValueError("require_client_cert needs a CA file (cafile) to verify client certificates")
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif verify_client_cert_if_given and cafile is not None:
        ctx.verify_mode = ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if alpn_protocols:
        ctx.set_alpn_protocols(list(alpn_protocols))
    return ctx


def client_ssl_context(
    cafile: PathLike | None = None,
    certfile: PathLike | None = None,
    keyfile: PathLike | None = None,
    *,
    alpn_protocols: Sequence[str] | None = None,
) -> ssl.SSLContext:
    """A client context trusting ``cafile`` (system roots if None), with an optional client cert."""
    ctx = ssl.create_default_context(cafile=os.fspath(cafile) if cafile is not None else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile is not None:
        ctx.load_cert_chain(os.fspath(certfile), os.fspath(keyfile) if keyfile is not None else None)
    if alpn_protocols:
        ctx.set_alpn_protocols(list(alpn_protocols))
    return ctx


def cert_identity(der: bytes) -> tuple[str, str]:
    """(subject as an RFC 4514 string, SHA-256 hex fingerprint) of a DER certificate."""
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.rfc4514_string(), hashlib.sha256(der).hexdigest()


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> tuple[str | None, str | None]:
    """The verified client certificate's (subject, fingerprint), or (None, None).

    Only certificates the context verified count: with ``CERT_NONE`` this returns (None, None)
    even if a certificate was somehow presented.
    """
    if ssl_object is None:
        return None, None
    try:
        if ssl_object.context.verify_mode == ssl.CERT_NONE:
            return None, None
        der = ssl_object.getpeercert(binary_form=True)
    except (ValueError, AttributeError):  # handshake not done / not an SSL object
        return None, None
    if not der:
        return None, None
    try:
        return cert_identity(der)
    except ValueError:
        return None, None


__all__ = ["DEFAULT_ALPN", "cert_identity", "client_ssl_context", "peer_identity", "server_ssl_context"]
