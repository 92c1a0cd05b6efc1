"""Things: the registry's record of each device (name, id, type, attributes, version).

AWS semantics (botocore ``iot`` model, API reference): a repeated CreateThing with the same
configuration succeeds and returns the same ids, a different one is ResourceAlreadyExists;
DeleteThing of a missing thing succeeds; every update bumps ``version``, and ``expectedVersion``
turns a lost race into VersionConflict instead of a silent overwrite.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from thingcore.registry.errors import AlreadyExists, InvalidRequest, NotFound, VersionConflict
from thingcore.registry.paging import check_max_results, decode_token, scan_page
from thingcore.registry.validation import (
    check_attribute_count,
    check_attribute_name,
    check_attribute_value,
    check_attributes,
    check_name,
)

if TYPE_CHECKING:
    from thingcore.config import Settings
    from thingcore.registry.thing_types import ThingTypes
    from thingcore.storage import Storage

NAMESPACE = "thing"


class Things:
    def __init__(self, storage: Storage, settings: Settings, types: ThingTypes, lock: asyncio.Lock,
                 clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.types = types
        self.region = settings.aws.region
        self.account = settings.aws.account_id
        self.lock = lock
        self.clock = clock

    def arn(self, name: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.account}:thing/{name}"

    async def get(self, name: str) -> dict[str, Any] | None:
        raw = await self.storage.get_document(NAMESPACE, check_name(name, "thingName"))
        return orjson.loads(raw) if raw is not None else None

    async def _require(self, name: str) -> dict[str, Any]:
        record = await self.get(name)
        if record is None:
            raise NotFound(f"Thing {name} does not exist")
        return record

    async def _usable_type(self, type_name: str) -> None:
        """A type given to a thing must exist and must not be deprecated."""
        record = await self.types.require(type_name)
        if record["deprecated"]:
            raise InvalidRequest(f"Thing type {type_name} is deprecated: new things cannot use it")

    async def create(self, name: str, *, thing_type: str | None = None, attributes: dict[str, str] | None = None,
                     billing_group: str | None = None) -> dict[str, Any]:
        check_name(name, "thingName")
        attrs = {k: v for k, v in check_attributes(dict(attributes or {})).items() if v != ""}
        check_attribute_count(attrs, typed=thing_type is not None)
        if billing_group is not None:  # no billing groups here: any name is unknown, as on AWS
            raise NotFound(f"Billing group {billing_group} does not exist")
        async with self.lock:
            existing = await self.get(name)
            if existing is not None:
                if existing.get("thingTypeName") == thing_type and existing["attributes"] == attrs:
                    return self._ids(existing)
                raise AlreadyExists(f"Thing {name} already exists with different attributes or thing type",
                                    resourceId=existing["thingId"], resourceArn=self.arn(name))
            if thing_type is not None:
                await self._usable_type(thing_type)
            record: dict[str, Any] = {"thingName": name, "thingId": str(uuid.uuid4()), "attributes": attrs,
                                      "version": 1, "createdAt": self.clock()}
            if thing_type is not None:
                record["thingTypeName"] = thing_type
            await self.storage.put_document(NAMESPACE, name, orjson.dumps(record))
        return self._ids(record)

    def _ids(self, record: dict[str, Any]) -> dict[str, Any]:
        name = record["thingName"]
        return {"thingName": name, "thingArn": self.arn(name), "thingId": record["thingId"]}

    async def describe(self, name: str) -> dict[str, Any]:
        record = await self._require(name)
        out = {"defaultClientId": name, **self._ids(record), "attributes": record["attributes"],
               "version": record["version"]}
        if record.get("thingTypeName"):
            out["thingTypeName"] = record["thingTypeName"]
        return out

    async def list(self, *, attribute_name: str | None = None, attribute_value: str | None = None,
                   thing_type: str | None = None, prefix_value: bool = False, max_results: int | None = None,
                   next_token: str | None = None) -> dict[str, Any]:
        limit = check_max_results(max_results)
        start = decode_token(next_token)
        if attribute_value is not None and attribute_name is None:
            raise InvalidRequest("attributeValue needs attributeName")
        if attribute_name is not None:
            check_attribute_name(attribute_name)
        if attribute_value is not None:
            check_attribute_value(attribute_name or "", attribute_value)
        if thing_type is not None:
            check_name(thing_type, "thingTypeName")

        def keep(record: dict[str, Any]) -> bool:
            if thing_type is not None and record.get("thingTypeName") != thing_type:
                return False
            if attribute_name is not None:
                value = record["attributes"].get(attribute_name)
                if value is None:
                    return False
                if attribute_value is not None:
                    return value.startswith(attribute_value) if prefix_value else value == attribute_value
            return True

        filtered = attribute_name is not None or thing_type is not None
        records, token = await scan_page(self.storage, NAMESPACE, start_after=start, limit=limit,
                                         keep=keep if filtered else None)
        things = []
        for r in records:
            item = {"thingName": r["thingName"], "thingArn": self.arn(r["thingName"]), "attributes": r["attributes"],
                    "version": r["version"]}
            if r.get("thingTypeName"):
                item["thingTypeName"] = r["thingTypeName"]
            things.append(item)
        out: dict[str, Any] = {"things": things}
        if token is not None:
            out["nextToken"] = token
        return out

    async def update(self, name: str, *, thing_type: str | None = None, attributes: dict[str, str] | None = None,
                     merge: bool = False, expected_version: int | None = None,
                     remove_thing_type: bool = False) -> None:
        """``attributes`` None leaves them alone; otherwise they replace (or with ``merge`` update) the
        stored ones, and an empty value removes that attribute."""
        check_name(name, "thingName")
        if thing_type is not None and remove_thing_type:
            raise InvalidRequest("give either thingTypeName or removeThingType, not both")
        if attributes is not None:
            check_attributes(attributes)
        async with self.lock:
            record = await self._require(name)
            if expected_version is not None and expected_version != record["version"]:
                raise VersionConflict(
                    f"Thing {name} is at version {record['version']}, not the expected {expected_version}"
                )
            current_type = record.get("thingTypeName")
            new_type = None if remove_thing_type else (thing_type if thing_type is not None else current_type)
            if thing_type is not None and thing_type != current_type:
                await self._usable_type(thing_type)
            attrs = dict(record["attributes"])
            if attributes is not None:
                if not merge:
                    attrs = {}
                for key, value in attributes.items():
                    if value == "":
                        attrs.pop(key, None)
                    else:
                        attrs[key] = value
            check_attribute_count(attrs, typed=new_type is not None)
            record["attributes"] = attrs
            if new_type is None:
                record.pop("thingTypeName", None)
            else:
                record["thingTypeName"] = new_type
            record["version"] += 1
            await self.storage.put_document(NAMESPACE, name, orjson.dumps(record))

    async def delete(self, name: str, expected_version: int | None = None) -> None:
        check_name(name, "thingName")
        async with self.lock:
            record = await self.get(name)
            if record is None:
                return  # AWS: deleting a thing that does not exist succeeds
            if expected_version is not None and expected_version != record["version"]:
                raise VersionConflict(
                    f"Thing {name} is at version {record['version']}, not the expected {expected_version}"
                )
            await self.storage.delete_document(NAMESPACE, name)

    async def type_in_use(self, type_name: str) -> bool:
        records, _ = await scan_page(self.storage, NAMESPACE, start_after=None, limit=1,
                                     keep=lambda r: r.get("thingTypeName") == type_name)
        return bool(records)
