"""dynamoDB/dynamoDBv2, kinesis/firehose and sqs rule actions end to end: boto3 creates the rules, paho
publishes, and the data is read back where it landed — the embedded defaults (through the HTTP API and the
``thingcore`` CLI) and real PostgreSQL, Redis Streams/lists and NATS JetStream servers."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.integration.engines import Nats, Postgres, Redis
from tests.integration.mqtt_helpers import PahoClient, uid, wait_for
from tests.integration.rules_helpers import iot_client, rule_name
from tests.server import ThingcoreProcess, free_port

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/rules"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/{}"


def api(tc: ThingcoreProcess, method: str, path: str, **kwargs: Any) -> Any:
    resp = httpx.request(method, f"http://127.0.0.1:{tc.http_port}/api/v1{path}", timeout=10, **kwargs)
    assert resp.status_code == 200, resp.text
    return resp.json()


def cli(tc: ThingcoreProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thingcore", *args, "--endpoint", f"http://127.0.0.1:{tc.http_port}"],
                          capture_output=True, text=True, timeout=60)


def publish(tc: ThingcoreProcess, *messages: tuple[str, Any]) -> None:
    with PahoClient(tc.mqtt_port, uid("pub")) as c:
        c.connect()
        for topic, payload in messages:
            c.publish(topic, payload if isinstance(payload, bytes) else json.dumps(payload).encode(), 1)


# -- embedded defaults ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    with ThingcoreProcess(tmp_path_factory.mktemp("data-actions"), {"rules": {"retry_delay": 0.05}}) as tc:
        yield tc


def test_dynamodb_rows_in_the_embedded_table_and_get_dynamodb_reads_them(embedded: ThingcoreProcess) -> None:
    iot = iot_client(embedded)
    name, table = rule_name("ddb"), uid("Readings")
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": f"SELECT temp, ts FROM 'ddb/{name}/+'", "awsIotSqlVersion": "2016-03-23",
        "actions": [{"dynamoDB": {"tableName": table, "roleArn": ROLE, "hashKeyField": "device",
                                  "hashKeyValue": "${topic(3)}", "rangeKeyField": "ts", "rangeKeyValue": "${ts}",
                                  "rangeKeyType": "NUMBER", "payloadField": "data"}}]})
    publish(embedded, (f"ddb/{name}/d1", {"temp": 21.5, "ts": 1}), (f"ddb/{name}/d1", {"temp": 22, "ts": 2}),
            (f"ddb/{name}/d2", {"temp": 7, "ts": 1}))
    rows = wait_for(lambda: (r := api(embedded, "GET", f"/tables/{table}/items")["items"]) and len(r) == 3 and r,
                    what="3 items")
    assert rows == [{"device": "d1", "ts": 1, "data": {"temp": 21.5, "ts": 1}},
                    {"device": "d1", "ts": 2, "data": {"temp": 22, "ts": 2}},
                    {"device": "d2", "ts": 1, "data": {"temp": 7, "ts": 1}}]
    assert {"name": table, "hashKey": "device", "rangeKey": "ts"} in api(embedded, "GET", "/tables")["tables"]

    # paging through the CLI gives the same items
    out = cli(embedded, "tables", "scan", table, "--limit", "2")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == rows

    # a rule's SQL reads a row back with get_dynamodb()
    look = rule_name("lookup")
    iot.create_topic_rule(ruleName=look, topicRulePayload={
        "sql": f"SELECT get_dynamodb('{table}', 'device', topic(3), 'ts', 2, '{ROLE}').data.temp AS last "
               f"FROM 'lookup/{look}/+'", "awsIotSqlVersion": "2016-03-23",
        "actions": [{"republish": {"topic": f"looked/{look}", "roleArn": ROLE}}]})
    with PahoClient(embedded.mqtt_port, uid("sub")) as c:
        c.connect()
        c.subscribe(f"looked/{look}", 1)
        c.publish(f"lookup/{look}/d1", b"{}", 1)
        assert json.loads(c.expect().payload) == {"last": 22}


def test_dynamodb_v2_writes_whole_items_and_delete_removes(embedded: ThingcoreProcess) -> None:
    iot = iot_client(embedded)
    name, table = rule_name("ddb2"), uid("Things")
    # the v1 rule registers the key schema; v2 writes whole items; a DELETE operation removes one
    iot.create_topic_rule(ruleName=name + "_v1", topicRulePayload={
        "sql": f"SELECT * FROM 'v1/{name}'", "actions": [{"dynamoDB": {
            "tableName": table, "roleArn": ROLE, "hashKeyField": "id", "hashKeyValue": "${id}",
            "operation": "${op}"}}]})
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": f"SELECT *, topic() AS source FROM 'v2/{name}'",
        "actions": [{"dynamoDBv2": {"putItem": {"tableName": table}, "roleArn": ROLE}}]})
    publish(embedded, (f"v1/{name}", {"id": "a", "op": "INSERT"}))
    wait_for(lambda: api(embedded, "GET", f"/tables/{table}/items")["items"], what="the v1 item")
    publish(embedded, (f"v2/{name}", {"id": "b", "color": "red", "n": [1, 2]}),
            (f"v1/{name}", {"id": "a", "op": "DELETE"}))
    wait_for(lambda: [i["id"] for i in api(embedded, "GET", f"/tables/{table}/items")["items"]] == ["b"],
             what="a deleted, b written")
    item = api(embedded, "GET", f"/tables/{table}/items/b")["item"]
    assert item == {"id": "b", "color": "red", "n": [1, 2], "source": f"v2/{name}"}


def test_kinesis_and_firehose_append_to_embedded_streams(embedded: ThingcoreProcess) -> None:
    iot = iot_client(embedded)
    name = rule_name("kin")
    stream, hose = uid("telemetry"), uid("hose")
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": f"SELECT * FROM 'kin/{name}/+'", "actions": [
            {"kinesis": {"streamName": stream, "partitionKey": "${topic(3)}", "roleArn": ROLE}},
            {"firehose": {"deliveryStreamName": hose, "separator": "\n", "roleArn": ROLE}}]})
    batch = rule_name("batch")
    iot.create_topic_rule(ruleName=batch, topicRulePayload={
        "sql": f"SELECT VALUE readings FROM 'batch/{batch}'", "actions": [
            {"firehose": {"deliveryStreamName": hose, "separator": ",", "batchMode": True, "roleArn": ROLE}}]})
    publish(embedded, *[(f"kin/{name}/dev{i % 2}", {"i": i}) for i in range(5)])
    records = wait_for(lambda: (r := api(embedded, "GET", f"/streams/{stream}/records")["records"])
                       and len(r) == 5 and r, what="5 kinesis records")
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert sorted((r["partitionKey"], json.loads(base64.b64decode(r["data"]))["i"]) for r in records) == \
        [("dev0", 0), ("dev0", 2), ("dev0", 4), ("dev1", 1), ("dev1", 3)]
    hosed = wait_for(lambda: (r := api(embedded, "GET", f"/streams/{hose}/records")["records"]) and len(r) == 5
                     and r, what="5 firehose records")
    assert all(base64.b64decode(r["data"]).endswith(b"}\n") for r in hosed)

    publish(embedded, (f"batch/{batch}", {"readings": [{"t": 1}, {"t": 2}, {"t": 3}]}))
    tail = wait_for(lambda: (r := api(embedded, "GET", f"/streams/{hose}/records", params={"from": 6})["records"])
                    and len(r) == 3 and r, what="3 batched records")
    assert [base64.b64decode(r["data"]) for r in tail] == [b'{"t":1},', b'{"t":2},', b'{"t":3},']

    out = cli(embedded, "streams", "read", stream, "--from", "4")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["seq"] for r in lines] == [4, 5]
    assert json.loads(lines[0]["text"]) in ({"i": 3}, {"i": 4}, {"i": 0}, {"i": 1}, {"i": 2})


def test_sqs_messages_in_the_embedded_queue(embedded: ThingcoreProcess) -> None:
    iot = iot_client(embedded)
    name, queue, q64 = rule_name("sqs"), uid("orders"), uid("orders64")
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": f"SELECT * FROM 'sqs/{name}'", "actions": [
            {"sqs": {"queueUrl": QUEUE_URL.format(queue), "roleArn": ROLE}},
            {"sqs": {"queueUrl": QUEUE_URL.format(q64), "useBase64": True, "roleArn": ROLE}}]})
    publish(embedded, *[(f"sqs/{name}", {"order": i}) for i in range(3)])
    wait_for(lambda: len(api(embedded, "POST", f"/queues/{q64}/receive", params={"max": 10, "delete": "false"})
                         ["messages"]) == 3, what="3 queued messages")
    out = cli(embedded, "queues", "receive", queue, "--max", "10")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert sorted(json.loads(m["body"])["order"] for m in got) == [0, 1, 2]
    assert len({m["messageId"] for m in got}) == 3
    assert api(embedded, "POST", f"/queues/{queue}/receive")["messages"] == []  # received means removed
    b64 = api(embedded, "POST", f"/queues/{q64}/receive", params={"max": 10})["messages"]
    assert sorted(json.loads(base64.b64decode(m["body"]))["order"] for m in b64) == [0, 1, 2]


def test_bad_parameters_are_refused_at_creation(embedded: ThingcoreProcess) -> None:
    iot = iot_client(embedded)
    bad = [
        {"dynamoDB": {"tableName": "T1x", "roleArn": ROLE, "hashKeyField": "id", "hashKeyValue": "x",
                      "hashKeyType": "BLOB"}},
        {"dynamoDB": {"tableName": "no spaces", "roleArn": ROLE, "hashKeyField": "id", "hashKeyValue": "x"}},
        {"firehose": {"deliveryStreamName": "h", "separator": ";", "roleArn": ROLE}},
        {"sqs": {"queueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/bad name", "roleArn": ROLE}},
    ]
    for action in bad:
        with pytest.raises(iot.exceptions.InvalidRequestException) as err:
            iot.create_topic_rule(ruleName=rule_name("bad"), topicRulePayload={"sql": "SELECT * FROM 'x'",
                                                                               "actions": [action]})
        assert next(iter(action)) in str(err.value)  # the message names the action


def test_streams_read_follow_prints_records_as_they_arrive(embedded: ThingcoreProcess) -> None:
    name, stream = rule_name("follow"), uid("live")
    iot_client(embedded).create_topic_rule(ruleName=name, topicRulePayload={
        "sql": f"SELECT * FROM 'follow/{name}'",
        "actions": [{"kinesis": {"streamName": stream, "partitionKey": "p", "roleArn": ROLE}}]})
    proc = subprocess.Popen([sys.executable, "-m", "thingcore", "streams", "read", stream, "--follow", "--endpoint",
                             f"http://127.0.0.1:{embedded.http_port}"], stdout=subprocess.PIPE, text=True)
    try:
        publish(embedded, (f"follow/{name}", {"n": 1}))
        first = json.loads(proc.stdout.readline())
        publish(embedded, (f"follow/{name}", {"n": 2}))
        second = json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(10)
    assert (first["seq"], json.loads(first["text"])) == (1, {"n": 1})
    assert (second["seq"], json.loads(second["text"])) == (2, {"n": 2})


def test_cli_errors_are_one_line(embedded: ThingcoreProcess) -> None:
    out = cli(embedded, "tables", "get", uid("Missing"), "nokey")
    assert out.returncode == 1
    assert out.stderr.startswith("error: ResourceNotFoundException") and "Traceback" not in out.stderr
    down = subprocess.run([sys.executable, "-m", "thingcore", "queues", "receive", "q", "--endpoint",
                           f"http://127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=60)
    assert down.returncode == 1 and down.stderr.startswith("error: cannot reach thingcore")


def test_embedded_data_survives_kill_9(thingcore_factory: Any) -> None:
    tc = thingcore_factory({"rules": {"retry_delay": 0.05}})
    name, table, stream, queue = rule_name("crash"), uid("Crash"), uid("crash"), uid("crashq")
    iot_client(tc).create_topic_rule(ruleName=name, topicRulePayload={
        "sql": f"SELECT * FROM 'crash/{name}'", "actions": [
            {"dynamoDB": {"tableName": table, "roleArn": ROLE, "hashKeyField": "id", "hashKeyValue": "${id}"}},
            {"kinesis": {"streamName": stream, "partitionKey": "${id}", "roleArn": ROLE}},
            {"sqs": {"queueUrl": QUEUE_URL.format(queue), "roleArn": ROLE}}]})
    publish(tc, *[(f"crash/{name}", {"id": f"i{i}"}) for i in range(3)])

    def delivered() -> bool:
        m = api(tc, "GET", f"/rules/{name}/metrics")["actions"]
        return all(a["succeeded"] == 3 for a in m)

    wait_for(delivered, what="3 deliveries per action")
    tc.kill()
    tc.start()
    assert [i["id"] for i in api(tc, "GET", f"/tables/{table}/items")["items"]] == ["i0", "i1", "i2"]
    assert [r["seq"] for r in api(tc, "GET", f"/streams/{stream}/records")["records"]] == [1, 2, 3]
    assert len(api(tc, "POST", f"/queues/{queue}/receive", params={"delete": "false"})["messages"]) == 3
    # the rule survived too: the next record continues the stream's sequence
    publish(tc, (f"crash/{name}", {"id": "i3"}))
    records = wait_for(lambda: (r := api(tc, "GET", f"/streams/{stream}/records")["records"]) and len(r) == 4 and r,
                       what="a 4th record")
    assert records[-1]["seq"] == 4


# -- real engines ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    pg = Postgres().start()
    yield pg
    pg.close()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[Redis]:
    r = Redis().start()
    yield r
    r.close()


@pytest.fixture(scope="module")
def nats_server() -> Iterator[Nats]:
    n = Nats().start()
    yield n
    n.close()


def test_dynamodb_into_postgresql(tmp_path: Any, postgres: Postgres) -> None:
    import asyncpg

    config = {"destinations": {"tables": {"dsn": postgres.dsn}}}
    with ThingcoreProcess(tmp_path / "pg", config) as tc:
        iot = iot_client(tc)
        name, table = rule_name("pg"), uid("Readings").replace("-", "_")
        iot.create_topic_rule(ruleName=name, topicRulePayload={
            "sql": f"SELECT * FROM 'pg/{name}/+'", "actions": [{"dynamoDB": {
                "tableName": table, "roleArn": ROLE, "hashKeyField": "device", "hashKeyValue": "${topic(3)}",
                "hashKeyType": "STRING", "rangeKeyField": "ts", "rangeKeyValue": "${ts}", "rangeKeyType": "NUMBER"}}]})
        publish(tc, (f"pg/{name}/d1", {"ts": 1, "v": "a"}), (f"pg/{name}/d1", {"ts": 2, "v": "b"}))
        wait_for(lambda: len(api(tc, "GET", f"/tables/{table}/items")["items"]) == 2, what="2 rows via the API")

        async def rows() -> list:
            conn = await asyncpg.connect(postgres.dsn)
            try:
                return [(r[0], r[1], json.loads(r[2])) for r in await conn.fetch(
                    f'SELECT hash_key, range_key, item::text FROM "{table}" ORDER BY range_key')]
            finally:
                await conn.close()

        assert asyncio.run(rows()) == [("d1", "1", {"device": "d1", "ts": 1, "payload": {"ts": 1, "v": "a"}}),
                                       ("d1", "2", {"device": "d1", "ts": 2, "payload": {"ts": 2, "v": "b"}})]
        look = rule_name("pglook")
        iot.create_topic_rule(ruleName=look, topicRulePayload={
            "sql": f"SELECT get_dynamodb('{table}', 'device', 'd1', 'ts', 1, '{ROLE}').payload.v AS v "
                   f"FROM 'pglook/{look}'", "awsIotSqlVersion": "2016-03-23",
            "actions": [{"republish": {"topic": f"pglooked/{look}", "roleArn": ROLE}}]})
        with PahoClient(tc.mqtt_port, uid("sub")) as c:
            c.connect()
            c.subscribe(f"pglooked/{look}", 1)
            c.publish(f"pglook/{look}", b"{}", 1)
            assert json.loads(c.expect().payload) == {"v": "a"}


def test_streams_and_queues_into_redis_and_nats(tmp_path: Any, redis_server: Redis, nats_server: Nats) -> None:
    import nats
    import redis

    config = {"destinations": {
        "streams": {"rstream": {"redis": redis_server.url}, "nstream": {"nats": nats_server.url,
                                                                         "key": "iot.telemetry"}},
        "queues": {"rqueue": {"redis": redis_server.url}}}}
    with ThingcoreProcess(tmp_path / "engines", config) as tc:
        name = rule_name("eng")
        iot_client(tc).create_topic_rule(ruleName=name, topicRulePayload={
            "sql": f"SELECT * FROM 'eng/{name}/+'", "actions": [
                {"kinesis": {"streamName": "rstream", "partitionKey": "${topic(3)}", "roleArn": ROLE}},
                {"firehose": {"deliveryStreamName": "nstream", "separator": "\n", "roleArn": ROLE}},
                {"sqs": {"queueUrl": QUEUE_URL.format("rqueue"), "roleArn": ROLE}}]})
        publish(tc, *[(f"eng/{name}/dev{i}", {"i": i}) for i in range(4)])
        r = redis.Redis.from_url(redis_server.url)
        entries = wait_for(lambda: (e := r.xrange("rstream")) and len(e) == 4 and e, what="4 Redis stream entries")
        assert sorted((f[b"partitionKey"].decode(), json.loads(f[b"data"])["i"]) for _, f in entries) == \
            [(f"dev{i}", i) for i in range(4)]
        bodies = wait_for(lambda: (b := r.lrange("rqueue", 0, -1)) and len(b) == 4 and b, what="4 list items")
        assert sorted(json.loads(b)["i"] for b in bodies) == [0, 1, 2, 3]

        async def consume() -> list[bytes]:
            nc = await nats.connect(nats_server.url)
            try:
                js = nc.jetstream()
                sub = await js.pull_subscribe("iot.telemetry", durable="check")
                got: list[bytes] = []
                while len(got) < 4:
                    for m in await sub.fetch(4 - len(got), timeout=10):
                        got.append(m.data)
                        await m.ack()
                return got
            finally:
                await nc.close()

        data = asyncio.run(consume())
        assert sorted(json.loads(d)["i"] for d in data) == [0, 1, 2, 3]
        assert all(d.endswith(b"\n") for d in data)


def test_a_dead_destination_is_retried_then_reaches_the_error_action(tmp_path: Any) -> None:
    dead = free_port()  # nothing listens there
    config = {"rules": {"retry_delay": 0.05, "max_attempts": 3},
              "destinations": {"streams": {"down": {"redis": f"redis://127.0.0.1:{dead}/0"}}}}
    with ThingcoreProcess(tmp_path / "dead", config) as tc:
        name = rule_name("dead")
        iot_client(tc).create_topic_rule(ruleName=name, topicRulePayload={
            "sql": f"SELECT * FROM 'dead/{name}'",
            "actions": [{"kinesis": {"streamName": "down", "partitionKey": "k", "roleArn": ROLE}}],
            "errorAction": {"republish": {"topic": f"errors/{name}", "roleArn": ROLE}}})
        with PahoClient(tc.mqtt_port, uid("sub")) as c:
            c.connect()
            c.subscribe(f"errors/{name}", 1)
            c.publish(f"dead/{name}", b'{"n": 1}', 1)
            doc = json.loads(c.expect().payload)
            c.no_more()
        assert doc["ruleName"] == name
        assert base64.b64decode(doc["base64OriginalPayload"]) == b'{"n": 1}'
        [failure] = doc["failures"]
        assert failure["failedAction"] == "KinesisAction"
        assert failure["failedResource"] == "down"
        assert "unreachable" in failure["errorMessage"] and "after 3 tries" in failure["errorMessage"]


def test_a_destination_down_for_a_while_gets_every_message_when_back(tmp_path: Any, redis_server: Redis) -> None:
    import redis

    config = {"rules": {"retry_delay": 0.2, "max_attempts": 20},
              "destinations": {"streams": {"flaky": {"redis": redis_server.url}}}}
    with ThingcoreProcess(tmp_path / "flaky", config) as tc:
        name = rule_name("flaky")
        iot_client(tc).create_topic_rule(ruleName=name, topicRulePayload={
            "sql": f"SELECT * FROM 'flaky/{name}'",
            "actions": [{"kinesis": {"streamName": "flaky", "partitionKey": "k", "roleArn": ROLE}}]})
        redis_server.stop()
        try:
            publish(tc, *[(f"flaky/{name}", {"n": i}) for i in range(5)])

            def retried() -> bool:
                m = api(tc, "GET", f"/rules/{name}/metrics")["actions"][0]
                return m["retried"] >= 5

            wait_for(retried, what="the deliveries to be retried while Redis is down")
        finally:
            redis_server.start()
        r = redis.Redis.from_url(redis_server.url)
        entries = wait_for(lambda: (e := r.xrange("flaky")) and len(e) >= 5 and e, timeout=30,
                           what="5 entries after Redis came back")
        assert sorted({json.loads(f[b"data"])["n"] for _, f in entries}) == [0, 1, 2, 3, 4]
        m = api(tc, "GET", f"/rules/{name}/metrics")["actions"][0]
        assert m["succeeded"] == 5 and m["failed"] == 0
