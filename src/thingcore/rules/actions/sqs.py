"""``sqs``: send the SELECT result as a queue message (AWS SqsAction).

The queue is the last segment of ``queueUrl`` (a template): ``https://sqs.us-east-1.amazonaws.com/123456789012/
orders`` writes to queue ``orders``, the embedded queue by default or a Redis list (see
:mod:`thingcore.destinations.queues`). ``useBase64`` sends the body base64-encoded, as AWS does; a binary
SELECT result needs it (an SQS body is text).
"""

from __future__ import annotations

import base64
from typing import Any

from thingcore.destinations.data import data_destinations
from thingcore.destinations.queues import QueueError, queue_name
from thingcore.rules.actions.base import (
    Action,
    ActionConfigError,
    ActionEnv,
    ActionError,
    Firing,
    TemplateField,
    params_check,
)


class SqsAction(Action):
    kind = "sqs"
    failed_action = "SqsAction"
    concurrency = 64  # sends arriving while one batch is written go out in the next one

    def __init__(self, params: dict[str, Any], env: ActionEnv) -> None:
        super().__init__(params, env)
        params_check(params, "sqs", {"queueUrl", "useBase64", "roleArn"}, {"queueUrl"})
        self.url = TemplateField(params["queueUrl"], env, "sqs.queueUrl")
        if self.url.const is not None:
            try:
                queue_name(self.url.const)
            except QueueError as exc:
                raise ActionConfigError(f"sqs.queueUrl: {exc}") from None
        b64 = params.get("useBase64", False)
        if not isinstance(b64, bool):
            raise ActionConfigError("sqs.useBase64 must be true or false")
        self.base64 = b64

    def resource(self, firing: Firing) -> str:
        return self.url.render(firing)

    def _message(self, firing: Firing) -> tuple[str, str]:
        try:
            name = queue_name(self.url.render(firing))
        except QueueError as exc:
            raise ActionError(str(exc)) from None
        raw = firing.payload
        if self.base64:
            return name, base64.b64encode(raw).decode()
        try:
            return name, raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ActionError("the SELECT result is binary and an SQS body is text: set useBase64") from None

    async def execute(self, firing: Firing) -> None:  # type: ignore[override]
        name, body = self._message(firing)
        try:
            await data_destinations(self.env).queues.send(name, body)
        except QueueError as exc:
            raise ActionError(f"{name}: {exc}", retryable=exc.retryable) from None

    def describe(self, firing: Firing) -> dict[str, Any]:
        name, body = self._message(firing)
        return {"queue": name, "body": body}
