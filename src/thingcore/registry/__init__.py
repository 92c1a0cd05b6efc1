"""The thing registry: things and thing types, stored as documents, with AWS IoT's semantics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from thingcore.registry.errors import AlreadyExists, InvalidRequest, NotFound, RegistryError, VersionConflict
from thingcore.registry.thing_types import ThingTypes
from thingcore.registry.things import Things

if TYPE_CHECKING:
    from thingcore.config import Settings
    from thingcore.storage import Storage


class Registry:
    """Things and thing types share one lock: a thing cannot take a type while the type is deleted."""

    def __init__(self, storage: Storage, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        lock = asyncio.Lock()
        self.types = ThingTypes(storage, settings, lock, clock)
        self.things = Things(storage, settings, self.types, lock, clock)
        self.types.in_use = self.things.type_in_use


__all__ = ["AlreadyExists", "InvalidRequest", "NotFound", "Registry", "RegistryError", "VersionConflict"]
