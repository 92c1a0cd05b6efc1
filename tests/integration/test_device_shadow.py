"""The SDK's shadow client against thingcore's shadow service: the delta flow a device and a back end
run (classic and named, threaded and asyncio), versions, clientToken matching, and each rejection
AWS documents surfacing as its own exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest
from tests.integration.device_helpers import TIMEOUT, Inbox, device, uid
from tests.server import ThingcoreProcess

from thingcore.device import (
    AsyncDevice,
    Delta,
    PublishError,
    ShadowBadRequest,
    ShadowNotFound,
    ShadowRejected,
    ShadowTimeout,
    ShadowTooLarge,
    ShadowVersionConflict,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    config = {"auth": {"acl": [
        # answers for "mute" never reach anyone: requests time out
        {"effect": "deny", "action": "receive", "topic": "$aws/things/mute/shadow/#"},
        # requests for "locked" are refused at the PUBACK (MQTT 5)
        {"effect": "deny", "action": "publish", "topic": "$aws/things/locked/shadow/#"},
    ]}}
    with ThingcoreProcess(tmp_path_factory.mktemp("device-shadow"), config) as tc:
        yield tc


def _in_sync(doc: dict) -> bool:
    return "delta" not in doc["state"]


@pytest.mark.parametrize("shadow_name", [None, "config"], ids=["classic", "named"])
def test_delta_flow(server: ThingcoreProcess, shadow_name: str | None) -> None:
    """The back end sets desired; the device gets the delta, reports from inside its callback (a
    blocking call there is fine), and the shadow ends in sync at the version the report made."""
    thing = uid("lamp")
    reports = Inbox("reports")
    with device(server, client_id=thing) as dev, device(server) as backend:
        shadow = dev.shadow(shadow_name)
        with pytest.raises(ShadowNotFound) as missing:
            shadow.get()
        assert missing.value.code == 404
        assert missing.value.message == f"No shadow exists with name: '{shadow_name or thing}'"

        def follow(delta: Delta) -> None:
            reports(shadow.report(delta.state))

        shadow.on_delta(follow)
        first = shadow.report(color="green", brightness=40)
        assert first["version"] == 1 and first["state"] == {"reported": {"color": "green", "brightness": 40}}

        remote = backend.shadow(shadow_name, thing=thing)
        accepted = remote.update(desired={"color": "red"})
        assert accepted["version"] == 2
        assert accepted["state"] == {"desired": {"color": "red"}}
        assert accepted["metadata"]["desired"]["color"]["timestamp"] == accepted["timestamp"]

        report = reports.get()
        assert report["state"] == {"reported": {"color": "red"}}
        assert report["version"] == 3
        doc = remote.get()
        assert doc["state"] == {"desired": {"color": "red"}, "reported": {"color": "red", "brightness": 40}}
        assert doc["version"] == 3 and _in_sync(doc)
        assert shadow.version == 3  # tracked from the accepted documents it saw

        deleted = remote.delete()
        assert deleted["version"] == 3
        with pytest.raises(ShadowNotFound):
            shadow.get()


async def test_async_shadow_twin(server: ThingcoreProcess) -> None:
    thing = uid("aio-thermostat")
    deltas: asyncio.Queue[Delta] = asyncio.Queue()
    async with AsyncDevice(server.host, thing, port=server.mqtt_port) as dev, \
            AsyncDevice(server.host, uid("aio-backend"), port=server.mqtt_port) as backend:
        shadow = dev.shadow("settings")
        await shadow.on_delta(deltas.put)
        await backend.shadow("settings", thing=thing).update(desired={"setpoint": 22.5, "mode": "heat"})
        delta = await asyncio.wait_for(deltas.get(), TIMEOUT)
        assert delta.state == {"setpoint": 22.5, "mode": "heat"}
        assert delta.version == 1
        accepted = await shadow.report(delta.state)
        assert accepted["version"] == 2
        doc = await shadow.get()
        assert _in_sync(doc) and doc["state"]["reported"] == {"setpoint": 22.5, "mode": "heat"}
        # concurrent requests are told apart by clientToken, not by arrival order
        results = await asyncio.gather(*(shadow.report(n=i) for i in range(15)))
        assert sorted(r["state"]["reported"]["n"] for r in results) == list(range(15))
        assert sorted(r["version"] for r in results) == list(range(3, 18))
        assert len({r["clientToken"] for r in results}) == 15


def test_rejections_are_typed(server: ThingcoreProcess) -> None:
    thing = uid("rej")
    with device(server, client_id=thing) as dev:
        shadow = dev.shadow()
        shadow.update(desired={"a": 1})
        with pytest.raises(ShadowVersionConflict) as conflict:
            shadow.update(desired={"a": 2}, version=7)
        assert (conflict.value.code, conflict.value.message) == (409, "Version conflict")
        assert shadow.update(desired={"a": 2}, version=1)["version"] == 2
        with pytest.raises(ShadowBadRequest, match="too many levels of nesting"):
            shadow.update(desired={"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}})
        with pytest.raises(ShadowTooLarge) as large:
            shadow.update(reported={"blob": "x" * 9000})
        assert large.value.code == 413
        with pytest.raises(ValueError, match="client_token"):
            shadow.update(desired={"a": 3}, client_token="t" * 65)
        with pytest.raises(ShadowRejected) as version:  # the base class catches every rejection
            shadow.update(desired={"a": 3}, version=-1)
        assert version.value.code in (400, 409)
        with pytest.raises(ValueError):
            shadow.update()
        assert shadow.get()["state"]["desired"] == {"a": 2}  # nothing rejected was applied
        assert shadow.delete()["version"] == 2
        with pytest.raises(ShadowNotFound):
            shadow.delete()


def test_unanswered_request_times_out(server: ThingcoreProcess) -> None:
    with device(server, operation_timeout=1.0) as dev:
        with pytest.raises(ShadowTimeout):
            dev.shadow(thing="mute").get()
        dev.publish(uid("alive"), "x", qos=1).wait(TIMEOUT)


def test_refused_request_fails_at_once(server: ThingcoreProcess) -> None:
    with device(server, operation_timeout=60.0) as dev, pytest.raises(PublishError) as info:
        dev.shadow(thing="locked").get()  # the PUBACK refusal, not a 60 s timeout
    assert info.value.reason_code == 0x87


def test_stale_delta_is_discarded(server: ThingcoreProcess) -> None:
    """A delta older than the version the client has seen (late, or replayed) is dropped."""
    thing = uid("stale")
    deltas = Inbox("deltas")
    with device(server, client_id=thing) as dev, device(server) as other:
        shadow = dev.shadow()
        shadow.on_delta(deltas)
        for i in range(3):
            shadow.update(desired={"x": i})
        assert deltas.until(lambda d: d.version == 3).state == {"x": 2}
        topic = f"$aws/things/{thing}/shadow/update/delta"
        other.publish(topic, orjson.dumps({"state": {"x": "old"}, "version": 1}), qos=1).wait(TIMEOUT)
        other.publish(topic, orjson.dumps({"state": {"x": "new"}, "version": 4}), qos=1).wait(TIMEOUT)
        assert deltas.get().state == {"x": "new"}  # the version 1 delta never reached the callback
        assert dev.shadow().stale_deltas == 1


def test_shadow_over_http_uses_the_rest_api(server: ThingcoreProcess) -> None:
    thing = uid("rest")
    with device(server, "http") as http, device(server, client_id=thing) as mqtt_dev:
        rest = http.shadow("cfg", thing=thing)
        with pytest.raises(ShadowNotFound):
            rest.get()
        accepted = rest.update(desired={"interval": 30})
        assert accepted["state"] == {"desired": {"interval": 30}} and accepted["version"] == 1
        with pytest.raises(ShadowVersionConflict):
            rest.update(desired={"interval": 60}, version=5)
        # the same shadow seen over MQTT
        assert mqtt_dev.shadow("cfg").get()["state"]["delta"] == {"interval": 30}
        assert rest.delete()["version"] == 1
