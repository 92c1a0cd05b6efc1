"""With authentication on: the page says plainly that its login was refused, logs in with the form, and
reconnects (subscriptions included) after the server comes back."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from tests.e2e.conftest import wait_subscribed
from tests.server import ThingcoreProcess

TOKEN = "dashboard-test-token-0123456789"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    directory = tmp_path_factory.mktemp("secured")
    passwd = directory / "passwd"
    for user, password in (("operator", "op-s3cret"), ("device", "dev-s3cret")):
        made = subprocess.run([sys.executable, "-m", "thingcore", "passwd", "add", user, "--password", password,
                               "--file", str(passwd)], capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
    config = {"auth": {"allow_anonymous": "false", "password_file": str(passwd)}, "admin": {"token": TOKEN}}
    with ThingcoreProcess(Path(directory) / "server", config) as tc:
        yield tc


def log_in(page: Any, username: str, password: str, token: str = "") -> None:
    page.click("#login-open")
    page.fill("#login-form [name=username]", username)
    page.fill("#login-form [name=password]", password)
    page.fill("#login-form [name=token]", token)
    page.click("#login-form button[value=save]")


def test_refused_login_is_shown_then_the_form_logs_in(secured: ThingcoreProcess, page: Any) -> None:
    page.goto(f"http://{secured.host}:{secured.http_port}/#broker")
    page.wait_for_selector("#status[data-state='refused']")
    assert "refused" in page.inner_text("#error")
    page.wait_for_selector("#broker-stats .bad")  # the admin API without the token: a readable error
    assert "admin token" in page.inner_text("#broker-stats")
    log_in(page, "operator", "wrong-password")
    page.wait_for_function("() => window.thingcore.conn.client.options.username === 'operator'"
                           " && window.thingcore.conn.state === 'refused'")
    log_in(page, "operator", "op-s3cret", TOKEN)
    page.wait_for_selector("#status[data-state='connected']")
    assert page.locator("#error").is_hidden()
    page.locator("#broker-clients tr", has_text="dashboard-").first.wait_for()
    page.errors.clear()  # the browser logs the refused WebSocket logins


def test_reconnects_after_the_server_restarts(secured: ThingcoreProcess, page: Any) -> None:
    page.goto(f"http://{secured.host}:{secured.http_port}/#live")
    log_in(page, "operator", "op-s3cret", TOKEN)  # credentials live in this tab's session storage
    page.wait_for_selector("#status[data-state='connected']")
    wait_subscribed(page, "#")
    secured.kill()
    page.wait_for_selector("#status[data-state='offline'], #status[data-state='reconnecting']")
    assert "lost" in page.inner_text("#error")
    secured.start()
    page.wait_for_selector("#status[data-state='connected']")
    wait_subscribed(page, "#")
    topic = f"after-restart/{uuid.uuid4().hex[:6]}"
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="device-1")
    device.username_pw_set("device", "dev-s3cret")
    device.connect(secured.host, secured.mqtt_port)
    device.loop_start()
    try:
        device.publish(topic, b"back", qos=1).wait_for_publish(5)
    finally:
        device.disconnect()
        device.loop_stop()
    page.locator(f"#live-list li[data-topic='{topic}']").wait_for()
    page.errors.clear()  # the browser logs the WebSocket attempts made while the server was down
