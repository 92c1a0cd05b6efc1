"""``lambda``: call a local function with the SELECT result as its event (AWS LambdaAction).

``functionArn`` (templates allowed) names a handler configured in ``[functions]`` by its function
name. AWS invokes Lambda asynchronously and Lambda retries a failing function twice; here the
handler's run is the delivery: an exception or a timeout is tried again with the action's retry
policy and then reaches the rule's error action. A binary (non-JSON) SELECT result is refused, as
AWS does: select ``encode(*, 'base64')`` instead.
"""

from __future__ import annotations

from typing import Any

from thingcore.rules.actions.base import (
    Action,
    ActionConfigError,
    ActionEnv,
    ActionError,
    Firing,
    TemplateField,
    params_check,
)
from thingcore.rules.functions import FunctionError, function_name


class LambdaAction(Action):
    kind = "lambda"
    failed_action = "LambdaAction"

    def __init__(self, params: dict[str, Any], env: ActionEnv) -> None:
        super().__init__(params, env)
        params_check(params, "lambda", {"functionArn"}, {"functionArn"})
        self.function = TemplateField(params["functionArn"], env, "lambda.functionArn")
        runner = env.functions
        if self.function.const is not None and (runner is None or not runner.exists(self.function.const)):
            known = ", ".join(sorted(runner.handlers)) if runner is not None and runner.handlers else "none"
            raise ActionConfigError(f"lambda: function {function_name(self.function.const)!r} is not configured "
                                    f"in [functions] (configured: {known})")
        self.concurrency = env.settings.rules.function_workers

    def resource(self, firing: Firing) -> str:
        return self.function.render(firing)

    def _event(self, firing: Firing) -> Any:
        if isinstance(firing.output, bytes | bytearray | memoryview):
            raise ActionError("the SELECT result is binary, a function needs JSON: select encode(*, 'base64')")
        return firing.output

    async def execute(self, firing: Firing) -> None:  # type: ignore[override]
        event = self._event(firing)
        try:
            await self.env.functions.invoke(self.function.render(firing), event)
        except FunctionError as exc:
            raise ActionError(exc.message, retryable=exc.retryable) from None

    def describe(self, firing: Firing) -> dict[str, Any]:
        arn = self.function.render(firing)
        return {"functionArn": arn, "functionName": function_name(arn), "event": firing.output
                if not isinstance(firing.output, bytes | bytearray | memoryview) else None}
