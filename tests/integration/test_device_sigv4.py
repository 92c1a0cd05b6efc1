"""AWS credentials in the device SDK: the presigned /mqtt WebSocket URL and SigV4-signed HTTP publishes,
checked by a thingcore that verifies every signature (``[http] verify_signatures = true``), as AWS
IoT does for WebSocket and HTTPS clients without certificates.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.integration.device_helpers import TIMEOUT, Inbox, device, uid
from tests.server import ThingcoreProcess

from thingcore.device import AwsCredentials, ConnectTimeout, PublishError

pytestmark = pytest.mark.integration

KEY = AwsCredentials("AKIDDEVICE0000000001", "device/secret+key", region="eu-west-1")
WRONG = AwsCredentials(KEY.access_key_id, "not-the-secret", region="eu-west-1")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    config = {
        "http": {"verify_signatures": True, "access_keys": [
            {"access_key_id": KEY.access_key_id, "secret_access_key": KEY.secret_access_key, "principal": "fleet"},
        ]},
        "auth": {"acl": [
            {"effect": "allow", "action": "publish", "topic": "fleet/#", "principal": "fleet"},
            {"effect": "deny", "action": "publish", "topic": "fleet/#"},
        ]},
    }
    with ThingcoreProcess(tmp_path_factory.mktemp("device-sigv4"), config) as tc:
        yield tc


@pytest.mark.parametrize("token", [None, "session-token/with+chars="], ids=["key", "session-token"])
def test_signed_websocket_and_http(server: ThingcoreProcess, token: str | None) -> None:
    creds = AwsCredentials(KEY.access_key_id, KEY.secret_access_key, token, KEY.region)
    topic = f"fleet/{uid('t')}"
    inbox = Inbox()
    with device(server, "websockets", aws_credentials=creds) as ws, \
            device(server, "http", aws_credentials=creds) as http:
        ws.subscribe(topic, inbox)
        ws.publish(topic, "over a presigned websocket", qos=1).wait(TIMEOUT)
        http.publish(topic, "over signed http", qos=1).wait(TIMEOUT)  # the key's principal may publish here
        assert {inbox.get().text, inbox.get().text} == {"over a presigned websocket", "over signed http"}


def test_wrong_or_missing_signatures_are_refused(server: ThingcoreProcess) -> None:
    with device(server, "http", aws_credentials=WRONG) as http:
        with pytest.raises(PublishError) as wrong:
            http.publish("fleet/x", "x", qos=1).wait(TIMEOUT)
        assert wrong.value.status == 403
    with device(server, "http") as anonymous:
        with pytest.raises(PublishError) as unsigned:
            anonymous.publish("open/x", "x", qos=1).wait(TIMEOUT)
        assert unsigned.value.status == 403
    ws = device(server, "websockets", aws_credentials=WRONG)
    with pytest.raises(ConnectTimeout, match=r"[Hh]andshake"):
        ws.connect(timeout=1.0)
    ws.disconnect()
