"""The Things view in a real browser: shadows arrive live, and desired state edited on the page reaches the device."""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any

from tests.e2e.browser import screenshot
from tests.e2e.conftest import open_dashboard
from tests.e2e.devices import Device
from tests.server import ThingcoreProcess

DOCS = ("$aws/things/+/shadow/update/documents", "$aws/things/+/shadow/name/+/update/documents")


def create_thing(tc: ThingcoreProcess, name: str, attributes: dict[str, str]) -> None:
    body = json.dumps({"attributePayload": {"attributes": attributes}}).encode()
    request = urllib.request.Request(f"http://{tc.host}:{tc.http_port}/things/{name}", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200


def test_registry_and_live_shadow_report(thingcore: ThingcoreProcess, page: Any) -> None:
    name = f"lamp-{uuid.uuid4().hex[:6]}"
    create_thing(thingcore, name, {"room": "kitchen"})
    open_dashboard(page, thingcore, "things", subscribed=DOCS)
    card = page.locator(f"[data-thing='{name}']")
    card.wait_for()
    assert "room=kitchen" in card.inner_text()
    with Device(thingcore, name) as device:
        device.publish(f"$aws/things/{name}/shadow/update", json.dumps({"state": {"reported": {"temp": 22.5}}}))
        device.publish(f"$aws/things/{name}/shadow/name/battery/update",
                       json.dumps({"state": {"reported": {"level": 87}}}))
    reported = card.locator("[data-shadow='classic'] .reported tr[data-field='temp']")
    reported.wait_for()
    assert "22.5" in reported.inner_text()
    card.locator("[data-shadow='battery'] .reported tr[data-field='level']", has_text="87").wait_for()
    assert "version 1" in card.locator("[data-shadow='classic']").inner_text()


def test_editing_desired_sends_the_delta_to_the_device(thingcore: ThingcoreProcess, page: Any) -> None:
    name = f"heater-{uuid.uuid4().hex[:6]}"
    open_dashboard(page, thingcore, "things", subscribed=DOCS)
    with Device(thingcore, name) as device:  # not in the registry: the page learns of it from the shadow topics
        device.publish(f"$aws/things/{name}/shadow/update", json.dumps({"state": {"reported": {"setpoint": 18}}}))
        device.subscribe(f"$aws/things/{name}/shadow/update/delta")
        shadow = page.locator(f"[data-thing='{name}'] [data-shadow='classic']")
        shadow.locator(".reported tr[data-field='setpoint']").wait_for()
        shadow.locator("summary", has_text="Edit desired").click()
        shadow.locator("textarea").fill('{"setpoint": 21}')
        shadow.locator("button", has_text="Update desired").click()
        topic, payload = device.next()
        assert topic == f"$aws/things/{name}/shadow/update/delta"
        assert json.loads(payload)["state"] == {"setpoint": 21}
        # the page shows the delta it caused, and then the device's report clearing it
        shadow.locator(".delta tr[data-field='setpoint']", has_text="21").wait_for()
        shadow.locator("output.ok", has_text="accepted").wait_for()
        screenshot(page, "dashboard-things")
        device.publish(f"$aws/things/{name}/shadow/update", json.dumps({"state": {"reported": {"setpoint": 21}}}))
        shadow.locator(".delta tr[data-field='setpoint']").wait_for(state="detached")
        assert "21" in shadow.locator(".reported tr[data-field='setpoint']").inner_text()
