"""SigV4 verification against requests signed by the real signers: botocore (boto3, AWS CLI) and awscrt
(the AWS IoT device SDK v2's presigned WebSocket URL)."""

from __future__ import annotations

import hashlib
import time
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from thingcore.http.sigv4 import AccessKey, Request, SignatureError, Verifier

KEY = AccessKey("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "device-fleet")
REMOTE = "192.0.2.7"
LOOPBACK = "127.0.0.1"


def verifier(mode: str = "non-loopback") -> Verifier:
    return Verifier([KEY], mode)


def to_request(req: AWSRequest) -> Request:
    """What the server receives for a botocore-prepared request (urllib3 adds Host from the URL)."""
    parts = urlsplit(req.url)
    headers = [(k.encode(), v.encode() if isinstance(v, str) else v) for k, v in req.headers.items()]
    if not any(k.lower() == b"host" for k, _ in headers):
        headers.append((b"host", parts.netloc.encode()))
    body = req.body or b""
    return Request(req.method, parts.path.encode(), parts.query.encode(), headers,
                   body if isinstance(body, bytes) else body.encode())


def boto_signed(url: str = "http://127.0.0.1:8080/topics/a%2Fb%20c?qos=1&retain=true", body: bytes = b"payload",
                key: AccessKey = KEY, service: str = "iotdata", headers: dict | None = None) -> Request:
    req = AWSRequest("POST", url, data=body, headers={"Content-Type": "application/octet-stream", **(headers or {})})
    SigV4Auth(Credentials(key.access_key_id, key.secret), service, "eu-west-1").add_auth(req)
    return to_request(req)


def test_botocore_header_signature_gives_the_key_principal() -> None:
    assert verifier("true").principal(boto_signed(), REMOTE) == "device-fleet"


def test_topic_with_encoded_slash_space_and_unicode_is_verified() -> None:
    url = "http://127.0.0.1:8080/topics/caf%C3%A9%2F%24aws%2Fthings%2Fx%20y?contentType=text%2Fplain%3B%20a%3Db"
    assert verifier("true").principal(boto_signed(url), REMOTE) == "device-fleet"


def test_mqtt5_headers_and_docs_service_name_are_covered() -> None:
    req = boto_signed(service="iotdevicegateway", headers={"x-amz-mqtt5-user-properties": "W3siYSI6ImIifV0="})
    assert verifier("true").principal(req, REMOTE) == "device-fleet"


@pytest.mark.parametrize("tamper", ["body", "query", "path", "signed header"])
def test_any_change_after_signing_is_an_invalid_signature(tamper: str) -> None:
    req = boto_signed()
    if tamper == "body":
        req.body = b"payloaD"
    elif tamper == "query":
        req.query_string = b"qos=0&retain=true"
    elif tamper == "path":
        req.raw_path = b"/topics/a%2Fc%20c"
    else:
        req.headers = [(k, b"application/json") if k.lower() == b"content-type" else (k, v) for k, v in req.headers]
    with pytest.raises(SignatureError) as err:
        verifier("true").principal(req, REMOTE)
    assert err.value.error_type == "InvalidSignatureException"


def test_wrong_secret_is_an_invalid_signature() -> None:
    req = boto_signed(key=AccessKey(KEY.access_key_id, "not-the-secret", ""))
    with pytest.raises(SignatureError) as err:
        verifier().principal(req, LOOPBACK)
    assert err.value.error_type == "InvalidSignatureException"
    assert "does not match" in err.value.message


def test_unknown_key_is_anonymous_on_loopback_and_refused_elsewhere() -> None:
    req = boto_signed(key=AccessKey("testing", "testing", ""))
    assert verifier().principal(req, LOOPBACK) is None
    with pytest.raises(SignatureError) as err:
        verifier().principal(req, REMOTE)
    assert err.value.error_type == "UnrecognizedClientException"
    with pytest.raises(SignatureError):
        verifier("true").principal(req, LOOPBACK)


def test_unsigned_request_is_anonymous_unless_signatures_are_required() -> None:
    req = Request("POST", b"/topics/a", b"", [(b"host", b"127.0.0.1")], b"x")
    assert verifier().principal(req, REMOTE) is None
    with pytest.raises(SignatureError) as err:
        verifier("true").principal(req, LOOPBACK)
    assert err.value.error_type == "ForbiddenException"


def test_verification_off_ignores_even_a_bad_signature() -> None:
    req = boto_signed(key=AccessKey(KEY.access_key_id, "wrong", ""))
    assert verifier("false").principal(req, REMOTE) is None


def test_signature_older_than_15_minutes_has_expired() -> None:
    req = boto_signed()
    assert verifier().principal(req, REMOTE, now=time.time() + 14 * 60) == "device-fleet"
    with pytest.raises(SignatureError) as err:
        verifier().principal(req, REMOTE, now=time.time() + 16 * 60)
    assert err.value.error_type == "InvalidSignatureException"
    assert "expired" in err.value.message


def test_malformed_authorization_header_is_refused() -> None:
    headers = [(b"host", b"h"), (b"authorization", b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101, Signature=00")]
    with pytest.raises(SignatureError) as err:
        verifier().principal(Request("GET", b"/", b"", headers), REMOTE)
    assert err.value.error_type == "IncompleteSignatureException"


def presigned_by_botocore(expires: int = 3600, token: str | None = None) -> Request:
    req = AWSRequest("GET", "http://127.0.0.1:8080/mqtt")
    creds = Credentials(KEY.access_key_id, KEY.secret, token)
    SigV4QueryAuth(creds, "iotdevicegateway", "us-east-1", expires=expires).add_auth(req)
    return to_request(req)


def test_presigned_url_from_botocore() -> None:
    assert verifier("true").principal(presigned_by_botocore(), REMOTE) == "device-fleet"
    assert verifier("true").principal(presigned_by_botocore(token="session/token+="), REMOTE) == "device-fleet"


def test_presigned_url_expires() -> None:
    req = presigned_by_botocore(expires=60)
    with pytest.raises(SignatureError) as err:
        verifier().principal(req, REMOTE, now=time.time() + 120)
    assert "expired" in err.value.message


def test_presigned_url_from_the_device_sdk_signer_with_token_appended_after_signing() -> None:
    awscrt = pytest.importorskip("awscrt", reason="awscrt (AWS IoT device SDK v2) is not installed")
    from awscrt import auth, http

    creds = auth.AwsCredentialsProvider.new_static(KEY.access_key_id, KEY.secret, "the-session-token")
    config = auth.AwsSigningConfig(
        algorithm=auth.AwsSigningAlgorithm.V4, signature_type=auth.AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
        credentials_provider=creds, region="us-east-1", service="iotdevicegateway", omit_session_token=True,
    )
    crt_req = http.HttpRequest("GET", "/mqtt", http.HttpHeaders([("Host", "127.0.0.1:8080")]))
    auth.aws_sign_request(crt_req, config).result(10)
    path, _, query = crt_req.path.partition("?")
    query += "&X-Amz-Security-Token=the-session-token"  # as the SDK's websocket handshake transform does
    req = Request("GET", path.encode(), query.encode(), [(b"host", b"127.0.0.1:8080")])
    assert awscrt is not None
    assert verifier("true").principal(req, REMOTE) == "device-fleet"
    bad = Request("GET", path.encode(), query.replace("X-Amz-Date=", "X-Amz-Date=1").encode(), req.headers)
    with pytest.raises(SignatureError):
        verifier("true").principal(bad, REMOTE)


def test_declared_payload_hash_must_be_the_body_received() -> None:
    body = b"payload"
    req = boto_signed(body=body, headers={"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()})
    assert b"x-amz-content-sha256" in dict(req.headers)[b"Authorization"]  # the declared hash was signed
    assert verifier("true").principal(req, REMOTE) == "device-fleet"
    req.body = b"another body"
    with pytest.raises(SignatureError) as err:
        verifier("true").principal(req, REMOTE)
    assert (err.value.status, err.value.error_type) == (400, "XAmzContentSHA256Mismatch")
    assert err.value.message == "The provided 'x-amz-content-sha256' header does not match what was computed."


def test_unsigned_payload_only_without_a_body() -> None:
    req = boto_signed(body=b"", headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert verifier("true").principal(req, REMOTE) == "device-fleet"  # nothing to hide
    req.body = b"smuggled"
    with pytest.raises(SignatureError) as err:
        verifier("true").principal(req, REMOTE)
    assert (err.value.status, err.value.error_type) == (403, "InvalidSignatureException")
    presigned = presigned_by_botocore()
    presigned.body = b"smuggled"  # a presigned URL covers no body either way: the empty body only
    with pytest.raises(SignatureError):
        verifier("true").principal(presigned, REMOTE)
