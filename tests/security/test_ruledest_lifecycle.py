"""Finding 11: topic rule destinations as AWS runs them, through boto3 and the AWS CLI.

The endpoint proves it wants the traffic: thingcore POSTs a confirmation message to the confirmationUrl and
the endpoint GETs the ``enableUrl`` in it (a real HTTP server doing so from its request handler). Until then,
and whenever the destination is disabled or deleted, an http action under it delivers nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from tests.integration.mqtt_helpers import PahoClient, uid, wait_for
from tests.integration.rules_helpers import LOOPBACK_DESTINATIONS, Hit, RecordingServer, iot_client, rule_name
from tests.server import ThingcoreProcess

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/rules"


class ConfirmingServer(RecordingServer):
    """A destination's endpoint: records every POST and, while ``confirm`` is set, answers a confirmation
    message by GETting its enableUrl before it replies (as AWS tells endpoint owners to)."""

    def start(self) -> ConfirmingServer:
        self.confirm = True
        self.confirmations: list[tuple[dict[str, Any], int]] = []
        self.on_hit = self._confirm
        super().start()
        return self

    def _confirm(self, hit: Hit) -> None:
        if hit.headers.get("x-amz-rules-engine-message-type") == "DestinationConfirmation" and self.confirm:
            doc = json.loads(hit.body)
            self.confirmations.append((doc, httpx.get(doc["enableUrl"], timeout=10).status_code))


@pytest.fixture
def endpoint() -> Iterator[ConfirmingServer]:
    srv = ConfirmingServer().start()
    yield srv
    srv.stop()


def _code(info: pytest.ExceptionInfo[ClientError]) -> str:
    return info.value.response["Error"]["Code"]


def _status(iot: Any, arn: str) -> str:
    return iot.get_topic_rule_destination(arn=arn)["topicRuleDestination"]["status"]


def _wait_status(iot: Any, arn: str, status: str) -> None:
    wait_for(lambda: _status(iot, arn) == status, what=f"{arn} {status}")


def test_create_confirm_use_disable_delete(thingcore_factory, endpoint: ConfirmingServer) -> None:
    tc = thingcore_factory({"rules": {"retry_delay": 0.05, **LOOPBACK_DESTINATIONS}})
    iot = iot_client(tc)
    url = endpoint.url + "/hooks/"
    name = rule_name("dest")
    payload = {"sql": f"SELECT * FROM 'd/{name}'", "actions": [{"http": {"url": url + name}}],
               "errorAction": {"republish": {"topic": f"errors/{name}", "roleArn": ROLE}}}

    endpoint.confirm = False
    created = iot.create_topic_rule_destination(
        destinationConfiguration={"httpUrlConfiguration": {"confirmationUrl": url}})["topicRuleDestination"]
    arn = created["arn"]
    assert created["status"] == "IN_PROGRESS" and created["httpUrlProperties"] == {"confirmationUrl": url}
    assert arn.startswith("arn:aws:iot:us-east-1:000000000000:ruledestination/http/")
    hit = endpoint.wait_for_hit("the confirmation message", lambda h: "confirmationToken=" in h.path)
    doc = json.loads(hit.body)
    assert hit.path == f"/hooks/?confirmationToken={doc['confirmationToken']}"
    assert hit.headers["x-amz-rules-engine-destination-arn"] == arn
    assert hit.headers["content-type"] == "application/json"
    assert doc == {"arn": arn, "confirmationToken": doc["confirmationToken"], "messageType": "DestinationConfirmation",
                   "enableUrl": f"http://127.0.0.1:{tc.http_port}/confirmdestination/{doc['confirmationToken']}"}

    # not confirmed yet: a rule under it is refused, as AWS refuses it
    with pytest.raises(ClientError) as info:
        iot.create_topic_rule(ruleName=name, topicRulePayload=payload)
    assert _code(info) == "InvalidRequestException"
    with pytest.raises(ClientError) as info:
        iot.create_topic_rule_destination(destinationConfiguration={"httpUrlConfiguration": {"confirmationUrl": url}})
    assert _code(info) == "ResourceAlreadyExistsException"
    with pytest.raises(ClientError) as info:
        iot.confirm_topic_rule_destination(confirmationToken="guessed-" + doc["confirmationToken"][:10])
    assert _code(info) == "InvalidRequestException"
    with pytest.raises(ClientError) as info:  # confirmed is not the same as enabled by the owner
        iot.update_topic_rule_destination(arn=arn, status="ENABLED")
    assert _code(info) == "InvalidRequestException"

    # a new challenge replaces the old token; the endpoint confirms this one by itself
    endpoint.confirm = True
    iot.update_topic_rule_destination(arn=arn, status="IN_PROGRESS")
    _wait_status(iot, arn, "ENABLED")
    wait_for(lambda: endpoint.confirmations, what="the endpoint's confirmation")
    [(second, status)] = endpoint.confirmations
    assert status == 200 and second["confirmationToken"] != doc["confirmationToken"]
    assert httpx.get(f"http://127.0.0.1:{tc.http_port}/confirmdestination/{doc['confirmationToken']}").status_code \
        == 400  # the first token died with the new challenge

    iot.create_topic_rule(ruleName=name, topicRulePayload=payload)
    with PahoClient(tc.mqtt_port, uid("dest")) as client:
        client.connect()
        client.subscribe(f"errors/{name}", 1)
        client.publish(f"d/{name}", b'{"n": 1}', 1)
        assert json.loads(endpoint.wait_hits(f"/hooks/{name}", 1)[0].body) == {"n": 1}

        iot.update_topic_rule_destination(arn=arn, status="DISABLED")
        client.publish(f"d/{name}", b'{"n": 2}', 1)
        failure = json.loads(client.expect().payload)["failures"][0]
        assert "no ENABLED topic rule destination" in failure["errorMessage"]
        with pytest.raises(ClientError) as info:  # nor may another rule use it meanwhile
            iot.create_topic_rule(ruleName=name + "_2", topicRulePayload=payload)
        assert _code(info) == "InvalidRequestException"

        iot.update_topic_rule_destination(arn=arn, status="ENABLED")
        client.publish(f"d/{name}", b'{"n": 3}', 1)
        assert json.loads(endpoint.wait_hits(f"/hooks/{name}", 2)[1].body) == {"n": 3}

        summaries = iot.list_topic_rule_destinations()["destinationSummaries"]
        assert [(s["arn"], s["status"], s["httpUrlSummary"]) for s in summaries] == \
            [(arn, "ENABLED", {"confirmationUrl": url})]

        iot.delete_topic_rule_destination(arn=arn)
        client.publish(f"d/{name}", b'{"n": 4}', 1)
        assert "no ENABLED topic rule destination" in json.loads(client.expect().payload)["failures"][0][
            "errorMessage"]
    assert len(endpoint.hits) == 2 + 2  # two challenges, two deliveries
    with pytest.raises(ClientError) as info:
        iot.get_topic_rule_destination(arn=arn)
    assert _code(info) == "UnauthorizedException"
    assert iot.list_topic_rule_destinations()["destinationSummaries"] == []


def test_an_unreachable_confirmation_url_leaves_the_destination_in_error(thingcore_factory) -> None:
    from tests.server import free_port

    tc = thingcore_factory({"rules": LOOPBACK_DESTINATIONS})
    iot = iot_client(tc)
    arn = iot.create_topic_rule_destination(destinationConfiguration={"httpUrlConfiguration": {
        "confirmationUrl": f"http://127.0.0.1:{free_port()}/"}})["topicRuleDestination"]["arn"]
    _wait_status(iot, arn, "ERROR")
    assert "ConnectError" in iot.get_topic_rule_destination(arn=arn)["topicRuleDestination"]["statusReason"]
    with pytest.raises(ClientError) as info:
        iot.create_topic_rule_destination(destinationConfiguration={"vpcConfiguration": {
            "subnetIds": ["s"], "vpcId": "v", "roleArn": ROLE}})
    assert _code(info) == "InvalidRequestException"


def test_destinations_survive_a_restart_and_the_aws_cli_lists_them(tmp_path, endpoint: ConfirmingServer) -> None:
    aws = shutil.which("aws")
    with ThingcoreProcess(tmp_path / "tc", {"rules": LOOPBACK_DESTINATIONS}) as tc:
        iot = iot_client(tc)
        arn = iot.create_topic_rule_destination(destinationConfiguration={"httpUrlConfiguration": {
            "confirmationUrl": endpoint.url + "/"}})["topicRuleDestination"]["arn"]
        _wait_status(iot, arn, "ENABLED")
        tc.restart()
        assert _status(iot, arn) == "ENABLED"
        iot.create_topic_rule(ruleName=rule_name("after"), topicRulePayload={
            "sql": "SELECT * FROM 'a'", "actions": [{"http": {"url": endpoint.url + "/x"}}]})
        if aws is None:
            pytest.skip("the AWS CLI (aws) is not installed")
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_DEFAULT_REGION": "us-east-1"}
        out = subprocess.run([aws, "iot", "list-topic-rule-destinations", "--endpoint-url",
                              f"http://127.0.0.1:{tc.http_port}"], capture_output=True, text=True, env=env,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert [s["arn"] for s in json.loads(out.stdout)["destinationSummaries"]] == [arn]
        got = subprocess.run([aws, "iot", "get-topic-rule-destination", "--arn", arn, "--endpoint-url",
                              f"http://127.0.0.1:{tc.http_port}"], capture_output=True, text=True, env=env,
                             timeout=60)
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["topicRuleDestination"]["status"] == "ENABLED"
