"""Opaque ``nextToken`` values for the registry's list calls: the last key of the previous page.

The token names a position, not a snapshot, so paging stays correct while things are added or
deleted between pages (an item is never returned twice; items created behind the cursor are not
shown). A token that does not decode is the caller's mistake: InvalidRequestException.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from thingcore.registry.errors import InvalidRequest

if TYPE_CHECKING:
    from thingcore.storage import Storage

DEFAULT_MAX_RESULTS = 50
MAX_RESULTS = 250  # RegistryMaxResults in the AWS model


def encode_token(last_key: str) -> str:
    return base64.urlsafe_b64encode(b"k1:" + last_key.encode()).decode().rstrip("=")


def decode_token(token: str | None) -> str | None:
    if token is None or token == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        text = raw.decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidRequest("nextToken is not a token returned by this API") from None
    if not text.startswith("k1:"):
        raise InvalidRequest("nextToken is not a token returned by this API")
    return text[3:]


def check_max_results(value: int | None) -> int:
    if value is None:
        return DEFAULT_MAX_RESULTS
    if not 1 <= value <= MAX_RESULTS:
        raise InvalidRequest(f"maxResults must be between 1 and {MAX_RESULTS} (got {value})")
    return value


async def scan_page(
    storage: Storage,
    namespace: str,
    *,
    start_after: str | None,
    limit: int,
    keep: Callable[[dict[str, Any]], bool] | None = None,
    batch: int = 500,
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``limit`` decoded documents after ``start_after`` that ``keep`` accepts, and the next token.

    Reads in batches so a filter that matches few documents does not load a whole namespace at once.
    """
    out: list[dict[str, Any]] = []
    last_key = ""
    cursor = start_after
    while True:
        rows = await storage.list_documents(namespace, start_after=cursor, limit=batch)
        for key, raw in rows:
            record = orjson.loads(raw)
            if keep is None or keep(record):
                if len(out) == limit:  # one more exists: the page is full and has a successor
                    return out, encode_token(last_key)
                out.append(record)
                last_key = key
        if len(rows) < batch:
            return out, None
        cursor = rows[-1][0]
