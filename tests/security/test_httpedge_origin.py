"""Finding 9 without a browser: what a cross-site page, a DNS-rebinding page and a forged X-Forwarded-For
send, written by hand with httpx and raw sockets against a real server on loopback (where trust lives).

The server in the module fixture has the default settings, so these tests also run against older code
and fail there: a foreign Origin created rules and published, a foreign Host read the configuration,
and any loopback peer chose the address the broker recorded for it.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Callable, Iterator

import httpx
import pytest
from tests.integration.mqtt_helpers import V311, PahoClient, uid, wait_for
from tests.integration.wsclients import WSPahoClient
from tests.server import HOST, ThingcoreProcess

pytestmark = pytest.mark.integration

EVIL = "http://127.0.0.1:9"  # another origin on the same machine: a page served from another port
RULE = b'{"sql": "SELECT * FROM \'#\'", "actions": [{"republish": {"topic": "stolen/${topic()}", ' \
       b'"roleArn": "arn:aws:iam::000000000000:role/x"}}]}'


@pytest.fixture(scope="module")
def tc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    with ThingcoreProcess(tmp_path_factory.mktemp("httpedge-origin")) as server:
        yield server


@pytest.fixture
def http(tc: ThingcoreProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{HOST}:{tc.http_port}", timeout=10) as client:
        yield client


def upgrade(port: int, host: str, origin: str | None) -> tuple[int, bytes]:
    """A WebSocket upgrade to /mqtt with exactly this Host and Origin: (status, body)."""
    lines = ["GET /mqtt HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}", "Sec-WebSocket-Version: 13",
             "Sec-WebSocket-Protocol: mqtt"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                body += chunk
        return status, body


def assert_refused(resp: httpx.Response, status: int = 403) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json()["message"]
    assert resp.headers["x-amzn-ErrorType"]


def test_cross_site_text_plain_post_creates_no_rule(tc: ThingcoreProcess, http: httpx.Client) -> None:
    name = uid("evil").replace("-", "_")
    resp = http.post(f"/rules/{name}", content=RULE, headers={"Origin": EVIL, "Content-Type": "text/plain"})
    assert_refused(resp)
    assert "allowed_origins" in resp.json()["message"]
    assert http.get(f"/rules/{name}").status_code != 200
    assert f"refused POST /rules/{name} from 127.0.0.1: Origin" in tc.log()


def test_cross_site_posts_cannot_publish_update_a_shadow_or_disconnect(tc: ThingcoreProcess,
                                                                      http: httpx.Client) -> None:
    topic = f"edge/{uid()}"
    thing = uid("thing")
    with PahoClient(tc.mqtt_port) as watcher, PahoClient(tc.mqtt_port, protocol=V311) as victim:
        watcher.connect()
        victim.connect()
        watcher.subscribe(topic, 1)
        cross = {"Origin": EVIL, "Content-Type": "text/plain"}
        assert_refused(http.post(f"/topics/{topic}?qos=1", content=b"forged", headers=cross))
        assert_refused(http.post(f"/things/{thing}/shadow", content=b'{"state": {"desired": {"door": "open"}}}',
                                 headers=cross))
        assert_refused(http.post(f"/api/v1/clients/{victim.client_id}/disconnect", content=b"{}", headers=cross))
        assert_refused(http.delete(f"/things/{thing}/shadow", headers={"Origin": EVIL}))
        watcher.no_more()  # each answer came after its request was handled: a forged copy would be here first
        assert http.get(f"/things/{thing}/shadow").status_code == 404
        assert not victim.disconnected.is_set()
        # the same requests without an Origin (curl, SDKs, devices) or from the server's own page still work
        assert http.post(f"/topics/{topic}?qos=1", content=b"own").status_code == 200
        own = {"Origin": f"http://{HOST}:{tc.http_port}"}
        assert http.post(f"/topics/{topic}?qos=1", content=b"page", headers=own).status_code == 200
        assert [watcher.expect().payload, watcher.expect().payload] == [b"own", b"page"]


def test_sec_fetch_site_cross_site_without_origin_is_refused(http: httpx.Client) -> None:
    name = uid("evil").replace("-", "_")
    assert_refused(http.post(f"/rules/{name}", content=RULE, headers={"Sec-Fetch-Site": "cross-site"}))
    assert http.get(f"/rules/{name}").status_code != 200


def test_websocket_from_a_foreign_origin_is_refused(tc: ThingcoreProcess) -> None:
    here = f"{HOST}:{tc.http_port}"
    status, body = upgrade(tc.http_port, here, EVIL)
    assert status == 403, body
    assert b"allowed_origins" in body
    assert upgrade(tc.http_port, here, "null")[0] == 403  # sandboxed frames and file:// pages
    assert upgrade(tc.http_port, here, f"https://{here}")[0] == 403  # another scheme is another origin
    # the server's own page (the dashboard) and clients that send no Origin are accepted
    assert upgrade(tc.http_port, here, f"http://{here}")[0] == 101
    assert upgrade(tc.http_port, here, None)[0] == 101
    with WSPahoClient(tc.http_port) as paho:  # paho sends Origin: http://<host>:<port>, its own
        paho.connect()


def test_a_rebinding_host_reads_nothing_and_gets_no_websocket(tc: ThingcoreProcess, http: httpx.Client) -> None:
    """A page on evil.test whose name now resolves to 127.0.0.1 is same-origin with itself: it sends no
    foreign Origin on GETs, only a foreign Host."""
    rebound = f"evil.test:{tc.http_port}"
    for path in ("/api/v1/config", "/metrics", "/openapi.json", "/rules", "/things", "/retainedMessage",
                 f"/things/{uid()}/shadow", "/"):
        resp = http.get(path, headers={"Host": rebound})
        assert_refused(resp)
        assert "hostnames" in resp.json()["message"]
    assert upgrade(tc.http_port, rebound, f"http://{rebound}")[0] == 403
    # names that cannot be rebound: IP literals and localhost
    assert http.get("/api/v1/config", headers={"Host": f"localhost:{tc.http_port}"}).status_code == 200
    assert http.get("/api/v1/config", headers={"Host": f"[::1]:{tc.http_port}"}).status_code == 200
    assert http.get("/healthz", headers={"Host": rebound}).status_code == 200  # load balancers' probes


def test_a_loopback_peer_cannot_choose_its_address_with_x_forwarded_for(tc: ThingcoreProcess,
                                                                          http: httpx.Client) -> None:
    forged = {"X-Forwarded-For": "198.51.100.7", "Forwarded": "for=198.51.100.8"}
    with WSPahoClient(tc.http_port, headers=forged) as client:
        client.connect()
        info = wait_for(lambda: http.get(f"/api/v1/clients/{client.client_id}").json(), what="client info")
        assert info["address"] == "127.0.0.1"
    assert http.get("/api/v1/config", headers=forged).status_code == 200  # still the loopback caller it is


# -- with settings (these keys are new) -------------------------------------------------------------------------


def test_allowed_origins_and_hostnames_are_admitted(thingcore_factory: Callable[..., ThingcoreProcess]) -> None:
    app = "http://app.example.test:3000"
    tc = thingcore_factory({"http": {"allowed_origins": [app + "/"], "hostnames": ["iot.example.test",
                                                                                  "*.example.org"]}})
    base = f"http://{HOST}:{tc.http_port}"
    name = uid("ok").replace("-", "_")
    with httpx.Client(base_url=base, timeout=10) as http:
        assert http.post(f"/rules/{name}", content=RULE, headers={"Origin": app}).status_code == 200
        assert http.get(f"/rules/{name}").status_code == 200
        assert_refused(http.post(f"/rules/{name}x", content=RULE, headers={"Origin": "http://app.example.test"}))
        for host in ("iot.example.test", "IOT.example.test.", "a.example.org"):
            assert http.get("/api/v1/config", headers={"Host": f"{host}:{tc.http_port}"}).status_code == 200
        assert_refused(http.get("/api/v1/config", headers={"Host": "example.org.evil.test"}))
    assert upgrade(tc.http_port, f"{HOST}:{tc.http_port}", app)[0] == 101


def test_forwarded_for_is_believed_only_from_trusted_proxies(
        thingcore_factory: Callable[..., ThingcoreProcess]) -> None:
    tc = thingcore_factory({"http": {"trusted_proxies": ["127.0.0.0/8", "10.1.2.3"]}})
    with httpx.Client(base_url=f"http://{HOST}:{tc.http_port}", timeout=10) as http:
        # a remote client behind the proxy claims to be loopback: the rightmost untrusted hop is the client
        behind = {"X-Forwarded-For": "127.0.0.1, 203.0.113.9, 10.1.2.3"}
        assert_refused(http.get("/api/v1/config", headers=behind), 401)
        assert_refused(http.get("/api/v1/config", headers={"Forwarded": 'for="[2001:db8::1]:443";proto=https'}),
                       401)
        # a proxy that names no client does not lend its own loopback address
        assert_refused(http.get("/api/v1/config"), 401)
        assert "from unknown" in tc.log()
        # a genuinely local client through the local proxy
        assert http.get("/api/v1/config", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200
