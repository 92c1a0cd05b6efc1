"""Password file, access rules and the default authenticator."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from thingcore.auth import (
    Action,
    AuthResult,
    Identity,
    PasswordFile,
    PasswordFileError,
    allow_all,
    build_authenticator,
    build_authorizer,
    filter_covers,
    is_loopback,
    is_trivial,
    login_name,
    parse_rules,
    topic_matches,
)
from thingcore.auth.identity import MQTT_ACTIONS
from thingcore.auth.policy import certificate_user_name
from thingcore.mqtt.reason_codes import ReasonCode

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def ident(
    client_id: str = "c1",
    username: str | None = None,
    address: str = "127.0.0.1",
    *,
    principal: str | None = None,
    fingerprint: str | None = None,
    listener: str = "mqtt",
) -> Identity:
    return Identity(
        client_id=client_id,
        username=username,
        principal=principal,
        listener=listener,
        address=address,
        cert_fingerprint=fingerprint,
        anonymous=principal is None,
    )


# -- password file -------------------------------------------------------------------------


def test_password_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "data" / "passwd"
    pf = PasswordFile(path, hasher=FAST)
    assert not pf.exists and len(pf) == 0
    pf.set("alice", "wonderland")
    pf.set("bob", b"builder")
    pf.save()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert [line.split(":", 1)[0] for line in lines] == ["alice", "bob"]
    assert all(line.split(":", 1)[1].startswith("$argon2id$") for line in lines)
    assert not list(tmp_path.joinpath("data").glob("*.tmp"))

    again = PasswordFile(path)
    assert again.exists and again.usernames() == ["alice", "bob"]
    assert again.verify("alice", "wonderland")
    assert again.verify("bob", "builder")
    assert not again.verify("alice", "builder")
    assert not again.verify("carol", "wonderland")
    assert not again.verify("alice", "")

    again.remove("bob")
    again.save()
    assert PasswordFile(path).usernames() == ["alice"]
    with pytest.raises(KeyError):
        again.remove("bob")


def test_password_file_parses_comments_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    good = FAST.hash("pw")
    path.write_text(f"# comment\n\n  \nnot a line\nalice:{good}\nold:$7$101$abc\n")
    pf = PasswordFile(path)
    assert pf.usernames() == ["alice", "old"]
    assert pf.verify("alice", "pw")
    assert not pf.verify("old", "pw")  # a non-argon2 hash never verifies


def test_unknown_user_still_runs_a_hash(tmp_path: Path) -> None:
    calls: list[str] = []

    class Spy:
        def hash(self, password: bytes) -> str:
            return FAST.hash(password)

        def verify(self, hashed: str, password: bytes) -> bool:
            calls.append(hashed)
            return FAST.verify(hashed, password)

    pf = PasswordFile(tmp_path / "passwd", hasher=Spy())  # type: ignore[arg-type]
    pf.set("alice", "pw")
    assert not pf.verify("nobody", "pw")
    assert len(calls) == 1 and calls[0].startswith("$argon2")


@pytest.mark.parametrize("name", ["", " x", "#x", "a\nb", "a?b"])
def test_password_file_rejects_bad_names(tmp_path: Path, name: str) -> None:
    pf = PasswordFile(tmp_path / "passwd", hasher=FAST)
    with pytest.raises(PasswordFileError):
        pf.set(name, "pw")
    with pytest.raises(PasswordFileError):
        pf.set("ok", "")


def test_password_file_reloads_when_changed(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    writer = PasswordFile(path, hasher=FAST)
    writer.set("alice", "one")
    writer.save()
    reader = PasswordFile(path, reload_interval=0)
    assert reader.verify("alice", "one")

    writer.set("alice", "two")
    writer.set("bob", "three")
    writer.save()
    assert reader.verify("alice", "two")
    assert not reader.verify("alice", "one")
    assert reader.verify("bob", "three")

    # A file created after start-up is picked up too.
    late = tmp_path / "late"
    r2 = PasswordFile(late, reload_interval=0)
    assert not r2.verify("x", "y")
    late.write_text(f"x:{FAST.hash('y')}\n")
    assert r2.verify("x", "y")


async def test_averify_runs_off_loop_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    pf = PasswordFile(tmp_path / "passwd", hasher=FAST, reload_interval=0)
    pf.set("alice", "pw")
    pf.save()
    threads: list[int] = []
    real = pf._verify_now

    def spy(u: str, p: bytes) -> bool:
        threads.append(threading.get_ident())
        return real(u, p)

    monkeypatch.setattr(pf, "_verify_now", spy)
    assert await pf.averify("alice", b"pw")
    assert threads and threads[0] != threading.get_ident()
    assert await pf.averify("alice", "pw")  # cached: no second hash
    assert len(threads) == 1
    assert not await pf.averify("alice", b"wrong")  # failures are not cached
    assert not await pf.averify("alice", b"wrong")
    assert len(threads) == 3

    # A password change on disk drops the cached success.
    time.sleep(0.01)
    other = PasswordFile(pf.path, hasher=FAST)
    other.set("alice", "new")
    other.save()
    assert not await pf.averify("alice", b"pw")
    assert await pf.averify("alice", b"new")


async def test_averify_cache_is_bounded(tmp_path: Path) -> None:
    pf = PasswordFile(tmp_path / "passwd", hasher=FAST, cache_size=2)
    for i in range(4):
        pf.set(f"u{i}", "pw")
    for i in range(4):
        assert await pf.averify(f"u{i}", "pw")
    assert len(pf._cache) == 2


# -- authenticator -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("10.0.0.5", False),
        ("192.168.1.2", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("2001:db8::1", False),
        ("", False),
        ("garbage", False),
    ],
)
def test_is_loopback(address: str, expected: bool) -> None:
    assert is_loopback(address) is expected


def test_login_name() -> None:
    assert login_name(None) == ""
    assert login_name("?SDK=Python&Version=1.2.3") == ""
    assert login_name("alice?SDK=Python") == "alice"
    assert login_name("alice") == "alice"


async def test_anonymous_default_is_loopback_only() -> None:
    auth = build_authenticator()
    assert await auth(ident(address="127.0.0.1"), None) == AuthResult(0)
    assert (await auth(ident(address="::1"), None)).reason_code == 0
    refused = await auth(ident(address="10.1.2.3"), None)
    assert refused.reason_code == ReasonCode.NOT_AUTHORIZED
    assert refused.reason_string
    # Without a password file credentials are ignored: still anonymous.
    assert (await auth(ident("c", "alice", "127.0.0.1"), b"pw")).principal is None
    assert (await auth(ident("c", "alice", "10.1.2.3"), b"pw")).reason_code == 0x87


@pytest.mark.parametrize(
    ("mode", "ok_remote"), [("true", True), (True, True), ("false", False), ("loopback", False)]
)
async def test_allow_anonymous_modes(mode: str | bool, ok_remote: bool) -> None:
    auth = build_authenticator(allow_anonymous=mode)
    assert ((await auth(ident(address="203.0.113.9"), None)).reason_code == 0) is ok_remote
    local = (await auth(ident(address="127.0.0.1"), None)).reason_code
    assert local == (0x87 if mode in ("false", False) else 0)


def test_allow_anonymous_bad_value() -> None:
    with pytest.raises(ValueError):
        build_authenticator(allow_anonymous="sometimes")


async def test_password_login(tmp_path: Path) -> None:
    pf = PasswordFile(tmp_path / "passwd", hasher=FAST)
    pf.set("alice", "pw")
    pf.save()
    auth = build_authenticator(password_file=tmp_path / "passwd")
    ok = await auth(ident("c", "alice", "10.0.0.1"), b"pw")
    assert ok.reason_code == 0 and ok.principal == "alice"
    assert (await auth(ident("c", "alice", "10.0.0.1"), b"bad")).reason_code == 0x86
    assert (await auth(ident("c", "mallory", "10.0.0.1"), b"pw")).reason_code == 0x86
    assert (await auth(ident("c", "alice", "127.0.0.1"), None)).reason_code == 0x86
    # A login name followed by ?metadata
    assert (await auth(ident("c", "alice?SDK=Python&Version=1.2.3", "10.0.0.1"), b"pw")).principal == "alice"
    # Anonymous rules still apply to clients that do not log in.
    assert (await auth(ident("c", None, "10.0.0.1"), None)).reason_code == 0x87
    assert (await auth(ident("c", None, "127.0.0.1"), None)).reason_code == 0


async def test_aws_sdk_metadata_username_is_anonymous(tmp_path: Path) -> None:
    pf = PasswordFile(tmp_path / "passwd", hasher=FAST)
    pf.set("alice", "pw")
    auth = build_authenticator(password_file=pf)
    sdk = "?SDK=Python&Version=1.2.3"
    local = await auth(ident("dev", sdk, "127.0.0.1"), None)
    assert local.reason_code == 0 and local.principal is None
    assert (await auth(ident("dev", sdk, "10.0.0.7"), None)).reason_code == 0x87
    open_auth = build_authenticator(allow_anonymous="true", password_file=pf)
    assert (await open_auth(ident("d", sdk, "10.0.0.7"), None)).reason_code == 0


async def test_certificate_authenticates() -> None:
    auth = build_authenticator(allow_anonymous="false", require_client_cert_listeners=["mqtts"])
    cert_ident = ident("dev", None, "10.0.0.1", principal="CN=device-1", fingerprint="ab" * 32)
    cert_ident.listener = "mqtts"
    res = await auth(cert_ident, None)
    assert res.reason_code == 0 and res.principal == "CN=device-1" and res.username == "device-1"
    # Username/password are not checked when a certificate authenticated the client, and the user name rules
    # see is the certificate's CN, not the one the client sent.
    res = await auth(ident("dev", "x", "10.0.0.1", principal="CN=d,O=Acme", fingerprint="cd" * 32), b"whatever")
    assert (res.principal, res.username) == ("CN=d,O=Acme", "d")
    no_cert = await auth(ident("dev", None, "127.0.0.1", listener="mqtts"), None)
    assert no_cert.reason_code == 0x87


@pytest.mark.parametrize(
    ("subject", "expected"),
    [("CN=dev1", "dev1"), ("CN=dev1,OU=fleet,O=Acme", "dev1"), ("O=Acme", None), ("CN=a,CN=b", None),
     (r"CN=a\,b", "a,b"), ("", None), (None, None), ("not a name", None)],
)
def test_certificate_user_name_is_the_one_common_name(subject: str | None, expected: str | None) -> None:
    assert certificate_user_name(subject) == expected


async def test_rules_see_the_proven_user_name(tmp_path: Path) -> None:
    pf = PasswordFile(tmp_path / "passwd", hasher=FAST)
    pf.set("guest", "pw")
    auth = build_authenticator(password_file=pf)
    who = ident("c", login_name("guest?SDK=Python&Version=1.2.3"))
    who.accept(await auth(who, b"pw"))
    assert (who.username, who.principal, who.anonymous) == ("guest", "guest", False)
    # Without a password file the user name is never checked, so no rule may believe it.
    claimed = ident("c", "admin")
    claimed.accept(await build_authenticator()(claimed, None))
    assert (claimed.username, claimed.principal, claimed.anonymous) == (None, None, True)
    cert = ident("c", "dev2", principal="CN=dev1", fingerprint="ab" * 32)
    cert.accept(await auth(cert, None))
    assert (cert.username, cert.principal) == ("dev1", "CN=dev1")


async def test_authenticator_does_not_block_loop(tmp_path: Path) -> None:
    pf = PasswordFile(tmp_path / "passwd")  # default (slow) parameters
    pf.set("alice", "pw")
    auth = build_authenticator(password_file=pf)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    t = asyncio.create_task(ticker())
    try:
        results = await asyncio.gather(*(auth(ident(f"c{i}", "alice", "10.0.0.1"), b"bad") for i in range(4)))
    finally:
        t.cancel()
    assert all(r.reason_code == 0x86 for r in results)
    assert ticks > 3


# -- access rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flt", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
        ("a/+/c", "a//c", True),
        ("a/b", "a/b/c", False),
    ],
)
def test_topic_matches(flt: str, topic: str, expected: bool) -> None:
    assert topic_matches(flt, topic) is expected


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("secret/#", "secret/#", True),
        ("secret/#", "secret/+", True),
        ("secret/#", "secret", True),
        ("secret/#", "secret/a/b", True),
        ("secret/#", "#", False),
        ("secret/+", "secret/#", False),
        ("secret/+", "secret/+", True),
        ("secret/a", "secret/+", False),
        ("+/a", "x/a", True),
        ("#", "$SYS/#", False),
        ("test/nosubscribe", "test/nosubscribe", True),
        ("test/nosubscribe", "test/nosubscribe/x", False),
    ],
)
def test_filter_covers(outer: str, inner: str, expected: bool) -> None:
    assert filter_covers(outer.split("/"), inner.split("/")) is expected


def test_no_rules_is_trivial_allow_all() -> None:
    a = build_authorizer([])
    b = build_authorizer(None)
    assert a is b is allow_all  # one shared constant function
    assert is_trivial(a) and is_trivial(None)
    assert not is_trivial(build_authorizer([{"effect": "deny", "topic": "x"}]))
    assert a(ident(), Action.PUBLISH, "anything") == 0
    assert not hasattr(a, "cache")
    # Rules that can never refuse compile to the same thing.
    assert build_authorizer([{"effect": "allow", "action": "all", "topic": "#"}]) is a


def test_first_match_wins_and_default_allow() -> None:
    authz = build_authorizer(
        [
            {"effect": "allow", "action": "publish", "topic": "devices/%c/#"},
            {"effect": "deny", "action": "publish", "topic": "devices/#"},
            {"effect": "deny", "action": "subscribe", "topic": "test/nosubscribe", "reason_code": 0x80},
            {"effect": "deny", "action": ["receive", "subscribe"], "topic": "secret/#"},
        ]
    )
    me = ident("d1")
    assert authz(me, Action.PUBLISH, "devices/d1/telemetry") == 0
    assert authz(me, Action.PUBLISH, "devices/d2/telemetry") == 0x87
    assert authz(me, Action.PUBLISH, "other/topic") == 0
    assert authz(me, Action.SUBSCRIBE, "test/nosubscribe") == 0x80
    assert authz(me, Action.SUBSCRIBE, "test/+") == 0
    assert authz(me, Action.SUBSCRIBE, "secret/+") == 0x87
    assert authz(me, Action.SUBSCRIBE, "#") == 0  # overlap only: allowed ...
    assert authz(me, Action.RECEIVE, "secret/plans") == 0x87  # ... and filtered per message
    assert authz(me, Action.RECEIVE, "public/news") == 0
    assert authz(me, Action.CONNECT, None) == 0
    # Cached answers stay right.
    assert authz(me, Action.PUBLISH, "devices/d2/telemetry") == 0x87
    assert authz(ident("d2"), Action.PUBLISH, "devices/d2/telemetry") == 0


def test_username_substitution_and_identity_conditions() -> None:
    authz = build_authorizer(
        [
            {"effect": "allow", "action": "all", "topic": "users/%u/#"},
            {"effect": "deny", "action": ["publish", "subscribe", "receive"], "topic": "users/#"},
            {"effect": "deny", "action": "connect", "client_id": "banned-1", "reason_code": 0x8A},
            {"effect": "deny", "action": "publish", "topic": "admin/#", "principal": "CN=device-9"},
            {"effect": "deny", "action": "publish", "topic": "ro/#", "anonymous": True},
        ]
    )
    alice = ident("c1", "alice", principal="alice")
    assert authz(alice, Action.PUBLISH, "users/alice/x") == 0
    assert authz(alice, Action.PUBLISH, "users/bob/x") == 0x87
    assert authz(ident("c1", None), Action.PUBLISH, "users/alice/x") == 0x87  # no user name: %u never matches
    # Wildcards in the substituted value do not widen an allow rule.
    assert authz(ident("c1", "+", principal="+"), Action.PUBLISH, "users/bob/x") == 0x87
    assert authz(ident("banned-1"), Action.CONNECT, None) == ReasonCode.BANNED
    assert authz(ident("ok"), Action.CONNECT, None) == 0
    assert authz(ident("d9", principal="CN=device-9"), Action.PUBLISH, "admin/reboot") == 0x87
    assert authz(ident("d8", principal="CN=device-8"), Action.PUBLISH, "admin/reboot") == 0
    assert authz(ident("anon"), Action.PUBLISH, "ro/x") == 0x87
    assert authz(alice, Action.PUBLISH, "ro/x") == 0


def test_topic_rules_do_not_apply_to_connect() -> None:
    authz = build_authorizer([{"effect": "deny", "action": "all", "topic": "#"}])
    assert authz(ident(), Action.CONNECT, None) == 0
    assert authz(ident(), Action.PUBLISH, "a") == 0x87
    assert authz(ident(), Action.PUBLISH, "$aws/things/x/shadow/update") == 0  # '#' skips $ topics


def test_a_rule_without_topic_covers_everything_and_connect() -> None:
    authz = build_authorizer([
        {"effect": "deny", "action": "connect", "username": "banned"},
        {"effect": "deny", "action": "publish", "username": "reader"},
        {"effect": "deny", "action": "all", "principal": "CN=revoked"},
    ])
    assert authz(ident("b", "banned"), Action.CONNECT, None) == 0x87
    assert authz(ident("b", "banned"), Action.PUBLISH, "a") == 0  # only connect was named
    reader = ident("r", "reader", principal="reader")
    assert authz(reader, Action.CONNECT, None) == 0
    for topic in ("a", "$aws/things/x/shadow/update", "$aws/rules/r/x", "$SYS/x"):
        assert authz(reader, Action.PUBLISH, topic) == 0x87
    assert authz(reader, Action.SUBSCRIBE, "$aws/#") == 0
    revoked = ident("x", principal="CN=revoked")
    assert authz(revoked, Action.CONNECT, None) == 0x87
    assert authz(revoked, Action.RECEIVE, "$aws/things/x/shadow/update/accepted") == 0x87
    # "all" with a topic is the three topic actions on it: valid, and it never decides CONNECT
    authz = build_authorizer([{"effect": "deny", "action": "all", "topic": "secret/#", "username": "u"}])
    assert authz(ident("c", "u"), Action.CONNECT, None) == 0


def test_substitution_is_one_pass() -> None:
    authz = build_authorizer([
        {"effect": "allow", "action": "publish", "topic": "devices/%c/#"},
        {"effect": "deny", "action": "publish", "topic": "devices/#"},
    ])
    # a client id that is itself a placeholder stays literal: it does not become the user name
    assert authz(ident("%u", "alice", principal="alice"), Action.PUBLISH, "devices/alice/x") == 0x87
    assert authz(ident("%u", "alice", principal="alice"), Action.PUBLISH, "devices/%u/x") == 0
    assert authz(ident("d1"), Action.PUBLISH, "devices/d1/x") == 0


def test_authorizer_cache_is_bounded() -> None:
    authz = build_authorizer([{"effect": "deny", "action": "publish", "topic": "x/#"}], cache_size=8)
    for i in range(100):
        assert authz(ident(), Action.PUBLISH, f"x/{i}") == 0x87
        assert authz(ident(), Action.PUBLISH, f"y/{i}") == 0
    assert len(authz.cache) <= 8  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "bad",
    [
        {"effect": "maybe", "action": "publish"},
        {"effect": "deny", "action": "jump"},
        {"effect": "deny", "action": []},
        {"effect": "deny", "topic": "a/#/b"},
        {"effect": "deny", "topic": "a+"},
        {"effect": "deny", "reason_code": 5},
        {"effect": "deny", "reason_code": "lots"},
        {"effect": "deny", "colour": "red"},
        {"effect": "deny", "anonymous": "yes"},
        "deny all",
        # well-formed, but they cannot mean what they say
        {"effect": "deny", "action": "connect", "topic": "a/#"},
        {"effect": "deny", "action": ["publish", "connect"], "topic": "a/#"},
        {"effect": "allow", "action": "publish", "reason_code": 0x87},
        {"effect": "allow", "anonymous": True, "username": "bob"},
        {"effect": "allow", "anonymous": True, "principal": "CN=x"},
        {"effect": "allow", "anonymous": True, "topic": "u/%u/#"},
        {"effect": "deny", "username": "guest?SDK=Python"},
        {"effect": "deny", "username": ""},
        {"effect": "deny", "client_id": ""},
    ],
)
def test_bad_rules_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="access rule 1"):
        parse_rules([bad])  # type: ignore[list-item]


def test_rule_parsing_details() -> None:
    (rule,) = parse_rules([{"effect": "DENY", "action": "all", "topic": "a/b", "reason_code": "0x80"}])
    assert rule.reason_code == 0x80
    assert rule.actions == frozenset(MQTT_ACTIONS)  # "all" never includes manage


def test_shared_subscriptions_are_checked_by_their_filter() -> None:
    authz = build_authorizer([{"effect": "deny", "action": "subscribe", "topic": "secret/#"}])
    assert authz(ident(), Action.SUBSCRIBE, "$share/g/secret/+") == 0x87
    assert authz(ident(), Action.SUBSCRIBE, "$share/g/public/+") == 0
    with pytest.raises(ValueError, match=r"\$share"):
        parse_rules([{"effect": "deny", "topic": "$share/g/#"}])


@pytest.mark.parametrize(
    "flt", ["#", "+", "a/#", "a/+", "+/+", "a/b", "$SYS/#", "+/b/#", "a/+/c", "a//c", "/#"]
)
@pytest.mark.parametrize("topic", ["a", "a/b", "a/b/c", "$SYS/x", "/a", "a//c", "b/b/d", ""])
def test_rule_matcher_agrees_with_mqtt_topics(flt: str, topic: str) -> None:
    from thingcore.auth.acl import levels_match

    assert levels_match(flt.split("/"), topic.split("/")) is topic_matches(flt, topic)


def test_manage_is_for_administrators_unless_a_rule_allows() -> None:
    admin = ident("ops", address="127.0.0.1")
    admin.administrator = True
    device = ident("dev1", principal="dev1")
    for authorize in (allow_all, build_authorizer([{"effect": "deny", "action": "publish", "topic": "x"}])):
        assert authorize(admin, Action.MANAGE, "rules/r1") == 0
        assert authorize(device, Action.MANAGE, "rules/r1") == ReasonCode.NOT_AUTHORIZED
        assert authorize(device, Action.PUBLISH, "y") == 0
    explicit = build_authorizer([
        {"effect": "deny", "action": "manage", "topic": "rules/#", "principal": "ops"},
        {"effect": "allow", "action": "manage", "topic": "things/#", "principal": "dev1"},
    ])
    assert explicit(device, Action.MANAGE, "things/lamp") == 0
    assert explicit(device, Action.MANAGE, "rules/r1") == ReasonCode.NOT_AUTHORIZED
    ops = ident("ops", principal="ops")
    ops.administrator = True
    assert explicit(ops, Action.MANAGE, "rules/r1") == ReasonCode.NOT_AUTHORIZED
    assert explicit(ops, Action.MANAGE, "things/t") == 0
    assert is_trivial(explicit)  # no rule about MQTT actions: topic checks can be skipped
    all_rule = parse_rules([{"effect": "allow", "action": "all", "principal": "dev1"}])
    assert Action.MANAGE not in all_rule[0].actions
