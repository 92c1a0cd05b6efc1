"""The HTTP guard's decisions in process, through its ASGI interface with a stub app behind it."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from thingcore.config import Settings
from thingcore.http.guard import HTTPGuard

TOKEN = "unit-test-admin-token-0123"


def run(settings: dict[str, Any], method: str, path: str, headers: dict[str, str], *, client: str = "127.0.0.1",
        kind: str = "http", scheme: str = "http", anonymous: bool = False) -> tuple[int, dict[str, Any]]:
    """(status the guard answered, or 0 when it passed the request on; the scope the app saw)."""
    seen: dict[str, Any] = {}
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, _receive: Any, _send: Any) -> None:
        seen.update(scope)

    async def admitted(*_args: Any) -> bool:
        return anonymous

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    guard = HTTPGuard(app, Settings(**settings), admitted)
    scope = {"type": kind, "method": method, "path": path, "query_string": b"", "client": (client, 1234),
             "scheme": scheme, "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "extensions": {"websocket.http.response": {}}}
    asyncio.run(guard(scope, receive, send))
    status = next((m["status"] for m in sent if m["type"].endswith("http.response.start")), 0)
    return status, seen


@pytest.mark.parametrize(("origin", "host", "scheme", "status"), [
    ("http://127.0.0.1:8080", "127.0.0.1:8080", "http", 0),
    ("HTTP://LOCALHOST:8080", "localhost:8080", "http", 0),
    ("http://127.0.0.1", "127.0.0.1:80", "http", 0),  # default ports are the same origin
    ("https://[::1]", "[::1]:443", "https", 0),
    ("http://127.0.0.1:8081", "127.0.0.1:8080", "http", 403),
    ("https://127.0.0.1:8080", "127.0.0.1:8080", "http", 403),
    ("null", "127.0.0.1:8080", "http", 403),
    ("http://127.0.0.1:8080/path", "127.0.0.1:8080", "http", 403),
])
def test_own_origin_is_scheme_host_and_port_of_the_request(origin: str, host: str, scheme: str,
                                                           status: int) -> None:
    assert run({}, "POST", "/rules/r", {"Host": host, "Origin": origin}, scheme=scheme)[0] == status
    ws_scheme = scheme.replace("http", "ws")
    assert run({}, "GET", "/mqtt", {"Host": host, "Origin": origin}, kind="websocket", scheme=ws_scheme)[0] == status


def test_get_requests_and_requests_without_origin_pass() -> None:
    assert run({}, "GET", "/rules", {"Host": "127.0.0.1", "Origin": "http://evil.test"})[0] == 0
    assert run({}, "POST", "/rules/r", {"Host": "127.0.0.1"})[0] == 0
    assert run({}, "POST", "/rules/r", {"Host": "127.0.0.1", "Sec-Fetch-Site": "same-origin"})[0] == 0
    assert run({}, "POST", "/rules/r", {"Host": "127.0.0.1", "Sec-Fetch-Site": "same-site"})[0] == 403


def test_hostnames_exact_and_wildcard() -> None:
    settings = {"http": {"hostnames": ["IoT.Example.com.", "*.lan.test"]}}
    for host, status in (("iot.example.com:8080", 0), ("a.b.lan.test", 0), ("lan.test", 403),
                         ("evil-lan.test", 403), ("app.localhost:1", 0), ("[fe80::1%25eth0]:80", 0)):
        assert run(settings, "GET", "/api/v1/config", {"Host": host})[0] == status, host


def test_remote_devices_may_use_any_name_on_the_data_plane() -> None:
    signed = {"Host": "iot.example.com", "Authorization": "AWS4-HMAC-SHA256 Credential=..."}
    assert run({}, "POST", "/topics/a", signed, client="192.0.2.1")[0] == 0
    assert run({}, "POST", "/topics/a", signed, client="127.0.0.1")[0] == 403  # a loopback caller is checked
    assert run({}, "GET", "/rules", signed, client="192.0.2.1")[0] == 403  # management is checked


def test_forwarded_headers_only_from_trusted_proxies() -> None:
    trusted = {"http": {"trusted_proxies": ["10.0.0.0/8", "::1"]}}
    xff = {"Host": "127.0.0.1", "X-Forwarded-For": "127.0.0.1, 198.51.100.1, 10.0.0.7", "X-Forwarded-Proto": "https"}
    _, scope = run(trusted, "GET", "/healthz", xff, client="10.0.0.2")
    assert scope["client"] == ("198.51.100.1", 0) and scope["scheme"] == "https"
    _, scope = run(trusted, "GET", "/healthz", xff, client="192.0.2.9")
    assert scope["client"] == ("192.0.2.9", 1234) and scope["scheme"] == "http"
    fwd = {"Host": "127.0.0.1", "Forwarded": 'for="[2001:db8::5]:4711";proto=https, for=10.0.0.3'}
    _, scope = run(trusted, "GET", "/mqtt", fwd, client="::1", kind="websocket", scheme="ws")
    assert scope["client"] == ("2001:db8::5", 0) and scope["scheme"] == "wss"
    _, scope = run(trusted, "GET", "/healthz", {"Host": "127.0.0.1"}, client="::ffff:10.1.1.1")
    assert scope["client"] == ("unknown", 0)


def test_operator_paths_take_bearer_or_basic_with_the_token() -> None:
    settings = {"admin": {"token": TOKEN}}
    basic = base64.b64encode(f"prometheus:{TOKEN}".encode()).decode()
    for auth, status in ((f"Bearer {TOKEN}", 0), (f"Basic {basic}", 0), ("Bearer nope", 401),
                         (f"Basic {TOKEN}", 401), ("", 401)):
        assert run(settings, "GET", "/metrics", {"Host": "192.0.2.1", "Authorization": auth},
                   client="192.0.2.1")[0] == status, auth
    assert run({}, "GET", "/docs", {"Host": "192.0.2.1"}, client="192.0.2.1")[0] == 401
    assert run({"admin": {"allow_unauthenticated": "true"}}, "GET", "/docs", {"Host": "192.0.2.1"},
               client="192.0.2.1")[0] == 0


def test_declared_body_size() -> None:
    small = {"limits": {"max_packet_size": 1024}, "http": {"max_body_size": 2048}}
    assert run(small, "POST", "/topics/a", {"Host": "127.0.0.1", "Content-Length": "2048"})[0] == 0
    assert run(small, "POST", "/topics/a", {"Host": "127.0.0.1", "Content-Length": "2049"})[0] == 413
    assert run({"limits": {"max_packet_size": 1024}}, "POST", "/topics/a",
               {"Host": "127.0.0.1", "Content-Length": str(1024 + 65536 + 1)})[0] == 413


def test_a_destination_owner_confirms_from_anywhere_with_its_token() -> None:
    remote = {"Host": "127.0.0.1:8080"}
    assert run({}, "GET", "/confirmdestination/abc123", remote, client="192.0.2.1")[0] == 0
    assert run({}, "GET", "/destinations", remote, client="192.0.2.1")[0] == 403  # the rest needs credentials
