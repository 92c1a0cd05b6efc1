"""Finding 12 of issue 12: a SigV4 signature that covers ``x-amz-content-sha256`` must cover the body that
arrives. A caller who saw one signed publish (its headers) sends them again with a body of its own; the
server must answer 400 ``XAmzContentSHA256Mismatch`` as AWS does and publish nothing. ``UNSIGNED-PAYLOAD``
(AWS allows it for S3 only) cannot carry a body either. Each test published the forged body on the code
before the fix."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from tests.integration.mqtt_helpers import PahoClient, uid
from tests.server import ThingcoreProcess

pytestmark = pytest.mark.integration

KEY = ("AKIDAUTHRULES0000001", "authrules/secret+key", "fleet")
MISMATCH = "The provided 'x-amz-content-sha256' header does not match what was computed."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    config = {"http": {"verify_signatures": True, "access_keys": [
        {"access_key_id": KEY[0], "secret_access_key": KEY[1], "principal": KEY[2]}]}}
    with ThingcoreProcess(tmp_path_factory.mktemp("authrules-sigv4"), config) as tc:
        yield tc


@pytest.fixture
def sub(server: ThingcoreProcess) -> Iterator[PahoClient]:
    with PahoClient(server.mqtt_port) as c:
        c.connect()
        yield c


def signed_headers(server: ThingcoreProcess, topic: str, body: bytes, content_sha256: str) -> tuple[str, dict]:
    """botocore's signature of a publish whose signed headers include the declared payload hash."""
    url = f"http://127.0.0.1:{server.http_port}/topics/{topic}?qos=1"
    req = AWSRequest("POST", url, data=body, headers={"Content-Type": "application/octet-stream",
                                                      "X-Amz-Content-SHA256": content_sha256})
    SigV4Auth(Credentials(KEY[0], KEY[1]), "iotdata", "eu-west-1").add_auth(req)
    assert "x-amz-content-sha256" in req.headers["Authorization"]  # the hash is part of what was signed
    return url, dict(req.headers.items())


def test_signed_payload_hash_must_be_the_body_received(server: ThingcoreProcess, sub: PahoClient) -> None:
    topic = f"sig/{uid()}"
    sub.subscribe(topic, 1)
    genuine = b'{"valve": "closed"}'
    url, headers = signed_headers(server, topic, genuine, hashlib.sha256(genuine).hexdigest())

    forged = httpx.post(url, headers=headers, content=b'{"valve": "open"}', timeout=10)
    assert forged.status_code == 400, forged.text
    assert forged.headers["x-amzn-errortype"] == "XAmzContentSHA256Mismatch"
    assert forged.json()["message"] == MISMATCH
    sub.no_more()  # the answer came after the (refused) publish was handled: a copy would be ahead of the marker

    honest = httpx.post(url, headers=headers, content=genuine, timeout=10)  # the signed body itself still goes
    assert honest.status_code == 200, honest.text
    assert sub.expect().payload == genuine
    sub.no_more()
    assert "XAmzContentSHA256Mismatch" in server.log_path.read_text()  # the refusal was logged


def test_unsigned_payload_cannot_carry_a_body(server: ThingcoreProcess, sub: PahoClient) -> None:
    topic = f"sig/{uid()}"
    sub.subscribe(topic, 1)
    url, headers = signed_headers(server, topic, b"", "UNSIGNED-PAYLOAD")
    r = httpx.post(url, headers=headers, content=b"any body at all", timeout=10)
    assert r.status_code == 403, r.text
    assert r.headers["x-amzn-errortype"] == "InvalidSignatureException"
    assert "UNSIGNED-PAYLOAD" in r.json()["message"]
    sub.no_more()
