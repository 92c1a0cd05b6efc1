"""Elasticsearch/OpenSearch's counterparts: the index API over HTTP, or an embedded SQLite FTS5 index.

The embedded index is ``<data dir>/search.db``: a ``docs`` table (index, id, type, source JSON) whose text is
mirrored into an FTS5 table by triggers, so indexing a document again replaces it (as ``PUT _doc/<id>``
does). Queries use FTS5's syntax (words, ``"phrases"``, ``AND``/``OR``/``NOT``, ``prefix*``) and rank by BM25.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson

from thingcore.destinations.local import LoopBatcher

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    rowid INTEGER PRIMARY KEY, idx TEXT NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL, source BLOB NOT NULL,
    text TEXT NOT NULL, updated REAL NOT NULL, UNIQUE (idx, id));
CREATE VIRTUAL TABLE IF NOT EXISTS docs_fts USING fts5(text, content='docs', content_rowid='rowid');
CREATE TRIGGER IF NOT EXISTS docs_ai AFTER INSERT ON docs BEGIN
    INSERT INTO docs_fts(rowid, text) VALUES (new.rowid, new.text); END;
CREATE TRIGGER IF NOT EXISTS docs_ad AFTER DELETE ON docs BEGIN
    INSERT INTO docs_fts(docs_fts, rowid, text) VALUES ('delete', old.rowid, old.text); END;
CREATE TRIGGER IF NOT EXISTS docs_au AFTER UPDATE ON docs BEGIN
    INSERT INTO docs_fts(docs_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
    INSERT INTO docs_fts(rowid, text) VALUES (new.rowid, new.text); END;
"""


class SearchError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def document_text(value: Any) -> str:
    """Every string and number of a JSON document, space-separated: what full-text queries match."""
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for item in v.values():
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)
        elif isinstance(v, str):
            out.append(v)
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out.append(str(v))

    walk(value)
    return " ".join(out)


def is_aws_endpoint(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or endpoint
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")


class EmbeddedIndex:
    """The SQLite FTS5 index; one connection guarded by a lock (writes come from the destinations' threads)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._batcher: LoopBatcher[tuple] | None = None

    async def put(self, hub: Any, index: str, doc_id: str, doc_type: str, source: bytes, doc: Any) -> None:
        """Index (or replace) one document; documents arriving together share one transaction."""
        if self._batcher is None:
            self._batcher = LoopBatcher(hub, self.write)
        await self._batcher.write((index, doc_id, doc_type, source, document_text(doc), time.time()))

    def write(self, rows: list[tuple]) -> None:
        """Index (or replace) ``(index, id, type, source, text, time)`` rows in one transaction."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO docs (idx, id, type, source, text, updated) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (idx, id) DO UPDATE SET type=excluded.type, source=excluded.source, "
                    "text=excluded.text, updated=excluded.updated", rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def search(self, index: str, query: str, limit: int = 20) -> dict[str, Any]:
        with self._lock:
            try:
                total = self._db.execute(
                    "SELECT count(*) FROM docs_fts JOIN docs ON docs.rowid = docs_fts.rowid "
                    "WHERE docs_fts MATCH ? AND docs.idx = ?", (query, index)).fetchone()[0]
                rows = self._db.execute(
                    "SELECT docs.id, docs.type, docs.source, bm25(docs_fts) FROM docs_fts "
                    "JOIN docs ON docs.rowid = docs_fts.rowid WHERE docs_fts MATCH ? AND docs.idx = ? "
                    "ORDER BY bm25(docs_fts) LIMIT ?", (query, index, limit)).fetchall()
            except sqlite3.OperationalError as exc:
                raise ValueError(f"invalid query {query!r}: {exc}") from None
        return {"index": index, "query": query, "total": total,
                "hits": [{"id": i, "type": t, "score": -score, "source": orjson.loads(s)} for i, t, s, score in rows]}

    def indexes(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT idx, count(*) FROM docs GROUP BY idx ORDER BY idx").fetchall()
        return [{"index": i, "documents": n} for i, n in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


async def put_http(client: httpx.AsyncClient, endpoint: str, index: str, doc_id: str, body: bytes,
                   timeout: float) -> None:
    """``PUT <endpoint>/<index>/_doc/<id>``: the index API of Elasticsearch 7+ and OpenSearch."""
    url = f"{endpoint.rstrip('/')}/{quote(index, safe='')}/_doc/{quote(doc_id, safe='')}"
    try:
        resp = await client.put(url, content=body, headers={"content-type": "application/json"}, timeout=timeout)
    except httpx.TimeoutException:
        raise SearchError(f"PUT {url}: no answer within {timeout:g} s", retryable=True) from None
    except httpx.HTTPError as exc:
        raise SearchError(f"PUT {url}: {type(exc).__name__}: {exc}", retryable=True) from None
    if resp.status_code not in (200, 201):
        raise SearchError(f"PUT {url}: HTTP {resp.status_code} {resp.text[:200]}",
                          retryable=resp.status_code == 429 or resp.status_code >= 500)


def embedded_index(hub: Any) -> EmbeddedIndex:
    return hub.once("search", lambda: EmbeddedIndex(hub.path("search.db")))
