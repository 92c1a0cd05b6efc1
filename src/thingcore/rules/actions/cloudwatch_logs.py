"""``cloudwatchLogs``: the SELECT result as a log event of a log group (AWS CloudwatchLogsAction).

``logGroupName`` takes templates. Locally a log group is the file ``<data dir>/logs/<group>.jsonl``
(see :mod:`thingcore.destinations.logs`), also printed on standard output with ``[cloudwatch] logs_stdout``.
One message is one event whose ``message`` is the SELECT result as text. With ``batchMode`` the SELECT result
must be a JSON array of ``{"timestamp": <ms>, "message": <string>}`` objects, each one event, as on AWS.
"""

from __future__ import annotations

from typing import Any

from thingcore.destinations.local import destinations
from thingcore.destinations.logs import LogGroups
from thingcore.rules.actions.base import (
    Action,
    ActionConfigError,
    ActionEnv,
    ActionError,
    Firing,
    TemplateField,
    params_check,
)

MAX_GROUP = 512


class CloudwatchLogsAction(Action):
    kind = "cloudwatchLogs"
    failed_action = "CloudwatchLogsAction"
    concurrency = 64  # deliveries in flight together are appended in one write

    def __init__(self, params: dict[str, Any], env: ActionEnv) -> None:
        super().__init__(params, env)
        params_check(params, "cloudwatchLogs", {"logGroupName", "batchMode", "roleArn"}, {"logGroupName"})
        self.group = TemplateField(params["logGroupName"], env, "cloudwatchLogs.logGroupName")
        if self.group.const is not None and not 1 <= len(self.group.const) <= MAX_GROUP:
            raise ActionConfigError(f"cloudwatchLogs.logGroupName must be 1-{MAX_GROUP} characters")
        batch = params.get("batchMode", False)
        if not isinstance(batch, bool):
            raise ActionConfigError("cloudwatchLogs.batchMode must be true or false")
        self.batch = batch
        self.hub = destinations(env)
        self.groups = self.hub.once("logs", lambda: LogGroups(self.hub, self.hub.path("logs"),
                                                               env.settings.cloudwatch.logs_stdout))

    def resource(self, firing: Firing) -> str:
        return self.group.render(firing)

    def _events(self, firing: Firing) -> list[tuple[int, str]]:
        if not self.batch:
            return [(int(firing.received_at * 1000), firing.payload.decode("utf-8", "replace"))]
        records = firing.output
        if not isinstance(records, list) or not records:
            raise ActionError("batchMode needs the SELECT result to be a non-empty JSON array of log events")
        events = []
        for i, rec in enumerate(records):
            if not isinstance(rec, dict) or not isinstance(rec.get("message"), str):
                raise ActionError(f"batchMode: event {i} is not an object with a string \"message\"")
            ts = rec.get("timestamp", firing.received_at * 1000)
            if not isinstance(ts, int | float) or isinstance(ts, bool):
                raise ActionError(f"batchMode: event {i} has a timestamp that is not a number of milliseconds")
            events.append((int(ts), rec["message"]))
        return events

    async def execute(self, firing: Firing) -> None:  # type: ignore[override]
        try:
            group = self.group.render(firing)
        except Exception as exc:
            raise ActionError(f"cannot render the log group name: {exc}") from None
        if not 1 <= len(group) <= MAX_GROUP:
            raise ActionError(f"log group name {group!r} must be 1-{MAX_GROUP} characters")
        events = self._events(firing)
        try:
            await self.groups.append(group, events)
        except OSError as exc:
            raise ActionError(f"log group {group}: {exc.strerror or exc}", retryable=True) from None

    def describe(self, firing: Firing) -> dict[str, Any]:
        return {"logGroupName": self.group.render(firing),
                "events": [{"timestamp": ts, "message": m} for ts, m in self._events(firing)]}


