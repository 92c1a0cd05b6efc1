"""The durable outbox of rule actions, end to end: deliveries pending when thingcore is killed (SIGKILL) or
stopped (SIGTERM) are made after the restart, a rule changed meanwhile gets none of them, and a QoS 1
PUBACK means the deliveries are stored.

The destinations are real: an HTTP server that answers 503 while "down" (the http action tries 5xx again)
and a Redis server that is stopped and started (kinesis into a Redis stream). The retry settings keep
every delivery pending for far longer than a test runs, so what arrives after the restart came from
the outbox, which is also counted in the SQLite file itself while thingcore is not running.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.engines import Redis
from tests.integration.mqtt_helpers import PahoClient, uid, wait_for
from tests.integration.rules_helpers import (
    LOOPBACK_DESTINATIONS,
    Hit,
    RecordingServer,
    confirm_destination,
    iot_client,
    rule_name,
)
from tests.server import ThingcoreProcess, to_toml

from thingcore.rules.outbox import decode_page

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/rules"
N = 20
#: a delivery is tried again after 0.5, 1, 2, 4 ... 30 s, 20 times: pending for minutes
PATIENT = {"retry_delay": 0.5, "max_attempts": 20, **LOOPBACK_DESTINATIONS}


@pytest.fixture
def web() -> Iterator[RecordingServer]:
    srv = RecordingServer(status=503).start()  # down until a test sets status = 200
    yield srv
    srv.stop()


@pytest.fixture
def redis_server() -> Iterator[Redis]:
    r = Redis().start()
    yield r
    r.close()


def engine_metrics(tc: ThingcoreProcess) -> dict[str, Any]:
    resp = httpx.get(f"http://127.0.0.1:{tc.http_port}/api/v1/rules/metrics", timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def rule_metrics(tc: ThingcoreProcess, name: str) -> list[dict[str, Any]]:
    resp = httpx.get(f"http://127.0.0.1:{tc.http_port}/api/v1/rules/{name}/metrics", timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["actions"]


def stored_entries(tc: ThingcoreProcess) -> list[tuple[str, int, str]]:
    """The pending entries in the database file, ``(page, index, action)`` (thingcore is not running)."""
    assert tc.proc is None or tc.proc.poll() is not None
    with sqlite3.connect(tc.data_dir / "thingcore.db") as db:
        docs = dict(db.execute("SELECT key, value FROM documents WHERE namespace = 'outbox'").fetchall())
    pending = []
    for key, value in sorted(docs.items()):
        if key.endswith(".d"):
            assert key[:-2] in docs  # the list of ended entries never outlives its page
            continue
        ended = set(json.loads(docs[key + ".d"])) if key + ".d" in docs else set()
        rows, _entries = decode_page(value)
        pending += [(key, index, action) for index, action, _n in rows if index not in ended]
    return pending


def delivered(web: RecordingServer, path: str, n: int, timeout: float = 30.0) -> list[Hit]:
    """Wait until ``n`` distinct messages were answered 200 on ``path``; returns every such request.

    Distinct by the payload's ``n``: a request sent just before a kill may still be answered 200 once the
    destination is up, so a message can arrive twice (at least once)."""
    def ok() -> list[Hit]:
        return [h for h in web.hits if h.path == path and h.status == 200]

    def distinct() -> int:
        return len({json.loads(h.body)["n"] for h in ok()})

    with web.cond:
        if not web.cond.wait_for(lambda: distinct() >= n, timeout):
            raise AssertionError(f"{path}: {distinct()} of {n} messages delivered in {timeout} s")
        return ok()


def publish_qos1(tc: ThingcoreProcess, messages: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 1 and return once every PUBACK is in."""
    with PahoClient(tc.mqtt_port, uid("pub")) as c:
        c.connect()
        for topic, payload in messages:
            assert c.publish(topic, payload, 1) == 0


def body(i: int) -> bytes:
    return json.dumps({"n": i, "text": f"grüße ✓ {i}", "nested": {"a": [1, 2.5, None, True]}}).encode()


def pending_everywhere(tc: ThingcoreProcess, name: str, n: int) -> bool:
    """Every action tried each delivery at least once and is waiting to try again."""
    actions = [a for a in rule_metrics(tc, name) if not a["action"].startswith("error:")]
    return all(a["retried"] >= n and a["succeeded"] == 0 and a["failed"] == 0 for a in actions)


def test_kill_9_with_deliveries_pending_delivers_them_after_restart(tmp_path: Path, web: RecordingServer,
                                                                     redis_server: Redis) -> None:
    import redis

    config = {"rules": PATIENT, "destinations": {"streams": {"out": {"redis": redis_server.url}}}}
    tc = ThingcoreProcess(tmp_path / "tc", config).start()
    try:
        confirm_destination(iot_client(tc), web)
        name = rule_name("crash")
        path = f"/hook/{name}"
        iot_client(tc).create_topic_rule(ruleName=name, topicRulePayload={
            "sql": f"SELECT *, topic(3) AS device FROM 'crash/{name}/+'", "awsIotSqlVersion": "2016-03-23",
            "actions": [{"http": {"url": web.url + path, "headers": [{"key": "x-device", "value": "${topic(3)}"}]}},
                        {"kinesis": {"streamName": "out", "partitionKey": "${topic(3)}", "roleArn": ROLE}}]})
        redis_server.stop()
        publish_qos1(tc, [(f"crash/{name}/dev{i % 3}", body(i)) for i in range(N)])
        wait_for(lambda: pending_everywhere(tc, name, N), timeout=20, what="every delivery tried and pending")
        assert engine_metrics(tc)["outboxPending"] == 2 * N
        assert tc.metrics()["thingcore_rules_outbox_pending"] == 2 * N

        tc.kill()
        assert len(stored_entries(tc)) == 2 * N  # one per message and durable action
        web.status = 200
        redis_server.start()
        tc.start()

        hits = delivered(web, path, N)
        got = Counter(json.loads(h.body)["n"] for h in hits)
        assert sorted(got) == list(range(N))
        duplicates = sum(got.values()) - N
        print(f"http deliveries after the restart: {len(hits)} for {N} messages ({duplicates} duplicates)")
        for h in hits:
            doc = json.loads(h.body)
            i = doc["n"]
            assert doc == {**json.loads(body(i)), "device": f"dev{i % 3}"}
            assert h.headers["x-device"] == f"dev{i % 3}"
            assert h.headers["content-type"] == "application/json"

        r = redis.Redis.from_url(redis_server.url)
        entries = wait_for(lambda: (e := r.xrange("out")) and len(e) >= N and e, timeout=30, what=f"{N} stream entries")
        records = Counter(json.loads(f[b"data"])["n"] for _, f in entries)
        assert sorted(records) == list(range(N))
        assert all(f[b"partitionKey"].decode() == f"dev{json.loads(f[b'data'])['n'] % 3}" for _, f in entries)

        def drained() -> bool:
            m = engine_metrics(tc)
            return m["outboxPending"] == 0 and not m["outboxReplaying"]

        wait_for(drained, timeout=20, what="the outbox to drain")
        m = engine_metrics(tc)
        assert (m["outboxReplayed"], m["outboxDiscarded"]) == (2 * N, 0)
        prom = tc.metrics()
        assert prom["thingcore_rules_outbox_replayed_total"] == 2 * N
        assert prom["thingcore_rules_outbox_pending"] == 0
        assert all(a["succeeded"] >= N and a["failed"] == 0 for a in rule_metrics(tc, name))
        tc.stop()
        assert stored_entries(tc) == []
    finally:
        tc.kill()


def test_a_puback_means_the_deliveries_are_stored(tmp_path: Path, web: RecordingServer) -> None:
    """Killed right after the last PUBACK: every acknowledged message is in the outbox, Basic Ingest too."""
    tc = ThingcoreProcess(tmp_path / "tc", {"rules": PATIENT}).start()
    try:
        confirm_destination(iot_client(tc), web)
        name = rule_name("ack")
        path = f"/ack/{name}"
        iot_client(tc).create_topic_rule(ruleName=name, topicRulePayload={
            "sql": f"SELECT * FROM 'ack/{name}/#'",
            "actions": [{"http": {"url": web.url + path, "headers": [{"key": "x-topic", "value": "${topic()}"}]}}]})
        direct = [(f"ack/{name}/d/{i}", body(i)) for i in range(N)]
        ingest = [(f"$aws/rules/{name}/ingested/{i}", body(N + i)) for i in range(N)]
        publish_qos1(tc, [m for pair in zip(direct, ingest, strict=True) for m in pair])
        tc.kill()
        assert len(stored_entries(tc)) == 2 * N

        web.status = 200
        tc.start()
        hits = delivered(web, path, 2 * N)
        topics = {json.loads(h.body)["n"]: h.headers["x-topic"] for h in hits}
        assert topics == {**{i: f"ack/{name}/d/{i}" for i in range(N)},
                          **{N + i: f"ingested/{i}" for i in range(N)}}  # topic() without $aws/rules/<rule>/
    finally:
        tc.kill()


def test_a_rule_changed_while_deliveries_are_stored_gets_none_of_them(tmp_path: Path, web: RecordingServer) -> None:
    """Changed while thingcore was down (the rules directory applies it at start): the entries are discarded
    with a warning. A new description alone changes no delivery, live or at start: those entries stay."""
    tc = ThingcoreProcess(tmp_path / "tc", {"rules": PATIENT}).start()
    try:
        confirm_destination(iot_client(tc), web)
        iot = iot_client(tc)
        name, kept = rule_name("changed"), rule_name("kept")
        old, new, same = f"/old/{name}", f"/new/{name}", f"/same/{kept}"

        def payload(path: str, topic: str, **more: Any) -> dict[str, Any]:
            return {"sql": f"SELECT * FROM '{topic}'", "actions": [{"http": {"url": web.url + path}}], **more}

        iot.create_topic_rule(ruleName=name, topicRulePayload=payload(old, f"chg/{name}"))
        iot.create_topic_rule(ruleName=kept, topicRulePayload=payload(same, f"kept/{kept}", description="one"))
        publish_qos1(tc, [(f"chg/{name}", body(i)) for i in range(5)] + [(f"kept/{kept}", body(i)) for i in range(3)])
        wait_for(lambda: pending_everywhere(tc, name, 5) and pending_everywhere(tc, kept, 3), timeout=20,
                 what="the deliveries pending")
        iot.replace_topic_rule(ruleName=kept, topicRulePayload=payload(same, f"kept/{kept}", description="two"))
        assert engine_metrics(tc)["outboxPending"] == 8
        tc.kill()
        assert len(stored_entries(tc)) == 8

        rules_dir = tmp_path / "rules"
        rules_dir.mkdir()
        (rules_dir / f"{name}.json").write_text(json.dumps(payload(new, f"chg/{name}")))
        (rules_dir / f"{kept}.json").write_text(json.dumps(payload(same, f"kept/{kept}", description="three")))
        tc.config_path.write_text(to_toml({"rules": {**PATIENT, "directory": str(rules_dir)}}))
        web.status = 200
        tc.start()
        hits = delivered(web, same, 3)
        assert sorted({json.loads(h.body)["n"] for h in hits}) == [0, 1, 2]
        wait_for(lambda: engine_metrics(tc)["outboxDiscarded"] == 5, what="5 entries discarded")
        assert f"5 deliveries pending at the last stop were discarded because their rule was deleted or changed " \
               f"since they were queued: {name} (5)" in tc.log()
        # the new definition works, and gets only the message published after the restart
        publish_qos1(tc, [(f"chg/{name}", body(99))])
        [hit] = delivered(web, new, 1)
        assert json.loads(hit.body)["n"] == 99
        assert [h for h in web.hits if h.path == old and h.status == 200] == []
        m = engine_metrics(tc)
        assert (m["outboxReplayed"], m["outboxPending"]) == (3, 0)
        tc.stop()
        assert stored_entries(tc) == []
        assert len([h for h in web.hits if h.path == new]) == 1
    finally:
        tc.kill()


def test_a_rule_replaced_while_running_gives_its_pending_deliveries_up(tmp_path: Path,
                                                                       web: RecordingServer) -> None:
    tc = ThingcoreProcess(tmp_path / "tc", {"rules": PATIENT}).start()
    try:
        confirm_destination(iot_client(tc), web)
        iot = iot_client(tc)
        name = rule_name("live")
        old, new = f"/old/{name}", f"/new/{name}"
        iot.create_topic_rule(ruleName=name, topicRulePayload={
            "sql": f"SELECT * FROM 'live/{name}'", "actions": [{"http": {"url": web.url + old}}]})
        publish_qos1(tc, [(f"live/{name}", body(i)) for i in range(4)])
        wait_for(lambda: pending_everywhere(tc, name, 4), timeout=20, what="the deliveries pending")
        iot.replace_topic_rule(ruleName=name, topicRulePayload={
            "sql": f"SELECT * FROM 'live/{name}'", "actions": [{"http": {"url": web.url + new}}]})
        wait_for(lambda: engine_metrics(tc)["outboxDiscarded"] == 4, what="4 deliveries given up")
        assert engine_metrics(tc)["outboxPending"] == 0
        assert f"rule {name} was replaced or deleted: 4 pending deliveries of the old definition given up" in tc.log()
        tc.stop()
        assert stored_entries(tc) == []
        web.status = 200
        tc.start()
        publish_qos1(tc, [(f"live/{name}", body(9))])
        assert [json.loads(h.body)["n"] for h in delivered(web, new, 1)] == [9]
        assert engine_metrics(tc)["outboxReplayed"] == 0
    finally:
        tc.kill()


def test_a_clean_stop_keeps_pending_deliveries_for_the_next_start(tmp_path: Path, web: RecordingServer) -> None:
    tc = ThingcoreProcess(tmp_path / "tc", {"rules": PATIENT, "shutdown_grace": 0.5}).start()
    try:
        confirm_destination(iot_client(tc), web)
        name = rule_name("term")
        path = f"/term/{name}"
        iot_client(tc).create_topic_rule(ruleName=name, topicRulePayload={
            "sql": f"SELECT * FROM 'term/{name}'", "actions": [{"http": {"url": web.url + path}}]})
        publish_qos1(tc, [(f"term/{name}", body(i)) for i in range(N)])
        wait_for(lambda: pending_everywhere(tc, name, N), timeout=20, what="every delivery tried and pending")
        assert tc.stop() == 0  # SIGTERM
        assert len(stored_entries(tc)) == N

        web.status = 200
        tc.start()
        hits = delivered(web, path, N)
        assert sorted({json.loads(h.body)["n"] for h in hits}) == list(range(N))
        wait_for(lambda: engine_metrics(tc)["outboxPending"] == 0, what="the outbox to drain")
        tc.stop()
        assert stored_entries(tc) == []
    finally:
        tc.kill()


def test_after_a_restart_each_failed_delivery_gets_its_own_error_document(tmp_path: Path,
                                                                           web: RecordingServer) -> None:
    tc = ThingcoreProcess(tmp_path / "tc", {"rules": PATIENT}).start()
    try:
        confirm_destination(iot_client(tc), web)
        name = rule_name("errs")
        a, b, errors = f"/a/{name}", f"/b/{name}", uid("errors")
        iot_client(tc).create_topic_rule(ruleName=name, topicRulePayload={
            "sql": f"SELECT * FROM 'errs/{name}'",
            "actions": [{"http": {"url": web.url + a}}, {"http": {"url": web.url + b}}],
            "errorAction": {"kinesis": {"streamName": errors, "partitionKey": "e", "roleArn": ROLE}}})
        publish_qos1(tc, [(f"errs/{name}", body(7))])
        wait_for(lambda: pending_everywhere(tc, name, 1), timeout=20, what="both deliveries pending")
        tc.kill()
        # the next start gives up after one try: the destination is still down
        tc.config_path.write_text(to_toml({"rules": {"retry_delay": 0.05, "max_attempts": 1, **LOOPBACK_DESTINATIONS}}))
        tc.start()

        def documents() -> list[dict[str, Any]]:
            resp = httpx.get(f"http://127.0.0.1:{tc.http_port}/api/v1/streams/{errors}/records", timeout=10)
            if resp.status_code != 200:
                return []
            return [json.loads(base64.b64decode(r["data"])) for r in resp.json()["records"]]

        docs = wait_for(lambda: (d := documents()) and len(d) >= 2 and d, timeout=20, what="2 error documents")
        wait_for(lambda: engine_metrics(tc)["outboxPending"] == 0, what="the outbox to drain")
        assert len(documents()) == 2
    finally:
        tc.kill()
    # the firing's aggregation was in memory: after the restart each action's failure is its own document
    assert sorted(d["failures"][0]["failedResource"] for d in docs) == [web.url + a, web.url + b]
    for d in docs:
        assert len(d["failures"]) == 1 and d["ruleName"] == name and d["topic"] == f"errs/{name}"
        assert base64.b64decode(d["base64OriginalPayload"]) == body(7)
