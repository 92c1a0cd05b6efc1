"""``thingcore tables|streams|queues``: read what dynamoDB, kinesis/firehose and sqs actions wrote, over HTTP.

Talks to the running server's ``/api/v1`` (see :mod:`thingcore.http.data_api`); an unreachable server or an
API error is one line on stderr and exit 1. ``streams read`` prints one JSON record per line (``data`` base64
as Kinesis shows it, ``text`` when it is UTF-8), so ``--follow`` output can be piped.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Annotated, Any
from urllib.parse import quote

import typer

from thingcore.apiclient import DEFAULT_ENDPOINT, Endpoint, call, print_json

Token = Annotated[str | None, typer.Option("--token", envvar="THINGCORE_ADMIN_TOKEN",
                                           help="The [admin] token, when the server has one.")]


def _app(name: str, help_text: str) -> typer.Typer:
    return typer.Typer(name=name, help=help_text, no_args_is_help=True, pretty_exceptions_enable=False,
                       rich_markup_mode=None)


tables_app = _app("tables", "List and scan the tables dynamoDB/dynamoDBv2 rule actions write.")
streams_app = _app("streams", "List and read the embedded streams kinesis/firehose rule actions write.")
queues_app = _app("queues", "List and receive from the embedded queues sqs rule actions write.")


@tables_app.command("list")
def tables_list(endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None) -> None:
    """Tables with their key attributes."""
    print_json(call(endpoint, "GET", "/api/v1/tables", token=token))


@tables_app.command("scan")
def tables_scan(name: Annotated[str, typer.Argument(help="Table name.")],
                limit: Annotated[int, typer.Option(help="Items per request.", min=1, max=1000)] = 100,
                max_items: Annotated[int | None, typer.Option("--max-items", help="Stop after this many.")] = None,
                endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None) -> None:
    """Every item of a table in key order, as a JSON array (pages are followed)."""
    items: list[Any] = []
    next_token = None
    while True:
        page = call(endpoint, "GET", f"/api/v1/tables/{quote(name, safe='')}/items",
                    params={"limit": limit, "nextToken": next_token}, token=token)
        items.extend(page["items"])
        next_token = page.get("nextToken")
        if not next_token or (max_items is not None and len(items) >= max_items):
            break
    print_json(items[:max_items] if max_items is not None else items)


@tables_app.command("get")
def tables_get(name: Annotated[str, typer.Argument(help="Table name.")],
               hash_key: Annotated[str, typer.Argument(help="Hash key value.")],
               range_key: Annotated[str, typer.Option("--range", help="Range key value.")] = "",
               endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None) -> None:
    """One item."""
    print_json(call(endpoint, "GET", f"/api/v1/tables/{quote(name, safe='')}/items/{quote(hash_key, safe='')}",
                    params={"rangeKey": range_key or None}, token=token)["item"])


@streams_app.command("list")
def streams_list(endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None) -> None:
    """Embedded streams, and the streams configured to Redis or NATS."""
    print_json(call(endpoint, "GET", "/api/v1/streams", token=token))


@streams_app.command("read")
def streams_read(name: Annotated[str, typer.Argument(help="Stream name.")],
                 from_seq: Annotated[int, typer.Option("--from", min=1, help="First sequence number.")] = 1,
                 follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new records.")] = False,
                 endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None) -> None:
    """Records as JSON lines: seq, partitionKey, time (ms), data (base64) and text (when UTF-8)."""
    path = f"/api/v1/streams/{quote(name, safe='')}/records"
    try:
        while True:
            page = call(endpoint, "GET", path, params={"from": from_seq, "limit": 1000}, token=token)
            for rec in page["records"]:
                try:
                    rec["text"] = base64.b64decode(rec["data"]).decode("utf-8")
                except UnicodeDecodeError:
                    pass
                typer.echo(json.dumps(rec))
            from_seq = page["next"]
            if not page["records"]:
                if not follow:
                    return
                time.sleep(0.5)
    except KeyboardInterrupt:
        return


@queues_app.command("list")
def queues_list(endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None) -> None:
    """Embedded queues, and the queues configured to Redis."""
    print_json(call(endpoint, "GET", "/api/v1/queues", token=token))


@queues_app.command("receive")
def queues_receive(name: Annotated[str, typer.Argument(help="Queue name (the last segment of its queueUrl).")],
                   max_messages: Annotated[int, typer.Option("--max", min=1, max=1000)] = 10,
                   peek: Annotated[bool, typer.Option("--peek", help="Leave the messages in the queue.")] = False,
                   endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None) -> None:
    """The oldest messages (messageId, body, sentAt), removed from the queue unless --peek."""
    print_json(call(endpoint, "POST", f"/api/v1/queues/{quote(name, safe='')}/receive",
                    params={"max": max_messages, "delete": str(not peek).lower()}, token=token)["messages"])
