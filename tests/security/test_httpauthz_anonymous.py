"""Finding 10 of issue 12: ``[auth] allow_anonymous = "true"`` (an MQTT setting) also opened the rules and things
APIs, shadows and HTTP publish to unauthenticated callers from the network; with it a stranger created a rule whose
``get_secret()`` republished a configured secret.

Now ``[auth] allow_anonymous`` covers MQTT only, ``[http] allow_anonymous`` (loopback by default) the HTTP data
plane, and managing is never given to an anonymous caller from the network. The tests failed on the code before
(the remote caller's rule was created and the secret published).

The non-loopback caller: every 127.0.0.0/8 address is loopback, so the fixture adds the IPv6 unique-local address
``fd7c:a7a7:12::7`` to the ``lo`` interface (``ip addr add ... dev lo``; needs root and the ``ip`` tool, skipped
otherwise), binds the server to that address only (still unreachable from other machines) and calls it from the
same address: the server sees a peer that is not loopback, as it would see a device on the LAN. The address is
removed again at the end if this module added it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from tests.integration.mqtt_helpers import uid
from tests.server import ThingcoreProcess

pytestmark = pytest.mark.integration

ADDRESS = "fd7c:a7a7:12::7"
TOKEN = "httpauthz-anonymous-token-01234567"
SECRET = "do-not-leak-7781"


@pytest.fixture(scope="module")
def lan_address() -> Iterator[str]:
    """An address on ``lo`` that is not loopback (see the module docstring)."""
    ip = shutil.which("ip")
    if ip is None:
        pytest.skip("the ip tool (iproute2) is not installed: cannot add a non-loopback address to lo")
    shown = subprocess.run([ip, "-6", "addr", "show", "dev", "lo"], capture_output=True, text=True)
    added = False
    if ADDRESS not in shown.stdout:
        made = subprocess.run([ip, "addr", "add", f"{ADDRESS}/128", "dev", "lo"], capture_output=True, text=True)
        if made.returncode != 0 and "File exists" not in made.stderr:
            pytest.skip(f"cannot add {ADDRESS} to lo (root and IPv6 are needed): {made.stderr.strip()}")
        added = made.returncode == 0
        time.sleep(0.2)  # duplicate address detection does not apply to lo, but let the kernel settle
    try:
        yield ADDRESS
    finally:
        if added:
            subprocess.run([ip, "addr", "del", f"{ADDRESS}/128", "dev", "lo"], capture_output=True)


class LanServer(ThingcoreProcess):
    """A real ``thingcore serve`` bound only to ``address``, so callers reach it from a non-loopback peer."""

    def __init__(self, directory: Path, config: dict[str, Any], address: str) -> None:
        super().__init__(directory, config)
        self.address = address

    @property
    def url(self) -> str:
        return f"http://[{self.address}]:{self.http_port}"

    def command(self) -> list[str]:
        cmd = super().command()
        cmd[cmd.index("--host") + 1] = self.address
        return cmd

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


def _server(tmp_path: Path, address: str, http_anonymous: str | None = None) -> LanServer:
    config: dict[str, Any] = {
        "auth": {"allow_anonymous": "true"},  # MQTT devices may connect anonymously from the LAN
        "admin": {"token": TOKEN},
        "secrets": {"vendor_api_key": SECRET},
    }
    if http_anonymous is not None:
        config["http"] = {"allow_anonymous": http_anonymous}
    return LanServer(tmp_path, config, address)


@pytest.fixture(scope="module")
def server(lan_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LanServer]:
    with _server(tmp_path_factory.mktemp("httpauthz-lan"), lan_address) as tc:
        yield tc


class Listener:
    """An anonymous MQTT client from the LAN (MQTT's allow_anonymous admits it) recording what it receives."""

    def __init__(self, server: LanServer, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._subacks: set[int] = set()
        self._marker = threading.Event()
        self._marker_topic = f"sync/{uid('lan')}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid("lan"))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda _c, _u, mid, *_a: self._subacks.add(mid)
        self.client.connect(server.address, server.mqtt_port)
        self.client.loop_start()
        self._subscribe(topic)

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        if m.topic == self._marker_topic:
            self._marker.set()
        else:
            self.messages.append((m.topic, m.payload))

    def _subscribe(self, topic: str) -> None:
        _rc, mid = self.client.subscribe(topic, qos=1)
        deadline = time.monotonic() + 5
        while mid not in self._subacks:
            assert time.monotonic() < deadline, f"no SUBACK for {topic}"
            time.sleep(0.01)

    def sync(self) -> None:
        """A marker through the broker to ourselves: what was routed to us before it has arrived when it does."""
        self._subscribe(self._marker_topic)
        self._marker.clear()
        self.client.publish(self._marker_topic, b"sync", qos=1).wait_for_publish(5)
        assert self._marker.wait(5), "the sync marker did not come back"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


RULE = {"sql": "SELECT get_secret('vendor_api_key') AS k FROM 'trigger/#'",
        "actions": [{"republish": {"topic": "loot/secret"}}]}


def test_an_anonymous_network_caller_cannot_create_a_rule_that_leaks_a_secret(server: LanServer) -> None:
    listener = Listener(server, "loot/#")
    try:
        name = uid("leak").replace("-", "_")
        resp = httpx.post(f"{server.url}/rules/{name}", json=RULE)
        assert resp.status_code == 403 and resp.headers["x-amzn-ErrorType"] == "ForbiddenException"
        listener.client.publish("trigger/1", b"{}", qos=1).wait_for_publish(5)
        listener.sync()  # a republish of the trigger (rules run as it is routed) would be ahead of the marker
        assert not any(SECRET.encode() in payload for _t, payload in listener.messages)
    finally:
        listener.close()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}) as admin:
        assert admin.get(f"/rules/{name}").headers["x-amzn-ErrorType"] == "UnauthorizedException"  # absent
    # refused at the edge (the HTTP guard, before the body is read) by the same [http] allow_anonymous rule
    assert f"refused POST /rules/{name} from {ADDRESS}: anonymous HTTP callers" in server.log()


def test_an_anonymous_network_caller_cannot_manage_things_or_the_admin_api(server: LanServer) -> None:
    thing = uid("lan-thing")
    for method, path in (("POST", f"/things/{thing}"), ("GET", "/things"), ("POST", f"/thing-types/{thing}"),
                         ("GET", "/rules")):
        resp = httpx.request(method, f"{server.url}{path}")
        assert resp.status_code == 403, (method, path, resp.text)
    resp = httpx.get(f"{server.url}/api/v1/config")
    assert resp.status_code == 401 and SECRET not in resp.text


def test_an_anonymous_network_caller_cannot_read_shadows_or_publish(server: LanServer) -> None:
    thing = uid("lamp")
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    doc = {"state": {"reported": {"pin": "1234"}}}
    assert httpx.post(f"{server.url}/things/{thing}/shadow", json=doc, headers=bearer).status_code == 200
    listener = Listener(server, "lan/#")
    try:
        read = httpx.get(f"{server.url}/things/{thing}/shadow")
        assert read.status_code == 403 and "1234" not in read.text
        write = httpx.post(f"{server.url}/things/{thing}/shadow", json={"state": {"desired": {"on": True}}})
        assert write.status_code == 403
        published = httpx.post(f"{server.url}/topics/lan/{thing}?qos=1", content=b"forged")
        assert published.status_code == 403 and published.headers["x-amzn-ErrorType"] == "ForbiddenException"
        retained = httpx.get(f"{server.url}/retainedMessage")
        assert retained.status_code == 403
        listener.sync()  # every answer came after its request was handled: a forged copy would be here first
        assert listener.messages == []
    finally:
        listener.close()
    shadow = json.loads(httpx.get(f"{server.url}/things/{thing}/shadow", headers=bearer).content)
    assert "desired" not in shadow["state"]
    assert "[http] allow_anonymous" in server.log()


def test_http_allow_anonymous_opens_the_data_plane_but_never_managing(lan_address: str, tmp_path: Path) -> None:
    with _server(tmp_path, lan_address, http_anonymous="true") as tc:
        topic = f"lan/{uid('open')}"
        listener = Listener(tc, topic)
        try:
            assert httpx.post(f"{tc.url}/topics/{topic}", content=b"hello").status_code == 200
            deadline = time.monotonic() + 5
            while not listener.messages and time.monotonic() < deadline:
                time.sleep(0.05)
            assert listener.messages == [(topic, b"hello")]
        finally:
            listener.close()
        name = uid("open").replace("-", "_")
        resp = httpx.post(f"{tc.url}/rules/{name}", json=RULE)
        assert resp.status_code == 403 and resp.headers["x-amzn-ErrorType"] == "ForbiddenException"
        assert f"refused anonymous caller from [{ADDRESS}]:" in tc.log()
        assert f"manage on rules/{name}" in tc.log()
