"""Logins against a real server: users made with `thingcore passwd`, anonymous clients refused."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from tests.server import ThingcoreProcess

from thingcore.mqtt import Decoder, encode
from thingcore.mqtt.packets import MQTT_311, Connect


def _connack(port: int, protocol: int, username: str | None, password: str | None) -> int:
    """Connect with paho and return the CONNACK reason (v5) or return code (3.1.1)."""
    done = threading.Event()
    result: list[int] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"login-{protocol}-{username}", protocol=protocol)
    if username is not None:
        c.username_pw_set(username, password)

    def on_connect(_c, _u, _f, reason, _p) -> None:
        result.append(reason.value)
        done.set()

    c.on_connect = on_connect
    c.on_connect_fail = lambda *a: done.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert done.wait(10), "no CONNACK"
    finally:
        c.disconnect()
        c.loop_stop()
    return result[0]


def _connack_311(port: int, username: str | None, password: str | None) -> int:
    """The raw 3.1.1 CONNACK return code (paho maps it to a v5 reason code)."""
    connect = Connect("raw-311", MQTT_311, username=username, password=password.encode() if password else None)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(encode(connect, MQTT_311))
        decoder = Decoder(protocol_level=MQTT_311)
        while True:
            packets = decoder.feed(sock.recv(64))
            if packets:
                return packets[0].reason_code


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("auth")
    passwd = directory / "passwd"
    made = subprocess.run(
        [sys.executable, "-m", "thingcore", "passwd", "add", "sensor-17", "--password", "s3cret!",
         "--file", str(passwd)],
        capture_output=True, text=True, timeout=60,
    )
    assert made.returncode == 0, made.stderr
    assert "sensor-17:$argon2" in passwd.read_text()
    config = {"auth": {"allow_anonymous": "false", "password_file": str(passwd)}}
    with ThingcoreProcess(directory / "server", config) as tc:
        yield tc


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311])
def test_user_from_password_file_logs_in(secured: ThingcoreProcess, protocol: int) -> None:
    assert _connack(secured.mqtt_port, protocol, "sensor-17", "s3cret!") == 0


def test_wrong_password_and_unknown_user_are_refused(secured: ThingcoreProcess) -> None:
    assert _connack(secured.mqtt_port, mqtt.MQTTv5, "sensor-17", "wrong") == 0x86
    assert _connack(secured.mqtt_port, mqtt.MQTTv5, "nobody", "s3cret!") == 0x86
    assert _connack_311(secured.mqtt_port, "sensor-17", "wrong") == 4  # bad user name or password
    assert _connack_311(secured.mqtt_port, "sensor-17", "s3cret!") == 0


def test_anonymous_refused_when_not_allowed(secured: ThingcoreProcess) -> None:
    assert _connack(secured.mqtt_port, mqtt.MQTTv5, None, None) == 0x87
    assert _connack_311(secured.mqtt_port, None, None) == 5  # not authorized
    assert secured.metrics()["thingcore_connects_refused_total"] >= 5


def test_passwd_cli_reports_mistakes_without_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "passwd"
    out = subprocess.run([sys.executable, "-m", "thingcore", "passwd", "remove", "ghost", "--file", str(missing)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr + out.stdout
    assert str(missing) in out.stderr + out.stdout
