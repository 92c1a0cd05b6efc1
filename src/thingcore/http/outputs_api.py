"""``/api/v1/alarms`` and ``/api/v1/search``: reading back what cloudwatchAlarm and the embedded search index hold.

Under the admin API's access check: ``manage`` on ``alarms[/<name>]`` or ``search`` (an administrator,
or an access key an access rule allows; see :mod:`thingcore.http.caller`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from thingcore.destinations.local import destinations_of
from thingcore.destinations.metrics import ALARM_TOPIC
from thingcore.destinations.search import embedded_index
from thingcore.http.admin import require_admin
from thingcore.http.errors import AWSError


def router(server: Any) -> APIRouter:
    hub = destinations_of(server.broker, server.settings)
    api = APIRouter(prefix="/api/v1", tags=["rule destinations"], dependencies=[Depends(require_admin(server))])

    @api.get("/alarms", summary="Alarms set by cloudwatchAlarm actions, with their current state")
    async def list_alarms() -> dict[str, Any]:
        return {"alarms": await hub.alarms.list(), "topic": ALARM_TOPIC.format("<alarmName>")}

    @api.get("/alarms/{name}", summary="One alarm")
    async def get_alarm(name: Annotated[str, Path()]) -> dict[str, Any]:
        alarm = await hub.alarms.get(name)
        if alarm is None:
            raise AWSError(404, "ResourceNotFoundException", f"no alarm named {name!r}")
        return alarm

    @api.get("/search", summary="Full-text query of an embedded index (elasticsearch/openSearch actions)")
    async def search(index: Annotated[str | None, Query(description="Index name; omit to list the indexes")] = None,
                     q: Annotated[str | None, Query(description="FTS5 query: words, \"phrases\", AND/OR/NOT, pre*")]
                     = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> dict[str, Any]:
        store = embedded_index(hub)
        if index is None:
            return {"indexes": await hub.run(store.indexes)}
        if not q:
            raise AWSError(400, "InvalidRequestException", "q (the query) is required with index")
        try:
            return await hub.run(store.search, index, q, limit)
        except ValueError as exc:
            raise AWSError(400, "InvalidRequestException", str(exc)) from None

    return api
