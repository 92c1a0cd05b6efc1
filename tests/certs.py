"""Test certificates made with ``cryptography``: a CA, a server certificate, client certificates.

    ca = make_ca(tmp_path)                       # CertPaths(cert, key), CN "thingcore test CA"
    server = make_cert(tmp_path, ca, "localhost", server=True)   # SAN localhost + 127.0.0.1 + ::1
    client = make_cert(tmp_path, ca, "device-1")                 # client auth, CN device-1
    other = make_ca(tmp_path, "other CA"); rogue = make_cert(tmp_path, other, "device-1")

Keys are EC P-256 (fast to make). Files are PEM, named after the common name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertPaths:
    cert: Path
    key: Path
    common_name: str
    subject: str  # RFC 4514
    fingerprint: str  # SHA-256 hex of the DER certificate


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "cert"


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertPaths:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{stem}.crt"
    key_path = directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertPaths(
        cert_path, key_path, str(cn), cert.subject.rfc4514_string(), hashlib.sha256(der).hexdigest()
    )


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return builder.not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))


def make_ca(directory: str | Path, common_name: str = "thingcore test CA") -> CertPaths:
    """A self-signed CA; writes ``<cn>.crt`` and ``<cn>.key`` into ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "thingcore tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    cert = _validity(builder).sign(key, hashes.SHA256())
    return _write(Path(directory), _slug(common_name), cert, key)


def make_cert(
    directory: str | Path,
    ca: CertPaths,
    common_name: str,
    *,
    server: bool = False,
    organization: str | None = None,
) -> CertPaths:
    """A certificate signed by ``ca``: a server certificate (SAN localhost, 127.0.0.1, ::1) when
    ``server`` is true, else a client certificate with subject CN=``common_name``."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = []
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        sans: list[x509.GeneralName] = [x509.DNSName(common_name)]
        if common_name != "localhost":
            sans.append(x509.DNSName("localhost"))
        sans += [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = _validity(builder).sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    stem = f"{_slug(ca.common_name)}--{_slug(common_name)}"
    return _write(Path(directory), stem, cert, key)


def make_pki(directory: str | Path, *client_names: str) -> dict[str, CertPaths]:
    """CA + server certificate for localhost + one client certificate per name (+ "rogue", a
    client certificate with CN "rogue" signed by a different CA)."""
    d = Path(directory)
    ca = make_ca(d)
    out = {"ca": ca, "server": make_cert(d, ca, "localhost", server=True)}
    for name in client_names:
        out[name] = make_cert(d, ca, name)
    other = make_ca(d, "other test CA")
    out["other_ca"] = other
    out["rogue"] = make_cert(d, other, "rogue")
    return out
