"""``kinesis`` and ``firehose``: append the SELECT result to a stream (AWS KinesisAction, FirehoseAction).

``kinesis`` writes one record per message with ``partitionKey`` (a template; a new UUID when absent, so
records spread as on AWS). ``firehose`` appends ``separator`` (``\\n``, ``\\t``, ``\\r\\n`` or ``,``) to each
record; with ``batchMode`` the SELECT result must be a JSON array and each element is its own record, all
written in one batch (PutRecordBatch). Streams are embedded files, Redis Streams or NATS JetStream (see
:mod:`thingcore.destinations.streams`); an unreachable engine is tried again, then the error action.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from thingcore.destinations.data import data_destinations
from thingcore.destinations.streams import Record, StreamError, check_stream_name
from thingcore.rules.actions.base import (
    Action,
    ActionConfigError,
    ActionEnv,
    ActionError,
    Firing,
    TemplateField,
    params_check,
)

_SEPARATORS = ("\n", "\t", "\r\n", ",")
_MAX_BATCH = 500  # PutRecordBatch's limit


class _StreamAction(Action):
    concurrency = 64  # appends arriving while one batch is written go out in the next one
    name_param = ""

    def _stream_field(self, params: dict[str, Any], key: str) -> TemplateField:
        field = TemplateField(params[key], self.env, f"{self.kind}.{key}")
        if field.const is not None:
            try:
                check_stream_name(field.const)
            except StreamError as exc:
                raise ActionConfigError(f"{self.kind}.{key}: {exc}") from None
        return field

    def _name(self, firing: Firing) -> str:
        name = self.stream.render(firing)
        try:
            check_stream_name(name)
        except StreamError as exc:
            raise ActionError(str(exc)) from None
        return name

    def resource(self, firing: Firing) -> str:
        return self.stream.render(firing)

    def records(self, firing: Firing) -> list[Record]:
        raise NotImplementedError

    async def execute(self, firing: Firing) -> None:  # type: ignore[override]
        name = self._name(firing)
        records = self.records(firing)
        try:
            await data_destinations(self.env).streams.append(name, records)
        except StreamError as exc:
            raise ActionError(f"{name}: {exc}", retryable=exc.retryable) from None

    def describe(self, firing: Firing) -> dict[str, Any]:
        return {"streamName": self.stream.render(firing),
                "records": [{"partitionKey": pk, "data": data.decode("utf-8", "replace")}
                            for pk, data in self.records(firing)]}


class KinesisAction(_StreamAction):
    kind = "kinesis"
    failed_action = "KinesisAction"

    def __init__(self, params: dict[str, Any], env: ActionEnv) -> None:
        super().__init__(params, env)
        params_check(params, "kinesis", {"streamName", "partitionKey", "roleArn"}, {"streamName"})
        self.stream = self._stream_field(params, "streamName")
        self.partition_key = TemplateField(params["partitionKey"], env, "kinesis.partitionKey") \
            if "partitionKey" in params else None

    def records(self, firing: Firing) -> list[Record]:
        pk = self.partition_key.render(firing) if self.partition_key is not None else str(uuid.uuid4())
        if not 1 <= len(pk) <= 256:
            raise ActionError(f"partition key {pk[:40]!r} must be 1 to 256 characters")
        return [(pk, firing.payload)]


class FirehoseAction(_StreamAction):
    kind = "firehose"
    failed_action = "FirehoseAction"

    def __init__(self, params: dict[str, Any], env: ActionEnv) -> None:
        super().__init__(params, env)
        params_check(params, "firehose", {"deliveryStreamName", "separator", "batchMode", "roleArn"},
                     {"deliveryStreamName"})
        self.stream = self._stream_field(params, "deliveryStreamName")
        sep = params.get("separator")
        if sep is not None and sep not in _SEPARATORS:
            raise ActionConfigError("firehose.separator must be one of '\\n', '\\t', '\\r\\n', ','")
        self.separator = (sep or "").encode()
        batch = params.get("batchMode", False)
        if not isinstance(batch, bool):
            raise ActionConfigError("firehose.batchMode must be true or false")
        self.batch = batch

    def records(self, firing: Firing) -> list[Record]:
        sep = self.separator
        if not self.batch:
            return [("", firing.payload + sep)]
        out = firing.output
        if not isinstance(out, list):
            raise ActionError("firehose batchMode needs a JSON array as the SELECT result")
        if not 1 <= len(out) <= _MAX_BATCH:
            raise ActionError(f"firehose batchMode takes 1 to {_MAX_BATCH} records, got {len(out)}")
        return [("", orjson.dumps(item) + sep) for item in out]
