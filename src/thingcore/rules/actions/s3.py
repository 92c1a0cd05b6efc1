"""``s3``: write the SELECT result as an object (AWS S3Action).

``bucketName`` and ``key`` take substitution templates. The object is the SELECT result as JSON, or the raw
payload for a binary result (as AWS writes it). ``cannedAcl`` is accepted and ignored (no ACLs locally),
``roleArn`` too. Without ``[object_storage] endpoint_url`` the object is the file
``<data dir>/objects/<bucket>/<key>``, written atomically; with it, a PutObject to that S3-compatible
endpoint. Unreachable endpoints and 5xx/throttling answers are tried again; bad keys are not.
"""

from __future__ import annotations

from typing import Any

from thingcore.destinations.local import destinations
from thingcore.destinations.objects import ObjectError, check_bucket, check_key, object_store
from thingcore.rules.actions.base import (
    Action,
    ActionConfigError,
    ActionEnv,
    ActionError,
    Firing,
    TemplateField,
    params_check,
)

CANNED_ACLS = frozenset({"private", "public-read", "public-read-write", "aws-exec-read", "authenticated-read",
                         "bucket-owner-read", "bucket-owner-full-control", "log-delivery-write"})


class S3Action(Action):
    kind = "s3"
    failed_action = "S3Action"
    concurrency = 4

    def __init__(self, params: dict[str, Any], env: ActionEnv) -> None:
        super().__init__(params, env)
        params_check(params, "s3", {"bucketName", "key", "cannedAcl", "roleArn"}, {"bucketName", "key"})
        acl = params.get("cannedAcl")
        if acl is not None and acl not in CANNED_ACLS:
            raise ActionConfigError(f"s3.cannedAcl must be one of {', '.join(sorted(CANNED_ACLS))}")
        self.bucket = TemplateField(params["bucketName"], env, "s3.bucketName")
        self.key = TemplateField(params["key"], env, "s3.key")
        try:
            if self.bucket.const is not None:
                check_bucket(self.bucket.const)
            if self.key.const is not None:
                check_key(self.key.const)
        except ObjectError as exc:
            raise ActionConfigError(f"s3: {exc}") from None
        self.hub = destinations(env)

    def resource(self, firing: Firing) -> str:
        return f"{self.bucket.render(firing)}/{self.key.render(firing)}"

    async def execute(self, firing: Firing) -> None:  # type: ignore[override]
        try:
            bucket, key = self.bucket.render(firing), self.key.render(firing)
        except Exception as exc:
            raise ActionError(f"cannot render the bucket or key: {exc}") from None
        store = object_store(self.hub)
        try:
            await self.hub.run(store.put, bucket, key, firing.payload)
        except ObjectError as exc:
            raise ActionError(str(exc), retryable=exc.retryable) from None

    def describe(self, firing: Firing) -> dict[str, Any]:
        bucket, key = self.bucket.render(firing), self.key.render(firing)
        return {"bucketName": bucket, "key": key, "object": object_store(self.hub).describe(bucket, key),
                "body": firing.payload.decode("utf-8", "replace") if firing.is_json else None}
