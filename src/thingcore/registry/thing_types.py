"""Thing types: immutable descriptions that things are created with, deprecated before deletion.

AWS semantics: a type's properties never change after creation; a deprecated type cannot be given
to a new thing (existing things keep it); a type can be deleted only after it has been deprecated
for five minutes (``[registry] thing_type_delete_delay``) and no thing uses it any more.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from thingcore.registry.errors import AlreadyExists, InvalidRequest, NotFound
from thingcore.registry.paging import check_max_results, decode_token, scan_page
from thingcore.registry.validation import (
    MAX_SEARCHABLE_ATTRIBUTES,
    check_attribute_name,
    check_description,
    check_name,
)

if TYPE_CHECKING:
    from thingcore.config import Settings
    from thingcore.storage import Storage

NAMESPACE = "thingtype"


class ThingTypes:
    def __init__(self, storage: Storage, settings: Settings, lock: asyncio.Lock,
                 clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.region = settings.aws.region
        self.account = settings.aws.account_id
        self.delete_delay = settings.registry.thing_type_delete_delay
        self.lock = lock
        self.clock = clock
        # set by the registry: whether any thing has this type (checked before deletion)
        self.in_use: Callable[[str], Awaitable[bool]] | None = None

    def arn(self, name: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.account}:thingtype/{name}"

    async def get(self, name: str) -> dict[str, Any] | None:
        raw = await self.storage.get_document(NAMESPACE, name)
        return orjson.loads(raw) if raw is not None else None

    async def require(self, name: str) -> dict[str, Any]:
        record = await self.get(check_name(name, "thingTypeName"))
        if record is None:
            raise NotFound(f"Thing type {name} does not exist")
        return record

    async def create(self, name: str, properties: dict[str, Any] | None = None,
                     tags: list[dict[str, str]] | None = None) -> dict[str, Any]:
        check_name(name, "thingTypeName")
        props = _clean_properties(properties or {})
        async with self.lock:
            existing = await self.get(name)
            if existing is not None:
                if _same_properties(existing["thingTypeProperties"], props):  # a retried create succeeds
                    return self._ids(existing)
                raise AlreadyExists(f"Thing type {name} already exists with different properties",
                                    resourceId=existing["thingTypeId"], resourceArn=self.arn(name))
            record = {
                "thingTypeName": name, "thingTypeId": str(uuid.uuid4()), "thingTypeProperties": props,
                "deprecated": False, "deprecationDate": None, "creationDate": self.clock(), "tags": tags or [],
            }
            await self.storage.put_document(NAMESPACE, name, orjson.dumps(record))
        return self._ids(record)

    def _ids(self, record: dict[str, Any]) -> dict[str, Any]:
        name = record["thingTypeName"]
        return {"thingTypeName": name, "thingTypeArn": self.arn(name), "thingTypeId": record["thingTypeId"]}

    def describe_record(self, record: dict[str, Any]) -> dict[str, Any]:
        meta: dict[str, Any] = {"deprecated": record["deprecated"], "creationDate": record["creationDate"]}
        if record["deprecated"] and record.get("deprecationDate") is not None:
            meta["deprecationDate"] = record["deprecationDate"]
        return {**self._ids(record), "thingTypeProperties": record["thingTypeProperties"], "thingTypeMetadata": meta}

    async def describe(self, name: str) -> dict[str, Any]:
        return self.describe_record(await self.require(name))

    async def list(self, *, thing_type_name: str | None = None, max_results: int | None = None,
                   next_token: str | None = None) -> dict[str, Any]:
        limit = check_max_results(max_results)
        start = decode_token(next_token)
        if thing_type_name is not None:
            check_name(thing_type_name, "thingTypeName")
        keep = (lambda r: r["thingTypeName"] == thing_type_name) if thing_type_name is not None else None
        records, token = await scan_page(self.storage, NAMESPACE, start_after=start, limit=limit, keep=keep)
        out: dict[str, Any] = {"thingTypes": [self.describe_record(r) for r in records]}
        if token is not None:
            out["nextToken"] = token
        return out

    async def deprecate(self, name: str, undo: bool = False) -> None:
        async with self.lock:
            record = await self.require(name)
            if record["deprecated"] == (not undo):
                return
            record["deprecated"] = not undo
            record["deprecationDate"] = None if undo else self.clock()
            await self.storage.put_document(NAMESPACE, name, orjson.dumps(record))

    async def delete(self, name: str) -> None:
        async with self.lock:
            record = await self.require(name)
            if not record["deprecated"]:
                raise InvalidRequest(f"Thing type {name} must be deprecated before it can be deleted")
            waited = self.clock() - (record.get("deprecationDate") or 0)
            if waited < self.delete_delay:
                raise InvalidRequest(
                    f"Thing type {name} was deprecated {waited:.0f} s ago; it can be deleted "
                    f"{self.delete_delay:.0f} s after deprecation"
                )
            if self.in_use is not None and await self.in_use(name):
                raise InvalidRequest(
                    f"Thing type {name} is still used by things; remove it from them (UpdateThing) first"
                )
            await self.storage.delete_document(NAMESPACE, name)


def _clean_properties(props: dict[str, Any]) -> dict[str, Any]:
    """Validate and keep the members AWS models; absent and empty members are dropped."""
    out: dict[str, Any] = {}
    description = props.get("thingTypeDescription")
    if description is not None:
        if not isinstance(description, str):
            raise InvalidRequest("thingTypeDescription must be a string")
        out["thingTypeDescription"] = check_description(description)
    searchable = props.get("searchableAttributes")
    if searchable:
        if not isinstance(searchable, list):
            raise InvalidRequest("searchableAttributes must be a list of attribute names")
        if len(searchable) > MAX_SEARCHABLE_ATTRIBUTES:
            raise InvalidRequest(f"a thing type can have at most {MAX_SEARCHABLE_ATTRIBUTES} searchable attributes")
        out["searchableAttributes"] = [check_attribute_name(a) for a in searchable]
    mqtt5 = props.get("mqtt5Configuration")
    if mqtt5:
        out["mqtt5Configuration"] = mqtt5
    return out


def _same_properties(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def norm(p: dict[str, Any]) -> tuple:
        return (p.get("thingTypeDescription"), frozenset(p.get("searchableAttributes") or ()),
                orjson.dumps(p.get("mqtt5Configuration"), option=orjson.OPT_SORT_KEYS))
    return norm(a) == norm(b)
