"""``thingcore shadow``: read and change device shadows of a running server over its HTTP API.

Uses the AWS ``iot-data`` paths boto3 uses, prints JSON, and turns an unreachable server or an API
error into one line on stderr with a non-zero exit (1: the server said no or is unreachable, 2: bad
arguments).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any
from urllib.parse import quote

import typer

from thingcore.apiclient import DEFAULT_ENDPOINT, Endpoint, call, fail, print_json

shadow_app = typer.Typer(
    name="shadow",
    help="Get, update, delete and list device shadows (classic and named) of a running server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

Thing = Annotated[str, typer.Argument(help="Thing name: 1-128 of a-z A-Z 0-9 : _ -")]
Name = Annotated[str | None, typer.Option("--name", "-n", help="Named shadow (default: the classic shadow).")]


def _call(endpoint: str, method: str, path: str, *, params: dict[str, Any] | None = None,
          content: bytes | None = None) -> Any:
    return call(endpoint, method, path, params=params, content=content)


_print = print_json
_fail = fail


def _shadow_path(thing: str) -> str:
    return f"/things/{quote(thing, safe='')}/shadow"


def _json_option(flag: str, text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _fail(f"{flag} is not valid JSON: {exc}", 2) from None
    if value is not None and not isinstance(value, dict):
        raise _fail(f"{flag} must be a JSON object (or null to remove the section)", 2)
    return value


@shadow_app.command("get")
def get(thing: Thing, name: Name = None, endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """Print the shadow document: desired, reported, delta, metadata, version."""
    _print(_call(endpoint, "GET", _shadow_path(thing), params={"name": name}))


@shadow_app.command("update")
def update(
    thing: Thing,
    document: Annotated[str | None, typer.Argument(
        help='Request state document, e.g. \'{"state":{"desired":{"on":true}}}\'; "-" reads it from stdin.')] = None,
    name: Name = None,
    desired: Annotated[str | None, typer.Option("--desired", "-d", help="JSON object merged into desired.")] = None,
    reported: Annotated[str | None, typer.Option("--reported", "-r", help="JSON object merged into reported.")] = None,
    version: Annotated[int | None, typer.Option(
        "--version", help="Refuse (ConflictException) unless the shadow is at this version.")] = None,
    client_token: Annotated[str | None, typer.Option("--client-token", help="Echoed in the answer.")] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """Merge an update into a shadow (creating it) and print the accepted document.

    Give either a whole request document, or --desired / --reported (null values delete keys).
    """
    if document is not None:
        if desired is not None or reported is not None or version is not None or client_token is not None:
            raise _fail("give either DOCUMENT or --desired/--reported/--version/--client-token, not both", 2)
        body = sys.stdin.buffer.read() if document == "-" else document.encode()
    else:
        if desired is None and reported is None:
            raise _fail("nothing to update: give DOCUMENT, --desired or --reported", 2)
        state: dict[str, Any] = {}
        if desired is not None:
            state["desired"] = _json_option("--desired", desired)
        if reported is not None:
            state["reported"] = _json_option("--reported", reported)
        request: dict[str, Any] = {"state": state}
        if version is not None:
            request["version"] = version
        if client_token is not None:
            request["clientToken"] = client_token
        body = json.dumps(request).encode()
    _print(_call(endpoint, "POST", _shadow_path(thing), params={"name": name}, content=body))


@shadow_app.command("delete")
def delete(thing: Thing, name: Name = None, endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """Delete a shadow (its version numbering continues if it is re-created within 48 hours)."""
    _print(_call(endpoint, "DELETE", _shadow_path(thing), params={"name": name}))


@shadow_app.command("list")
def list_named(
    thing: Thing,
    page_size: Annotated[int | None, typer.Option("--page-size", help="Names per page (1-100).")] = None,
    next_token: Annotated[str | None, typer.Option("--next-token", help="Continue after a previous page.")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow nextToken and print every name.")] = False,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """List the thing's named shadows (the classic shadow is not listed, as on AWS)."""
    path = f"/api/things/shadow/ListNamedShadowsForThing/{quote(thing, safe='')}"
    page = _call(endpoint, "GET", path, params={"pageSize": page_size, "nextToken": next_token})
    if all_pages:
        results = list(page.get("results", []))
        while page.get("nextToken"):
            page = _call(endpoint, "GET", path, params={"pageSize": page_size, "nextToken": page["nextToken"]})
            results += page.get("results", [])
        page = {"results": results, "timestamp": page.get("timestamp")}
    _print(page)
