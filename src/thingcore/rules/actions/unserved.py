"""AWS rule actions thingcore refuses at rule creation: their destination is an AWS service with no local
counterpart here. The message names the action and says what to use instead, so a rule JSON brought from
AWS fails once, clearly, rather than dropping data at run time.
"""

from __future__ import annotations

UNSERVED: dict[str, str] = {
    "iotAnalytics": "AWS IoT Analytics (retired by AWS); store the data with dynamoDBv2, kinesis or s3 instead",
    "iotEvents": "AWS IoT Events; model detectors with rules, cloudwatchAlarm and republish instead",
    "iotSiteWise": "AWS IoT SiteWise asset properties; write time series with dynamoDBv2 or kinesis instead",
    "stepFunctions": "AWS Step Functions state machines; call a local function with the lambda action instead",
    "timestream": "Amazon Timestream; write time series with dynamoDBv2 (PostgreSQL) or kinesis instead",
    "location": "Amazon Location Service trackers; republish positions or store them with dynamoDBv2 instead",
    "kafka": "Apache Kafka clusters (not available yet); use kinesis (Redis Streams, NATS JetStream) instead",
    "influxDB": "Amazon Timestream for InfluxDB; write time series with dynamoDBv2 (PostgreSQL) or kinesis instead",
}


def unserved_message(kind: str) -> str | None:
    """Why ``kind`` cannot run here, or None when it is not one of the refused actions."""
    reason = UNSERVED.get(kind)
    if reason is None:
        return None
    return f"the {kind} action is not supported by thingcore: it delivers to {reason}"
