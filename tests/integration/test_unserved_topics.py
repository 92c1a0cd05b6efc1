"""Requests on AWS service topics thingcore does not serve are answered on /rejected at once (paho), and the
aws profile lets a fleet-provisioning device publish its requests instead of disconnecting it."""

from __future__ import annotations

import json

import pytest
from tests.integration.mqtt_helpers import V5, V311, PahoClient, uid
from tests.server import ThingcoreProcess

pytestmark = pytest.mark.integration


def test_jobs_request_is_rejected_with_its_client_token(thingcore: ThingcoreProcess) -> None:
    thing = uid("lamp")
    with PahoClient(thingcore.mqtt_port, protocol=V5) as device:
        device.connect()
        device.subscribe(f"$aws/things/{thing}/jobs/+/rejected", qos=1)
        device.subscribe(f"$aws/things/{thing}/jobs/+/+/rejected", qos=1)
        device.publish(f"$aws/things/{thing}/jobs/get", json.dumps({"clientToken": "tok-1"}), qos=1)
        msg = device.expect()
        assert msg.topic == f"$aws/things/{thing}/jobs/get/rejected"
        body = json.loads(msg.payload)
        assert body["code"] == "InvalidRequest" and body["clientToken"] == "tok-1"
        assert "GetPendingJobExecutions" in body["message"] and "thingcore" in body["message"]
        assert isinstance(body["timestamp"], int)
        device.publish(f"$aws/things/{thing}/jobs/job-7/update", json.dumps({"status": "SUCCEEDED"}), qos=1)
        msg = device.expect()
        assert msg.topic == f"$aws/things/{thing}/jobs/job-7/update/rejected"
        assert "UpdateJobExecution" in json.loads(msg.payload)["message"]
    assert "answered '$aws/things/" in thingcore.log()


def test_defender_report_is_rejected_in_its_format(thingcore: ThingcoreProcess) -> None:
    thing = uid("cam")
    with PahoClient(thingcore.mqtt_port, protocol=V311) as device:
        device.connect()
        device.subscribe(f"$aws/things/{thing}/defender/metrics/+/rejected", qos=1)
        report = {"header": {"report_id": 1530304554, "version": "1.0"}, "metrics": {}}
        device.publish(f"$aws/things/{thing}/defender/metrics/json", json.dumps(report), qos=1)
        body = json.loads(device.expect().payload)
        assert body["thingName"] == thing and body["reportId"] == 1530304554 and body["status"] == "REJECTED"
        assert "Device Defender" in body["statusDetails"]["ErrorMessage"]
        device.publish(f"$aws/things/{thing}/defender/metrics/cbor", b"\xa0", qos=1)
        msg = device.expect()
        assert msg.topic.endswith("/cbor/rejected")
        assert msg.payload[0] >> 5 == 5  # a CBOR map
        assert b"REJECTED" in msg.payload


def test_aws_profile_fleet_provisioning_is_answered_not_disconnected(thingcore_factory) -> None:
    tc = thingcore_factory({"profile": "aws"})
    with PahoClient(tc.mqtt_port, protocol=V311) as device:
        device.connect()
        device.subscribe("$aws/certificates/create/json/rejected", qos=1)
        device.subscribe("$aws/provisioning-templates/fleet/provision/json/rejected", qos=1)
        device.publish("$aws/certificates/create/json", b"", qos=1)
        body = json.loads(device.expect().payload)
        assert body["statusCode"] == 501 and body["errorCode"] == "NotImplemented"
        assert "CreateKeysAndCertificate" in body["errorMessage"]
        device.publish("$aws/provisioning-templates/fleet/provision/json",
                       json.dumps({"certificateOwnershipToken": "x", "parameters": {}}), qos=1)
        body = json.loads(device.expect().payload)
        assert "RegisterThing" in body["errorMessage"]
        assert not device.disconnected.is_set()
        # a reserved topic AWS does not let devices publish to still ends the connection
        device.publish("$aws/events/presence/connected/x", b"{}", qos=1, wait=False)
        assert device.wait_disconnected() is not None
