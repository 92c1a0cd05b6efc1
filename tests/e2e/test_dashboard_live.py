"""The live view in a real browser: what a device publishes shows up on the page."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from tests.e2e.browser import screenshot
from tests.e2e.conftest import open_dashboard
from tests.e2e.devices import publish
from tests.server import ThingcoreProcess


def test_page_and_assets_are_served(thingcore: ThingcoreProcess) -> None:
    status, body = thingcore.http_get("/")
    assert status == 200 and b"<title>thingcore</title>" in body
    status, body = thingcore.http_get("/ui/vendor/mqtt.esm.js")
    assert status == 200 and len(body) > 100_000
    assert thingcore.http_get("/ui/../server.py")[0] == 404
    # the repository's README.md is three levels up from the dashboard folder: never served
    assert thingcore.http_get("/ui/%2e%2e/%2e%2e/%2e%2e/README.md")[0] == 404
    assert thingcore.http_get("/ui/..%2f..%2f..%2fREADME.md")[0] == 404
    assert thingcore.http_get("/ui/nothing.js")[0] == 404
    assert thingcore.http_get("/healthz")[0] == 200
    assert thingcore.http_get("/openapi.json")[0] == 200


def test_message_from_device_appears_pretty_printed(thingcore: ThingcoreProcess, page: Any) -> None:
    topic = f"sensors/{uuid.uuid4().hex[:8]}/temp"
    open_dashboard(page, thingcore)
    publish(thingcore, topic, json.dumps({"temperature": 21.5, "unit": "C"}).encode())
    item = page.locator(f"#live-list li[data-topic='{topic}']").first
    item.wait_for()
    text = item.inner_text()
    assert '"temperature": 21.5' in text and "json" in text
    page.locator("#live-rates td", has_text=topic).wait_for()
    screenshot(page, "dashboard-live")


def test_binary_payload_shown_as_hex_and_base64(thingcore: ThingcoreProcess, page: Any) -> None:
    topic = f"bin/{uuid.uuid4().hex[:8]}"
    open_dashboard(page, thingcore)
    publish(thingcore, topic, bytes([0, 1, 0xFE, 0xFF]))
    item = page.locator(f"#live-list li[data-topic='{topic}']").first
    item.wait_for()
    assert "00 01 fe ff" in item.inner_text()
    assert "base64 AAH+/w==" in item.inner_text()


def test_publish_form_reaches_a_device(thingcore: ThingcoreProcess, page: Any) -> None:
    topic = f"cmd/{uuid.uuid4().hex[:8]}"
    got: queue.Queue[bytes] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}")
    subscribed = threading.Event()
    client.on_message = lambda _c, _u, m: got.put(m.payload)
    client.on_subscribe = lambda *_a: subscribed.set()
    client.connect(thingcore.host, thingcore.mqtt_port)
    client.loop_start()
    try:
        client.subscribe(topic, qos=1)
        assert subscribed.wait(5)
        open_dashboard(page, thingcore)
        page.fill("#pub [name=topic]", topic)
        page.fill("#pub [name=payload]", '{"on": true}')
        page.click("#pub button[type=submit]")
        page.locator("#pub-result.ok").wait_for()
        assert got.get(timeout=5) == b'{"on": true}'
    finally:
        client.disconnect()
        client.loop_stop()


def test_theme_toggle_is_remembered_and_views_open_from_the_keyboard(thingcore: ThingcoreProcess, page: Any) -> None:
    open_dashboard(page, thingcore)
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    page.focus("#theme")
    page.keyboard.press("Enter")
    toggled = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert toggled != background
    page.reload()
    page.wait_for_selector("#status[data-state='connected']")
    assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") == toggled
    screenshot(page, "dashboard-live-theme")
    page.focus("nav a[data-view=broker]")
    page.keyboard.press("Enter")
    page.wait_for_selector("#view-broker[data-ready]")
    assert page.locator("#view-live").is_hidden()
    assert page.get_attribute("nav a[data-view=broker]", "aria-current") == "page"
