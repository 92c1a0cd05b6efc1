"""Finding 9 in a real browser: a page on another origin (a second HTTP server on another port) tries to
drive the broker through the user's Chromium, and a DNS-rebinding name is mapped to 127.0.0.1.

The page opens ``new WebSocket("ws://127.0.0.1:<port>/mqtt", "mqtt")`` and, if it opens, connects,
subscribes to ``#`` and publishes; it POSTs ``text/plain`` with ``mode: "no-cors"`` (no preflight) to
create a rule and to publish. The server must do nothing: no rule, no message, no WebSocket.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from tests.e2e.browser import ARGS, CHROMIUM, require_chromium
from tests.integration.mqtt_helpers import PahoClient, uid
from tests.server import HOST, ThingcoreProcess

pytestmark = pytest.mark.integration

ATTACK = """<!doctype html><title>cat pictures</title><script>
const target = "127.0.0.1:%(port)d";
const enc = s => Array.from(new TextEncoder().encode(s));
const str = s => [0, enc(s).length, ...enc(s)];
const packet = (type, body) => new Uint8Array([type, body.length, ...body]);
const connect = packet(0x10, [...str("MQTT"), 4, 2, 0, 60, ...str("evil-page")]);
const subscribe = packet(0x82, [0, 1, ...str("#"), 0]);
const publish = packet(0x30, [...str("%(topic)s/ws"), ...enc("from the page")]);
const ws = new Promise(resolve => {
  const sock = new WebSocket("ws://" + target + "/mqtt", "mqtt");
  sock.binaryType = "arraybuffer";
  sock.onopen = () => { sock.send(connect); sock.send(subscribe); sock.send(publish); resolve("open"); };
  sock.onerror = () => resolve("error");
  sock.onclose = e => resolve("closed " + e.code);
});
const post = (path, body) => fetch("http://" + target + path, {method: "POST", mode: "no-cors",
    headers: {"Content-Type": "text/plain"}, body}).then(r => "sent " + r.type, e => "failed " + e);
window.done = Promise.all([
  ws,
  post("/rules/%(rule)s", JSON.stringify({sql: "SELECT * FROM '#'", actions: [{republish:
      {topic: "stolen/${topic()}", roleArn: "arn:aws:iam::000000000000:role/x"}}]})),
  post("/topics/%(topic)s/fetch?qos=1", "from the page"),
]);
</script><p>nothing to see</p>"""


@contextmanager
def attacker_site(page: str) -> Iterator[str]:
    """A second HTTP server on another port that serves the attacking page."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def chromium(*extra_args: str) -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="thingcore-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                        args=[*ARGS, *extra_args])
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def tc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    with ThingcoreProcess(tmp_path_factory.mktemp("httpedge-browser")) as server:
        yield server


def test_a_page_on_another_origin_cannot_use_the_broker(tc: ThingcoreProcess) -> None:
    topic = f"browser/{uid()}"
    rule = uid("evil").replace("-", "_")
    with PahoClient(tc.mqtt_port) as watcher, attacker_site(ATTACK % {"port": tc.http_port, "topic": topic,
                                                                      "rule": rule}) as url, chromium() as browser:
        watcher.connect()
        watcher.subscribe("browser/#", 1)
        page = browser.new_page()
        page.goto(url)
        ws, rule_post, publish_post = page.evaluate("window.done")
        assert ws in ("error", "closed 1006"), ws  # the upgrade was answered 403
        assert rule_post.startswith("sent") and publish_post.startswith("sent")  # the browser did send them
        watcher.no_more()  # the browser saw every request answered: what got through was routed before the marker
    with httpx.Client(base_url=f"http://{HOST}:{tc.http_port}") as http:
        assert http.get(f"/rules/{rule}").status_code != 200
        assert "evil-page" not in json.dumps(http.get("/api/v1/clients?status=all").json())
    log = tc.log()
    for line in ("refused WEBSOCKET /mqtt from 127.0.0.1: Origin", f"refused POST /rules/{rule} from 127.0.0.1",
                 f"refused POST /topics/{topic}/fetch from 127.0.0.1"):
        assert line in log


def test_a_rebound_name_gets_nothing(tc: ThingcoreProcess) -> None:
    """evil.test resolves to 127.0.0.1 (as a rebinding DNS server would make it): the browser treats
    http://evil.test:<port> as the attacker's own origin, so only the Host header gives it away."""
    with chromium("--host-resolver-rules=MAP evil.test 127.0.0.1") as browser:
        page = browser.new_page()
        base = f"http://evil.test:{tc.http_port}"
        for path in ("/api/v1/config", "/metrics", "/"):
            resp = page.goto(base + path)
            assert resp is not None and resp.status == 403, path
            assert "hostnames" in resp.text()
        state = page.evaluate("""url => new Promise(resolve => {
            const sock = new WebSocket(url, "mqtt");
            sock.onopen = () => resolve("open"); sock.onerror = () => resolve("error");
        })""", f"ws://evil.test:{tc.http_port}/mqtt")
        assert state == "error"
        # the same browser on the real address gets the dashboard
        resp = page.goto(f"http://{HOST}:{tc.http_port}/")
        assert resp is not None and resp.status == 200
