"""Who is calling over HTTP: the principal a SigV4 signature proves, or an anonymous caller.

An HTTP caller gets an :class:`~thingcore.auth.Identity` like an MQTT client's (listener ``http`` or
``https``, the peer address, no client id), so access rules apply to it unchanged. Anonymous callers
go through the same authenticator as anonymous MQTT clients (``auth.allow_anonymous``: loopback only
by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from thingcore.auth import Identity
from thingcore.http.errors import AWSError
from thingcore.http.sigv4 import AccessKey, Request, SignatureError, Verifier


def build_verifier(settings: Any) -> Verifier:
    """The SigV4 verifier for ``settings.http`` (access keys and ``verify_signatures``)."""
    http = settings.http
    keys = [AccessKey(k.access_key_id, k.secret_access_key, k.principal or k.access_key_id) for k in http.access_keys]
    return Verifier(keys, http.verify_signatures)


def peer(scope: Mapping[str, Any]) -> tuple[str, int]:
    client = scope.get("client")
    if not client:
        return "", 0
    return str(client[0]), int(client[1] or 0)


def signed_principal(verifier: Verifier, scope: Mapping[str, Any], body: bytes = b"") -> str | None:
    """The principal proven by the request's signature (None: anonymous); AWS-style 403 when refused."""
    request = Request(scope.get("method", "GET"), scope.get("raw_path") or scope["path"].encode(),
                      scope.get("query_string", b""), scope.get("headers", ()), body)
    try:
        return verifier.principal(request, peer(scope)[0])
    except SignatureError as exc:
        raise AWSError(exc.status, exc.error_type, exc.message) from None


class Callers:
    """Builds the identity of each HTTP request."""

    def __init__(self, server: Any) -> None:
        self.verifier = build_verifier(server.settings)
        self.authenticate = server.broker.authenticate

    async def identity(self, scope: Mapping[str, Any], body: bytes) -> Identity:
        principal = signed_principal(self.verifier, scope, body)
        address, port = peer(scope)
        listener = "https" if scope.get("scheme") == "https" else "http"
        identity = Identity(client_id="", username=None, principal=principal, listener=listener, address=address,
                            port=port, anonymous=principal is None)
        if principal is None:
            result = await self.authenticate(identity, None)
            if not result.ok:
                raise AWSError(403, "ForbiddenException", result.reason_string or "not authorized")
        return identity
