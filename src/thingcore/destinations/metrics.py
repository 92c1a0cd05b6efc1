"""CloudWatch's counterparts: metric series shown on ``/metrics`` and alarm states kept in storage.

Series are plain values read at scrape time (no prometheus client call per message) and bounded, so a
template that puts a device id into a metric name cannot grow memory without limit.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import orjson
from prometheus_client.core import GaugeMetricFamily, Metric

from thingcore.broker.message import Message

# CloudWatch's StandardUnit values: what AWS's cloudwatchMetric action accepts
UNITS = frozenset({
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes", "Bits",
    "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second", "Kilobytes/Second",
    "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second",
    "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
})
ALARM_STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")
ALARM_TOPIC = "thingcore/alarms/{}"
ALARMS_NS = "cloudwatch_alarms"

_INVALID = re.compile(r"[^a-zA-Z0-9_:]")


class MetricError(Exception):
    pass


def prometheus_name(namespace: str, name: str) -> str:
    """A valid Prometheus metric name: ``IoT/Plant`` and ``temp-c`` -> ``IoT_Plant_temp_c``."""
    out = _INVALID.sub("_", f"{namespace}_{name}")
    return "_" + out if out[0].isdigit() else out


class MetricSeries:
    """The latest value of each (namespace, name, unit) series, exposed as gauges."""

    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        self.series: dict[tuple[str, str, str], tuple[float, float | None]] = {}

    def put(self, namespace: str, name: str, unit: str, value: float, timestamp: float | None) -> None:
        key = (namespace, name, unit)
        if key not in self.series and len(self.series) >= self.max_series:
            raise MetricError(f"{len(self.series)} metric series exist, the limit (cloudwatch.max_metric_series); "
                              f"{namespace}/{name} is not added")
        self.series[key] = (value, timestamp)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        for (namespace, name, unit), (value, ts) in list(self.series.items()):
            metric = prometheus_name(namespace, name)
            family = families.get(metric)
            if family is None:
                family = families[metric] = GaugeMetricFamily(
                    metric, "cloudwatchMetric rule action", labels=["namespace", "metric", "unit"])
            family.add_metric([namespace, name, unit], value, timestamp=ts)
        yield from families.values()


class AlarmStore:
    """Alarm states (AWS SetAlarmState): stored documents, and a message on ``thingcore/alarms/<name>`` on change."""

    def __init__(self, storage: Any, broker: Any) -> None:
        self.storage = storage
        self.broker = broker
        self._alarms: dict[str, dict[str, Any]] | None = None
        self._loading: asyncio.Lock | None = None

    async def _load(self) -> dict[str, dict[str, Any]]:
        if self._alarms is None:
            if self._loading is None:
                self._loading = asyncio.Lock()
            async with self._loading:
                if self._alarms is None:
                    docs = await self.storage.list_documents(ALARMS_NS) if self.storage is not None else []
                    self._alarms = {key: orjson.loads(value) for key, value in docs}
        return self._alarms

    async def list(self) -> list[dict[str, Any]]:
        return [alarms for _, alarms in sorted((await self._load()).items())]

    async def get(self, name: str) -> dict[str, Any] | None:
        return (await self._load()).get(name)

    async def set_state(self, name: str, state: str, reason: str, rule: str) -> bool:
        """Record the state; True when it changed (then it was published). Returns once durably stored."""
        alarms = await self._load()
        old = alarms.get(name)
        now = time.time()
        changed = old is None or old["stateValue"] != state
        doc = {"alarmName": name, "stateValue": state, "stateReason": reason, "stateUpdatedTimestamp": now,
               "previousStateValue": (old["stateValue"] if changed else old["previousStateValue"]) if old else None,
               "ruleName": rule,
               "stateChangedTimestamp": now if changed else old["stateChangedTimestamp"]}  # type: ignore[index]
        alarms[name] = doc
        if self.storage is not None:
            await self.storage.put_document(ALARMS_NS, name, orjson.dumps(doc))
        if changed:
            self.broker.publish(Message(ALARM_TOPIC.format(name), orjson.dumps(doc), 1, False, {}, received_at=now))
        return changed
