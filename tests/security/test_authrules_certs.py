"""Finding 5 of issue 12: with a verified client certificate the certificate decides who the client is.

A TLS client used to choose its own ``username`` (and so ``%u``): the device with CN=dev1 connecting with
user name ``dev2`` got dev2's topics. Now, as mosquitto's ``use_identity_as_username`` and AWS IoT do, the
user name that rules and ``%u`` see is the certificate's CN, whatever the CONNECT packet says. Real TLS
with certificates from one CA; each test got through on the code before the fix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.certs import CertPaths, make_pki
from tests.integration.mqtt_helpers import V5, V311, PahoClient, uid
from tests.server import ThingcoreProcess

pytestmark = pytest.mark.integration

ACL = [
    # each device owns devices/<its name>/...
    {"effect": "allow", "action": "all", "topic": "devices/%u/#"},
    {"effect": "deny", "action": "all", "topic": "devices/#"},
    # only dev2 may command the fleet
    {"effect": "allow", "action": "publish", "topic": "fleet/commands/#", "username": "dev2"},
    {"effect": "deny", "action": "publish", "topic": "fleet/commands/#"},
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertPaths]:
    return make_pki(tmp_path_factory.mktemp("authrules-pki"), "dev1", "dev2")


@pytest.fixture(scope="module")
def server(pki: dict[str, CertPaths], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    config = {
        "tls": {"certfile": pki["server"].cert, "keyfile": pki["server"].key, "cafile": pki["ca"].cert,
                "require_client_cert": True},
        "auth": {"acl": ACL},
    }
    with ThingcoreProcess(tmp_path_factory.mktemp("authrules-certs"), config, tls=True) as tc:
        yield tc


def device(server: ThingcoreProcess, pki: dict[str, CertPaths], cert: str, user_name: str | None = None,
           protocol: int = V5) -> PahoClient:
    """paho over TLS with the given client certificate, sending ``user_name`` in CONNECT."""
    assert server.mqtts_port is not None
    c = PahoClient(server.mqtts_port, uid(cert), protocol=protocol)
    c.client.tls_set(ca_certs=str(pki["ca"].cert), certfile=str(pki[cert].cert), keyfile=str(pki[cert].key))
    if user_name is not None:
        c.client.username_pw_set(user_name, "any password")
    return c


@pytest.mark.parametrize("protocol", [V5, V311], ids=["v5", "v311"])
def test_a_certificate_cannot_claim_another_devices_user_name(server: ThingcoreProcess,
                                                              pki: dict[str, CertPaths], protocol: int) -> None:
    with device(server, pki, "dev2") as dev2, device(server, pki, "dev1", "dev2", protocol) as dev1:
        dev2.connect()
        dev1.connect()  # the certificate is verified; the user name it sends is not who it is
        dev2.subscribe("devices/dev2/#", 1)
        assert dev1.subscribe("devices/dev2/#", 1) == [0x87 if protocol == V5 else 0x80]
        dev1.publish("devices/dev2/config", b"pwned", 1)
        dev1.publish("fleet/commands/reboot", b"now", 1)
        dev2.no_more()  # neither the forged config nor anything else reached dev2's topics
        assert dev1.subscribe("devices/dev1/#", 1) == [1]  # %u is the CN: dev1's own topics are open
        assert dev1.publish("devices/dev1/state", b"ok", 1) == 0
        assert dev1.expect().payload == b"ok"


def test_user_name_rules_follow_the_certificate(server: ThingcoreProcess, pki: dict[str, CertPaths]) -> None:
    with device(server, pki, "dev1") as watcher, device(server, pki, "dev1", "dev2") as dev1, \
            device(server, pki, "dev2", "someone-else") as dev2:
        watcher.connect()
        dev1.connect()
        dev2.connect()
        watcher.subscribe("devices/dev1/#", 1)
        assert dev1.publish("fleet/commands/reboot", b"from dev1", 1) == 0x87  # claims dev2, is dev1
        assert dev2.publish("fleet/commands/reboot", b"from dev2", 1) == 0  # claims someone else, is dev2
        assert dev2.publish("devices/dev1/config", b"from dev2", 1) == 0x87
        watcher.no_more()
