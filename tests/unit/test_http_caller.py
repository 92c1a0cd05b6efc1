"""Who an HTTP caller is (thingcore.http.caller): the admin token, SigV4 keys and anonymous callers, and the
MANAGE decision every control-plane route asks the gate for."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from thingcore.auth import Identity
from thingcore.auth.acl import build_authorizer
from thingcore.config import Settings
from thingcore.http.caller import Callers
from thingcore.http.errors import AWSError

TOKEN = "unit-test-admin-token-0123"


def callers(acl: list[dict[str, Any]] | None = None, **sections: Any) -> Callers:
    settings = Settings(_env_file=None, **sections)
    broker = SimpleNamespace(authorize=build_authorizer(acl), authorize_all=not acl)
    return Callers(SimpleNamespace(settings=settings, broker=broker))


def scope(address: str = "127.0.0.1", headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/things", "raw_path": b"/things", "query_string": b"",
            "headers": headers or [], "client": (address, 40000), "scheme": "http"}


def test_loopback_without_credentials_is_an_administrator_only_without_a_token() -> None:
    assert callers().identify(scope()).administrator
    assert not callers().identify(scope("192.0.2.7")).administrator
    assert not callers(admin={"token": TOKEN}).identify(scope()).administrator
    assert not callers(admin={"allow_unauthenticated": "false"}).identify(scope()).administrator


def test_the_admin_token_makes_an_administrator_and_a_wrong_one_is_refused() -> None:
    c = callers(admin={"token": TOKEN})
    who = c.identify(scope("192.0.2.7", [(b"authorization", f"Bearer {TOKEN}".encode())]))
    assert who.administrator and not who.anonymous and who.principal is None
    with pytest.raises(AWSError) as exc:
        c.identify(scope(headers=[(b"authorization", b"Bearer guessed-token-0000000")]))
    assert exc.value.status == 401


def test_manage_needs_an_administrator_or_an_access_rule() -> None:
    rule = {"effect": "allow", "action": "manage", "principal": "ops", "topic": "rules/#"}
    c = callers([rule])
    key = Identity("", None, "ops", "http", "192.0.2.7", anonymous=False)
    c.require_manage(key, "rules/lamp")
    c.require_manage(key, "rules")  # "#" also matches the parent level: listing
    with pytest.raises(AWSError) as exc:
        c.require_manage(key, "things/lamp")
    assert (exc.value.status, exc.value.error_type) == (403, "ForbiddenException")
    other = Identity("", None, "device", "http", "192.0.2.7", anonymous=False)
    with pytest.raises(AWSError):
        c.require_manage(other, "rules/lamp")


def test_anonymous_callers_from_the_network_never_manage_even_if_a_rule_says_so() -> None:
    c = callers([{"effect": "allow", "action": "manage", "anonymous": True, "topic": "#"}],
                http={"allow_anonymous": "true"})
    stranger = c.identify(scope("192.0.2.7"))
    with pytest.raises(AWSError) as exc:
        c.require_manage(stranger, "rules/x")
    assert exc.value.status == 403
    with pytest.raises(AWSError) as exc:
        c.require_manage(stranger, "config", admin_api=True)
    assert (exc.value.status, exc.value.error_type) == (401, "UnauthorizedException")


async def test_http_allow_anonymous_decides_the_data_plane() -> None:
    assert (await callers().identity(scope(), b"")).anonymous
    with pytest.raises(AWSError) as exc:
        await callers().identity(scope("192.0.2.7"), b"")
    assert exc.value.status == 403
    assert (await callers(http={"allow_anonymous": "true"}).identity(scope("192.0.2.7"), b"")).anonymous
    with pytest.raises(AWSError):
        await callers(http={"allow_anonymous": "false"}).identity(scope(), b"")
    # MQTT's setting opens nothing here
    with pytest.raises(AWSError):
        await callers(auth={"allow_anonymous": "true"}).identity(scope("192.0.2.7"), b"")


def test_http_basic_with_the_token_as_password_is_the_admin_token_too() -> None:
    import base64

    c = callers(admin={"token": TOKEN})
    basic = base64.b64encode(f"prometheus:{TOKEN}".encode())
    assert c.identify(scope("192.0.2.7", [(b"authorization", b"Basic " + basic)])).administrator
    for wrong in (base64.b64encode(b"prometheus:guess"), b"not-base64!"):
        with pytest.raises(AWSError) as exc:
            c.identify(scope(headers=[(b"authorization", b"Basic " + wrong)]))
        assert exc.value.status == 401
