"""Finding 7 of issue 12: the control plane asked only "is this a caller?". Any access key that may publish could
create and delete rules and things (and a rule's republish then wrote anywhere) or read the admin API.

Here a device's access key ("publisher") may publish but is refused every management operation (403
ForbiddenException, nothing changed, a log line naming caller, action and resource); the operators' key ("ops")
manages because one access rule says so; the admin token manages without any rule. Each refusal test failed on
the code before the gate (the publisher's calls succeeded)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.integration.mqtt_helpers import uid
from tests.server import ThingcoreProcess

boto3 = pytest.importorskip("boto3", reason="boto3 is not installed (pip install boto3)")
from botocore.auth import SigV4Auth  # noqa: E402 - after the importorskip
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

pytestmark = pytest.mark.integration

PUBLISHER = ("AKIDPUBLISHER0000001", "publisher-secret", "publisher")
OPS = ("AKIDOPERATIONS000002", "operations-secret", "ops")
TOKEN = "httpauthz-admin-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    config = {
        "http": {"access_keys": [{"access_key_id": k, "secret_access_key": s, "principal": p}
                                 for k, s, p in (PUBLISHER, OPS)]},
        "auth": {"acl": [
            # the README's example: this key's principal may manage everything
            {"effect": "allow", "action": "manage", "principal": OPS[2], "topic": "#"},
        ]},
        "admin": {"token": TOKEN},
        "secrets": {"vendor_api_key": "do-not-leak-0451"},
    }
    with ThingcoreProcess(tmp_path_factory.mktemp("httpauthz-manage"), config) as tc:
        yield tc


def _base(server: ThingcoreProcess) -> str:
    return f"http://127.0.0.1:{server.http_port}"


def iot(server: ThingcoreProcess, key: tuple[str, str, str], service: str = "iot") -> Any:
    return boto3.client(service, endpoint_url=_base(server), region_name="us-east-1", aws_access_key_id=key[0],
                        aws_secret_access_key=key[1], config=Config(retries={"max_attempts": 1}))


def admin(server: ThingcoreProcess) -> httpx.Client:
    return httpx.Client(base_url=_base(server), headers=BEARER, timeout=10)


def signed_get(server: ThingcoreProcess, key: tuple[str, str, str], path: str) -> httpx.Response:
    """A plain GET signed with SigV4 as an AWS SDK signs it."""
    request = AWSRequest(method="GET", url=_base(server) + path)
    SigV4Auth(Credentials(key[0], key[1]), "iot", "us-east-1").add_auth(request)
    return httpx.get(request.url, headers=dict(request.headers.items()), timeout=10)


def forbidden(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as exc:
        call()
    meta = exc.value.response["ResponseMetadata"]
    assert exc.value.response["Error"]["Code"] == "ForbiddenException", exc.value.response
    assert meta["HTTPStatusCode"] == 403
    return exc.value.response


RULE = {"sql": "SELECT get_secret('vendor_api_key') AS k FROM 'trigger/#'",
        "actions": [{"republish": {"topic": "loot", "roleArn": "arn:aws:iam::000000000000:role/r"}}]}


def test_a_publishing_key_cannot_create_or_delete_rules(server: ThingcoreProcess) -> None:
    publisher = iot(server, PUBLISHER)
    iot(server, PUBLISHER, "iot-data").publish(topic="telemetry/1", payload=b"{}")  # it may publish
    name = uid("stolen").replace("-", "_")
    answer = forbidden(lambda: publisher.create_topic_rule(ruleName=name, topicRulePayload=RULE))
    assert "publisher" in answer["Error"]["Message"] and f"rules/{name}" in answer["Error"]["Message"]
    with admin(server) as api:
        assert api.get(f"/rules/{name}").headers["x-amzn-ErrorType"] == "UnauthorizedException"  # not created
        kept = uid("kept").replace("-", "_")
        assert api.post(f"/rules/{kept}", json={"sql": "SELECT * FROM 'x'", "actions": []}).status_code == 200
        forbidden(lambda: publisher.delete_topic_rule(ruleName=kept))
        forbidden(lambda: publisher.disable_topic_rule(ruleName=kept))
        forbidden(lambda: publisher.replace_topic_rule(ruleName=kept, topicRulePayload=RULE))
        forbidden(lambda: publisher.list_topic_rules())
        forbidden(lambda: publisher.get_topic_rule(ruleName=kept))
        rule = api.get(f"/rules/{kept}").json()["rule"]
        assert rule["sql"] == "SELECT * FROM 'x'" and rule["ruleDisabled"] is False
    log = server.log()
    assert "refused principal 'publisher' from 127.0.0.1" in log and f"manage on rules/{name}" in log


def test_a_publishing_key_cannot_create_or_delete_things(server: ThingcoreProcess) -> None:
    publisher = iot(server, PUBLISHER)
    name = uid("thing")
    forbidden(lambda: publisher.create_thing(thingName=name))
    forbidden(lambda: publisher.create_thing_type(thingTypeName=name))
    with admin(server) as api:
        assert api.get(f"/things/{name}").status_code == 404
        assert api.post(f"/things/{name}", json={"attributePayload": {"attributes": {"owner": "ops"}}}).is_success
        forbidden(lambda: publisher.delete_thing(thingName=name))
        forbidden(lambda: publisher.update_thing(thingName=name, attributePayload={"attributes": {"owner": "me"}}))
        forbidden(lambda: publisher.describe_thing(thingName=name))
        forbidden(lambda: publisher.list_things())
        assert api.get(f"/things/{name}").json()["attributes"] == {"owner": "ops"}
    assert f"manage on things/{name}" in server.log()


def test_a_publishing_key_cannot_use_the_admin_api(server: ThingcoreProcess) -> None:
    for path in ("/api/v1/config", "/api/v1/stats", "/api/v1/clients", "/api/v1/rules/metrics"):
        resp = signed_get(server, PUBLISHER, path)
        assert resp.status_code == 403, (path, resp.text)
        assert resp.headers["x-amzn-ErrorType"] == "ForbiddenException"
        assert "do-not-leak" not in resp.text
    assert "manage on config" in server.log()


def test_an_access_rule_lets_the_operations_key_manage(server: ThingcoreProcess) -> None:
    ops = iot(server, OPS)
    name = uid("ops").replace("-", "_")
    ops.create_topic_rule(ruleName=name, topicRulePayload={"sql": "SELECT * FROM 'a'", "actions": []})
    assert ops.get_topic_rule(ruleName=name)["rule"]["ruleName"] == name
    ops.delete_topic_rule(ruleName=name)
    thing = uid("ops-thing")
    ops.create_thing(thingName=thing)
    ops.delete_thing(thingName=thing)
    assert signed_get(server, OPS, "/api/v1/stats").status_code == 200


def test_the_admin_token_manages_and_a_wrong_one_is_refused(server: ThingcoreProcess) -> None:
    name = uid("tok").replace("-", "_")
    with admin(server) as api:
        assert api.post(f"/rules/{name}", json={"sql": "SELECT * FROM 'a'", "actions": []}).status_code == 200
        assert api.delete(f"/rules/{name}").status_code == 200
        assert api.get("/api/v1/config").json()["secrets"] == {"vendor_api_key": "***"}
    wrong = httpx.post(f"{_base(server)}/rules/{name}", json={"sql": "SELECT * FROM 'a'", "actions": []},
                       headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status_code == 401 and wrong.headers["x-amzn-ErrorType"] == "UnauthorizedException"
    # with a token configured, loopback without it is no administrator
    bare = httpx.post(f"{_base(server)}/rules/{name}", json={"sql": "SELECT * FROM 'a'", "actions": []})
    assert bare.status_code == 403 and bare.headers["x-amzn-ErrorType"] == "ForbiddenException"
    assert httpx.get(f"{_base(server)}/api/v1/stats").status_code == 401
