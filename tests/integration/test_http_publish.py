"""HTTP publish and the retained-message API as AWS IoT's data plane: boto3 ``iot-data``, the AWS CLI
and curl against a real server, with MQTT subscribers on the other side.

These run against the default ``verify_signatures = "non-loopback"``: boto3 signs with dummy keys that
the server does not know, which a loopback client may do (the signing itself is covered by
test_http_sigv4.py).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from tests.conftest import require_tool
from tests.integration.mqtt_helpers import QUIET, TIMEOUT, V5, V311, PahoClient, RawClient, uid
from tests.server import ThingcoreProcess

from thingcore.mqtt.packets import Puback, Publish, Subscription

pytestmark = pytest.mark.integration

MAX_PACKET = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    with ThingcoreProcess(tmp_path_factory.mktemp("http"), {"limits": {"max_packet_size": MAX_PACKET}}) as tc:
        yield tc


def iot_data(server: ThingcoreProcess) -> Any:
    return boto3.client("iot-data", endpoint_url=f"http://127.0.0.1:{server.http_port}", region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def iot(server: ThingcoreProcess) -> Any:
    return iot_data(server)


@pytest.fixture
def sub(server: ThingcoreProcess) -> Iterator[PahoClient]:
    with PahoClient(server.mqtt_port, protocol=V5) as c:
        c.connect()
        yield c


def url(server: ThingcoreProcess, path: str) -> str:
    return f"http://127.0.0.1:{server.http_port}{path}"


@pytest.mark.parametrize("qos", [0, 1])
def test_boto3_publish_reaches_mqtt_subscriber_with_its_mqtt5_properties(
        iot: Any, sub: PahoClient, qos: int) -> None:
    topic = f"http/pub/{uid()}"
    sub.subscribe(topic, 1)
    iot.publish(topic=topic, qos=qos, payload=b'{"temp": 21}', contentType="application/json",
                responseTopic=f"{topic}/reply", correlationData=base64.b64encode(b"req-7").decode(),
                userProperties=[{"deviceName": "alpha"}, {"deviceCnt": "45"}], payloadFormatIndicator="UTF8_DATA",
                messageExpiry=120)
    got = sub.expect()
    assert (got.topic, got.payload, got.qos, got.retain) == (topic, b'{"temp": 21}', qos, False)
    assert got.prop("ContentType") == "application/json"
    assert got.prop("ResponseTopic") == f"{topic}/reply"
    assert got.prop("CorrelationData") == b"req-7"
    assert got.prop("UserProperty") == [("deviceName", "alpha"), ("deviceCnt", "45")]
    assert got.prop("PayloadFormatIndicator") == 1
    assert 0 < got.prop("MessageExpiryInterval") <= 120


def test_binary_and_empty_payloads_arrive_unchanged(iot: Any, sub: PahoClient) -> None:
    topic = f"http/bin/{uid()}"
    sub.subscribe(topic, 0)
    blob = bytes(range(256)) * 4
    iot.publish(topic=topic, payload=blob)
    iot.publish(topic=topic)
    assert sub.expect().payload == blob
    assert sub.expect().payload == b""


def test_qos1_publish_is_stored_for_an_offline_persistent_session(server: ThingcoreProcess, iot: Any) -> None:
    cid, topic = uid("offline"), f"http/offline/{uid()}"
    c = PahoClient(server.mqtt_port, cid, protocol=V311, clean=False)
    c.connect()
    c.subscribe(topic, 1)
    c.disconnect()
    iot.publish(topic=topic, qos=1, payload=b"queued over HTTP")  # answered once the copy is committed
    with PahoClient(server.mqtt_port, cid, protocol=V311, clean=False) as again:
        assert again.connect().session_present
        got = again.expect()
        assert (got.payload, got.qos) == (b"queued over HTTP", 1)


def test_retained_publish_get_list_and_delete(server: ThingcoreProcess, iot: Any) -> None:
    topic = f"http/retained/{uid()}"
    iot.publish(topic=topic, qos=1, retain=True, payload=b"last value", userProperties=[{"unit": "C"}])
    with PahoClient(server.mqtt_port) as late:
        late.connect()
        late.subscribe(topic, 1)
        got = late.expect()
        assert (got.payload, got.retain) == (b"last value", True)
    msg = iot.get_retained_message(topic=topic)
    assert (msg["topic"], msg["payload"], msg["qos"]) == (topic, b"last value", 1)
    assert json.loads(msg["userProperties"]) == [{"unit": "C"}]
    assert msg["lastModifiedTime"] > 1_600_000_000_000  # epoch milliseconds
    listed = [t for page in _pages(iot, 200) for t in page if t["topic"] == topic]
    assert listed == [{"topic": topic, "payloadSize": 10, "qos": 1, "lastModifiedTime": msg["lastModifiedTime"]}]
    iot.publish(topic=topic, retain=True, payload=b"")  # an empty retained publish deletes it
    with pytest.raises(ClientError) as err:
        iot.get_retained_message(topic=topic)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def _pages(iot: Any, size: int) -> list[list[dict]]:
    pages, token = [], None
    while True:
        kwargs = {"maxResults": size, **({"nextToken": token} if token else {})}
        resp = iot.list_retained_messages(**kwargs)
        pages.append(resp["retainedTopics"])
        token = resp.get("nextToken")
        if not token:
            return pages


def test_list_retained_messages_pages_through_every_topic_once(iot: Any) -> None:
    prefix = f"http/page/{uid()}"
    topics = [f"{prefix}/{i:02d}" for i in range(7)]
    for t in topics:
        iot.publish(topic=t, retain=True, payload=t.encode())
    pages = _pages(iot, 2)
    seen = [item["topic"] for page in pages for item in page]
    assert all(len(page) <= 2 for page in pages)
    assert len(seen) == len(set(seen))
    assert [t for t in seen if t.startswith(prefix + "/")] == topics
    paginator = iot.get_paginator("list_retained_messages")  # boto3's own paginator follows nextToken too
    via_paginator = [i["topic"] for p in paginator.paginate(PaginationConfig={"PageSize": 3})
                     for i in p["retainedTopics"]]
    assert [t for t in via_paginator if t.startswith(prefix + "/")] == topics
    for t in topics:
        iot.publish(topic=t, retain=True)


def test_aws_cli_publish(server: ThingcoreProcess, sub: PahoClient, tmp_path: Any) -> None:
    topic = f"http/cli/{uid()}"
    sub.subscribe(topic, 1)
    aws = shutil.which("aws")
    cmd = [aws] if aws else [sys.executable, "-m", "awscli"]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    done = subprocess.run([*cmd, "iot-data", "publish", "--endpoint-url", url(server, ""), "--topic", topic,
                           "--qos", "1", "--payload", "hello from the AWS CLI"],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    got = sub.expect()
    assert (got.topic, got.payload, got.qos) == (topic, b"hello from the AWS CLI", 1)


def test_curl_publish_with_unencoded_slashes(server: ThingcoreProcess, sub: PahoClient) -> None:
    curl = require_tool("curl")
    topic = f"http/curl/{uid()}/a/b"
    sub.subscribe(topic, 1)
    done = subprocess.run([curl, "-sS", "-X", "POST", "--data-binary", "@-", url(server, f"/topics/{topic}?qos=1")],
                          input=b"from curl", capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["message"] == "OK" and len(answer["traceId"]) == 36
    assert sub.expect().payload == b"from curl"


def test_success_answer_has_aws_shape(server: ThingcoreProcess) -> None:
    r = httpx.post(url(server, f"/topics/http%2Fshape%2F{uid()}"), content=b"x")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"message": "OK", "traceId": r.headers["x-amzn-requestid"]}


BAD_REQUESTS = [
    # (what, path, query, headers, body, status, error type, words in the message)
    ("wildcard + in topic", "/topics/a%2F%2B%2Fb", {}, {}, b"x", 400, "InvalidRequestException", "wildcard"),
    ("wildcard # in topic", "/topics/a/%23", {}, {}, b"x", 400, "InvalidRequestException", "wildcard"),
    ("empty topic", "/topics/", {}, {}, b"x", 400, "InvalidRequestException", "empty topic"),
    ("topic not UTF-8", "/topics/a%FF", {}, {}, b"x", 400, "InvalidRequestException", "UTF-8"),
    ("NUL in topic", "/topics/a%00b", {}, {}, b"x", 400, "InvalidRequestException", "U+0000"),
    ("qos 2", "/topics/a", {"qos": "2"}, {}, b"x", 400, "InvalidRequestException", "qos must be 0 or 1"),
    ("qos not a number", "/topics/a", {"qos": "one"}, {}, b"x", 400, "InvalidRequestException", "qos"),
    ("retain not boolean", "/topics/a", {"retain": "yes"}, {}, b"x", 400, "InvalidRequestException", "retain"),
    ("negative expiry", "/topics/a", {"messageExpiry": "-1"}, {}, b"x", 400, "InvalidRequestException",
     "messageExpiry"),
    ("wildcard response topic", "/topics/a", {"responseTopic": "r/#"}, {}, b"x", 400, "InvalidRequestException",
     "responseTopic"),
    ("user properties not base64", "/topics/a", {}, {"x-amz-mqtt5-user-properties": "%%%"}, b"x", 400,
     "InvalidRequestException", "user-properties"),
    ("user properties not an array", "/topics/a", {},
     {"x-amz-mqtt5-user-properties": base64.b64encode(b'{"a":"b"}').decode()}, b"x", 400,
     "InvalidRequestException", "JSON array"),
    ("correlation data not base64", "/topics/a", {}, {"x-amz-mqtt5-correlation-data": "***"}, b"x", 400,
     "InvalidRequestException", "base64"),
    ("unknown payload format", "/topics/a", {}, {"x-amz-mqtt5-payload-format-indicator": "JSON"}, b"x", 400,
     "InvalidRequestException", "UTF8_DATA"),
    ("UTF-8 declared, bytes sent", "/topics/a", {}, {"x-amz-mqtt5-payload-format-indicator": "UTF8_DATA"},
     b"\xff\xfe", 400, "InvalidRequestException", "not valid UTF-8"),
    ("oversized body", "/topics/a", {}, {}, b"x" * (MAX_PACKET + 1), 413, "RequestEntityTooLargeException",
     "limit"),
    ("bad maxResults", "/retainedMessage", {"maxResults": "500"}, {}, None, 400, "InvalidRequestException",
     "maxResults"),
    ("bad nextToken", "/retainedMessage", {"nextToken": "!!"}, {}, None, 400, "InvalidRequestException",
     "nextToken"),
    ("wildcard retained topic", "/retainedMessage/a%2F%2B", {}, {}, None, 400, "InvalidRequestException",
     "wildcard"),
    ("unknown path", "/nothing/here", {}, {}, None, 404, "ResourceNotFoundException", "Not Found"),
    ("wrong method", "/topics/a", {}, {}, None, 405, "MethodNotAllowedException", "Method Not Allowed"),
]


@pytest.mark.parametrize(("what", "path", "query", "headers", "body", "status", "error_type", "words"),
                         BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request_gets_an_aws_error_and_the_server_keeps_serving(
        server: ThingcoreProcess, sub: PahoClient, what: str, path: str, query: dict, headers: dict,
        body: bytes | None, status: int, error_type: str, words: str) -> None:
    topic = f"http/after/{uid()}"
    sub.subscribe("a", 0)
    sub.subscribe(topic, 0)
    with httpx.Client() as http:
        method = "GET" if body is None else "POST"
        r = http.request(method, url(server, path), params=query, headers=headers, content=body)
        assert r.status_code == status, r.text
        assert r.headers["x-amzn-errortype"] == error_type
        assert words in r.json()["message"]
        ok = http.post(url(server, f"/topics/{topic}"), content=b"still here")
        assert ok.status_code == 200
    assert sub.expect().payload == b"still here"  # and nothing was published to "a" by the bad request
    sub.unsubscribe("a")


def test_chunked_oversized_body_is_refused(server: ThingcoreProcess) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_PACKET // 1024 + 2):
            yield b"y" * 1024

    r = httpx.post(url(server, "/topics/a"), content=chunks())
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 413
    assert r.headers["x-amzn-errortype"] == "RequestEntityTooLargeException"
    assert httpx.post(url(server, "/topics/a"), content=b"small").status_code == 200


def test_boto3_sees_typed_errors(iot: Any) -> None:
    with pytest.raises(ClientError) as err:
        iot.publish(topic="a/+/b", payload=b"x")
    assert err.value.response["Error"]["Code"] == "InvalidRequestException"
    with pytest.raises(ClientError) as err:
        iot.publish(topic="big", payload=b"z" * (MAX_PACKET + 1))
    assert err.value.response["Error"]["Code"] == "RequestEntityTooLargeException"


def test_http_publisher_waits_while_a_subscriber_queue_drains(thingcore_factory: Any) -> None:
    """Back-pressure as for MQTT publishers: past half the queue bound of a subscriber that is making progress
    the answer waits until it has caught up (the timeout is long here, so only the draining can release it).
    A subscriber that has acknowledged nothing since its backlog began is not waited for (broker/stall.py)."""
    tc = thingcore_factory({"limits": {"max_queued_messages": 20, "backpressure_timeout": 60}})
    topic = f"http/backpressure/{uid()}"
    with RawClient(tc.mqtt_port) as sub, httpx.Client() as http:
        sub.connect(uid("slow"), properties={"receive_maximum": 1})  # one message in flight at a time
        sub.subscribe(Subscription(topic, 1))
        for i in range(10):  # one in flight, nine queued: below half the bound
            assert http.post(url(tc, f"/topics/{topic}?qos=1"), content=f"m{i}".encode()).status_code == 200
        received = []
        first = sub.expect(Publish)  # the subscriber makes progress: m0 acknowledged, m1 in flight
        received.append(first.payload)
        sub.send(Puback(first.packet_id))
        assert http.post(url(tc, f"/topics/{topic}?qos=1"), content=b"m10").status_code == 200  # 9 queued
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(http.post, url(tc, f"/topics/{topic}?qos=1"), content=b"m11")
            with pytest.raises(FutureTimeout):
                answer.result(QUIET)  # the tenth queued message: the answer waits
            while len(received) < 12:
                p = sub.expect(Publish)
                received.append(p.payload)
                sub.send(Puback(p.packet_id))
            assert answer.result(TIMEOUT).status_code == 200
    assert received == [f"m{i}".encode() for i in range(12)]
