"""The CLI's client for a running server's HTTP API, shared by `thingcore shadow|things|rules|...`.

One place decides how the commands reach the server (``--endpoint`` / ``THINGCORE_ENDPOINT``, the
admin token from ``THINGCORE_ADMIN_TOKEN``) and how failures read: an unreachable server or an
AWS-style API error becomes one line on stderr and a non-zero exit (1: the server said no or is
unreachable, 2: bad arguments) — never a traceback.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import httpx
import typer

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"

Endpoint = Annotated[str, typer.Option("--endpoint", "-e", envvar="THINGCORE_ENDPOINT",
                                       help=f"The server's HTTP address [default: {DEFAULT_ENDPOINT}].")]


class APIError(Exception):
    """The server answered with an error: its AWS error type and message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.status = status
        self.kind = kind
        self.message = message


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` to stderr; raise the returned Exit."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def request(endpoint: str, method: str, path: str, *, params: dict[str, Any] | None = None, json_body: Any = None,
            content: bytes | None = None, token: str | None = None) -> Any:
    """Call the API and return the decoded body; raises :class:`APIError` for an error answer and a
    ready-made ``typer.Exit`` when the server cannot be reached."""
    url = endpoint.rstrip("/") + path
    token = token or os.environ.get("THINGCORE_ADMIN_TOKEN") or None  # managing needs it when the server has one
    query = {k: v for k, v in (params or {}).items() if v is not None}
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        resp = httpx.request(method, url, params=query, json=json_body, content=content, headers=headers,
                             timeout=30)
    except httpx.InvalidURL as exc:
        raise fail(f"invalid endpoint {endpoint!r}: {exc}", 2) from None
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach thingcore at {endpoint}: {exc}") from None
    try:
        data = resp.json() if resp.content else {}
    except ValueError:
        data = {"message": resp.text.strip()[:200]}
    if resp.status_code >= 400:
        kind = resp.headers.get("x-amzn-ErrorType", f"HTTP {resp.status_code}").split(":")[0]
        message = data.get("message", "") if isinstance(data, dict) else str(data)
        raise APIError(resp.status_code, kind, message)
    return data


def call(endpoint: str, method: str, path: str, **kwargs: Any) -> Any:
    """:func:`request`, with an API error turned into the one-line exit."""
    try:
        return request(endpoint, method, path, **kwargs)
    except APIError as exc:
        raise fail(str(exc)) from None


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))
