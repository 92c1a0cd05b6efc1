"""Finding 17 of issue 12: a rule's SQL can no longer stall the broker or exhaust its memory.

Rules run on the broker's event loop. Before the fix one crafted payload through a rule using a backtracking
regular expression froze the broker for seconds (50 ms per regexp call, once per array element), nested
``replace()`` built strings of hundreds of megabytes, and a deeply nested statement answered 500. Now regular
expressions run on RE2 (linear time), every value built while evaluating is capped (``[rules] max_value_size``),
the work of one evaluation is metered (``max_evaluation_cost``), and pathological statements are refused at
creation with 400. Each test plays the hostile side against a real server (rules created with boto3, messages
published with paho-mqtt) and checks what a user would notice: another client keeps getting prompt answers,
the rule's error action reports the failure, the API answers 400 ``SqlParseException``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator

import pytest
from tests.integration.mqtt_helpers import PahoClient, uid
from tests.integration.rules_helpers import iot_client
from tests.server import ThingcoreProcess

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/r"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    with ThingcoreProcess(tmp_path_factory.mktemp("rulessql"), {}) as tc:
        yield tc


@pytest.fixture(scope="module")
def iot(server: ThingcoreProcess):
    return iot_client(server)


def republish(topic: str) -> dict:
    return {"republish": {"topic": topic, "roleArn": ROLE, "qos": 0}}


def create_rule(iot, sql: str, out: str, errors: str) -> str:
    name = uid("rulessql").replace("-", "_")
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": sql, "awsIotSqlVersion": "2016-03-23", "actions": [republish(out)], "errorAction": republish(errors)})
    return name


class Prober:
    """Another client doing publish -> receive round trips on its own topic the whole time: the slowest
    answer is what any device would have waited while the broker evaluated the hostile message."""

    def __init__(self, server: ThingcoreProcess) -> None:
        self.client = PahoClient(server.mqtt_port, uid("probe"))
        self.topic = uid("probe/ping")
        self.slowest = 0.0
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self.client.__enter__()
        self.client.connect()
        self.client.subscribe(self.topic)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.client.publish(self.topic, b"ping")
            self.client.expect(timeout=60)
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.rounds += 1
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(70)
        self.client.__exit__(*exc)


def test_a_crafted_payload_through_a_regex_rule_does_not_freeze_the_broker(server: ThingcoreProcess, iot) -> None:
    # "one- or two-character tokens": exponential backtracking on Java-like engines for 'aaa...a!'; before
    # the fix each call ran into its 50 ms guard, once per array element: 15 s for this one message
    out, errors = uid("rs/out"), uid("rs/err")
    create_rule(iot, "SELECT (SELECT VALUE regexp_matches(name, '^(\\w|\\w\\w)*$') FROM items) AS ok "
                     "FROM 'rs/regex/in'", out, errors)
    payload = json.dumps({"items": [{"name": "a" * 40 + "!"}] * 300}).encode()
    with PahoClient(server.mqtt_port, uid("sub")) as sub, PahoClient(server.mqtt_port, uid("dev")) as dev, \
            Prober(server) as probe:
        sub.connect()
        sub.subscribe(out)
        dev.connect()
        time.sleep(0.3)
        dev.publish("rs/regex/in", payload)
        got = json.loads(sub.expect(timeout=30).payload)
        time.sleep(0.3)
    assert got == {"ok": [False] * 300}
    assert probe.rounds >= 5
    assert probe.slowest < 1.0, f"another client waited {probe.slowest:.1f} s for the broker"


def test_nested_replace_of_the_message_stops_at_max_value_size_and_reaches_the_error_action(
        server: ThingcoreProcess, iot) -> None:
    out, errors = uid("rs/out"), uid("rs/err")
    name = create_rule(iot, "SELECT replace(replace(s, 'a', s), 'a', s) AS x FROM 'rs/replace/in'", out, errors)
    payload = json.dumps({"s": "a" * 200}).encode()  # 200 ** 3 = 8 000 000 characters if it were built
    with PahoClient(server.mqtt_port, uid("sub")) as sub, PahoClient(server.mqtt_port, uid("dev")) as dev, \
            Prober(server) as probe:
        sub.connect()
        sub.subscribe([out, errors])
        dev.connect()
        time.sleep(0.3)
        for _ in range(10):
            dev.publish("rs/replace/in", payload)
        reports = [sub.expect(timeout=30) for _ in range(10)]
        time.sleep(0.3)
    assert {r.topic for r in reports} == {errors}, "the oversized value was built and republished"
    doc = json.loads(reports[0].payload)
    assert doc["ruleName"] == name and doc["topic"] == "rs/replace/in"
    assert base64.b64decode(doc["base64OriginalPayload"]) == payload
    (failure,) = doc["failures"]
    assert failure["failedAction"] == "SqlEvaluation"
    assert "max_value_size" in failure["errorMessage"]
    assert probe.slowest < 1.0
    log = server.log()
    assert log.count(f"rule {name}: evaluation failed") == 1, "one log line, not one per message"


def test_quadratic_nested_selects_run_out_of_budget_instead_of_stalling(server: ThingcoreProcess, iot) -> None:
    out, errors = uid("rs/out"), uid("rs/err")
    create_rule(iot, "SET @a = items SELECT (SELECT VALUE (SELECT VALUE 1 FROM @a WHERE false) FROM @a) AS x "
                     "FROM 'rs/loops/in'", out, errors)
    payload = json.dumps({"items": [0] * 5000}).encode()  # 25 million inner iterations before the fix
    with PahoClient(server.mqtt_port, uid("sub")) as sub, PahoClient(server.mqtt_port, uid("dev")) as dev, \
            Prober(server) as probe:
        sub.connect()
        sub.subscribe([out, errors])
        dev.connect()
        time.sleep(0.3)
        dev.publish("rs/loops/in", payload)
        report = sub.expect(timeout=60)
        time.sleep(0.3)
    assert report.topic == errors
    assert "max_evaluation_cost" in json.loads(report.payload)["failures"][0]["errorMessage"]
    assert probe.slowest < 1.0, f"another client waited {probe.slowest:.1f} s for the broker"


def test_a_pattern_re2_cannot_run_from_the_message_reaches_the_error_action(server: ThingcoreProcess, iot) -> None:
    out, errors = uid("rs/out"), uid("rs/err")
    create_rule(iot, "SELECT regexp_replace(s, p, 'x') AS x FROM 'rs/pattern/in'", out, errors)
    with PahoClient(server.mqtt_port, uid("sub")) as sub, PahoClient(server.mqtt_port, uid("dev")) as dev:
        sub.connect()
        sub.subscribe([out, errors])
        dev.connect()
        time.sleep(0.3)
        dev.publish("rs/pattern/in", json.dumps({"s": "abab", "p": "(a)b\\1"}).encode())
        dev.publish("rs/pattern/in", json.dumps({"s": "abab", "p": "b"}).encode())
        first, second = sub.expect(timeout=10), sub.expect(timeout=10)
    assert first.topic == errors
    assert "backreference" in json.loads(first.payload)["failures"][0]["errorMessage"]
    assert second.topic == out and json.loads(second.payload) == {"x": "axax"}


NESTED_REPLACE = ("SELECT " + "replace(" * 7 + "'aaaaaaaaaa'" + ", 'a', 'aaaaaaaaaa')" * 7 + " AS x FROM 'rs/x'")


@pytest.mark.parametrize(("sql", "says"), [
    (NESTED_REPLACE, "max_value_size"),  # 10 ** 8 characters, folded when the rule was created
    ("SELECT " + "-" * 5000 + "a AS x FROM 'rs/x'", "levels deep"),
    ("SELECT " + "NOT " * 5000 + "a AS x FROM 'rs/x'", "levels deep"),
    ("SELECT " + "upper(a), " * 1001 + "1 AS x FROM 'rs/x'", "more than 1000 functions"),
    ("SELECT regexp_matches(a, '(?<=x)y') AS x FROM 'rs/x'", "lookbehind"),
    ("SELECT regexp_substr(a, '(\\w)\\1') AS x FROM 'rs/x'", "backreference"),
    ("SELECT regexp_replace(a, 'a++', 'b') AS x FROM 'rs/x'", "possessive"),
], ids=["nested-replace", "unary-minus", "not", "calls", "lookbehind", "backreference", "possessive"])
def test_pathological_statements_are_refused_with_400(iot, sql: str, says: str) -> None:
    name = uid("rulessql").replace("-", "_")
    started = time.monotonic()
    with pytest.raises(iot.exceptions.SqlParseException) as caught:
        iot.create_topic_rule(ruleName=name, topicRulePayload={"sql": sql, "actions": [republish("rs/y")],
                                                               "awsIotSqlVersion": "2016-03-23"})
    assert time.monotonic() - started < 5
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert says in caught.value.response["Error"]["Message"]
    with pytest.raises(iot.exceptions.UnauthorizedException):
        iot.get_topic_rule(ruleName=name)  # nothing was created


def test_a_template_too_costly_for_the_message_fails_the_delivery_not_the_server(server: ThingcoreProcess,
                                                                               iot) -> None:
    out, errors = uid("rs/out"), uid("rs/err")
    name = uid("rulessql").replace("-", "_")
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": "SELECT 1 AS one FROM 'rs/template/in'", "awsIotSqlVersion": "2016-03-23",
        "actions": [republish(out + "/${replace(replace(s, 'a', s), 'a', s)}")], "errorAction": republish(errors)})
    with PahoClient(server.mqtt_port, uid("sub")) as sub, PahoClient(server.mqtt_port, uid("dev")) as dev:
        sub.connect()
        sub.subscribe([out + "/#", errors])
        dev.connect()
        time.sleep(0.3)
        for _ in range(5):
            dev.publish("rs/template/in", json.dumps({"s": "a" * 200}).encode())
        reports = [sub.expect(timeout=10) for _ in range(5)]
    assert {r.topic for r in reports} == {errors}
    (failure,) = json.loads(reports[0].payload)["failures"]
    assert failure["failedAction"] == "RepublishAction"
    assert "max_value_size" in failure["errorMessage"]
    assert "Traceback" not in server.log()
