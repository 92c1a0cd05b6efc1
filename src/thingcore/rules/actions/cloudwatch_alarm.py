"""``cloudwatchAlarm``: set an alarm's state (AWS CloudwatchAlarmAction, i.e. CloudWatch SetAlarmState).

``alarmName``, ``stateReason`` and ``stateValue`` take templates; the state must render to ``OK``, ``ALARM``
or ``INSUFFICIENT_DATA``. Alarms are stored documents (they survive restarts), listed by
``GET /api/v1/alarms`` and ``thingcore alarms list``, and each change of state is published (QoS 1) on
``thingcore/alarms/<alarmName>`` with the alarm document as payload.
"""

from __future__ import annotations

from typing import Any

from thingcore.destinations.local import destinations
from thingcore.destinations.metrics import ALARM_STATES
from thingcore.rules.actions.base import (
    Action,
    ActionConfigError,
    ActionEnv,
    ActionError,
    Firing,
    TemplateField,
    params_check,
)

MAX_NAME = 255
MAX_REASON = 1023


class CloudwatchAlarmAction(Action):
    kind = "cloudwatchAlarm"
    failed_action = "CloudwatchAlarmAction"

    def __init__(self, params: dict[str, Any], env: ActionEnv) -> None:
        super().__init__(params, env)
        required = {"alarmName", "stateReason", "stateValue"}
        params_check(params, "cloudwatchAlarm", {*required, "roleArn"}, required)
        self.name = TemplateField(params["alarmName"], env, "cloudwatchAlarm.alarmName")
        self.reason = TemplateField(params["stateReason"], env, "cloudwatchAlarm.stateReason")
        self.state = TemplateField(params["stateValue"], env, "cloudwatchAlarm.stateValue")
        if self.state.const is not None and self.state.const not in ALARM_STATES:
            raise ActionConfigError(f"cloudwatchAlarm.stateValue must be one of {', '.join(ALARM_STATES)}")
        if self.name.const is not None and not 1 <= len(self.name.const) <= MAX_NAME:
            raise ActionConfigError(f"cloudwatchAlarm.alarmName must be 1-{MAX_NAME} characters")
        self.alarms = destinations(env).alarms

    def resource(self, firing: Firing) -> str:
        return self.name.render(firing)

    def _render(self, firing: Firing) -> tuple[str, str, str]:
        try:
            name, state, reason = self.name.render(firing), self.state.render(firing), self.reason.render(firing)
        except Exception as exc:
            raise ActionError(f"cannot render the alarm: {exc}") from None
        if not 1 <= len(name) <= MAX_NAME or "+" in name or "#" in name:
            raise ActionError(f"alarm name {name!r} must be 1-{MAX_NAME} characters without + or #")
        if state not in ALARM_STATES:
            raise ActionError(f"stateValue {state!r} is not one of {', '.join(ALARM_STATES)}")
        return name, state, reason[:MAX_REASON]

    async def execute(self, firing: Firing) -> None:  # type: ignore[override]
        name, state, reason = self._render(firing)
        try:
            await self.alarms.set_state(name, state, reason, firing.rule_name)
        except OSError as exc:
            raise ActionError(f"alarm {name}: cannot store it: {exc}", retryable=True) from None

    def describe(self, firing: Firing) -> dict[str, Any]:
        name, state, reason = self._render(firing)
        return {"alarmName": name, "stateValue": state, "stateReason": reason,
                "topic": f"thingcore/alarms/{name}"}
