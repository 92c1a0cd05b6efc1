"""The rejections the unserved-topics service owes (pure), and its CBOR encoder against RFC 8949's examples."""

from __future__ import annotations

import pytest

from thingcore.services.unserved import answer, cbor


@pytest.mark.parametrize(("value", "encoded"), [
    (0, "00"), (23, "17"), (24, "1818"), (100, "1864"), (1000, "1903e8"), (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"), (-1, "20"), (-100, "3863"), (-1000, "3903e7"),
    ("", "60"), ("a", "6161"), ("IETF", "6449455446"), ("\u00fc", "62c3bc"),
    (True, "f5"), (False, "f4"), (None, "f6"), ({}, "a0"), ({"a": 1, "b": "c"}, "a261610161626163"),
])
def test_cbor_matches_rfc_8949(value, encoded) -> None:
    assert cbor(value).hex() == encoded


def test_jobs_topics() -> None:
    topic, body = answer("$aws/things/t/jobs/start-next", b'{"clientToken":"c"}', 100.5)
    assert topic == "$aws/things/t/jobs/start-next/rejected"
    assert body["code"] == "InvalidRequest" and body["clientToken"] == "c" and body["timestamp"] == 100
    assert "StartNextPendingJobExecution" in body["message"]
    topic, body = answer("$aws/things/t/jobs/$next/get", b"not json", 0)
    assert "DescribeJobExecution" in body["message"] and "clientToken" not in body
    assert answer("$aws/things/t/jobs/a/b/c", b"", 0)[1]["code"] == "InvalidTopic"
    for not_a_request in ("$aws/things/t/jobs/get/rejected", "$aws/things/t/jobs/get/accepted",
                          "$aws/things/t/jobs/notify", "$aws/things/t/jobs/notify-next"):
        assert answer(not_a_request, b"", 0) is None


def test_provisioning_and_defender_topics() -> None:
    topic, body = answer("$aws/certificates/create-from-csr/cbor", b"", 0)
    assert topic == "$aws/certificates/create-from-csr/cbor/rejected"
    assert "CreateCertificateFromCsr" in body["errorMessage"]
    topic, body = answer("$aws/things/t/defender/metrics/json", b'{"hed": {"rid": 7}}', 1.5)
    assert body == {"thingName": "t", "reportId": 7, "status": "REJECTED", "timestamp": 1500, "statusDetails": {
        "ErrorCode": "NotImplemented", "ErrorMessage": "thingcore does not serve AWS IoT Device Defender metrics yet"}}


def test_operation_table_matches_method_and_path() -> None:
    from thingcore.http.unserved import operations_for

    assert operations_for("POST", "/security-profiles/p") == [("iot", "CreateSecurityProfile")]
    assert operations_for("GET", "/endpoint") == [("iot", "DescribeEndpoint")]
    assert operations_for("PATCH", "/thing-types/t") == [("iot", "UpdateThingType")]
    assert operations_for("GET", "/destinations/arn:aws:iot:r:1:ruledestination/http/x") == \
        [("iot", "GetTopicRuleDestination")]  # a greedy label takes the rest of the path
    assert operations_for("PUT", "/things/t/jobs/$next") == [("iot-jobs-data", "StartNextPendingJobExecution")]
    assert len(operations_for("GET", "/things/t/jobs")) == 2
    assert operations_for("GET", "/things/t/jobs", "iot-jobs-data") == [("iot-jobs-data", "GetPendingJobExecutions")]
    for not_aws in (("GET", "/api/v1/anything"), ("GET", "/no/such/path"), ("GET", "/things//principals")):
        assert operations_for(*not_aws) == []
