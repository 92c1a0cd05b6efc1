"""``thingcore things``: manage the thing registry of a running server over its HTTP API.

Uses the same AWS ``iot`` paths as boto3, prints JSON, and turns an unreachable server or an API
error into one line on stderr with a non-zero exit (1: the server said no or is unreachable, 2: bad
arguments).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from thingcore.apiclient import DEFAULT_ENDPOINT, Endpoint, call, fail, print_json

things_app = typer.Typer(
    name="things",
    help="Create, show, list, update and delete things in a running server's registry.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

Attr = Annotated[list[str] | None, typer.Option("--attr", "-a", help="Attribute as name=value (repeatable).")]
ExpectedVersion = Annotated[int | None, typer.Option(
    "--expected-version", help="Refuse (VersionConflictException) unless the thing is at this version.")]


def _attributes(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise _fail(f"--attr takes name=value, got {pair!r}", 2)
        out[name] = value
    return out


def _call(endpoint: str, method: str, path: str, *, params: dict[str, Any] | None = None,
          body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = call(endpoint, method, path, params=params, json_body=body)
    return data if isinstance(data, dict) else {"result": data}


_print = print_json
_fail = fail


def _thing(name: str) -> str:
    return "/things/" + quote(name, safe="")


@things_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Thing name: 1-128 of a-z A-Z 0-9 : _ -")],
    thing_type: Annotated[str | None, typer.Option("--type", "-t", help="Thing type name.")] = None,
    attr: Attr = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """Create a thing (repeating an identical create succeeds and prints the same ids)."""
    body: dict[str, Any] = {}
    if thing_type:
        body["thingTypeName"] = thing_type
    attributes = _attributes(attr)
    if attributes:
        body["attributePayload"] = {"attributes": attributes}
    _print(_call(endpoint, "POST", _thing(name), body=body))


@things_app.command("get")
def get(name: Annotated[str, typer.Argument(help="Thing name.")], endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """Show a thing: id, ARN, type, attributes, version."""
    _print(_call(endpoint, "GET", _thing(name)))


@things_app.command("list")
def list_things(
    thing_type: Annotated[str | None, typer.Option("--type", "-t", help="Only things of this type.")] = None,
    attr: Annotated[str | None, typer.Option(
        "--attr", "-a", help="Only things with this attribute: name=value, or just name.")] = None,
    prefix: Annotated[bool, typer.Option("--prefix", help="Match the attribute value as a prefix.")] = False,
    max_results: Annotated[int | None, typer.Option("--max-results", "-n", help="Page size (1-250).")] = None,
    next_token: Annotated[str | None, typer.Option("--next-token", help="Continue after a previous page.")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow nextToken and print every thing.")] = False,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """List things, one page at a time (or --all), with optional type and attribute filters."""
    params: dict[str, Any] = {"thingTypeName": thing_type, "maxResults": max_results, "nextToken": next_token}
    if attr is not None:
        name, sep, value = attr.partition("=")
        if not name:
            raise _fail("--attr takes name=value or name", 2)
        params["attributeName"] = name
        if sep:
            params["attributeValue"] = value
        if prefix:
            params["usePrefixAttributeValue"] = "true"
    things: list[dict[str, Any]] = []
    while True:
        page = _call(endpoint, "GET", "/things", params=params)
        things.extend(page.get("things", []))
        token = page.get("nextToken")
        if not all_pages or not token:
            break
        params["nextToken"] = token
    out: dict[str, Any] = {"things": things}
    if token and not all_pages:
        out["nextToken"] = token
    _print(out)


@things_app.command("update")
def update(
    name: Annotated[str, typer.Argument(help="Thing name.")],
    attr: Attr = None,
    remove_attr: Annotated[list[str] | None, typer.Option("--remove-attr", help="Remove an attribute (repeatable).")]
    = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Replace all attributes with the given ones instead of merging.")] = False,
    thing_type: Annotated[str | None, typer.Option("--type", "-t", help="Give the thing this type.")] = None,
    remove_type: Annotated[bool, typer.Option("--remove-type", help="Take the thing's type away.")] = False,
    expected_version: ExpectedVersion = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """Change attributes (merged by default) or the type of a thing; prints the thing afterwards."""
    body: dict[str, Any] = {}
    attributes = _attributes(attr)
    for key in remove_attr or []:
        attributes[key] = ""
    if attributes or replace:
        body["attributePayload"] = {"attributes": attributes, "merge": not replace}
    if thing_type:
        body["thingTypeName"] = thing_type
    if remove_type:
        body["removeThingType"] = True
    if expected_version is not None:
        body["expectedVersion"] = expected_version
    if not body:
        raise _fail("nothing to update: give --attr, --remove-attr, --replace, --type or --remove-type", 2)
    _call(endpoint, "PATCH", _thing(name), body=body)
    _print(_call(endpoint, "GET", _thing(name)))


@things_app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="Thing name.")],
    expected_version: ExpectedVersion = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """Delete a thing (deleting one that does not exist succeeds, as on AWS)."""
    _call(endpoint, "DELETE", _thing(name), params={"expectedVersion": expected_version})
    _print({"deleted": name})


__all__ = ["things_app"]
