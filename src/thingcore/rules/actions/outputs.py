"""The actions that write into object storage, metrics, alarms, logs, notifications, search and Salesforce."""

from __future__ import annotations

from thingcore.rules.actions.base import Action
from thingcore.rules.actions.cloudwatch_alarm import CloudwatchAlarmAction
from thingcore.rules.actions.cloudwatch_logs import CloudwatchLogsAction
from thingcore.rules.actions.cloudwatch_metric import CloudwatchMetricAction
from thingcore.rules.actions.elasticsearch import ElasticsearchAction, OpenSearchAction
from thingcore.rules.actions.s3 import S3Action
from thingcore.rules.actions.salesforce import SalesforceAction
from thingcore.rules.actions.sns import SnsAction

OUTPUT_ACTIONS: dict[str, type[Action]] = {cls.kind: cls for cls in (
    S3Action, CloudwatchMetricAction, CloudwatchAlarmAction, CloudwatchLogsAction, SnsAction, ElasticsearchAction,
    OpenSearchAction, SalesforceAction)}
