"""Finding 11: rule actions as a way into the server's network (SSRF).

A rule author, or a message through a substitution template, must not make thingcore connect to its own
loopback-only admin API, a cloud metadata service or a private network. Real servers, real clients: a
"metadata" HTTP server listens on 127.0.0.1 and must see no request at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError
from tests.integration.mqtt_helpers import PahoClient, uid, wait_for
from tests.integration.rules_helpers import (
    LOOPBACK_DESTINATIONS,
    RecordingServer,
    confirm_destination,
    iot_client,
    rule_name,
)
from tests.server import ThingcoreProcess

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/rules"
TOKEN = "t" * 40


@pytest.fixture
def metadata() -> Iterator[RecordingServer]:
    """Plays 169.254.169.254 (or anything internal): on loopback, answering everything with 200."""
    srv = RecordingServer().start()
    yield srv
    srv.stop()


def _code(info: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


def _errors(tc: ThingcoreProcess, topic: str) -> PahoClient:
    client = PahoClient(tc.mqtt_port, uid("ssrf"))
    client.connect()
    client.subscribe(topic, 1)
    return client


def test_rules_cannot_target_loopback_without_the_operators_allowance(thingcore_factory,
                                                                      metadata: RecordingServer) -> None:
    tc = thingcore_factory({"rules": {"retry_delay": 0.05, "max_attempts": 2}})  # the default policy
    iot = iot_client(tc)
    port = metadata.url.rsplit(":", 1)[1]

    # a destination there is refused before anything is sent to it
    with pytest.raises(ClientError) as info:
        iot.create_topic_rule_destination(
            destinationConfiguration={"httpUrlConfiguration": {"confirmationUrl": metadata.url + "/latest/"}})
    code, message = _code(info)
    assert code == "InvalidRequestException" and "127.0.0.1 is a loopback address" in message
    # so an http action cannot name it, nor the loopback-only admin API
    for url in (metadata.url + "/latest/meta-data/iam/", f"http://127.0.0.1:{tc.http_port}/api/v1/config"):
        with pytest.raises(ClientError) as info:
            iot.create_topic_rule(ruleName=rule_name("ssrf"), topicRulePayload={
                "sql": "SELECT * FROM 'x'", "actions": [{"http": {"url": url}}]})
        code, message = _code(info)
        assert code == "InvalidRequestException" and "no ENABLED topic rule destination" in message
    # salesforce and openSearch with an IP literal: refused at creation
    with pytest.raises(ClientError) as info:
        iot.create_topic_rule(ruleName=rule_name("ssrf"), topicRulePayload={
            "sql": "SELECT * FROM 'x'", "actions": [{"salesforce": {"url": metadata.url + "/s", "token": TOKEN}}]})
    assert "loopback" in _code(info)[1]
    with pytest.raises(ClientError) as info:
        iot.create_topic_rule(ruleName=rule_name("ssrf"), topicRulePayload={
            "sql": "SELECT * FROM 'x'", "actions": [{"openSearch": {
                "endpoint": f"http://169.254.169.254:{port}", "index": "i", "type": "t", "id": "1",
                "roleArn": ROLE}}]})
    assert "link-local" in _code(info)[1]

    # a name that resolves to loopback (or an endpoint a message picks) is refused when connecting
    name = rule_name("ssrf")
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": f"SELECT * FROM 'ssrf/{name}'", "awsIotSqlVersion": "2016-03-23",
        "actions": [{"salesforce": {"url": f"http://localhost:{port}/streams/x", "token": TOKEN}},
                    {"openSearch": {"endpoint": "${endpoint}", "index": "i", "type": "t", "id": "1",
                                    "roleArn": ROLE}}],
        "errorAction": {"republish": {"topic": f"errors/{name}", "roleArn": ROLE}}})
    with _errors(tc, f"errors/{name}") as client:
        client.publish(f"ssrf/{name}", json.dumps({"endpoint": f"http://127.0.0.1:{port}"}), 1)
        failures = {f["failedAction"]: f["errorMessage"] for f in json.loads(client.expect().payload)["failures"]}
    assert set(failures) == {"SalesforceAction", "OpenSearchAction"}
    assert all("refused" in m and "loopback" in m for m in failures.values()), failures
    assert all("tries" not in m for m in failures.values())  # not worth trying again
    assert metadata.hits == []
    assert "127.0.0.1 is a loopback address" in tc.log()


def test_a_url_chosen_by_the_message_lands_only_on_a_confirmed_destination(thingcore_factory,
                                                                          metadata: RecordingServer) -> None:
    web = RecordingServer().start()
    try:
        tc = thingcore_factory({"rules": {"retry_delay": 0.05, **LOOPBACK_DESTINATIONS}})  # loopback allowed
        iot = iot_client(tc)
        confirm_destination(iot, web, web.url + "/in/")
        name = rule_name("msgurl")
        iot.create_topic_rule(ruleName=name, topicRulePayload={
            "sql": f"SELECT * FROM 'pick/{name}'", "awsIotSqlVersion": "2016-03-23",
            "actions": [{"http": {"url": "http://${target}/in/${topic(2)}", "confirmationUrl": "http://${target}/"}}],
            "errorAction": {"republish": {"topic": f"errors/{name}", "roleArn": ROLE}}})
        good, internal = web.url.split("//")[1], metadata.url.split("//")[1]
        admin = f"127.0.0.1:{tc.http_port}"
        with _errors(tc, f"errors/{name}") as client:
            for target in (internal, admin, f"{good}@{internal}", f"{good}/in/../../admin#", internal + "/in"):
                client.publish(f"pick/{name}", json.dumps({"target": target}), 1)
                failure = json.loads(client.expect().payload)["failures"][0]
                assert failure["failedAction"] == "HttpAction"
                assert "topic rule destination" in failure["errorMessage"] or "not accepted" in \
                    failure["errorMessage"], failure
            client.publish(f"pick/{name}", json.dumps({"target": good}), 1)
            [hit] = web.wait_hits(f"/in/{name}", 1)
            assert json.loads(hit.body) == {"target": good}
            # the delivery is over (counted a success), so no error document of it can still be on its way
            wait_for(lambda: any(k.startswith("thingcore_rule_action_succeeded_total{") and f'rule="{name}"' in k
                                 and v >= 1 for k, v in tc.metrics().items()),
                     what="the delivery to the confirmed destination counted")
            client.no_more()
        assert metadata.hits == []
        assert [h.path for h in web.hits if "confirmationToken" not in h.path] == [f"/in/{name}"]
    finally:
        web.stop()


def test_headers_that_reroute_or_reframe_the_request_are_refused(thingcore_factory) -> None:
    web = RecordingServer().start()
    try:
        tc = thingcore_factory({"rules": LOOPBACK_DESTINATIONS})
        iot = iot_client(tc)
        confirm_destination(iot, web)
        for key in ("Host", "Transfer-Encoding", "Content-Length", "Connection", "Proxy-Authorization",
                    "x-amz-rules-engine-message-type", "bad header"):
            with pytest.raises(ClientError) as info:
                iot.create_topic_rule(ruleName=rule_name("hdr"), topicRulePayload={
                    "sql": "SELECT * FROM 'x'",
                    "actions": [{"http": {"url": web.url + "/h", "headers": [{"key": key, "value": "v"}]}}]})
            code, message = _code(info)
            assert code == "InvalidRequestException" and key in message, message
        # a token for the confirmed destination is what headers are for
        iot.create_topic_rule(ruleName=rule_name("hdr"), topicRulePayload={
            "sql": "SELECT * FROM 'x'",
            "actions": [{"http": {"url": web.url + "/h", "headers": [{"key": "Authorization", "value": "Bearer x"}]}}]})
    finally:
        web.stop()
