"""The default :data:`~thingcore.auth.identity.Authenticator`: anonymous, password file, X.509.

Decision order for one CONNECT:

1. A TLS client certificate that the listener verified (the broker puts its subject in
   ``identity.principal`` and its fingerprint in ``identity.cert_fingerprint``) authenticates the
   connection: principal = certificate subject; user name and password are not checked.
2. On a listener named in ``require_client_cert_listeners`` a connection without a verified
   certificate is refused (0x87).
3. The user name's login part is what comes before ``?``: AWS IoT device SDKs send metadata
   such as ``?SDK=Python&Version=1.2.3`` as the user name with no password, which is not a login.
   With a password file, a login name must come with the right password (else 0x86
   bad user name or password); principal = the login name. Without a password file credentials
   are ignored and the client is anonymous (as mosquitto does).
4. Anonymous clients are accepted per ``allow_anonymous``: ``"loopback"`` (default, as
   mosquitto 2: only from 127.0.0.0/8 and ::1), ``"true"`` or ``"false"``; refused with 0x87.

The user name that access rules (``username``) and ``%u`` see is the one the client proved, never
the CONNECT field as sent: the login name (``guest?SDK=x`` is ``guest``), the common name (CN) of a
verified certificate whatever user name the client sends (as mosquitto's
``use_identity_as_username``; a certificate without exactly one CN gives none), and none for an
anonymous client.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterable
from functools import lru_cache

from cryptography import x509
from cryptography.x509.oid import NameOID

from thingcore.auth.identity import Authenticator, AuthResult, Identity
from thingcore.auth.passwords import PasswordFile
from thingcore.mqtt.reason_codes import ReasonCode

log = logging.getLogger(__name__)

_ANON_CHOICES = {"loopback": "loopback", "true": "true", "false": "false", "yes": "true", "no": "false"}


@lru_cache(maxsize=4096)
def is_loopback(address: str) -> bool:
    """Whether a peer address string is a loopback address (IPv4-mapped IPv6 included)."""
    if not address:
        return False
    addr = address.strip()
    if addr.lower() == "localhost":
        return True
    if addr.startswith("[") and "]" in addr:
        addr = addr[1 : addr.index("]")]
    addr = addr.split("%", 1)[0]  # IPv6 zone id
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def login_name(username: str | None) -> str:
    """The part of an MQTT user name that names a user ('' when it is only ``?metadata``)."""
    if not username:
        return ""
    return username.partition("?")[0]


@lru_cache(maxsize=4096)
def certificate_user_name(subject: str | None) -> str | None:
    """The user name a verified certificate gives its client: the subject's one common name (CN).

    None when the subject (an RFC 4514 string) has no CN or several, so that rules naming a user never
    match a certificate that names none.
    """
    if not subject:
        return None
    try:
        names = x509.Name.from_rfc4514_string(subject).get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return None
    if len(names) != 1:
        return None
    value = names[0].value
    name = value if isinstance(value, str) else value.decode("utf-8", "replace")
    return name or None


def _normalise_anonymous(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    mode = _ANON_CHOICES.get(str(value).strip().lower())
    if mode is None:
        raise ValueError(f"allow_anonymous must be 'loopback', 'true' or 'false', not {value!r}")
    return mode


def build_authenticator(
    *,
    allow_anonymous: str | bool = "loopback",
    password_file: str | os.PathLike[str] | PasswordFile | None = None,
    require_client_cert_listeners: Iterable[str] = (),
) -> Authenticator:
    mode = _normalise_anonymous(allow_anonymous)
    cert_required = frozenset(require_client_cert_listeners)
    passwords: PasswordFile | None
    if password_file is None or isinstance(password_file, PasswordFile):
        passwords = password_file
    else:
        passwords = PasswordFile(password_file)
        if not passwords.exists:
            log.warning("password file %s does not exist yet: no user can log in", passwords.path)

    def anonymous(identity: Identity) -> AuthResult:
        if mode == "true" or (mode == "loopback" and is_loopback(identity.address)):
            return AuthResult(0)
        reason = (
            "anonymous clients are only accepted on loopback addresses"
            if mode == "loopback"
            else "anonymous clients are not accepted"
        )
        return AuthResult(int(ReasonCode.NOT_AUTHORIZED), reason_string=reason)

    async def authenticate(identity: Identity, password: bytes | None) -> AuthResult:
        if identity.cert_fingerprint is not None and identity.principal:
            return AuthResult(0, principal=identity.principal, username=certificate_user_name(identity.principal))
        if identity.listener in cert_required:
            return AuthResult(
                int(ReasonCode.NOT_AUTHORIZED), reason_string="this listener requires a client certificate"
            )
        name = login_name(identity.username)
        if not name or passwords is None:
            return anonymous(identity)
        if password is None:
            return AuthResult(int(ReasonCode.BAD_USER_NAME_OR_PASSWORD), reason_string="password missing")
        if await passwords.averify(name, password):
            return AuthResult(0, principal=name, username=name)
        return AuthResult(
            int(ReasonCode.BAD_USER_NAME_OR_PASSWORD), reason_string="bad user name or password"
        )

    authenticate.password_file = passwords  # type: ignore[attr-defined]
    return authenticate


__all__ = ["build_authenticator", "certificate_user_name", "is_loopback", "login_name"]
