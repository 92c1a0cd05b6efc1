"""``thingcore search INDEX QUERY`` and ``thingcore alarms``: read a running server's embedded search index
and alarm states over its HTTP API (JSON out, one error line and a non-zero exit on failure)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import typer

from thingcore.apiclient import DEFAULT_ENDPOINT, Endpoint, call, print_json

Token = Annotated[str | None, typer.Option("--token", envvar="THINGCORE_ADMIN_TOKEN",
                                           help="The [admin] token, when the server has one.")]

alarms_app = typer.Typer(name="alarms", help="Alarms set by cloudwatchAlarm rule actions.", no_args_is_help=True,
                         pretty_exceptions_enable=False, rich_markup_mode=None)


def search(index: Annotated[str | None, typer.Argument(help="Index name (omit both to list the indexes).")] = None,
           query: Annotated[str | None, typer.Argument(help="Words, \"phrases\", AND/OR/NOT, prefix*.")] = None,
           limit: Annotated[int, typer.Option(help="Most hits to show.")] = 20,
           endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None) -> None:
    """Query the embedded full-text index the elasticsearch/openSearch actions write to."""
    if index is not None and not query:
        typer.echo("error: a QUERY is needed after the INDEX", err=True)
        raise typer.Exit(2)
    params = {"index": index, "q": query, "limit": limit if index else None}
    print_json(call(endpoint, "GET", "/api/v1/search", params=params, token=token))


@alarms_app.command("list")
def list_alarms(endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None) -> None:
    """Every alarm with its state, reason and when it last changed."""
    print_json(call(endpoint, "GET", "/api/v1/alarms", token=token))


@alarms_app.command("show")
def show_alarm(name: str, endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None) -> None:
    """One alarm."""
    print_json(call(endpoint, "GET", "/api/v1/alarms/" + quote(name, safe=""), token=token))
