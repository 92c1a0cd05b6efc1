"""Topic rule destinations in process: storage (memory and SQLite), URL matching, the address policy and
the pinned connection (real sockets on loopback, resolvers injected to play DNS)."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import httpx
import pytest

from thingcore.rules.address_policy import AddressPolicy, AddressRefused, address_kind, guarded_client
from thingcore.rules.destinations import (
    Destination,
    DestinationStore,
    DestinationUrlError,
    TopicRuleDestinations,
    url_key,
)
from thingcore.rules.model import RuleError
from thingcore.storage import MemoryStorage, SQLiteStorage


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_destinations_are_stored_and_loaded_again(tmp_path: Path, backend: str) -> None:
    storage = MemoryStorage() if backend == "memory" else SQLiteStorage(tmp_path / "thingcore.db")
    await storage.open()
    store = DestinationStore(storage)
    dest = Destination("id-1", "arn:aws:iot:us-east-1:1:ruledestination/http/id-1", "https://example.com/hook",
                       "ENABLED", 1.0, 2.0, token_hash="ab", token_at=3.0)
    await store.save(dest)
    await store.save(Destination("id-2", "arn2", "https://example.org/", "DISABLED", 1.0, 1.0))
    await store.delete("id-2")
    if backend == "sqlite":  # survives closing the database
        await storage.close()
        storage = SQLiteStorage(tmp_path / "thingcore.db")
        await storage.open()
        store = DestinationStore(storage)
    assert await store.load_all() == [dest]
    await storage.close()


async def test_confirmation_token_enables_once_and_survives_a_restart(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "thingcore.db")
    await storage.open()
    policy = AddressPolicy(["127.0.0.0/8"])
    dests = TopicRuleDestinations(storage, "us-east-1", "123456789012", policy, lambda: None, 1.0)
    # no sending in this test: create() schedules the POST; keep the token from the challenge instead
    tokens: list[str] = []
    dests._send_later = lambda dest, token, base: tokens.append(token)  # type: ignore[method-assign]
    view = await dests.create({"httpUrlConfiguration": {"confirmationUrl": "http://127.0.0.1:9/hooks/"}}, "x")
    assert view["status"] == "IN_PROGRESS" and view["arn"].startswith(
        "arn:aws:iot:us-east-1:123456789012:ruledestination/http/")
    assert dests.match("http://127.0.0.1:9/hooks/a") is None  # not confirmed yet
    await storage.close()

    storage = SQLiteStorage(tmp_path / "thingcore.db")
    await storage.open()
    dests = TopicRuleDestinations(storage, "us-east-1", "123456789012", policy, lambda: None, 1.0)
    await dests.load()
    with pytest.raises(RuleError) as bad:
        await dests.confirm("not-the-token")
    assert bad.value.error_type == "InvalidRequestException"
    await dests.confirm(tokens[0])
    assert dests.get(view["arn"])["status"] == "ENABLED"
    assert dests.match("http://127.0.0.1:9/hooks/a?x=1") is not None
    with pytest.raises(RuleError):  # single use
        await dests.confirm(tokens[0])
    await dests.update(view["arn"], "DISABLED", "x")
    assert dests.match("http://127.0.0.1:9/hooks/a") is None
    await dests.delete(view["arn"])
    with pytest.raises(RuleError) as gone:
        dests.get(view["arn"])
    assert gone.value.error_type == "UnauthorizedException"
    await storage.close()


@pytest.mark.parametrize(("url", "matches"), [
    ("http://api.example.com/hooks/a", True),
    ("http://API.example.com:80/hooks/a", True),  # same origin, spelled differently
    ("http://api.example.com/hooksmore", True),  # a plain prefix, as AWS compares
    ("http://api.example.com/other", False),
    ("https://api.example.com/hooks/a", False),  # another scheme
    ("http://api.example.com:8080/hooks/a", False),  # another port
    ("http://api.example.com.evil.net/hooks/a", False),  # the destination's text is a prefix, its host is not
    ("http://api.example.com/hooks/../admin", False),  # normalised away from the prefix
])
def test_url_prefix_matching(url: str, matches: bool) -> None:
    assert url_key(url).starts_with(url_key("http://api.example.com/hooks")) is matches


@pytest.mark.parametrize("url", ["http://u:p@api.example.com/", "http://api.example.com/a/%2e%2e/b",
                                 "http://api.example.com/a%2fb", "ftp://api.example.com/", "http:///x"])
def test_urls_that_could_fool_the_prefix_are_refused(url: str) -> None:
    with pytest.raises(DestinationUrlError):
        url_key(url)


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("169.254.169.254", "link-local"), ("10.1.2.3", "private"),
    ("192.168.0.1", "private"), ("100.64.0.1", "non-public"), ("0.0.0.0", "unspecified"),
    ("::1", "loopback"), ("fe80::1", "link-local"), ("fd00::1", "private"), ("::ffff:127.0.0.1", "loopback"),
    ("64:ff9b::a9fe:a9fe", "link-local"), ("224.0.0.1", "multicast"), ("8.8.8.8", None),
    ("2606:4700:4700::1111", None),
])
def test_address_kinds(address: str, kind: str | None) -> None:
    assert address_kind(ipaddress.ip_address(address)) == kind


def test_allowances() -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address("127.0.0.1")) is not None
    assert AddressPolicy(["127.0.0.0/8"]).refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert AddressPolicy(["127.0.0.0/8"]).refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert AddressPolicy(["127.0.0.0/8"]).refusal(ipaddress.ip_address("169.254.169.254")) is not None
    assert AddressPolicy(allow_private=True).refusal(ipaddress.ip_address("169.254.169.254")) is None
    assert AddressPolicy().check_literal("http://169.254.169.254/latest/meta-data/") is not None
    assert AddressPolicy().check_literal("http://metadata.example/") is None  # a name: checked when connecting


async def _server() -> tuple[asyncio.Server, int, list[bytes]]:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


async def test_every_resolved_address_must_be_allowed_and_the_checked_one_is_used() -> None:
    server, port, seen = await _server()
    answers = {"good.test": ["127.0.0.1"], "mixed.test": ["127.0.0.1", "169.254.169.254"]}
    calls: list[str] = []

    async def resolve(host: str, _port: int) -> list[str]:
        calls.append(host)
        return answers[host]

    async with server, guarded_client(AddressPolicy(["127.0.0.0/8"]), resolve=resolve) as client:
        resp = await client.get(f"http://good.test:{port}/x")
        assert resp.status_code == 200 and b"host: good.test" in seen[0].lower()  # the name stays the Host
        with pytest.raises(AddressRefused, match=r"169\.254\.169\.254"):
            await client.get(f"http://mixed.test:{port}/x")
        # rebinding: the name now points elsewhere; a new connection is checked against the new answer
        answers["good.test"] = ["169.254.169.254"]
        with pytest.raises(AddressRefused):
            await client.get(f"http://good.test:{port}/y")
    assert len(seen) == 1 and calls == ["good.test", "mixed.test", "good.test"]


async def test_without_an_allowance_loopback_is_refused_before_connecting() -> None:
    server, port, seen = await _server()
    async with server, guarded_client(AddressPolicy()) as client:
        for url in (f"http://127.0.0.1:{port}/", f"http://localhost:{port}/", f"http://[::ffff:127.0.0.1]:{port}/"):
            with pytest.raises(AddressRefused):
                await client.post(url, content=b"{}")
    assert seen == []


async def test_operator_configured_origins_are_trusted() -> None:
    server, port, seen = await _server()
    policy = AddressPolicy(trusted_origins=[("127.0.0.1", port)])
    async with server, guarded_client(policy) as client:
        assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200
        with pytest.raises(AddressRefused):
            await client.get(f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}/")
    assert len(seen) == 1


def test_httpx_is_the_parser() -> None:
    # the URL thingcore POSTs to is the one it checked: parsed once, by httpx
    assert url_key(httpx.URL("http://a.example/x")) == url_key("http://a.example/x")
