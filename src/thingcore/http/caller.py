"""Who is calling over HTTP, and the one place HTTP asks the broker's gate what that caller may do.

A request proves who it is in one of three ways, checked in this order:

1. ``Authorization: Bearer <[admin] token>`` (or HTTP Basic with the token as password): an
   administrator (``Identity.administrator``), no principal. A wrong token is refused with 401; these
   headers are ignored when no token is configured.
2. An AWS SigV4 signature from a configured access key: principal = the key's principal. Such a
   caller manages (rules, things, the admin API) only where an access rule allows ``manage``.
3. Nothing: anonymous. An anonymous caller is an administrator where ``[admin]
   allow_unauthenticated`` admits it (no token configured and, by default, a loopback peer), and
   uses the data plane (publish, retained messages, shadows) where ``[http] allow_anonymous``
   admits it (loopback by default). ``[auth] allow_anonymous`` is MQTT's and plays no part here.

Every decision is the broker's :meth:`authorize` (``thingcore.auth.acl``): MQTT actions for the data
plane, ``Action.MANAGE`` on ``"<kind>[/<name>]"`` for the control plane, through
:meth:`Callers.manager`, the dependency every control-plane and ``/api/v1`` router carries.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import Request

from thingcore.auth import Action, Identity
from thingcore.auth.policy import is_loopback
from thingcore.broker.admission import RefusalLog
from thingcore.http.errors import AWSError
from thingcore.http.sigv4 import AccessKey, SignatureError, Verifier
from thingcore.http.sigv4 import Request as SignedRequest

# refusals are logged as the gate logs them: at most 20 lines a second, the rest counted, so a flood of
# refused requests cannot flood the log
_refusal_log = RefusalLog()

#: scope key under which a route that rewrote the headers keeps the originals (the signature covers them)
ORIGINAL_HEADERS = "thingcore.original_headers"
_ADMIN_PREFIX = "/api/v1/"


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


def _headers(scope: Mapping[str, Any]) -> Any:
    return scope.get(ORIGINAL_HEADERS) or scope.get("headers", ())


def signed_principal(verifier: Verifier, scope: Mapping[str, Any], body: bytes = b"") -> str | None:
    """The principal proven by the request's signature (None: anonymous); AWS-style 403 when refused."""
    request = SignedRequest(scope.get("method", "GET"), scope.get("raw_path") or scope["path"].encode(),
                            scope.get("query_string", b""), _headers(scope), body)
    try:
        return verifier.principal(request, peer(scope)[0])
    except SignatureError as exc:
        raise AWSError(exc.status, exc.error_type, exc.message) from None


def _admin_credential(scope: Mapping[str, Any]) -> bytes | None:
    """The token a request offers as the admin credential: ``Bearer <token>``, or HTTP Basic with the token as
    password (what a browser's prompt and Prometheus' ``basic_auth`` send); None when it offers neither."""
    for name, value in _headers(scope):
        if name != b"authorization":
            continue
        scheme, _, given = value.partition(b" ")
        scheme = scheme.lower()
        if scheme == b"bearer":
            return given.strip()
        if scheme == b"basic":
            try:
                return base64.b64decode(given.strip(), validate=True).partition(b":")[2]
            except (binascii.Error, ValueError):
                return b""  # offered, and certainly not the token
    return None


def anonymous_data_plane(settings: Any) -> Callable[[str, int, str], Awaitable[bool]]:
    """``[http] allow_anonymous`` as the HTTP guard asks it (address, port, listener) before reading a body."""
    mode = settings.http.allow_anonymous

    async def admitted(address: str, _port: int, _listener: str) -> bool:
        return _admits(mode, address)

    return admitted


def describe(identity: Identity) -> str:
    """The caller as a log line names it."""
    address = f"[{identity.address}]" if ":" in identity.address else identity.address
    where = f"{address}:{identity.port}" if address else "an unknown address"
    if identity.principal is not None:
        return f"principal {identity.principal!r} from {where}"
    if identity.administrator and not identity.anonymous:
        return f"admin token holder from {where}"
    return f"anonymous caller from {where}"


def _admits(mode: str, address: str) -> bool:
    return mode == "true" or (mode == "loopback" and is_loopback(address))


class Callers:
    """Builds the identity of each HTTP request and asks the broker's gate about it."""

    def __init__(self, server: Any) -> None:
        settings = server.settings
        self.verifier = build_verifier(settings)
        self.broker = server.broker
        self.token: str | None = settings.admin.token
        self.unauthenticated_admin = settings.admin.allow_unauthenticated
        self.anonymous_data = settings.http.allow_anonymous

    def identify(self, scope: Mapping[str, Any], body: bytes = b"") -> Identity:
        """Who sent the request (see the module docstring); 401/403 for a wrong token or signature."""
        address, port = peer(scope)
        listener = "https" if scope.get("scheme") == "https" else "http"
        token = self.token
        offered = _admin_credential(scope) if token else None
        if offered is not None and token:
            if not hmac.compare_digest(offered, token.encode()):
                caller = Identity(client_id="", username=None, principal=None, listener=listener, address=address,
                                  port=port)
                _refusal_log("refused %s: not the [admin] token", describe(caller))
                raise AWSError(401, "UnauthorizedException",
                               "wrong token: send 'Authorization: Bearer <token>' with the [admin] token")
            return Identity(client_id="", username=None, principal=None, listener=listener, address=address,
                            port=port, anonymous=False, administrator=True)
        principal = signed_principal(self.verifier, scope, body)
        anonymous = principal is None
        administrator = anonymous and not self.token and _admits(self.unauthenticated_admin, address)
        return Identity(client_id="", username=None, principal=principal, listener=listener, address=address,
                        port=port, anonymous=anonymous, administrator=administrator)

    async def identity(self, scope: Mapping[str, Any], body: bytes) -> Identity:
        """A data-plane caller (publish, retained messages, shadows): anonymous ones as ``[http] allow_anonymous``
        admits them, else 403."""
        identity = self.identify(scope, body)
        if identity.anonymous and not _admits(self.anonymous_data, identity.address):
            _refusal_log("refused %s: anonymous HTTP callers are accepted %s ([http] allow_anonymous)",
                        describe(identity), "from loopback only" if self.anonymous_data == "loopback" else "never")
            raise AWSError(403, "ForbiddenException",
                           "anonymous HTTP callers are only accepted from loopback addresses"
                           if self.anonymous_data == "loopback" else "anonymous HTTP callers are not accepted")
        return identity

    def allowed(self, identity: Identity, action: Action, resource: str) -> bool:
        """The broker's gate for one MQTT action of a data-plane caller."""
        broker = self.broker
        return broker.authorize_all or not broker.authorize(identity, action, resource)

    @staticmethod
    def refused(identity: Identity, action: Action, resource: str, message: str = "Forbidden") -> AWSError:
        """The 403 for a data-plane request the gate refused, logged with who, what and where."""
        _refusal_log("refused %s: %s on %s", describe(identity), action.value, resource)
        return AWSError(403, "ForbiddenException", message)

    def require_manage(self, identity: Identity, resource: str, *, admin_api: bool = False) -> None:
        """Refuse unless the gate allows ``identity`` to MANAGE ``resource`` (a log line names who, what, which).

        Anonymous callers manage only as administrators (loopback by default), whatever the access rules
        say. Refusals: 403 ForbiddenException; on the admin API a caller without credentials gets 401
        UnauthorizedException saying what to send.
        """
        anonymous_stranger = identity.anonymous and not identity.administrator
        if not anonymous_stranger and not self.broker.authorize(identity, Action.MANAGE, resource):
            return
        _refusal_log("refused %s: %s on %s", describe(identity), Action.MANAGE.value, resource)
        if admin_api and anonymous_stranger:
            raise AWSError(401, "UnauthorizedException",
                           "the admin API needs 'Authorization: Bearer <token>' with the [admin] token"
                           if self.token else
                           "the admin API is open to loopback clients only unless [admin] token is set")
        raise AWSError(403, "ForbiddenException", f"{describe(identity)} is not authorized to "
                       f"{Action.MANAGE.value} {resource}")

    def manager(self) -> Callable[[Request], Awaitable[Identity]]:
        """The FastAPI dependency of every control-plane and ``/api/v1`` route: identify, then MANAGE.

        The resource is ``<kind>`` (the path's first segment after ``/api/v1/`` or ``/``) followed by
        ``/<value>`` of the route's first path parameter when it has one: ``/things/{thingName}`` is
        ``things/<thingName>``, ``/rules/{ruleName}/enable`` is ``rules/<ruleName>``, ``/api/v1/stats`` is
        ``stats``, ``/api/v1/clients/{client_id}/disconnect`` is ``clients/<client_id>``.
        """

        async def check(request: Request) -> Identity:
            identity = self.identify(request.scope, await request.body())
            path: str = request.scope["path"]
            admin_api = path.startswith(_ADMIN_PREFIX)
            kind = path[len(_ADMIN_PREFIX) if admin_api else 1:].partition("/")[0]
            name = next(iter(request.path_params.values()), None)
            self.require_manage(identity, f"{kind}/{name}" if name else kind, admin_api=admin_api)
            request.state.identity = identity
            return identity

        return check


__all__ = ["ORIGINAL_HEADERS", "Callers", "anonymous_data_plane", "build_verifier", "describe", "peer",
           "signed_principal"]
