"""Charts, the rules SQL playground and the broker view in a real browser, fed by paho-mqtt devices."""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any

from tests.e2e.browser import screenshot
from tests.e2e.conftest import open_dashboard, wait_subscribed
from tests.e2e.devices import Device, publish
from tests.server import ThingcoreProcess


def test_chart_receives_points_for_fields_found_in_json(thingcore: ThingcoreProcess, page: Any) -> None:
    topic = f"plant/{uuid.uuid4().hex[:6]}/env"
    open_dashboard(page, thingcore, "charts", subscribed=())
    page.fill("#chart-form [name=filter]", topic)
    page.click("#chart-form button[type=submit]")
    wait_subscribed(page, topic)
    with Device(thingcore) as device:
        for i in range(30):
            device.publish(topic, json.dumps({"temperature": 20 + i % 5, "humidity": 40.5 + i, "ok": True,
                                              "label": "not a number"}), qos=0 if i < 29 else 1)
    page.wait_for_function("() => Number(document.querySelector('#chart').dataset.points) >= 30")
    fields = page.locator("#chart-fields label").all_inner_texts()
    assert [f.strip() for f in fields] == ["temperature", "humidity", "ok"]
    assert page.locator("#chart canvas").count() == 1
    assert page.locator("#chart .u-legend", has_text="humidity").count() == 1
    screenshot(page, "dashboard-charts")


def test_sql_playground_runs_on_a_message_from_the_live_stream(thingcore: ThingcoreProcess, page: Any) -> None:
    topic = f"kitchen/{uuid.uuid4().hex[:6]}/temp"
    open_dashboard(page, thingcore, "live")
    publish(thingcore, topic, json.dumps({"temp": 31, "unit": "C"}))
    page.locator(f"#live-list li[data-topic='{topic}']").wait_for()
    page.click("nav a[data-view=rules]")
    page.wait_for_selector("#view-rules[data-ready]")
    page.click("#sql-sample")
    assert page.input_value("#sql [name=topic]") == topic
    page.fill("#sql [name=sql]", "SELECT temp, temp > 30 AS hot, topic(2) AS room FROM 'kitchen/+/temp'")
    page.click("#sql button[type=submit]")
    page.locator("#sql-result.ok-result").wait_for()
    result = json.loads(page.inner_text("#sql-result"))
    assert result["output"] == {"temp": 31, "hot": True, "room": topic.split("/")[1]}


def test_sql_playground_shows_a_parse_error(thingcore: ThingcoreProcess, page: Any) -> None:
    open_dashboard(page, thingcore, "rules", subscribed=())
    page.fill("#sql [name=sql]", "SELECT FROM")
    page.click("#sql button[type=submit]")
    page.locator("#sql-result.bad").wait_for()
    assert "SqlParseException" in page.inner_text("#sql-result")


def test_broker_view_shows_clients_presence_and_retained(thingcore: ThingcoreProcess, page: Any) -> None:
    client_id = f"meter-{uuid.uuid4().hex[:6]}"
    retained = f"status/{client_id}"
    open_dashboard(page, thingcore, "broker", subscribed=("$aws/events/presence/+/+",))
    with Device(thingcore, client_id) as device:
        device.subscribe(f"cmd/{client_id}")
        device.publish(retained, "online", retain=True)
        page.locator("#broker-presence li", has_text=f"{client_id} connected").wait_for()
        row = page.locator(f"#broker-clients tr[data-client='{client_id}']")
        row.wait_for()
        row.focus()
        page.keyboard.press("Enter")
        page.locator("#broker-subs li", has_text=f"cmd/{client_id}").wait_for()
        page.locator("#broker-retained li", has_text=retained).wait_for()
        assert page.locator("#broker-stats .stat").count() > 3
    page.locator("#broker-presence li", has_text=f"{client_id} disconnected").wait_for()


def test_rule_card_shows_sql_actions_and_live_counters(thingcore: ThingcoreProcess, page: Any) -> None:
    name = f"hot_{uuid.uuid4().hex[:6]}"
    sql = f"SELECT temp FROM 'ovens/{name}/+' WHERE temp > 200"
    body = {"sql": sql, "awsIotSqlVersion": "2016-03-23",
            "actions": [{"republish": {"topic": f"alerts/{name}", "roleArn": "arn:aws:iam::123456789012:role/x"}}]}
    request = urllib.request.Request(f"http://{thingcore.host}:{thingcore.http_port}/rules/{name}", method="POST",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200
    open_dashboard(page, thingcore, "rules", subscribed=())
    card = page.locator(f"[data-rule='{name}']")
    card.wait_for()
    text = card.inner_text()
    assert sql in text and "enabled" in text and f"republish → alerts/{name}" in text
    publish(thingcore, f"ovens/{name}/1", json.dumps({"temp": 250}))
    publish(thingcore, f"ovens/{name}/2", json.dumps({"temp": 20}))
    # counters refresh every 2 s: received 2, matched 1, one republish succeeded
    card.locator(".counters tr", has_text="received").filter(has_text="2").wait_for()
    assert card.locator(".counters tr", has_text="matched").inner_text().split()[-1] == "1"
    screenshot(page, "dashboard-rules")
