"""Storage for broker state: retained messages and persistent sessions.

Callers see only :class:`Storage`; :func:`create_storage` picks the backend from settings.
"""

from __future__ import annotations

from pathlib import Path

from .base import Storage, StorageStats, StoredMessage, StoredSession
from .memory import MemoryStorage
from .sqlite import SQLiteStorage

__all__ = [
    "DB_FILENAME",
    "MemoryStorage",
    "SQLiteStorage",
    "Storage",
    "StorageStats",
    "StoredMessage",
    "StoredSession",
    "create_storage",
]

#: The SQLite database inside the data directory.
DB_FILENAME = "thingcore.db"


def create_storage(data_dir: Path | str | None, *, synchronous: str = "NORMAL") -> Storage:
    """The storage for a data directory: ``None`` (``--no-persistence``) keeps state in memory.

    ``synchronous`` is SQLite's setting: ``NORMAL`` survives process crashes, ``FULL`` also power
    loss (see :class:`SQLiteStorage`). The returned storage still needs ``await storage.open()``.
    """
    if data_dir is None:
        return MemoryStorage()
    return SQLiteStorage(Path(data_dir) / DB_FILENAME, synchronous=synchronous)
