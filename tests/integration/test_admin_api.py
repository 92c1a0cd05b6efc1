"""The /api/v1 admin API against a real server: token, statistics, clients, retained messages, config."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from tests.integration.mqtt_helpers import V5, V311, PahoClient, props, uid
from tests.server import ThingcoreProcess

pytestmark = pytest.mark.integration

TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    with ThingcoreProcess(tmp_path_factory.mktemp("admin"), {"admin": {"token": TOKEN}}) as tc:
        yield tc


@pytest.fixture(scope="module")
def api(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}/api/v1", headers=AUTH, timeout=10) as client:
        yield client


@pytest.fixture
def clients(server) -> Iterator[Any]:
    made: list[PahoClient] = []

    def make(client_id: str | None = None, **kwargs: Any) -> PahoClient:
        c = PahoClient(server.mqtt_port, client_id, **kwargs)
        c.connect()
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def test_token_is_required_and_checked(server) -> None:
    base = f"http://127.0.0.1:{server.http_port}/api/v1/stats"
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}):
        resp = httpx.get(base, headers=headers)
        assert resp.status_code == 401
        assert resp.headers["x-amzn-ErrorType"] == "UnauthorizedException"
        assert "Bearer" in resp.json()["message"]
    assert httpx.get(base, headers=AUTH).status_code == 200


def test_without_a_token_loopback_is_allowed_unless_configured_otherwise(thingcore, thingcore_factory) -> None:
    assert httpx.get(f"http://127.0.0.1:{thingcore.http_port}/api/v1/stats").status_code == 200
    closed = thingcore_factory({"admin": {"allow_unauthenticated": False}})
    resp = httpx.get(f"http://127.0.0.1:{closed.http_port}/api/v1/stats")
    assert resp.status_code == 401
    assert resp.headers["x-amzn-ErrorType"] == "UnauthorizedException"


def test_stats_count_what_happened(api, clients) -> None:
    before = api.get("/stats").json()
    c = clients()
    topic = f"{uid('s')}/x"
    c.publish(topic, b"hello", 1, retain=True)  # PUBACK only once the retained copy is committed
    after = api.get("/stats").json()
    assert after["broker"]["msgs_in"] >= before["broker"]["msgs_in"] + 1
    assert after["broker"]["clients_connected"] >= 1
    assert after["lifecycle_events_published"] > before["lifecycle_events_published"]
    assert after["storage"]["commits"] >= before["storage"]["commits"] + 1  # the server persists (SQLite)
    assert after["uptime_seconds"] > before["uptime_seconds"]
    c.publish(topic, b"", 1, retain=True)  # remove the retained message again


def test_clients_are_listed_paged_and_filtered(api, clients) -> None:
    prefix = uid("grp")
    for i in range(3):
        clients(f"{prefix}-{i}", protocol=V5 if i else V311)
    offline = clients(f"{prefix}-off", protocol=V311, clean=False)
    offline.disconnect()
    page1 = api.get("/clients", params={"prefix": prefix, "limit": 2}).json()
    assert [c["client_id"] for c in page1["clients"]] == [f"{prefix}-0", f"{prefix}-1"]
    page2 = api.get("/clients", params={"prefix": prefix, "limit": 2, "after": page1["next"]}).json()
    assert [c["client_id"] for c in page2["clients"]] == [f"{prefix}-2"]
    assert page2["next"] is None
    first = page1["clients"][0]
    assert first["connected"] is True and first["protocol"] == "3.1.1" and first["address"] == "127.0.0.1"
    assert page1["clients"][1]["protocol"] == "5.0"
    gone = api.get("/clients", params={"prefix": prefix, "status": "disconnected"}).json()["clients"]
    assert [(c["client_id"], c["connected"], c["persistent"]) for c in gone] == [(f"{prefix}-off", False, True)]
    assert gone[0]["disconnected_at"] is not None
    everyone = api.get("/clients", params={"prefix": prefix, "status": "all"}).json()["clients"]
    assert len(everyone) == 4
    assert api.get("/clients", params={"status": "sometimes"}).status_code == 400


def test_client_details_and_subscriptions(api, clients) -> None:
    cid = uid("dev")
    c = clients(cid, protocol=V5)
    c.subscribe(f"{cid}/a/+", 1, no_local=True)
    c.subscribe(f"$share/workers/{cid}/jobs", 0)
    details = api.get(f"/clients/{cid}").json()
    assert details["client_id"] == cid and details["connected"] is True
    assert details["subscriptions"] == 2 and details["keep_alive"] == 60
    subs = api.get(f"/clients/{cid}/subscriptions").json()["subscriptions"]
    by_filter = {s["filter"]: s for s in subs}
    assert by_filter[f"{cid}/a/+"]["qos"] == 1 and by_filter[f"{cid}/a/+"]["no_local"] is True
    assert by_filter[f"$share/workers/{cid}/jobs"]["share_group"] == "workers"
    missing = api.get(f"/clients/{uid('nobody')}")
    assert missing.status_code == 404
    assert missing.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert api.get(f"/clients/{uid('nobody')}/subscriptions").status_code == 404


def test_disconnect_sends_administrative_action_and_emits_lifecycle_event(api, clients) -> None:
    cid = uid("kick")
    watcher = clients()
    watcher.subscribe(f"$aws/events/presence/disconnected/{cid}", 1)
    victim = clients(cid, protocol=V5)
    resp = api.post(f"/clients/{cid}/disconnect", json={"reason_string": "maintenance"})
    assert resp.json() == {"client_id": cid, "reason_code": 0x98, "reason_code_sent": True}
    assert victim.wait_disconnected() == 0x98
    assert victim.disconnect_properties.ReasonString == "maintenance"
    event = json.loads(watcher.expect().payload)
    assert event["disconnectReason"] == "API_INITIATED_DISCONNECT"
    assert event["clientInitiatedDisconnect"] is False
    assert api.post(f"/clients/{cid}/disconnect").status_code == 404  # not connected any more


def test_disconnect_of_a_311_client_and_bad_reason_codes(api, clients) -> None:
    cid = uid("old")
    victim = clients(cid, protocol=V311)
    bad = api.post(f"/clients/{cid}/disconnect", json={"reason_code": 0x04})  # client-only code
    assert bad.status_code == 400 and bad.headers["x-amzn-ErrorType"] == "InvalidRequestException"
    assert victim.disconnected.is_set() is False
    resp = api.post(f"/clients/{cid}/disconnect", json={"reason_code": 0x8B})
    assert resp.json()["reason_code_sent"] is False
    victim.wait_disconnected()


def test_retained_messages_listed_and_read(api, clients) -> None:
    base = uid("ret")
    c = clients(protocol=V5)
    for i in range(5):
        c.publish(f"{base}/t{i}", f"value {i}".encode(), 1, retain=True)
    c.publish(f"{base}/bin", b"\xff\x00\xfe", 1, retain=True,
              properties=props(ContentType="application/octet-stream", UserProperty=[("k", "v")]))
    listed, after = [], None
    while True:
        params = {"filter": f"{base}/#", "limit": 4, **({"after": after} if after else {})}
        page = api.get("/retained", params=params).json()
        listed += page["retained"]
        after = page["next"]
        if after is None:
            break
    assert [m["topic"] for m in listed] == sorted([f"{base}/t{i}" for i in range(5)] + [f"{base}/bin"])
    assert all(m["qos"] == 1 for m in listed)
    one = api.get(f"/retained/{base}/t3").json()
    assert one["payload_utf8"] == "value 3" and base64.b64decode(one["payload_base64"]) == b"value 3"
    binary = api.get(f"/retained/{base}/bin").json()
    assert binary["payload_utf8"] is None and base64.b64decode(binary["payload_base64"]) == b"\xff\x00\xfe"
    assert binary["properties"]["content_type"] == "application/octet-stream"
    assert binary["properties"]["user_property"] == [["k", "v"]]
    assert api.get(f"/retained/{base}/nothing").status_code == 404
    bad = api.get("/retained", params={"filter": "a/#/b"})
    assert bad.status_code == 400 and "invalid topic filter" in bad.json()["message"]


def test_config_hides_secrets(api) -> None:
    config = api.get("/config").json()
    assert config["admin"]["token"] == "***"
    assert TOKEN not in json.dumps(config)
    assert config["mqtt_port"] > 0


def test_openapi_describes_the_admin_api(server) -> None:
    spec = httpx.get(f"http://127.0.0.1:{server.http_port}/openapi.json").json()
    assert {"/api/v1/stats", "/api/v1/clients", "/api/v1/retained", "/api/v1/config"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["adminToken"]["scheme"] == "bearer"
    assert spec["paths"]["/api/v1/stats"]["get"]["security"] == [{"adminToken": []}]
    docs = httpx.get(f"http://127.0.0.1:{server.http_port}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


@pytest.fixture(scope="module")
def admin_schema(server) -> Any:
    # something real to list while the fuzzer runs: a client with subscriptions and retained messages
    keeper = PahoClient(server.mqtt_port, uid("keeper"))
    keeper.connect()
    keeper.subscribe("fuzz/+/x", 1)
    keeper.publish("fuzz/a/x", b"\x00\x01binary", 1, retain=True)
    keeper.publish("fuzz/b/x", "text ✓".encode(), 1, retain=True)
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{server.http_port}/openapi.json")
    yield schema
    keeper.close()


fuzz_all = schemathesis.pytest.from_fixture("admin_schema").include(path_regex="^/api/v1/")
fuzz_admin = schemathesis.pytest.from_fixture("admin_schema").include(
    path_regex="^/api/v1/(stats|clients|retained|config)")
FUZZ = settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
FUZZ_ALL = settings(FUZZ, max_examples=12)


@fuzz_all.parametrize()
@FUZZ_ALL
def test_api_v1_fuzzing_finds_no_server_error(case) -> None:
    """Schema-driven requests to everything under /api/v1 (other services' endpoints too): no 5xx."""
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error])


@fuzz_admin.parametrize()
@FUZZ
def test_admin_api_answers_as_documented(case) -> None:
    """The admin endpoints: documented status codes and content types, responses that match their schemas."""
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error, status_code_conformance,
                                                 content_type_conformance, response_schema_conformance])


def _non_loopback_address() -> str | None:
    """This machine's outward IPv4 address (a UDP connect sends nothing), or None."""
    import ipaddress
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(address).is_loopback else address


def test_callers_from_the_network_need_the_token_or_a_signature(thingcore_factory) -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this machine to call from")
    tc = thingcore_factory(args=["--host", "0.0.0.0"])
    remote = f"http://{address}:{tc.http_port}"
    refused = httpx.get(f"{remote}/api/v1/stats")
    assert refused.status_code == 401 and "loopback" in refused.json()["message"]
    assert httpx.get(f"http://127.0.0.1:{tc.http_port}/api/v1/stats").status_code == 200
    registry = httpx.post(f"{remote}/things/from-the-network")  # unsigned and anonymous: refused
    assert registry.status_code == 403 and registry.headers["x-amzn-ErrorType"] == "ForbiddenException"
    assert httpx.get(f"http://127.0.0.1:{tc.http_port}/things/from-the-network").status_code == 404
