"""Finding 4 of issue 12: an ``[[auth.acl]]`` entry must mean what it says.

An entry without ``topic`` used to become ``topic = "#"``: ``deny connect`` for a user let it connect, and a
deny for every topic missed ``$aws/...`` (a filter starting with a wildcard never matches ``$`` topics). An
entry without ``topic`` now covers every topic, ``$`` ones included, and CONNECT; an entry that cannot mean
what it says stops ``thingcore serve`` with a one-line error naming it. Each test failed on the code before
the fix (the client connected, the shadow was written, the server started)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.mqtt_helpers import V5, V311, PahoClient, uid
from tests.server import ThingcoreProcess, free_port, password_file, to_toml

pytestmark = pytest.mark.integration

USERS = {"banned": "banned-pw", "reader": "reader-pw", "alice": "alice-pw"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    directory = tmp_path_factory.mktemp("authrules-entries")
    passwd = password_file(directory / "passwd", USERS)
    config = {"auth": {"password_file": str(passwd), "acl": [
        {"effect": "deny", "action": "connect", "username": "banned", "reason_code": 0x8A},  # no topic
        {"effect": "deny", "action": "publish", "username": "reader"},  # no topic: every topic, $aws too
    ]}}
    with ThingcoreProcess(directory, config) as tc:
        yield tc


def login(server: ThingcoreProcess, user: str, protocol: int = V5) -> PahoClient:
    c = PahoClient(server.mqtt_port, uid(user), protocol=protocol)
    c.client.username_pw_set(user, USERS[user])
    return c


@pytest.mark.parametrize(("protocol", "code"), [(V5, 0x8A), (V311, 0x87)], ids=["v5", "v311"])
def test_deny_connect_without_topic_refuses_the_connection(server: ThingcoreProcess, protocol: int,
                                                           code: int) -> None:
    with login(server, "banned", protocol) as banned:
        assert banned.connect(expect=None).reason_code == code  # paho reports 3.1.1 refusal 5 as 0x87
    with login(server, "alice", protocol) as alice:  # the rule names one user only
        alice.connect()


def test_deny_without_topic_covers_reserved_topics(server: ThingcoreProcess) -> None:
    thing = uid("thing")
    shadow = f"$aws/things/{thing}/shadow"
    with login(server, "alice") as alice, login(server, "reader") as reader:
        alice.connect()
        reader.connect()
        alice.subscribe([f"{shadow}/update/accepted", "plain/#"], 1)
        assert reader.publish(f"{shadow}/update", b'{"state": {"reported": {"door": "open"}}}', 1) == 0x87
        assert reader.publish("plain/x", b"x", 1) == 0x87
        assert reader.publish(f"$aws/rules/{uid('rule')}/x", b"x", 1) == 0x87
        alice.no_more()
        assert reader.subscribe(f"{shadow}/update/accepted", 1) == [1]  # only publishing was denied


def serve(tmp_path: Path, acl: list[dict]) -> subprocess.CompletedProcess:
    config = tmp_path / "thingcore.toml"
    config.write_text(to_toml({"auth": {"acl": acl}}))
    return subprocess.run(
        [sys.executable, "-m", "thingcore", "serve", "--config", str(config), "--data-dir", str(tmp_path / "d"),
         "--host", "127.0.0.1", "--mqtt-port", str(free_port()), "--http-port", str(free_port())],
        capture_output=True, text=True, timeout=30, env={**os.environ, "COLUMNS": "80"},
    )


MEANINGLESS = {
    "connect with a topic": {"effect": "deny", "action": "connect", "topic": "secret/#", "username": "mallory"},
    "connect among actions with a topic": {"effect": "deny", "action": ["connect", "publish"], "topic": "a/#"},
    "anonymous with a user name": {"effect": "allow", "action": "publish", "anonymous": True, "username": "bob"},
    "anonymous with %u": {"effect": "allow", "action": "publish", "topic": "u/%u/#", "anonymous": True},
    "user name with SDK metadata": {"effect": "deny", "action": "publish", "username": "guest?SDK=Python"},
    "reason code on an allow rule": {"effect": "allow", "action": "publish", "reason_code": 0x87},
    "empty client id": {"effect": "deny", "action": "all", "client_id": ""},
}


@pytest.mark.parametrize("name", list(MEANINGLESS))
def test_an_entry_that_cannot_mean_what_it_says_stops_the_server(tmp_path: Path, name: str) -> None:
    good = {"effect": "deny", "action": "publish", "topic": "ok/#"}
    r = serve(tmp_path, [good, MEANINGLESS[name]])
    assert r.returncode != 0, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # one line, however narrow the terminal
    assert lines[0].startswith("error: in [[auth.acl]], access rule 2 ("), lines[0]  # names the entry
