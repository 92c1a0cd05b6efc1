"""The device SDK's pure parts: back-off with jitter, the bounded publish queue, payload and property
encoding, shadow error types, and SigV4 signatures checked against botocore and thingcore's verifier."""

from __future__ import annotations

import asyncio
import calendar
import random
import time

import pytest

from thingcore.device import Backoff, MessageDropped, QueueFull
from thingcore.device.delivery import Delivery, Outgoing, PublishQueue
from thingcore.device.errors import (
    ShadowInternalError,
    ShadowNotFound,
    ShadowRejected,
    ShadowThrottled,
    ShadowVersionConflict,
    shadow_rejection,
)
from thingcore.device.message import encode_payload, normalize_properties, paho_properties, properties_dict
from thingcore.device.options import AwsCredentials, default_port
from thingcore.device.sigv4 import presign_websocket, sign_headers
from thingcore.device.topics import TopicMatcher, check_filter, check_topic


def test_backoff_grows_to_its_cap_with_jitter_in_the_upper_half() -> None:
    b = Backoff(initial=1.0, maximum=8.0)
    rng = random.Random(7)
    for attempt, cap in enumerate([1, 2, 4, 8, 8, 8, 8]):
        delays = [b.delay(attempt, rng) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays), (attempt, min(delays), max(delays))
        assert max(delays) - min(delays) > cap / 4  # spread: a fleet does not come back in lockstep
    assert b.delay(10_000, rng) <= 8.0  # no overflow for a device that was away for a long time


@pytest.mark.parametrize("kwargs", [{"initial": 0}, {"initial": 5, "maximum": 1}, {"multiplier": 0.5}])
def test_backoff_rejects_nonsense(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def _items(loop: asyncio.AbstractEventLoop, n: int) -> list[Outgoing]:
    return [Outgoing(f"t/{i}", b"", 1, False, {}, Delivery(loop, f"t/{i}", 1)) for i in range(n)]


@pytest.mark.parametrize(("policy", "kept", "lost"), [("drop_oldest", [1, 2, 3], 0), ("drop_new", [0, 1, 2], 3)])
def test_queue_drop_policies(policy: str, kept: list[int], lost: int) -> None:
    loop = asyncio.new_event_loop()
    try:
        q = PublishQueue(3, policy)
        items = _items(loop, 4)
        for item in items:
            q.put(item)
        assert [q.popleft().topic for _ in range(len(q))] == [f"t/{i}" for i in kept]
        assert isinstance(items[lost].delivery.exception(), MessageDropped)
        assert q.dropped == 1
    finally:
        loop.close()


def test_queue_error_policy_refuses_and_keeps_everything() -> None:
    loop = asyncio.new_event_loop()
    try:
        q = PublishQueue(2, "error")
        items = _items(loop, 3)
        q.put(items[0])
        q.put(items[1])
        with pytest.raises(QueueFull):
            q.put(items[2])
        assert len(q) == 2 and not items[0].delivery.done()
    finally:
        loop.close()


def test_payload_encoding() -> None:
    assert encode_payload(b"\x00") == b"\x00"
    assert encode_payload("é") == "é".encode()
    assert encode_payload({"a": [1, 2.5, True, None]}) == b'{"a":[1,2.5,true,null]}'
    assert encode_payload(None) == b""
    assert encode_payload(42) == b"42"
    with pytest.raises(TypeError, match="JSON"):
        encode_payload({1, 2})


def test_properties_round_trip_through_paho() -> None:
    props = normalize_properties({"content_type": "application/json", "correlation_data": "abc",
                                  "user_properties": {"a": "1", "b": "2"}, "message_expiry": 60,
                                  "payload_format_indicator": 1, "response_topic": "r/t", "ignored_none": None})
    assert props["correlation_data"] == b"abc"
    back = properties_dict(paho_properties(props))
    assert back == {**props, "user_properties": [("a", "1"), ("b", "2")]}
    with pytest.raises(TypeError, match="unknown publish property"):
        normalize_properties({"contentType": "x"})
    with pytest.raises(TypeError):
        normalize_properties({"user_properties": {"a": 1}})


def test_topic_checks_and_matching() -> None:
    check_topic("a/b")
    for bad in ("", "a/+", "a/#", "a\x00b"):
        with pytest.raises(ValueError):
            check_topic(bad)
    for bad in ("a/#/b", "a+/b", "$share/g"):
        with pytest.raises(ValueError):
            check_filter(bad)
    assert TopicMatcher("$share/g/a/+/c").matches("a/b/c")
    assert TopicMatcher("a/#").matches("a")
    assert not TopicMatcher("#").matches("$aws/things/x/shadow/update/delta")
    assert TopicMatcher("$aws/things/+/shadow/#").matches("$aws/things/x/shadow/get/accepted")


def test_shadow_rejections_map_to_types() -> None:
    assert type(shadow_rejection(404, "gone")) is ShadowNotFound
    assert type(shadow_rejection(409, "Version conflict")) is ShadowVersionConflict
    assert type(shadow_rejection(429, "slow down")) is ShadowThrottled
    assert type(shadow_rejection(503, "unavailable")) is ShadowInternalError
    odd = shadow_rejection("weird", "?")
    assert type(odd) is ShadowRejected and odd.code == 0
    err = shadow_rejection(400, "Invalid JSON", "tok", {"code": 400, "message": "Invalid JSON"})
    assert (err.code, err.message, err.client_token) == (400, "Invalid JSON", "tok")


def test_default_ports_follow_thingcore_then_aws() -> None:
    assert default_port("mqtt", False, False) == 1883
    assert default_port("mqtt", True, True) == 8883
    assert default_port("websockets", False, False) == 8080
    assert default_port("websockets", True, False) == 443
    assert default_port("http", True, True) == 8443


CREDS = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "token/+=", "eu-west-1")


def test_signed_headers_match_botocore() -> None:
    pytest.importorskip("botocore", reason="botocore (test extra) is needed to cross-check SigV4")
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = "https://data.example.com/topics/a%2Fb%20c?qos=1&retain=true"
    request = AWSRequest(method="POST", url=url, data=b'{"x":1}', headers={})
    SigV4Auth(Credentials(CREDS.access_key_id, CREDS.secret_access_key, CREDS.session_token), "iotdata",
              CREDS.region).add_auth(request)
    amz_date = request.headers["X-Amz-Date"]
    now = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    ours = sign_headers(CREDS, "POST", "data.example.com", "/topics/a%2Fb%20c", {"qos": "1", "retain": "true"},
                        b'{"x":1}', now=now)
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-security-token"] == CREDS.session_token


def test_presigned_websocket_url_passes_thingcore_verification() -> None:
    from thingcore.http.sigv4 import AccessKey, Request, SignatureError, Verifier

    path = presign_websocket(CREDS, "iot.example.com:8080", "/mqtt")
    assert path.startswith("/mqtt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F")
    assert path.endswith("&X-Amz-Security-Token=token%2F%2B%3D")  # appended after signing, as AWS's SDKs do
    query = path.split("?", 1)[1].encode()
    verifier = Verifier([AccessKey(CREDS.access_key_id, CREDS.secret_access_key, "fleet")], mode="true")
    ok = Request("GET", b"/mqtt", query, [(b"host", b"iot.example.com:8080")])
    assert verifier.principal(ok, "10.0.0.1") == "fleet"
    tampered = Request("GET", b"/mqtt", query.replace(b"Expires=86400", b"Expires=86401"),
                       [(b"host", b"iot.example.com:8080")])
    with pytest.raises(SignatureError, match="signature"):
        verifier.principal(tampered, "10.0.0.1")
