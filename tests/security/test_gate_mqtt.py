"""The one gate, tried as an attacker would over MQTT: shared subscriptions, wills, session takeover, Basic
Ingest and rules' republish must all be judged by the same access rules as a plain publish or delivery.

Findings 1, 2, 6 and 8 of issue 12, and the rule principal of finding 7; each test failed on the code before
the gate (the refused message got through)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.integration.mqtt_helpers import V5, PahoClient, uid, wait_for
from tests.server import ThingcoreProcess, password_file

pytestmark = pytest.mark.integration

USERS = {"alice": "alice-pw", "guest": "guest-pw", "mallory": "mallory-pw"}

ACL = [
    # devices write only their own shadows; nobody else's
    {"effect": "allow", "action": "publish", "topic": "$aws/things/%u/shadow/#"},
    {"effect": "deny", "action": "publish", "topic": "$aws/things/#"},
    # the guest may neither read nor write device configuration, nor read reserved topics
    {"effect": "deny", "action": ["publish", "receive"], "topic": "devices/+/config", "username": "guest"},
    {"effect": "deny", "action": "receive", "topic": "$aws/#", "username": "guest"},
    # rules may not write into thing topics
    {"effect": "deny", "action": "publish", "topic": "protected/#", "principal": "thingcore-rules"},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    directory = tmp_path_factory.mktemp("gate")
    passwd = password_file(directory / "passwd", USERS)
    config = {"auth": {"allow_anonymous": "loopback", "password_file": str(passwd), "acl": ACL}}
    with ThingcoreProcess(directory, config) as tc:
        yield tc


def login(server: ThingcoreProcess, user: str | None, client_id: str | None = None, **kwargs: Any) -> PahoClient:
    c = PahoClient(server.mqtt_port, client_id, **kwargs)
    if user is not None:
        c.client.username_pw_set(user, USERS[user])
    return c


def _create_rule(server: ThingcoreProcess, name: str, sql: str, topic: str) -> None:
    body = {"sql": sql, "awsIotSqlVersion": "2016-03-23", "actions": [{"republish": {"topic": topic}}]}
    r = httpx.post(f"http://127.0.0.1:{server.http_port}/rules/{name}", json=body, timeout=10)
    assert r.status_code == 200, r.text


# -- finding 1: $share skips the receive check ------------------------------------------------------


def test_shared_subscription_does_not_deliver_what_the_member_may_not_receive(server: ThingcoreProcess) -> None:
    topic = f"devices/{uid('d')}/config"
    with login(server, "guest") as guest, login(server, "alice") as alice, login(server, "alice") as pub:
        guest.connect()
        alice.connect()
        pub.connect()
        group = uid("g")
        guest.subscribe([f"$share/{group}/devices/+/config", f"$share/{uid('solo')}/devices/+/config"], 1)
        alice.subscribe(f"$share/{group}/devices/+/config", 1)
        for i in range(6):  # round robin would hand every other one to the guest
            pub.publish(topic, f"secret-{i}".encode(), 1)
        got = sorted(m.payload for m in alice.expect_n(6))
        assert got == sorted(f"secret-{i}".encode() for i in range(6))  # the allowed member gets all of them
        guest.no_more(via=pub)  # a marker published after the secrets reached the guest: none went before it


def test_shared_subscription_to_reserved_topics_is_judged_too(server: ThingcoreProcess) -> None:
    with login(server, "guest") as guest, login(server, "alice") as alice:
        guest.connect()
        guest.subscribe(f"$share/{uid('g')}/$aws/#", 1)
        alice.connect()
        alice.subscribe("$aws/things/alice/shadow/get/rejected", 1)
        alice.publish("$aws/things/alice/shadow/get", b"{}", 1)  # her own thing: allowed; no shadow yet
        assert json.loads(alice.expect().payload)["code"] == 404  # the shadow service answered...
        guest.no_more()  # ...and the guest, denied $aws/#, did not get the answer through $share (one fan-out
        # delivered it to alice: a copy for the guest would be ahead of any marker routed after it)


# -- finding 2: wills are never authorized ----------------------------------------------------------


@pytest.mark.parametrize("protocol", [V5, 4])
def test_a_will_where_the_client_may_not_publish_is_refused_at_connect(server: ThingcoreProcess,
                                                                        protocol: int) -> None:
    topic = f"devices/{uid('d')}/config"
    with login(server, "alice") as watcher:
        watcher.connect()
        watcher.subscribe(topic, 1)
        bad = login(server, "guest", protocol=protocol, will=(topic, b"evil", 1, True))
        ack = bad.connect(expect=None)
        assert ack.reason_code == 0x87  # not authorized (3.1.1's return code 5, as paho reports it)
        bad.wait_disconnected()  # the server closed it: its end (and a will, were it accepted) is handled
        bad.close()
        watcher.no_more()
    with login(server, "alice") as late:  # and nothing was retained
        late.connect()
        late.subscribe(topic, 1)
        late.no_more()  # retained messages are sent right after the SUBACK, ahead of the marker


def test_a_will_cannot_rewrite_another_things_shadow(server: ThingcoreProcess) -> None:
    thing = "guest"  # a thing only its own device (user guest) may write: mallory's will aims at it
    shadow = f"$aws/things/{thing}/shadow"
    with login(server, "alice") as owner:
        owner.connect()
        owner.subscribe(f"{shadow}/#", 1)
        payload = json.dumps({"state": {"desired": {"on": False}}}).encode()
        attacker = login(server, "mallory", will=(f"{shadow}/update", payload, 1, False))
        assert attacker.connect(expect=None).reason_code == 0x87
        attacker.wait_disconnected()  # closed by the server: a will, were it accepted, is published by now
        attacker.drop()
        # the shadow service handles one shadow's requests in order: the device's GET is answered after the
        # will's update would have been, and the shadow does not exist
        with login(server, "guest") as device:
            device.connect()
            device.publish(f"{shadow}/get", b"{}", 1)
        seen = [owner.expect(), owner.expect()]
        assert [m.topic for m in seen] == [f"{shadow}/get", f"{shadow}/get/rejected"]
        assert json.loads(seen[1].payload)["code"] == 404
        owner.no_more()  # no update, no accepted, no documents: the shadow was never touched


def test_an_allowed_will_is_still_published(server: ThingcoreProcess) -> None:
    topic = f"status/{uid('d')}"
    with login(server, "alice") as watcher:
        watcher.connect()
        watcher.subscribe(topic, 1)
        dev = login(server, "guest", will=(topic, b"offline", 1, False))
        dev.connect()
        dev.drop()
        assert watcher.expect().payload == b"offline"


# -- finding 6: another principal takes over a persistent session ---------------------------------------


def test_another_principal_cannot_take_over_a_session_and_its_queue(server: ThingcoreProcess) -> None:
    client_id = uid("shared-id")
    inbox = f"inbox/{uid()}"
    expiry = _expiry(3600)
    alice = login(server, "alice", client_id, clean=False, properties=expiry)
    alice.connect(clean=False)
    alice.subscribe(inbox, 1)
    alice.disconnect()
    with login(server, "alice") as sender:
        sender.connect()
        sender.publish(inbox, b"for alice only", 1)
    thief = login(server, "mallory", client_id, clean=False, properties=expiry)
    ack = thief.connect(clean=False, expect=None)
    assert ack.reason_code == 0x87 and not ack.session_present
    thief.wait_disconnected()  # the server closed the connection: everything it sent has been read
    thief.expect_none(0)
    thief.close()
    anonymous = PahoClient(server.mqtt_port, client_id, clean=False, properties=expiry)
    assert anonymous.connect(clean=False, expect=None).reason_code == 0x87  # anonymous is another principal
    anonymous.close()
    again = login(server, "alice", client_id, clean=False, properties=expiry)
    assert again.connect(clean=False).session_present
    assert again.expect().payload == b"for alice only"
    again.close()


def test_another_principal_cannot_kick_a_connected_client(server: ThingcoreProcess) -> None:
    client_id = uid("busy")
    with login(server, "alice", client_id) as alice:
        alice.connect()
        thief = login(server, "mallory", client_id)
        assert thief.connect(expect=None).reason_code == 0x87
        thief.close()
        assert not alice.disconnected.is_set()
        alice.publish("ping/" + uid(), b"still here", 1)  # the PUBACK comes back: still connected


# -- finding 8: Basic Ingest is a publish to the topic it stands for ---------------------------------------


def test_basic_ingest_is_judged_as_the_topic_it_stands_for(server: ThingcoreProcess) -> None:
    rule = uid("ingest").replace("-", "_")
    _create_rule(server, rule, "SELECT * FROM 'devices/+/config'", f"ingested/{rule}")
    with login(server, "alice") as watcher, login(server, "guest") as guest, login(server, "alice") as alice:
        watcher.connect()
        watcher.subscribe(f"ingested/{rule}", 1)
        guest.connect()
        refused = guest.publish(f"$aws/rules/{rule}/devices/d1/config", b'{"x": 1}', 1)
        assert refused == 0x87
        alice.connect()
        assert alice.publish(f"$aws/rules/{rule}/devices/d1/config", b'{"x": 2}', 1) == 0
        # the rule handles its messages in order: had the guest's got through, it would come first
        assert json.loads(watcher.expect().payload) == {"x": 2}
        watcher.no_more()


# -- finding 7 (rules' part): a rule acts as its own principal, not as root ---------------------------------


def test_a_rules_republish_passes_the_gate_as_the_rules_principal(server: ThingcoreProcess) -> None:
    name = uid("fwd").replace("-", "_")
    src = f"src/{name}"
    _create_rule(server, name + "_bad", f"SELECT * FROM '{src}'", f"protected/{name}")
    _create_rule(server, name + "_ok", f"SELECT * FROM '{src}'", f"open/{name}")
    with login(server, "alice") as watcher, login(server, "alice") as pub:
        watcher.connect()
        watcher.subscribe([f"protected/{name}", f"open/{name}"], 1)
        pub.connect()
        pub.publish(src, b'{"v": 1}', 1)
        m = watcher.expect()
        assert m.topic == f"open/{name}"

        def failures() -> float:
            text = httpx.get(f"http://127.0.0.1:{server.http_port}/metrics", timeout=10).text
            for line in text.splitlines():
                if line.startswith("thingcore_rule_action_failed_total") and f'rule="{name}_bad"' in line:
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        # the bad rule's republish is over (refused), so nothing of it is in flight: then check for it
        wait_for(lambda: failures() >= 1, what="the refused republish counted as an action failure")
        watcher.no_more()


def _expiry(seconds: int) -> Any:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = seconds
    return props


def test_the_gate_logs_each_refusal(server: ThingcoreProcess) -> None:
    with login(server, "guest") as guest:
        guest.connect()
        assert guest.publish(f"devices/{uid('d')}/config", b"x", 1) == 0x87
    wait_for(lambda: "refused a publish to 'devices/" in server.log(),
             what="a log line for the refusal")
