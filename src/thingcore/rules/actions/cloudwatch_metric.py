"""``cloudwatchMetric``: a gauge on ``/metrics`` (AWS CloudwatchMetricAction).

All four parameters and ``metricTimestamp`` take templates. The series is named
``<metricNamespace>_<metricName>`` with characters Prometheus refuses replaced by ``_``, and labelled
``namespace``, ``metric`` and ``unit``; it shows the latest value (CloudWatch aggregates, a scrape samples).
``metricTimestamp`` (Unix seconds, as on AWS) becomes the sample's timestamp. At most
``[cloudwatch] max_metric_series`` series exist: a new one past it fails the delivery (error action).
"""

from __future__ import annotations

import math
from typing import Any

from thingcore.destinations.local import destinations
from thingcore.destinations.metrics import UNITS, MetricError
from thingcore.rules.actions.base import (
    Action,
    ActionConfigError,
    ActionEnv,
    ActionError,
    Firing,
    TemplateField,
    params_check,
)

_PARAMS = ("metricNamespace", "metricName", "metricValue", "metricUnit")


class CloudwatchMetricAction(Action):
    kind = "cloudwatchMetric"
    failed_action = "CloudwatchMetricAction"
    durable = False  # the series lives in memory only: a restart loses it anyway
    inline = True  # a dictionary write

    def __init__(self, params: dict[str, Any], env: ActionEnv) -> None:
        super().__init__(params, env)
        params_check(params, "cloudwatchMetric", {*_PARAMS, "metricTimestamp", "roleArn"}, set(_PARAMS))
        self.namespace = TemplateField(params["metricNamespace"], env, "cloudwatchMetric.metricNamespace")
        self.name = TemplateField(params["metricName"], env, "cloudwatchMetric.metricName")
        self.value = TemplateField(params["metricValue"], env, "cloudwatchMetric.metricValue")
        self.unit = TemplateField(params["metricUnit"], env, "cloudwatchMetric.metricUnit")
        ts = params.get("metricTimestamp")
        self.timestamp = TemplateField(ts, env, "cloudwatchMetric.metricTimestamp") if ts is not None else None
        if self.unit.const is not None and self.unit.const not in UNITS:
            raise ActionConfigError(f"cloudwatchMetric.metricUnit {self.unit.const!r} is not a CloudWatch unit "
                                    f"({', '.join(sorted(UNITS))})")
        self.series = destinations(env).metrics
        if self.needs_services:
            self.inline = False

    def resource(self, firing: Firing) -> str:
        return f"{self.namespace.render(firing)}/{self.name.render(firing)}"

    def _datum(self, firing: Firing) -> tuple[str, str, str, float, float | None]:
        try:
            namespace, name = self.namespace.render(firing), self.name.render(firing)
            raw, unit = self.value.render(firing), self.unit.render(firing)
            raw_ts = self.timestamp.render(firing) if self.timestamp is not None else ""
        except Exception as exc:
            raise ActionError(f"cannot render the metric: {exc}") from None
        if not namespace or not name:
            raise ActionError("the metric namespace and name must not be empty")
        if unit not in UNITS:
            raise ActionError(f"metricUnit {unit!r} is not a CloudWatch unit")
        try:
            value = float(raw)
        except ValueError:
            raise ActionError(f"metricValue {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise ActionError(f"metricValue {raw!r} is not a finite number")
        ts = None
        if raw_ts:
            try:
                ts = float(raw_ts)
            except ValueError:
                raise ActionError(f"metricTimestamp {raw_ts!r} is not a Unix time in seconds") from None
        return namespace, name, unit, value, ts

    def _put(self, firing: Firing) -> None:
        try:
            self.series.put(*self._datum(firing))
        except MetricError as exc:
            raise ActionError(str(exc)) from None

    def execute(self, firing: Firing) -> Any:
        if self.inline:
            self._put(firing)
            return None
        return destinations(self.env).run(self._put, firing)

    def describe(self, firing: Firing) -> dict[str, Any]:
        namespace, name, unit, value, ts = self._datum(firing)
        return {"metricNamespace": namespace, "metricName": name, "metricUnit": unit, "metricValue": value,
                "metricTimestamp": ts}
