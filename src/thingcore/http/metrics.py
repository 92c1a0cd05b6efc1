"""Prometheus metrics read from the broker's counters at scrape time (nothing on the hot path)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from thingcore.broker.core import Broker

_COUNTERS = {
    "connections_total": "Connections accepted",
    "connects_refused": "CONNECTs refused (authentication, limits, validation)",
    "connect_timeouts": "Connections closed because no CONNECT arrived in time",
    "protocol_errors": "Connections closed for a protocol error",
    "msgs_in": "Messages received from publishers",
    "msgs_out": "PUBLISH packets sent to subscribers",
    "bytes_in": "Bytes received",
    "bytes_out": "Bytes sent",
    "dropped": "Messages dropped (queue full, packet too large for the client)",
    "expired": "Messages dropped because their expiry interval passed",
    "publishes_refused": "Publishes refused (authorization, limits)",
    "slow_consumers": "Clients disconnected because they stopped reading or acknowledging",
    "wills_published": "Will messages published",
    "retained_refused": "Retained publishes refused: max_retained_messages or max_retained_bytes reached",
    "subscriptions_refused": "Subscriptions refused (authorization, invalid filter, max_subscriptions per client)",
    "sessions_refused": "CONNECTs refused because max_sessions was reached",
    "tls_handshakes_refused": "TLS handshakes refused on the MQTT TLS listener (client certificate, protocol)",
}
_NAMES = {
    "connections_total": "connections_accepted",
    "msgs_in": "messages_received", "msgs_out": "messages_sent", "bytes_in": "bytes_received",
          "bytes_out": "bytes_sent", "dropped": "messages_dropped", "expired": "messages_expired"}


class BrokerCollector:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def collect(self) -> Iterator[Metric]:
        broker = self.broker
        stats = broker.stats.as_dict()
        for key, help_text in _COUNTERS.items():
            name = "thingcore_" + _NAMES.get(key, key)
            yield CounterMetricFamily(name, help_text, value=stats[key])
        snap = broker.snapshot()
        gauges = {
            "connections": ("Open network connections", snap["connections"]),
            "clients_connected": ("Clients with an accepted CONNECT", snap["clients_connected"]),
            "sessions": ("Sessions, connected or persistent and offline", snap["sessions"]),
            "subscriptions": ("Subscriptions in the router", snap["subscriptions"]),
            "retained_messages": ("Retained messages stored", snap["retained"]),
            "retained_bytes": ("Payload bytes of the retained messages stored", snap["retained_bytes"]),
            "queued_messages": ("Messages queued or in flight for sessions",
                                sum(s.queued_count + len(s.inflight) for s in broker.sessions.values())),
        }
        for name, (help_text, value) in gauges.items():
            yield GaugeMetricFamily("thingcore_" + name, help_text, value=value)


def make_registry(broker: Broker, *collectors: Any) -> CollectorRegistry:
    """The broker's metrics plus the services' collectors (each with a ``collect()``)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(BrokerCollector(broker))
    for collector in collectors:
        registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
