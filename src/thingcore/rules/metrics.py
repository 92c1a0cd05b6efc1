"""Per-rule and per-action counters: plain ints bumped on the message path, read at scrape time.

Nothing here touches the prometheus client per message; :class:`RulesCollector` turns the counters
into metric families only when ``/metrics`` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

# seconds from the message's arrival to the action's success
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ActionMetrics:
    __slots__ = ("buckets", "dropped", "failed", "fired", "latency_max", "latency_sum", "retried", "succeeded")

    def __init__(self) -> None:
        self.fired = 0  #: jobs accepted into the action's queue
        self.succeeded = 0
        self.failed = 0  #: jobs given up after the last try (they reach the error action)
        self.retried = 0
        self.dropped = 0  #: jobs refused because the queue was full (they reach the error action)
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_max = 0.0

    def observe(self, seconds: float) -> None:
        self.succeeded += 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        if seconds > self.latency_max:
            self.latency_max = seconds

    def as_dict(self) -> dict[str, Any]:
        n = self.succeeded
        return {
            "fired": self.fired, "succeeded": n, "failed": self.failed, "retried": self.retried,
            "dropped": self.dropped,
            "latencyMs": {"mean": round(self.latency_sum / n * 1000, 3) if n else None,
                          "max": round(self.latency_max * 1000, 3) if n else None},
        }


class RuleMetrics:
    __slots__ = ("error_actions", "errors", "matched", "received")

    def __init__(self) -> None:
        self.received = 0  #: messages that reached the rule (FROM matched, or its Basic Ingest topic)
        self.matched = 0  #: messages whose WHERE passed: the actions fired
        self.errors = 0  #: evaluations that failed (an external function failed, an evaluation was dropped)
        self.error_actions = 0  #: error documents sent to the error action

    def as_dict(self) -> dict[str, int]:
        return {"received": self.received, "matched": self.matched, "errors": self.errors,
                "errorActions": self.error_actions}


class EngineMetrics:
    __slots__ = ("evaluations_dropped", "ingest_unknown", "outbox_discarded", "outbox_replayed")

    def __init__(self) -> None:
        self.ingest_unknown = 0  #: Basic Ingest messages for a rule that does not exist or is disabled
        self.evaluations_dropped = 0  #: evaluations refused because the evaluation queue was full
        self.outbox_replayed = 0  #: deliveries pending at the last stop, queued again at start
        self.outbox_discarded = 0  #: pending deliveries given up: their rule was deleted or changed (now or before)

    def as_dict(self) -> dict[str, int]:
        return {"ingestUnknownRule": self.ingest_unknown, "evaluationsDropped": self.evaluations_dropped,
                "outboxReplayed": self.outbox_replayed, "outboxDiscarded": self.outbox_discarded}


class RulesCollector:
    """A prometheus collector over the engine's live rules.

    ``snapshot()`` yields ``(rule name, RuleMetrics, [(action label, index, ActionMetrics, queued)])``.
    """

    def __init__(self, snapshot: Callable[[], Iterable[tuple[str, RuleMetrics, list]]],
                 engine_metrics: EngineMetrics, rule_count: Callable[[], int], outbox: Any = None) -> None:
        self.snapshot = snapshot
        self.engine_metrics = engine_metrics
        self.rule_count = rule_count
        self.outbox = outbox  #: thingcore.rules.outbox.Outbox, None with memory storage

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("thingcore_rules", "Rules defined", value=self.rule_count())
        em = self.engine_metrics
        yield CounterMetricFamily("thingcore_rules_ingest_unknown_rule", "Basic Ingest messages for a missing or "
                                  "disabled rule", value=em.ingest_unknown)
        yield CounterMetricFamily("thingcore_rules_evaluations_dropped", "Evaluations dropped: queue full",
                                  value=em.evaluations_dropped)
        yield CounterMetricFamily("thingcore_rules_outbox_replayed", "Deliveries pending at the last stop, queued "
                                  "again at start", value=em.outbox_replayed)
        yield CounterMetricFamily("thingcore_rules_outbox_discarded", "Pending deliveries given up: their rule was "
                                  "deleted or changed (while running, or before this start)",
                                  value=em.outbox_discarded)
        outbox = self.outbox
        if outbox is not None:
            yield GaugeMetricFamily("thingcore_rules_outbox_pending", "Deliveries of durable actions not over yet "
                                    "(entries in the outbox, replay included)", value=outbox.pending)
            yield CounterMetricFamily("thingcore_rules_outbox_write_failures", "Outbox batches storage could not "
                                      "commit", value=outbox.failures)
            yield CounterMetricFamily("thingcore_rules_outbox_unstorable", "Deliveries made without an outbox entry: "
                                      "their output could not be encoded", value=outbox.unstorable)
        rule_families = {
            "received": CounterMetricFamily("thingcore_rule_messages", "Messages that reached the rule",
                                            labels=["rule"]),
            "matched": CounterMetricFamily("thingcore_rule_matched", "Messages whose WHERE passed (actions fired)",
                                           labels=["rule"]),
            "errors": CounterMetricFamily("thingcore_rule_evaluation_errors", "Evaluations that failed",
                                          labels=["rule"]),
            "error_actions": CounterMetricFamily("thingcore_rule_error_actions", "Error documents sent to the "
                                                 "error action", labels=["rule"]),
        }
        labels = ["rule", "action", "index"]
        action_families = {
            "fired": CounterMetricFamily("thingcore_rule_action_fired", "Jobs queued for the action", labels=labels),
            "succeeded": CounterMetricFamily("thingcore_rule_action_succeeded", "Jobs delivered", labels=labels),
            "failed": CounterMetricFamily("thingcore_rule_action_failed", "Jobs given up after the last try",
                                          labels=labels),
            "retried": CounterMetricFamily("thingcore_rule_action_retried", "Tries repeated after an error",
                                           labels=labels),
            "dropped": CounterMetricFamily("thingcore_rule_action_dropped", "Jobs dropped: queue full",
                                           labels=labels),
        }
        queued = GaugeMetricFamily("thingcore_rule_action_queued", "Jobs waiting in the action's queue",
                                   labels=labels)
        latency = HistogramMetricFamily("thingcore_rule_action_latency_seconds",
                                        "Time from the message's arrival to the action's success", labels=labels)
        for name, rm, actions in self.snapshot():
            for attr, fam in rule_families.items():
                fam.add_metric([name], getattr(rm, attr))
            for label, index, am, waiting in actions:
                key = [name, label, str(index)]
                for attr, fam in action_families.items():
                    fam.add_metric(key, getattr(am, attr))
                queued.add_metric(key, waiting)
                cumulative, buckets = 0, []
                for bound, count in zip((*LATENCY_BUCKETS, float("inf")), am.buckets, strict=True):
                    cumulative += count
                    buckets.append((str(bound) if bound != float("inf") else "+Inf", cumulative))
                latency.add_metric(key, buckets, am.latency_sum)
        yield from rule_families.values()
        yield from action_families.values()
        yield queued
        yield latency
