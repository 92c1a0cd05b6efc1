"""Thing registry rules (names, attribute limits, merge, versions, type deprecation) over MemoryStorage."""

from __future__ import annotations

import pytest

from thingcore.config import Settings
from thingcore.registry import AlreadyExists, InvalidRequest, NotFound, Registry, VersionConflict
from thingcore.registry.paging import decode_token, encode_token
from thingcore.storage import MemoryStorage


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def env() -> tuple[Registry, Clock]:
    storage = MemoryStorage()
    await storage.open()
    clock = Clock()
    settings = Settings(aws={"region": "eu-west-1", "account_id": "123456789012"})
    return Registry(storage, settings, clock), clock


async def test_create_describe_and_arn(env) -> None:
    reg, _ = env
    ids = await reg.things.create("lamp-1", attributes={"room": "kitchen"})
    assert ids["thingArn"] == "arn:aws:iot:eu-west-1:123456789012:thing/lamp-1"
    thing = await reg.things.describe("lamp-1")
    assert thing == {"defaultClientId": "lamp-1", "thingName": "lamp-1", "thingId": ids["thingId"],
                     "thingArn": ids["thingArn"], "attributes": {"room": "kitchen"}, "version": 1}


async def test_repeated_identical_create_returns_same_ids_different_one_conflicts(env) -> None:
    reg, _ = env
    first = await reg.things.create("t", attributes={"a": "1"})
    assert await reg.things.create("t", attributes={"a": "1"}) == first
    with pytest.raises(AlreadyExists) as exc:
        await reg.things.create("t", attributes={"a": "2"})
    assert exc.value.extra["resourceId"] == first["thingId"]


@pytest.mark.parametrize("name", ["", "a b", "x/y", "é", "a" * 129, "thing?"])
async def test_bad_thing_names_are_refused(env, name: str) -> None:
    reg, _ = env
    with pytest.raises(InvalidRequest):
        await reg.things.create(name)


@pytest.mark.parametrize("attrs", [{"bad name": "v"}, {"k": "spa ce"}, {"k": "x" * 801}, {"": "v"}])
async def test_bad_attributes_are_refused_and_nothing_is_stored(env, attrs: dict[str, str]) -> None:
    reg, _ = env
    with pytest.raises(InvalidRequest):
        await reg.things.create("t", attributes=attrs)
    with pytest.raises(NotFound):
        await reg.things.describe("t")


async def test_attribute_limits_three_untyped_fifty_typed(env) -> None:
    reg, _ = env
    with pytest.raises(InvalidRequest, match="at most 3"):
        await reg.things.create("t", attributes={f"k{i}": "v" for i in range(4)})
    await reg.types.create("sensor")
    await reg.things.create("typed", thing_type="sensor", attributes={f"k{i}": "v" for i in range(50)})
    with pytest.raises(InvalidRequest, match="at most 50"):
        await reg.things.update("typed", attributes={"k50": "v"}, merge=True)
    # taking the type away would leave 50 attributes on an untyped thing
    with pytest.raises(InvalidRequest, match="at most 3"):
        await reg.things.update("typed", remove_thing_type=True)


async def test_update_replaces_or_merges_and_empty_value_removes(env) -> None:
    reg, _ = env
    await reg.things.create("t", attributes={"a": "1", "b": "2"})
    await reg.things.update("t", attributes={"b": "20", "a": ""}, merge=True)
    assert (await reg.things.describe("t"))["attributes"] == {"b": "20"}
    await reg.things.update("t", attributes={"c": "3"}, merge=True)
    assert (await reg.things.describe("t"))["attributes"] == {"b": "20", "c": "3"}
    await reg.things.update("t", attributes={"d": "4"})  # merge false: overwrite
    thing = await reg.things.describe("t")
    assert thing["attributes"] == {"d": "4"}
    assert thing["version"] == 4


async def test_expected_version_conflicts(env) -> None:
    reg, _ = env
    await reg.things.create("t")
    await reg.things.update("t", attributes={"a": "1"}, expected_version=1)
    with pytest.raises(VersionConflict):
        await reg.things.update("t", attributes={"a": "2"}, expected_version=1)
    with pytest.raises(VersionConflict):
        await reg.things.delete("t", expected_version=1)
    assert (await reg.things.describe("t"))["attributes"] == {"a": "1"}
    await reg.things.delete("t", expected_version=2)
    with pytest.raises(NotFound):
        await reg.things.describe("t")
    await reg.things.delete("t")  # a missing thing deletes fine, as on AWS


async def test_unknown_or_deprecated_type_cannot_be_given(env) -> None:
    reg, _ = env
    with pytest.raises(NotFound):
        await reg.things.create("t", thing_type="nope")
    await reg.types.create("old")
    await reg.things.create("keeps", thing_type="old")
    await reg.types.deprecate("old")
    with pytest.raises(InvalidRequest, match="deprecated"):
        await reg.things.create("new", thing_type="old")
    await reg.things.create("plain")
    with pytest.raises(InvalidRequest, match="deprecated"):
        await reg.things.update("plain", thing_type="old")
    await reg.things.update("keeps", attributes={"a": "1"}, merge=True)  # a thing keeps its deprecated type
    assert (await reg.things.describe("keeps"))["thingTypeName"] == "old"
    await reg.types.deprecate("old", undo=True)
    await reg.things.create("new", thing_type="old")


async def test_type_delete_needs_deprecation_delay_and_no_things(env) -> None:
    reg, clock = env
    await reg.types.create("tt")
    await reg.things.create("t", thing_type="tt")
    with pytest.raises(InvalidRequest, match="deprecated before"):
        await reg.types.delete("tt")
    await reg.types.deprecate("tt")
    meta = (await reg.types.describe("tt"))["thingTypeMetadata"]
    assert meta["deprecated"] is True and meta["deprecationDate"] == clock.now
    clock.now += 299
    with pytest.raises(InvalidRequest, match="300 s after"):
        await reg.types.delete("tt")
    clock.now += 1
    with pytest.raises(InvalidRequest, match="still used"):
        await reg.types.delete("tt")
    await reg.things.update("t", remove_thing_type=True)
    await reg.types.delete("tt")
    with pytest.raises(NotFound):
        await reg.types.describe("tt")


async def test_thing_type_create_is_idempotent_only_for_equal_properties(env) -> None:
    reg, _ = env
    first = await reg.types.create("tt", {"thingTypeDescription": "d", "searchableAttributes": ["a", "b"]})
    assert await reg.types.create("tt", {"thingTypeDescription": "d", "searchableAttributes": ["b", "a"]}) == first
    with pytest.raises(AlreadyExists):
        await reg.types.create("tt", {"thingTypeDescription": "other"})
    with pytest.raises(InvalidRequest, match="at most 3 searchable"):
        await reg.types.create("t2", {"searchableAttributes": ["a", "b", "c", "d"]})


async def test_list_filters_and_pages_without_gaps_or_repeats(env) -> None:
    reg, _ = env
    await reg.types.create("lamp")
    for i in range(30):
        attrs = {"floor": str(i % 3), "serial": f"SN{i:03d}"}
        await reg.things.create(f"t{i:02d}", thing_type="lamp" if i % 2 else None, attributes=attrs)
    seen: list[str] = []
    token = None
    while True:
        page = await reg.things.list(attribute_name="floor", attribute_value="1", max_results=4, next_token=token)
        seen += [t["thingName"] for t in page["things"]]
        token = page.get("nextToken")
        if token is None:
            break
        assert len(page["things"]) == 4
    assert seen == [f"t{i:02d}" for i in range(30) if i % 3 == 1]
    typed = await reg.things.list(thing_type="lamp", max_results=250)
    assert [t["thingName"] for t in typed["things"]] == [f"t{i:02d}" for i in range(30) if i % 2]
    assert "nextToken" not in typed
    prefixed = await reg.things.list(attribute_name="serial", attribute_value="SN02", prefix_value=True)
    assert [t["thingName"] for t in prefixed["things"]] == [f"t{i:02d}" for i in range(20, 30)]


async def test_list_rejects_bad_paging(env) -> None:
    reg, _ = env
    with pytest.raises(InvalidRequest):
        await reg.things.list(max_results=0)
    with pytest.raises(InvalidRequest):
        await reg.things.list(max_results=251)
    with pytest.raises(InvalidRequest):
        await reg.things.list(next_token="!!not-a-token")
    with pytest.raises(InvalidRequest):
        await reg.things.list(attribute_value="x")


def test_token_round_trip() -> None:
    assert decode_token(encode_token("thing:with:colons")) == "thing:with:colons"
    assert decode_token(None) is None
