"""The tables, streams and queues of one server, shared by rule actions, ``get_dynamodb()`` and the HTTP API.

The server builds one :class:`DataDestinations` and attaches it to its broker; an action reaches it from its
``ActionEnv`` with :func:`data_destinations`, so no rule-engine plumbing changes. Clients of external engines
(PostgreSQL pool, Redis, NATS) are made on first use, so a destination that is down only fails its actions.
"""

from __future__ import annotations

import weakref
from typing import Any

from thingcore.destinations.queues import Queues
from thingcore.destinations.streams import Streams
from thingcore.destinations.tables import EmbeddedTables, PostgresTables, Tables

_BY_BROKER: weakref.WeakKeyDictionary[Any, DataDestinations] = weakref.WeakKeyDictionary()


class DataDestinations:
    def __init__(self, settings: Any, storage: Any, broker: Any) -> None:
        conf = settings.destinations
        self.settings = settings
        self.tables: Tables = PostgresTables(conf.tables.dsn) if conf.tables.dsn else EmbeddedTables(storage)
        self.table_keys = conf.tables.keys
        directory = settings.data_dir / "streams" if settings.persistence else None
        self.streams = Streams(conf.streams, directory)
        self.queues = Queues(conf.queues, storage)
        _BY_BROKER[broker] = self

    async def close(self) -> None:
        await self.tables.close()
        await self.streams.close()
        await self.queues.close()


def data_destinations(env: Any) -> DataDestinations:
    """The destinations of the server an action runs in (``env`` is its ActionEnv)."""
    found = _BY_BROKER.get(env.broker)
    if found is None:  # a broker without a server (unit tests, ``rules test``): embedded, in memory
        from thingcore.storage.memory import MemoryStorage

        settings = env.settings.model_copy(update={"persistence": False})
        found = DataDestinations(settings, getattr(env.broker, "storage", None) or MemoryStorage(), env.broker)
    return found
