"""``sns``: a notification to every Apprise URL configured for the topic ARN (AWS SnsAction).

``targetArn`` takes templates and names a key of ``[notifications] topics``; each of its URLs receives the
SELECT result. ``messageFormat`` as on AWS: ``RAW`` (default) sends the result as text; ``JSON`` is SNS's
message structure: the result must be an object of strings with a ``default`` member, and each URL gets the
member of its protocol (``email`` for ``mailto://``, ``http``/``https`` for ``json://``/``jsons://``...)
or ``default``. A URL that fails makes the delivery fail and be tried again (to every URL: at-least-once).
"""

from __future__ import annotations

from typing import Any

import orjson

from thingcore.destinations.local import destinations
from thingcore.destinations.notify import Notifier, NotifyError
from thingcore.rules.actions.base import (
    Action,
    ActionConfigError,
    ActionEnv,
    ActionError,
    Firing,
    TemplateField,
    params_check,
)


class SnsAction(Action):
    kind = "sns"
    failed_action = "SnsAction"
    concurrency = 4

    def __init__(self, params: dict[str, Any], env: ActionEnv) -> None:
        super().__init__(params, env)
        params_check(params, "sns", {"targetArn", "messageFormat", "roleArn"}, {"targetArn"})
        fmt = params.get("messageFormat", "RAW")
        if fmt not in ("RAW", "JSON"):
            raise ActionConfigError("sns.messageFormat must be RAW or JSON")
        self.json = fmt == "JSON"
        self.target = TemplateField(params["targetArn"], env, "sns.targetArn")
        self.hub = destinations(env)
        topics = env.settings.notifications.topics
        self.notifier: Notifier = self.hub.once("notify", lambda: Notifier(topics))
        if self.target.const is not None and self.target.const not in topics:
            known = ", ".join(sorted(topics)) or "none"
            raise ActionConfigError(f"sns: topic {self.target.const!r} has no Apprise URLs in [notifications] "
                                    f"topics (configured: {known})")

    def resource(self, firing: Firing) -> str:
        return self.target.render(firing)

    def _message(self, firing: Firing) -> dict[str, str] | str:
        text = firing.payload.decode("utf-8", "replace")
        if not self.json:
            return text
        try:
            doc = orjson.loads(firing.payload)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("default"), str) \
                or not all(isinstance(v, str) for v in doc.values()):
            raise ActionError("messageFormat JSON needs an object of strings with a \"default\" member")
        return doc

    async def execute(self, firing: Firing) -> None:  # type: ignore[override]
        try:
            arn = self.target.render(firing)
        except Exception as exc:
            raise ActionError(f"cannot render the target ARN: {exc}") from None
        message = self._message(firing)
        try:
            await self.hub.run(self.notifier.send, arn, message)
        except NotifyError as exc:
            raise ActionError(str(exc), retryable=exc.retryable) from None

    def describe(self, firing: Firing) -> dict[str, Any]:
        arn = self.target.render(firing)
        return {"targetArn": arn, "messageFormat": "JSON" if self.json else "RAW",
                "urls": len(self.notifier.urls(arn) or ()), "message": self._message(firing)}
