"""The rule resource as AWS defines it: name rules, the ``topicRulePayload`` checks and the stored shape.

Pure functions, no I/O: the HTTP API, the rules directory and the engine all validate through here, so a
rule refused by ``CreateTopicRule`` is refused the same way when it comes from a file.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

RULE_NAME = re.compile(r"^[a-zA-Z0-9_]+$")
SQL_VERSIONS = ("2015-10-08", "2016-03-23", "beta")
DEFAULT_SQL_VERSION = "2015-10-08"  # what AWS uses when awsIotSqlVersion is omitted
MAX_ACTIONS = 10
MAX_RULE_BYTES = 256 * 1024

# Every member of botocore's iot `Action` structure: a rule naming one of these is a valid AWS rule,
# even when thingcore cannot run that action yet (it is then refused with a clear message).
AWS_ACTION_KINDS = frozenset({
    "dynamoDB", "dynamoDBv2", "lambda", "sns", "sqs", "kinesis", "republish", "s3", "firehose",
    "cloudwatchMetric", "cloudwatchAlarm", "cloudwatchLogs", "elasticsearch", "salesforce", "iotAnalytics",
    "iotEvents", "iotSiteWise", "stepFunctions", "timestream", "http", "kafka", "openSearch", "location",
    "influxDB",
})
_PAYLOAD_KEYS = frozenset({"sql", "description", "actions", "ruleDisabled", "awsIotSqlVersion", "errorAction"})


class RuleError(Exception):
    """A rule refused or not found, with the AWS error type the API answers with."""

    def __init__(self, error_type: str, message: str, status: int = 400, **extra: Any) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status
        self.extra = extra


def invalid(message: str) -> RuleError:
    return RuleError("InvalidRequestException", message)


def not_found(name: str) -> RuleError:
    # AWS answers a missing rule with an authorization error, not ResourceNotFoundException
    # (GetTopicRule's model lists no such error; Terraform's provider works around the same message).
    return RuleError("UnauthorizedException", f"Access to topic rule '{name}' was denied", 401)


def check_name(name: str) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= 128 or not RULE_NAME.match(name):
        raise invalid(f"1 validation error detected: Value '{name}' at 'ruleName' failed to satisfy constraint: "
                      "Member must have length between 1 and 128 and satisfy regular expression pattern: "
                      "^[a-zA-Z0-9_]+$")


def action_kind(action: Any, where: str) -> tuple[str, dict[str, Any]]:
    """The single member of an AWS ``Action`` object and its parameters."""
    if not isinstance(action, dict) or len(action) != 1:
        raise invalid(f"{where} must be an object with exactly one action, e.g. {{\"republish\": {{...}}}}")
    kind, params = next(iter(action.items()))
    if kind not in AWS_ACTION_KINDS:
        raise invalid(f"{where}: unknown action '{kind}'")
    if not isinstance(params, dict):
        raise invalid(f"{where}.{kind} must be an object")
    return kind, params


def normalize_payload(payload: Any) -> dict[str, Any]:
    """Check a ``topicRulePayload`` and fill AWS's defaults; raises :class:`RuleError`."""
    if not isinstance(payload, dict):
        raise invalid("topicRulePayload must be a JSON object")
    unknown = sorted(set(payload) - _PAYLOAD_KEYS)
    if unknown:
        raise invalid(f"topicRulePayload has unknown member(s): {', '.join(unknown)}")
    sql = payload.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise invalid("topicRulePayload.sql is required")
    actions = payload.get("actions")
    if actions is None:
        raise invalid("topicRulePayload.actions is required (it may be an empty list)")
    if not isinstance(actions, list):
        raise invalid("topicRulePayload.actions must be a list")
    if len(actions) > MAX_ACTIONS:
        raise invalid(f"a rule has at most {MAX_ACTIONS} actions, this one has {len(actions)}")
    for i, action in enumerate(actions):
        action_kind(action, f"actions[{i}]")
    error_action = payload.get("errorAction")
    if error_action is not None:
        action_kind(error_action, "errorAction")
    version = payload.get("awsIotSqlVersion") or DEFAULT_SQL_VERSION
    if version not in SQL_VERSIONS:
        raise invalid(f"awsIotSqlVersion must be one of {', '.join(SQL_VERSIONS)}, not '{version}'")
    description = payload.get("description")
    if description is not None and not isinstance(description, str):
        raise invalid("topicRulePayload.description must be a string")
    disabled = payload.get("ruleDisabled", False)
    if not isinstance(disabled, bool):
        raise invalid("topicRulePayload.ruleDisabled must be true or false")
    out: dict[str, Any] = {"sql": sql, "actions": actions, "ruleDisabled": disabled, "awsIotSqlVersion": version}
    if description is not None:
        out["description"] = description
    if error_action is not None:
        out["errorAction"] = error_action
    if len(orjson.dumps(out)) > MAX_RULE_BYTES:
        raise invalid("the rule is larger than 256 KB")
    return out


def rule_arn(region: str, account_id: str, name: str) -> str:
    return f"arn:aws:iot:{region}:{account_id}:rule/{name}"


def make_resource(name: str, payload: dict[str, Any], arn: str, created_at: float | None = None) -> dict[str, Any]:
    """The stored rule: AWS's ``TopicRule`` members plus its ARN."""
    return {"ruleName": name, **payload, "createdAt": created_at if created_at is not None else time.time(),
            "ruleArn": arn}


def payload_of(resource: dict[str, Any]) -> dict[str, Any]:
    """The ``topicRulePayload`` part of a stored rule (what a replace or a re-apply compares)."""
    return {k: v for k, v in resource.items() if k in _PAYLOAD_KEYS}
