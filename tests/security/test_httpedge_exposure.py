"""Finding 13: /metrics, /docs, /openapi.json, /redoc and the dashboard's data need credentials whenever
the caller is not loopback; with no [admin] token they are loopback-only.

The tests bind 127.0.0.1 only, so a non-loopback caller is played through a trusted local proxy: the
server believes the proxy's ``X-Forwarded-For`` (``[http] trusted_proxies = ["127.0.0.1"]``). Before
this change the same header, believed by uvicorn from any loopback peer, reached /metrics and /docs as
a remote caller and got 200.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from tests.server import HOST, ThingcoreProcess

pytestmark = pytest.mark.integration

TOKEN = "httpedge-admin-token-0123456789"
REMOTE = {"X-Forwarded-For": "203.0.113.9"}
LOCAL = {"X-Forwarded-For": "127.0.0.1"}
OPERATOR = ("/metrics", "/docs", "/openapi.json", "/redoc", "/api/v1/stats", "/api/v1/clients")
PROXIED = {"http": {"trusted_proxies": ["127.0.0.1"]}}


def client(tc: ThingcoreProcess, **kwargs: object) -> httpx.Client:
    return httpx.Client(base_url=f"http://{HOST}:{tc.http_port}", timeout=10, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def no_token(thingcore_factory: Callable[..., ThingcoreProcess]) -> Iterator[ThingcoreProcess]:
    yield thingcore_factory(PROXIED)


@pytest.fixture
def with_token(thingcore_factory: Callable[..., ThingcoreProcess]) -> Iterator[ThingcoreProcess]:
    yield thingcore_factory({**PROXIED, "admin": {"token": TOKEN}})


def test_without_a_token_operator_pages_are_loopback_only(no_token: ThingcoreProcess) -> None:
    with client(no_token) as http:
        for path in OPERATOR:
            resp = http.get(path, headers=REMOTE)
            assert resp.status_code == 401, (path, resp.text)
            assert resp.headers["x-amzn-ErrorType"] == "UnauthorizedException"
            assert "admin" in resp.json()["message"]
            assert resp.headers["www-authenticate"].startswith("Basic")
            assert "thingcore_" not in resp.text and "openapi" not in resp.text
            assert http.get(path, headers=LOCAL).status_code == 200, path
        # the dashboard's page and files carry no data and stay reachable (to show its login form)
        assert http.get("/", headers=REMOTE).status_code == 200
        assert http.get("/ui/js/app.js", headers=REMOTE).status_code == 200
        assert http.get("/healthz", headers=REMOTE).status_code == 200
        # the dashboard's data: the admin API above, the control plane and MQTT need credentials
        assert http.get("/rules", headers=REMOTE).status_code == 403
        assert http.get("/things", headers=REMOTE).status_code == 403
    assert "refused GET /metrics from 203.0.113.9" in no_token.log()


def test_with_a_token_bearer_or_basic_opens_them_remotely(with_token: ThingcoreProcess) -> None:
    with client(with_token) as http:
        for path in ("/metrics", "/docs", "/openapi.json", "/redoc"):
            assert http.get(path, headers=REMOTE).status_code == 401, path
            assert http.get(path, headers={**REMOTE, "Authorization": f"Bearer {TOKEN}"}).status_code == 200, path
            assert http.get(path, headers={**REMOTE, "Authorization": "Bearer wrong-token"}).status_code == 401
        bearer = {**REMOTE, "Authorization": f"Bearer {TOKEN}"}
        assert http.get("/api/v1/stats", headers=bearer).status_code == 200
    # Prometheus' basic_auth and a browser's login prompt: any user name, the token as password
    with client(with_token, auth=("prometheus", TOKEN)) as http:
        resp = http.get("/metrics", headers=REMOTE)
        assert resp.status_code == 200 and "thingcore_connections" in resp.text
        assert http.get("/docs", headers=REMOTE).status_code == 200
    with client(with_token, auth=("prometheus", "not-the-token")) as http:
        assert http.get("/metrics", headers=REMOTE).status_code == 401
    with client(with_token) as http:  # loopback scrapes need nothing, as before
        assert http.get("/metrics", headers=LOCAL).status_code == 200
