"""thingcore with authentication on: a password file of argon2 users and 20 access rules.

``python -m benchmarks.run --auth`` runs the same loads against this broker ("thingcore+auth")
and a plain thingcore, alternating, to show what logging in and the access rules cost on the
message path and per idle connection. Every client of the auth broker logs in with a user name and
password (anonymous clients are refused), and the rules (``RULES``) are a realistic mix: per-device
topics through ``%c`` and per-user topics through ``%u``, allow and deny on publish, subscribe and
receive. None of them refuses the benchmark's own traffic, but the rules that allow it are not the
last ones, so the broker does evaluate them (it drops trailing allow rules, which change nothing).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from benchmarks.brokers import Thingcore

SUBSCRIBER = "bench-sub"
PUBLISHERS = 4  # one user per fan-in publisher: bench-pub-0 .. bench-pub-3
IDLE_USERS = 10  # idle-memory clients log in as bench-idle-0 .. bench-idle-9, in turn

# First match wins. The fan-in traffic: publishers bench-pub-<i> publish bench/<i>/data, the
# subscriber bench-sub subscribes to bench/+/data and receives it (rules 14, 16, 19).
RULES: list[dict[str, object]] = [
    {"effect": "deny", "action": "publish", "topic": "$SYS/#"},
    {"effect": "deny", "action": "publish", "topic": "$aws/things/+/shadow/update/accepted"},
    {"effect": "allow", "action": "publish", "topic": "$aws/things/%c/shadow/#"},
    {"effect": "deny", "action": "publish", "topic": "$aws/things/+/shadow/#"},
    {"effect": "allow", "action": "subscribe", "topic": "$aws/things/%c/shadow/#"},
    {"effect": "allow", "action": "receive", "topic": "$aws/things/%c/shadow/#"},
    {"effect": "deny", "action": ["subscribe", "receive"], "topic": "$aws/things/+/shadow/#"},
    {"effect": "allow", "action": "publish", "topic": "users/%u/#"},
    {"effect": "deny", "action": "publish", "topic": "users/#"},
    {"effect": "allow", "action": ["subscribe", "receive"], "topic": "users/%u/#"},
    {"effect": "deny", "action": ["subscribe", "receive"], "topic": "users/#"},
    {"effect": "deny", "action": ["subscribe", "receive"], "topic": "bench/+/secret"},
    {"effect": "deny", "action": "publish", "topic": "bench/+/config"},
    {"effect": "allow", "action": "subscribe", "topic": "bench/+/data", "username": SUBSCRIBER},
    {"effect": "deny", "action": "subscribe", "topic": "bench/#"},
    {"effect": "allow", "action": "receive", "topic": "bench/+/data", "username": SUBSCRIBER},
    {"effect": "deny", "action": "receive", "topic": "bench/#"},
    {"effect": "deny", "action": "publish", "topic": "bench/#", "anonymous": True},
    {"effect": "allow", "action": "publish", "topic": "bench/+/data"},
    {"effect": "deny", "action": "publish", "topic": "#"},
]


def users() -> list[str]:
    return [SUBSCRIBER, *(f"bench-pub-{i}" for i in range(PUBLISHERS)), *(f"bench-idle-{i}" for i in range(IDLE_USERS))]


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v)  # strings and lists of strings are valid TOML in JSON notation


def config_toml(password_file: Path, rules: list[dict[str, object]]) -> str:
    lines = ["[auth]", 'allow_anonymous = "false"', f"password_file = {json.dumps(str(password_file))}", ""]
    for rule in rules:
        lines.append("[[auth.acl]]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in rule.items())
        lines.append("")
    return "\n".join(lines)


def write_password_file(path: Path, names: list[str], password: str) -> None:
    """The file `thingcore passwd add` writes (username:argon2id hash), through the same class."""
    from thingcore.auth.passwords import PasswordFile

    pf = PasswordFile(path)
    for name in names:
        pf.set(name, password)
    pf.save()


class ThingcoreAuth(Thingcore):
    """``thingcore serve --config`` with ``allow_anonymous = "false"``, a password file and ``RULES``."""

    label = "thingcore+auth"

    def __init__(self, workdir: Path, label: str | None = None) -> None:
        super().__init__(workdir, label)
        self.password = secrets.token_urlsafe(12)
        self.password_file = self.workdir / "passwd"
        write_password_file(self.password_file, users(), self.password)
        self.config_file = self.workdir / "thingcore.toml"
        self.config_file.write_text(config_toml(self.password_file, RULES))
        self.credentials = (SUBSCRIBER, self.password)  # the readiness probe logs in too

    def extra_args(self) -> list[str]:
        return ["--config", str(self.config_file)]

    def login(self, role: str) -> tuple[str, str] | None:
        """Credentials of a client: "sub", "pub<i>" or "idle<i>"."""
        if role == "sub":
            return SUBSCRIBER, self.password
        if role.startswith("pub"):
            return f"bench-pub-{int(role[3:]) % PUBLISHERS}", self.password
        return f"bench-idle-{int(role[4:]) % IDLE_USERS}", self.password
