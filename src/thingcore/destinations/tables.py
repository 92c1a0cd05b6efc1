"""Tables for the ``dynamoDB`` and ``dynamoDBv2`` actions: items keyed by a hash and an optional range key.

Two backends with one interface:

- :class:`EmbeddedTables` (default) keeps each item as a document of the server's storage (namespace
  ``table:<name>``), so writes get its group commit off the event loop and survive a ``kill -9``;
- :class:`PostgresTables` (``[destinations.tables] dsn``) keeps one PostgreSQL table per AWS table name,
  created on first use: ``hash_key text, range_key text, item jsonb``, primary key (hash_key, range_key).

Key values are compared as text (AWS's NUMBER keys are written as numbers inside the item), and a table
missing its range key uses ``''``. Table names are registered with their key attribute names, so
``get_dynamodb()``, the HTTP API and ``thingcore tables`` find them again.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson

from thingcore.destinations.batching import Batcher

_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_META_NS = "tables"
_PG_META = "thingcore_tables"


class TableError(Exception):
    """A write or read the table cannot do; ``retryable`` when the backend was unreachable."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def check_table_name(name: str) -> None:
    if not _NAME.match(name):
        raise TableError(f"table name {name!r} is not 3-255 of A-Z a-z 0-9 _ . -")


def key_text(value: Any) -> str:
    """A key value as the text it is indexed by: ``7`` and ``"7"`` find the same item."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _doc_key(hash_value: str, range_value: str) -> str:
    return orjson.dumps([hash_value, range_value]).decode()


class Tables:
    """The interface of both backends. Keys are ``(hash_key_text, range_key_text)``."""

    kind = "embedded"

    async def register(self, table: str, hash_key: str, range_key: str | None) -> None: ...

    async def schema(self, table: str) -> dict[str, Any] | None: ...

    async def put(self, table: str, key: tuple[str, str], item: dict[str, Any]) -> None: ...

    async def update(self, table: str, key: tuple[str, str], attrs: dict[str, Any]) -> None: ...

    async def delete(self, table: str, key: tuple[str, str]) -> None: ...

    async def get(self, table: str, key: tuple[str, str]) -> dict[str, Any] | None: ...

    async def scan(self, table: str, start_after: str | None, limit: int) -> tuple[list[dict], str | None]: ...

    async def list_tables(self) -> list[dict[str, Any]]: ...

    async def close(self) -> None: ...


class EmbeddedTables(Tables):
    """Items as storage documents: group-committed writes, ordered scans by key."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self._schemas: dict[str, dict[str, Any]] = {}
        self._update_lock = asyncio.Lock()  # UPDATE reads then writes: one at a time

    async def register(self, table: str, hash_key: str, range_key: str | None) -> None:
        known = self._schemas.get(table) or await self.schema(table)
        if known is not None:
            return
        meta = {"name": table, "hashKey": hash_key, "rangeKey": range_key}
        self._schemas[table] = meta
        await self.storage.put_document(_META_NS, table, orjson.dumps(meta))

    async def schema(self, table: str) -> dict[str, Any] | None:
        meta = self._schemas.get(table)
        if meta is None:
            raw = await self.storage.get_document(_META_NS, table)
            if raw is not None:
                meta = self._schemas[table] = orjson.loads(raw)
        return meta

    async def put(self, table: str, key: tuple[str, str], item: dict[str, Any]) -> None:
        await self.storage.put_document("table:" + table, _doc_key(*key), orjson.dumps(item))

    async def update(self, table: str, key: tuple[str, str], attrs: dict[str, Any]) -> None:
        async with self._update_lock:
            item = await self.get(table, key) or {}
            item.update(attrs)
            fut = self.storage.put_document("table:" + table, _doc_key(*key), orjson.dumps(item))
        await fut

    async def delete(self, table: str, key: tuple[str, str]) -> None:
        await self.storage.delete_document("table:" + table, _doc_key(*key))

    async def get(self, table: str, key: tuple[str, str]) -> dict[str, Any] | None:
        raw = await self.storage.get_document("table:" + table, _doc_key(*key))
        return orjson.loads(raw) if raw is not None else None

    async def scan(self, table: str, start_after: str | None, limit: int) -> tuple[list[dict], str | None]:
        rows = await self.storage.list_documents("table:" + table, start_after=start_after, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return [orjson.loads(v) for _, v in rows], (rows[-1][0] if more and rows else None)

    async def list_tables(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for _, v in await self.storage.list_documents(_META_NS)]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresTables(Tables):
    """One PostgreSQL table per AWS table; a pool of connections, tables created on first use."""

    kind = "postgresql"

    def __init__(self, dsn: str, pool_size: int = 8) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()
        self._created: set[str] = set()
        self._batchers: dict[str, Batcher] = {}
        self._create_lock = asyncio.Lock()

    async def _get_pool(self) -> Any:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    import asyncpg

                    try:
                        pool = await asyncpg.create_pool(self.dsn, min_size=0, max_size=self.pool_size, timeout=5)
                        async with pool.acquire() as conn:
                            await conn.execute(f"CREATE TABLE IF NOT EXISTS {_PG_META} (name text PRIMARY KEY, "
                                               "hash_key text NOT NULL, range_key text)")
                    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                        raise TableError(f"PostgreSQL unreachable: {exc}", retryable=True) from None
                    self._pool = pool
        return self._pool

    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        import asyncpg

        pool = await self._get_pool()
        try:
            async with pool.acquire(timeout=5) as conn:
                return await getattr(conn, method)(sql, *args)
        except (TimeoutError, OSError, asyncpg.exceptions.ConnectionDoesNotExistError,
                asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.InterfaceError) as exc:
            raise TableError(f"PostgreSQL unreachable: {exc}", retryable=True) from None
        except asyncpg.PostgresError as exc:
            raise TableError(f"PostgreSQL: {exc}") from None

    async def _ensure(self, table: str) -> None:
        if table in self._created:
            return
        if len(table.encode()) > 63:  # PostgreSQL would truncate it, and two long names could meet
            raise TableError(f"table name {table!r} is longer than PostgreSQL's 63 bytes")
        async with self._create_lock:  # concurrent CREATE TABLE IF NOT EXISTS can still collide in pg_type
            if table in self._created:
                return
            try:
                await self._run("execute", f"CREATE TABLE IF NOT EXISTS {_ident(table)} (hash_key text NOT NULL, "
                                "range_key text NOT NULL DEFAULT '', item jsonb NOT NULL, "
                                "PRIMARY KEY (hash_key, range_key))")
            except TableError as exc:
                if "already exists" not in str(exc) and "duplicate key" not in str(exc):
                    raise  # another server created it at the same moment: that is fine
            self._created.add(table)

    async def register(self, table: str, hash_key: str, range_key: str | None) -> None:
        await self._ensure(table)
        await self._run("execute", f"INSERT INTO {_PG_META} VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                        table, hash_key, range_key)

    async def schema(self, table: str) -> dict[str, Any] | None:
        row = await self._run("fetchrow", f"SELECT hash_key, range_key FROM {_PG_META} WHERE name = $1", table)
        return {"name": table, "hashKey": row[0], "rangeKey": row[1]} if row else None

    async def put(self, table: str, key: tuple[str, str], item: dict[str, Any]) -> None:
        await self._ensure(table)
        batcher = self._batchers.get(table)
        if batcher is None:
            batcher = self._batchers[table] = Batcher(lambda rows: self._put_many(table, rows))
        await batcher.submit((key[0], key[1], orjson.dumps(item).decode()))

    async def _put_many(self, table: str, rows: list[tuple[str, str, str]]) -> list[None]:
        """One statement per batch (executemany: one transaction); the last write of a key wins, as in order."""
        latest = {(h, r): (h, r, item) for h, r, item in rows}
        await self._run("executemany", f"INSERT INTO {_ident(table)} VALUES ($1, $2, $3::jsonb) ON CONFLICT "
                        "(hash_key, range_key) DO UPDATE SET item = EXCLUDED.item", list(latest.values()))
        return [None] * len(rows)

    async def update(self, table: str, key: tuple[str, str], attrs: dict[str, Any]) -> None:
        await self._ensure(table)
        t = _ident(table)
        await self._run("execute", f"INSERT INTO {t} VALUES ($1, $2, $3::jsonb) ON CONFLICT (hash_key, range_key) "
                        f"DO UPDATE SET item = {t}.item || EXCLUDED.item", *key, orjson.dumps(attrs).decode())

    async def delete(self, table: str, key: tuple[str, str]) -> None:
        await self._ensure(table)
        await self._run("execute", f"DELETE FROM {_ident(table)} WHERE hash_key = $1 AND range_key = $2", *key)

    async def get(self, table: str, key: tuple[str, str]) -> dict[str, Any] | None:
        await self._ensure(table)
        row = await self._run("fetchrow", f"SELECT item::text FROM {_ident(table)} WHERE hash_key = $1 AND "
                              "range_key = $2", *key)
        return orjson.loads(row[0]) if row else None

    async def scan(self, table: str, start_after: str | None, limit: int) -> tuple[list[dict], str | None]:
        await self._ensure(table)
        after = orjson.loads(start_after) if start_after else None
        where, args = ("WHERE (hash_key, range_key) > ($2, $3) ", [after[0], after[1]]) if after else ("", [])
        rows = await self._run("fetch", f"SELECT hash_key, range_key, item::text FROM {_ident(table)} {where}"
                               "ORDER BY hash_key, range_key LIMIT $1", limit + 1, *args)
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = _doc_key(rows[-1][0], rows[-1][1]) if more and rows else None
        return [orjson.loads(r[2]) for r in rows], nxt

    async def list_tables(self) -> list[dict[str, Any]]:
        rows = await self._run("fetch", f"SELECT name, hash_key, range_key FROM {_PG_META} ORDER BY name")
        return [{"name": r[0], "hashKey": r[1], "rangeKey": r[2]} for r in rows]

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 5)
            except Exception:
                pool.terminate()
