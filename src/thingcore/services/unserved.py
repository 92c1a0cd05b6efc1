"""Requests on AWS service topics thingcore does not serve yet are answered on ``/rejected``, not ignored.

Devices running AWS's SDKs publish a request (a Jobs query, a Device Defender report, a fleet
provisioning call) and wait for ``<request>/accepted`` or ``<request>/rejected``; silence makes them
wait out their timeouts and report a network problem. This bus service answers each such request at
once on its ``/rejected`` topic, in the error shape of that AWS service, saying that thingcore does not
serve it. The requester's publish has passed the gate already; the answer is the broker's own voice
(no origin) and reaches whoever may receive it, like the shadow service's answers. Nothing is built
when nobody subscribes to the answer. When thingcore implements one of these services, its filters
leave :data:`FILTERS`.

Shapes (``aws-iot-fleet.md`` §7.2, §8.1): Jobs ``{code, message, clientToken, timestamp}`` with
``InvalidRequest`` (``InvalidTopic`` for a topic that maps to no Jobs API); fleet provisioning
``{statusCode, errorCode, errorMessage}``; Device Defender ``{thingName, reportId, status: "REJECTED",
statusDetails: {ErrorCode, ErrorMessage}, timestamp}``. A request on a ``cbor`` topic is answered in CBOR.
"""

from __future__ import annotations

import logging
import struct
import time
from typing import TYPE_CHECKING

import orjson

from thingcore.broker.admission import RefusalLog
from thingcore.broker.message import Message

if TYPE_CHECKING:
    from thingcore.broker.core import Broker, BusSubscription

log = logging.getLogger("thingcore.services")

FILTERS = (
    "$aws/things/+/jobs/#",
    "$aws/things/+/defender/metrics/+",
    "$aws/certificates/create/+",
    "$aws/certificates/create-from-csr/+",
    "$aws/provisioning-templates/+/provision/+",
)
_JOBS = {"get": "GetPendingJobExecutions", "start-next": "StartNextPendingJobExecution"}
_JOB = {"get": "DescribeJobExecution", "update": "UpdateJobExecution"}
_NOT_REQUESTS = ("accepted", "rejected", "notify", "notify-next")  # answers and service notices


Answer = tuple[str, dict[str, object]]  # (topic, payload)


def answer(topic: str, payload: bytes, now: float) -> Answer | None:
    """The rejection owed to a request on ``topic``, or None when the topic is not a request (pure)."""
    parts = topic.split("/")
    if parts[-1] in _NOT_REQUESTS:
        return None
    if parts[1] == "things" and parts[3] == "jobs":
        return _jobs(topic, parts, payload, now)
    if parts[1] == "things":  # $aws/things/<thing>/defender/metrics/<fmt>
        return _defender(topic, parts[2], payload, now)
    if parts[1] == "certificates":
        operation = "CreateKeysAndCertificate" if parts[2] == "create" else "CreateCertificateFromCsr"
    else:
        operation = "RegisterThing"
    return f"{topic}/rejected", {
        "statusCode": 501, "errorCode": "NotImplemented",
        "errorMessage": f"thingcore does not serve fleet provisioning ({operation}) yet"}


def _jobs(topic: str, parts: list[str], payload: bytes, now: float) -> Answer:
    rest = parts[4:]
    operation = _JOBS.get(rest[0]) if len(rest) == 1 else _JOB.get(rest[1]) if len(rest) == 2 else None
    if operation is None:
        code, message = "InvalidTopic", "thingcore does not serve the AWS IoT Jobs device API, and this topic " \
                                        "maps to none of its operations"
    else:
        code, message = "InvalidRequest", f"thingcore does not serve the AWS IoT Jobs device API ({operation}) yet"
    body: dict[str, object] = {"code": code, "message": message, "timestamp": int(now)}
    token = _field(payload, "clientToken")
    if token is not None:
        body["clientToken"] = token
    return f"{topic}/rejected", body


def _defender(topic: str, thing: str, payload: bytes, now: float) -> Answer:
    body: dict[str, object] = {"thingName": thing}
    header = _field(payload, "header") or _field(payload, "hed")
    if isinstance(header, dict):
        report_id = header.get("report_id", header.get("rid"))
        if isinstance(report_id, int):
            body["reportId"] = report_id
    body.update({"status": "REJECTED", "statusDetails": {
        "ErrorCode": "NotImplemented",
        "ErrorMessage": "thingcore does not serve AWS IoT Device Defender metrics yet"}, "timestamp": int(now * 1000)})
    return f"{topic}/rejected", body


def _field(payload: bytes, name: str) -> object:
    try:
        doc = orjson.loads(payload) if payload[:1] == b"{" else None
    except orjson.JSONDecodeError:
        return None
    return doc.get(name) if isinstance(doc, dict) else None


def cbor(value: object) -> bytes:
    """Minimal CBOR (RFC 8949) for the answers: maps, text strings, integers."""
    if isinstance(value, dict):
        out = _head(5, len(value))
        for key, item in value.items():
            out += cbor(key) + cbor(item)
        return out
    if isinstance(value, str):
        data = value.encode()
        return _head(3, len(data)) + data
    if isinstance(value, bool) or value is None:
        return bytes([0xF5 if value is True else 0xF4 if value is False else 0xF6])
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    raise TypeError(f"cannot encode {type(value).__name__} as CBOR")


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for info, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | info]) + struct.pack(fmt, n)
    raise ValueError("integer too large for CBOR")


class UnservedTopics:
    """The bus service: subscribes :data:`FILTERS`, answers each request on its ``/rejected`` topic."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.answered = 0
        self._log = RefusalLog(logger=log)
        self._subs: list[BusSubscription] = []

    def start(self) -> None:
        for topic_filter in FILTERS:
            self._subs.append(self.broker.subscribe(topic_filter, self._on_request, qos=1, name="$unserved"))

    def stop(self) -> None:
        for sub in self._subs:
            self.broker.unsubscribe(sub)
        self._subs.clear()

    def _on_request(self, msg: Message) -> None:
        reply = answer(msg.topic, msg.payload, time.time())
        if reply is None:
            return
        topic, body = reply
        self.answered += 1
        self._log("answered %r from %s on /rejected: not served by thingcore", msg.topic[:200],
                  msg.client_id or msg.source_address or "an HTTP caller")
        match = self.broker.router.match(topic)
        if not (match.targets or match.shared_groups):
            return
        payload = cbor(body) if msg.topic.endswith("/cbor") else orjson.dumps(body)
        self.broker.publish(Message(topic, payload, 1))


__all__ = ["FILTERS", "UnservedTopics", "answer", "cbor"]
