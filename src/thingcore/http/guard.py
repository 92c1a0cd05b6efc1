"""The HTTP listener's edge: what must be refused before any route sees a request.

One ASGI middleware, the outermost of the app's own, does five things in order, each cheap and each logged when
it refuses:

1. **Proxies.** ``X-Forwarded-For`` / ``Forwarded`` / ``X-Forwarded-Proto`` are believed only from
   ``[http] trusted_proxies``; the client address is then the rightmost hop that is not a trusted proxy
   (uvicorn's own proxy handling, which trusts 127.0.0.1, is switched off in the server). A trusted
   proxy that names no client makes the client ``unknown``, never the proxy's own (loopback) address.
2. **Host.** A Host header naming something other than an IP literal, ``localhost`` or one of ``[http]
   hostnames`` is refused on management paths and from loopback callers: that is what a DNS-rebinding
   page sends, and loopback is where trust lives. Devices reaching the data plane by name from the
   network are not affected.
3. **Origin.** A WebSocket upgrade or a POST/PUT/PATCH/DELETE whose ``Origin`` (or, lacking one,
   ``Sec-Fetch-Site: cross-site|same-site``) is neither the server's own origin nor in ``[http]
   allowed_origins`` is refused with 403: a page on another site cannot drive the broker through the
   user's browser. Requests without Origin (curl, SDKs, devices) are unaffected.
4. **Credentials before bodies.** From a non-loopback caller, ``/metrics``, ``/docs``, ``/redoc``,
   ``/openapi.json`` and ``/api/v1`` need the ``[admin]`` token (``Authorization: Bearer <token>``, or
   HTTP Basic with the token as password); every other API needs some credential (an Authorization
   header or a presigned ``X-Amz-Signature``) unless anonymous HTTP callers are admitted from that
   address. The routes still check the credential; this only refuses, at once, what they would refuse
   after reading the body.
5. **Body size.** A ``Content-Length`` above ``[http] max_body_size`` is answered 413 without reading
   it; a chunked body is counted as it is read and cut at the limit with 413.

The dashboard's page and its static files (``/``, ``/ui/...``) and ``/healthz`` need no credentials:
they carry no data (the files are the open-source code anyone can download), and everything the page
shows comes through the APIs above. Nor does a topic rule destination's ``/confirmdestination/<token>``
(its enableUrl), which the destination's owner opens from anywhere: the token is the credential.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from functools import lru_cache

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thingcore.auth import is_loopback
from thingcore.config import Settings
from thingcore.http.errors import aws_error_response

log = logging.getLogger("thingcore.http")

# Decides whether an anonymous HTTP caller from this address is admitted: [http] allow_anonymous
# (thingcore.http.caller.anonymous_data_plane), never MQTT's [auth] allow_anonymous.
AnonymousAdmitted = Callable[[str, int, str], Awaitable[bool]]

_STATE_CHANGING = frozenset(("POST", "PUT", "PATCH", "DELETE"))
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_OPERATOR_PREFIXES = ("/api/v1/", "/docs", "/redoc")
_OPERATOR_PATHS = frozenset(("/api/v1", "/metrics", "/openapi.json"))
_PUBLIC_PATHS = frozenset(("/healthz", "/"))
# the dashboard's files; a topic rule destination's enableUrl, whose token is the credential (as on AWS)
_PUBLIC_PREFIXES = ("/ui/", "/confirmdestination/")
_DEVICE_PREFIXES = ("/topics/", "/retainedMessage", "/api/things/shadow/")
_SHADOW = re.compile(r"^/things/[^/]+/shadow/?$")
_SIGNED_QUERY = b"X-Amz-Signature="


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` when a chunked body passes the limit; the app's handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds the limit of {limit} bytes ([http] max_body_size)")


def _kind(path: str) -> str:
    """``public``, ``device`` (data plane and /mqtt), ``operator`` (admin token) or ``control`` (iot APIs)."""
    if path in _PUBLIC_PATHS or path.startswith(_PUBLIC_PREFIXES):
        return "public"
    if path in _OPERATOR_PATHS or path.startswith(_OPERATOR_PREFIXES):
        return "operator"
    if path == "/mqtt" or path.startswith(_DEVICE_PREFIXES) or _SHADOW.match(path):
        return "device"
    return "control"


def _split_host(host: str) -> tuple[str, str]:
    """``name:port`` / ``[v6]:port`` -> (name without brackets or final dot, port or '')."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, rest[1:] if rest.startswith(":") else ""
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        return name.rstrip("."), port
    return host.rstrip("."), ""


@lru_cache(maxsize=1024)
def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _netloc(scheme: str, netloc: str) -> str:
    """``host[:port]`` lower-cased, without the scheme's default port, for comparing origins."""
    name, port = _split_host(netloc.lower())
    shown = f"[{name}]" if ":" in name else name
    return shown if not port or port == _DEFAULT_PORTS.get(scheme) else f"{shown}:{port}"


def _origin_key(origin: str) -> str | None:
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep or scheme not in _DEFAULT_PORTS or not rest or "/" in rest:
        return None
    return f"{scheme}://{_netloc(scheme, rest)}"


def _node(value: str) -> str:
    """The address of an RFC 7239 node (``"[2001:db8::1]:4711"``, ``192.0.2.1:80``, ``unknown``)."""
    value = value.strip().strip('"')
    if value.startswith("["):
        return _split_host(value)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _forwarded_for(headers: dict[bytes, list[bytes]]) -> list[str]:
    """Hops from X-Forwarded-For (or else RFC 7239 Forwarded ``for=``), left (client) to right (last proxy)."""
    xff = headers.get(b"x-forwarded-for")
    if xff:
        return [_node(h) for v in xff for h in v.decode("latin-1").split(",") if h.strip()]
    hops = []
    for value in headers.get(b"forwarded", ()):
        for element in value.decode("latin-1").split(","):
            for pair in element.split(";"):
                key, _, val = pair.strip().partition("=")
                if key.lower() == "for":
                    hops.append(_node(val))
    return hops


def _forwarded_proto(headers: dict[bytes, list[bytes]]) -> str | None:
    """The scheme the client used: the first (client-facing) X-Forwarded-Proto or Forwarded ``proto=``."""
    value = headers.get(b"x-forwarded-proto")
    if value:
        return value[0].decode("latin-1").split(",")[0].strip().lower()
    for raw in headers.get(b"forwarded", ()):
        for element in raw.decode("latin-1").split(","):
            for pair in element.split(";"):
                key, _, val = pair.strip().partition("=")
                if key.lower() == "proto":
                    return val.strip().strip('"').lower()
    return None


class HTTPGuard:
    """The ASGI middleware; see the module docstring for what it refuses and why."""

    def __init__(self, app: ASGIApp, settings: Settings, anonymous_admitted: AnonymousAdmitted) -> None:
        self.app = app
        http = settings.http
        self.limit = http.body_limit(settings.limits.max_packet_size)
        self.origins = frozenset(k for k in (_origin_key(o) for o in http.allowed_origins) if k)
        self.exact_names = frozenset(n for n in http.hostnames if not n.startswith("*."))
        self.suffixes = tuple(n[1:] for n in http.hostnames if n.startswith("*."))
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in http.trusted_proxies]
        self.token = settings.admin.token.encode() if settings.admin.token else None
        self.admin_open = settings.admin.allow_unauthenticated == "true"
        self.anonymous_admitted = anonymous_admitted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind_of_scope = scope["type"]
        if kind_of_scope != "http" and kind_of_scope != "websocket":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, list[bytes]] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, []).append(value)
        if self.proxies:
            self._unproxy(scope, headers)
        refusal = await self._refusal(scope, headers)
        if refusal is not None:
            status, error_type, message = refusal
            client = scope.get("client") or ("", 0)
            log.info("refused %s %s from %s: %s", scope.get("method", "WEBSOCKET"), scope["path"], client[0], message)
            await self._refuse(scope, send, status, error_type, message)
            return
        if kind_of_scope == "http" and b"content-length" not in headers and b"transfer-encoding" in headers:
            await self._counted(scope, receive, send)
            return
        await self.app(scope, receive, send)

    # -- the checks ------------------------------------------------------------------------------

    def _unproxy(self, scope: Scope, headers: dict[bytes, list[bytes]]) -> None:
        """Replace the peer by the client a trusted proxy names (rightmost untrusted hop).

        A trusted proxy is never the client itself: when it names no one the client is ``unknown`` (RFC
        7239's word), so a local proxy cannot lend its loopback address to the callers behind it.
        """
        client = scope.get("client")
        if not client or not self._trusted_proxy(client[0]):
            return
        address = "unknown"
        for hop in reversed(_forwarded_for(headers)):
            address = hop
            if not self._trusted_proxy(hop):
                break
        scope["client"] = (address, 0)
        proto = _forwarded_proto(headers)
        if proto in ("http", "https"):
            scope["scheme"] = proto if scope["type"] == "http" else proto.replace("http", "ws")

    def _trusted_proxy(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.proxies)

    async def _refusal(self, scope: Scope, headers: dict[bytes, list[bytes]]) -> tuple[int, str, str] | None:
        path: str = scope["path"]
        if path == "/healthz":
            return None
        kind = _kind(path)
        client = scope.get("client") or ("", 0)
        loopback = is_loopback(client[0])
        host = headers.get(b"host", [b""])[-1].decode("latin-1")
        if (loopback or kind != "device") and not self._known_host(host):
            return (403, "ForbiddenException",
                    f"Host {host!r} is not a name of this server: add it to [http] hostnames (DNS rebinding guard)")
        websocket = scope["type"] == "websocket"
        if websocket or scope["method"] in _STATE_CHANGING:
            why = self._foreign_origin(scope, headers, host)
            if why:
                return 403, "ForbiddenException", why
        if loopback or kind == "public" or websocket:
            return self._too_large(headers)
        if kind == "operator":
            if not self._admin_credentials(headers):
                return (401, "UnauthorizedException", "this path needs the [admin] token from non-loopback callers: "
                        "'Authorization: Bearer <token>' or HTTP Basic with the token as password")
        elif b"authorization" not in headers and _SIGNED_QUERY not in scope.get("query_string", b""):
            listener = "https" if scope.get("scheme") == "https" else "http"
            if not await self.anonymous_admitted(client[0], client[1], listener):
                return 403, "ForbiddenException", "anonymous HTTP callers are not accepted from this address " \
                                                  "([http] allow_anonymous): sign the request (SigV4) or send " \
                                                  "credentials"
        return self._too_large(headers)

    def _known_host(self, host: str) -> bool:
        if not host:
            return True  # HTTP/1.0 without Host: no browser sends that
        name = _split_host(host.lower())[0]
        if name == "localhost" or name.endswith(".localhost") or name in self.exact_names or _is_ip(name):
            return True
        return bool(self.suffixes) and name.endswith(self.suffixes)

    def _foreign_origin(self, scope: Scope, headers: dict[bytes, list[bytes]], host: str) -> str | None:
        """Why this browser request comes from a foreign origin, or None when it does not."""
        origins = headers.get(b"origin")
        if origins is None:
            site = headers.get(b"sec-fetch-site", [b""])[-1]
            if site in (b"cross-site", b"same-site"):
                return f"a {site.decode()} request without Origin is not accepted; add the page's origin to " \
                       "[http] allowed_origins"
            return None
        origin = origins[-1].decode("latin-1")
        key = _origin_key(origin)
        if key is not None:
            scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
            if key in self.origins or (host and key == f"{scheme}://{_netloc(scheme, host)}"):
                return None
        return f"Origin {origin!r} is not this server's origin nor in [http] allowed_origins"

    def _admin_credentials(self, headers: dict[bytes, list[bytes]]) -> bool:
        if self.token is None:
            return self.admin_open
        for value in headers.get(b"authorization", ()):
            scheme, _, given = value.partition(b" ")
            scheme = scheme.lower()
            if scheme == b"basic":
                try:
                    given = base64.b64decode(given.strip(), validate=True).partition(b":")[2]
                except (binascii.Error, ValueError):
                    continue
            elif scheme != b"bearer":
                continue
            if hmac.compare_digest(given.strip(), self.token):
                return True
        return False

    def _too_large(self, headers: dict[bytes, list[bytes]]) -> tuple[int, str, str] | None:
        length = headers.get(b"content-length")
        if length is None:
            return None
        try:
            declared = int(length[-1])
        except ValueError:
            return 400, "InvalidRequestException", "Content-Length is not a number"
        if declared > self.limit:
            return (413, "RequestEntityTooLargeException",
                    f"the request body is {declared} bytes; the limit is {self.limit} bytes ([http] max_body_size)")
        return None

    # -- answering -------------------------------------------------------------------------------

    async def _refuse(self, scope: Scope, send: Send, status: int, error_type: str, message: str) -> None:
        response = aws_error_response(status, error_type, message)
        response.headers["connection"] = "close"  # the body, if any, is not read
        if status == 401:
            response.headers["www-authenticate"] = 'Basic realm="thingcore", charset="UTF-8"'
        if scope["type"] == "http":
            await response(scope, _no_body, send)
        elif "websocket.http.response" in scope.get("extensions", {}):
            await response(scope, _no_body, send)  # Starlette sends it as websocket.http.response.*
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with a body of unknown length cut at the limit (413, connection closed)."""
        limit = self.limit
        seen = 0
        over = False

        async def counting_receive() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    if not over:
                        client = scope.get("client") or ("", 0)
                        log.info("refused %s %s from %s: chunked body over %d bytes", scope["method"],
                                 scope["path"], client[0], limit)
                    over = True
                    raise BodyTooLarge(limit)
            return message

        async def closing_send(message: Message) -> None:
            if over and message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, counting_receive, closing_send)
        except BodyTooLarge as exc:  # nothing in the app turned it into a response
            await self._refuse(scope, send, 413, "RequestEntityTooLargeException", str(exc.detail))


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
