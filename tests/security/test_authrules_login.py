"""Finding 3 of issue 12: user-name rules and ``%u`` must see the login name, not the raw MQTT user name.

AWS IoT SDKs append ``?SDK=...&Version=...`` to the user name; the password check reads the part before
``?``, but the rules used to read the whole field, so ``guest?SDK=x`` with guest's password escaped every
``username = "guest"`` rule. A user name nobody checked (no password file) must not count either. Each
test got through on the code before the fix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.integration.mqtt_helpers import V5, PahoClient, uid
from tests.server import ThingcoreProcess, password_file

pytestmark = pytest.mark.integration

USERS = {"guest": "guest-pw", "alice": "alice-pw"}
SDK = "?SDK=Python&Version=1.11.3"

ACL = [
    # the guest may neither write nor read the plant's controls
    {"effect": "deny", "action": ["publish", "subscribe", "receive"], "topic": "plant/control/#", "username": "guest"},
    # everyone has an inbox of their own, and only that one
    {"effect": "allow", "action": "all", "topic": "inbox/%u/#"},
    {"effect": "deny", "action": "all", "topic": "inbox/#"},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    directory = tmp_path_factory.mktemp("authrules-login")
    passwd = password_file(directory / "passwd", USERS)
    config = {"auth": {"password_file": str(passwd), "acl": ACL}}
    with ThingcoreProcess(directory, config) as tc:
        yield tc


def login(server: ThingcoreProcess, user_name: str, password: str, protocol: int = V5) -> PahoClient:
    c = PahoClient(server.mqtt_port, uid("login"), protocol=protocol)
    c.client.username_pw_set(user_name, password)
    return c


@pytest.mark.parametrize("suffix", [SDK, "?x"], ids=["sdk-metadata", "bare-question-mark"])
def test_sdk_suffix_does_not_escape_the_guest_rules(server: ThingcoreProcess, suffix: str) -> None:
    topic = f"plant/control/{uid('valve')}"
    with login(server, "alice", USERS["alice"]) as alice, login(server, "guest" + suffix, USERS["guest"]) as guest:
        alice.connect()
        guest.connect()  # guest's password still logs in
        alice.subscribe(topic, 1)
        assert guest.publish(topic, b"open the valve", 1) == 0x87  # refused at the PUBACK
        assert guest.subscribe("plant/control/#", 1) == [0x87]
        alice.no_more()
        alice.publish(topic, b"closed", 1)  # and what others publish there never reaches the guest
        assert alice.expect().payload == b"closed"
        guest.no_more()


def test_percent_u_is_the_login_name(server: ThingcoreProcess) -> None:
    with login(server, "guest" + SDK, USERS["guest"]) as guest, login(server, "alice", USERS["alice"]) as alice:
        guest.connect()
        alice.connect()
        assert guest.subscribe("inbox/guest/#", 1) == [1]  # %u is "guest", not "guest?SDK=..."
        assert guest.subscribe("inbox/alice/#", 1) == [0x87]
        assert alice.publish("inbox/guest/note", b"hello guest", 1) == 0x87  # alice's %u is alice
        assert guest.publish("inbox/guest/note", b"to myself", 1) == 0
        assert guest.expect().payload == b"to myself"
        guest.no_more()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    """No password file: every client is anonymous, whatever user name it sends."""
    config = {"auth": {"acl": [
        {"effect": "allow", "action": "all", "topic": "admin/#", "username": "admin"},
        {"effect": "allow", "action": "all", "topic": "home/%u/#"},
        {"effect": "deny", "action": "all", "topic": "admin/#"},
        {"effect": "deny", "action": "all", "topic": "home/#"},
    ]}}
    with ThingcoreProcess(tmp_path_factory.mktemp("authrules-open"), config) as tc:
        yield tc


def test_an_unchecked_user_name_is_not_an_identity(open_server: ThingcoreProcess) -> None:
    with PahoClient(open_server.mqtt_port, uid("claims-admin"), username="admin") as liar:
        liar.connect()  # accepted as an anonymous loopback client ...
        assert liar.publish("admin/shutdown", b"now", 1) == 0x87  # ... but it is nobody's "admin"
        assert liar.subscribe("home/admin/#", 1) == [0x87]  # and %u is nobody's name either
