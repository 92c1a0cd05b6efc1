"""Read back what dynamoDB, kinesis/firehose and sqs actions wrote: ``/api/v1/tables``, ``/streams``, ``/queues``.

Admin-checked like the rest of ``/api/v1``: ``manage`` on ``tables[/<name>]``, ``streams[/<name>]`` or
``queues[/<name>]`` (what actions wrote may hold any device's data). Tables are read from whichever backend
is configured (embedded or PostgreSQL); streams and queues only when they are embedded (a Redis or NATS
destination is read with its own tools). Receiving from a queue removes the messages unless ``delete=false``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from thingcore.destinations.queues import QueueError, queue_name
from thingcore.destinations.streams import StreamError, check_stream_name
from thingcore.destinations.tables import TableError, check_table_name, key_text
from thingcore.http.admin import ADMIN_RESPONSES, require_admin
from thingcore.http.errors import AWSError

TableName = Annotated[str, Path(max_length=255, description="3-255 of A-Z a-z 0-9 _ . -")]
StreamName = Annotated[str, Path(max_length=128, description="1-128 of A-Z a-z 0-9 _ . -")]
QueueName = Annotated[str, Path(max_length=80, description="1-80 of A-Z a-z 0-9 _ -")]


def _table_error(exc: TableError) -> AWSError:
    if exc.retryable:
        return AWSError(503, "ServiceUnavailableException", str(exc))
    return AWSError(400, "InvalidRequestException", str(exc))


def router(server: Any) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["destinations"], dependencies=[Depends(require_admin(server))],
                    responses=ADMIN_RESPONSES)
    data = server.data

    def table_name(name: str) -> str:
        try:
            check_table_name(name)
        except TableError as exc:
            raise _table_error(exc) from None
        return name

    @api.get("/tables", summary="Tables written by dynamoDB/dynamoDBv2 actions, with their key attributes")
    async def list_tables() -> dict[str, Any]:
        try:
            return {"backend": data.tables.kind, "tables": await data.tables.list_tables()}
        except TableError as exc:
            raise _table_error(exc) from None

    @api.get("/tables/{name}/items", summary="Scan a table in key order, a page at a time")
    async def scan(name: TableName, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   next_token: Annotated[str | None, Query(alias="nextToken", max_length=4096)] = None
                   ) -> dict[str, Any]:
        table = table_name(name)
        try:
            items, token = await data.tables.scan(table, next_token, limit)
        except (TableError, ValueError, IndexError, TypeError) as exc:
            raise (_table_error(exc) if isinstance(exc, TableError)
                   else AWSError(400, "InvalidRequestException", "nextToken is not one this API gave")) from None
        return {"items": items, "nextToken": token}

    @api.get("/tables/{name}/items/{hash_key}", summary="One item by its hash key (and range key)")
    async def get_item(name: TableName, hash_key: Annotated[str, Path(max_length=2048)],
                       range_key: Annotated[str, Query(alias="rangeKey", max_length=1024)] = "") -> dict[str, Any]:
        table = table_name(name)
        try:
            item = await data.tables.get(table, (key_text(hash_key), range_key))
        except TableError as exc:
            raise _table_error(exc) from None
        if item is None:
            raise AWSError(404, "ResourceNotFoundException", f"no item {hash_key!r} in table {table}")
        return {"item": item}

    @api.get("/streams", summary="Embedded streams (kinesis/firehose) and the configured external ones")
    async def list_streams() -> dict[str, Any]:
        configured = {name: ("redis" if c.redis else "nats") for name, c in data.streams.config.items()
                      if c.redis or c.nats}
        return {"streams": data.streams.embedded_names(), "external": configured}

    @api.get("/streams/{name}/records", summary="Records of an embedded stream from sequence number `from`")
    async def read_stream(name: StreamName, from_seq: Annotated[int, Query(alias="from", ge=1)] = 1,
                          limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> dict[str, Any]:
        try:
            check_stream_name(name)
            records = await data.streams.read(name, from_seq, limit)
        except StreamError as exc:
            raise AWSError(400, "InvalidRequestException", str(exc)) from None
        return {"records": records, "next": records[-1]["seq"] + 1 if records else from_seq}

    @api.get("/queues", summary="Embedded queues (sqs) that have received messages")
    async def list_queues() -> dict[str, Any]:
        return {"queues": await data.queues.embedded.names(),
                "external": sorted(n for n, c in data.queues.config.items() if c.redis)}

    @api.post("/queues/{name}/receive", summary="The oldest messages of an embedded queue, removed unless delete=false")
    async def receive(name: QueueName, max_messages: Annotated[int, Query(alias="max", ge=1, le=1000)] = 10,
                      delete: bool = True) -> dict[str, Any]:
        try:
            queue = queue_name(name)
        except QueueError as exc:
            raise AWSError(400, "InvalidRequestException", str(exc)) from None
        if data.queues.remote(queue) is not None:
            raise AWSError(400, "InvalidRequestException", f"queue {queue} is a Redis list: read it there")
        return {"messages": await data.queues.embedded.receive(queue, max_messages, delete)}

    return api
