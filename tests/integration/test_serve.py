"""The `thingcore` command: version, help, listeners, configuration sources, errors, signals."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import typer.main
from tests.certs import make_pki
from tests.integration.rawmqtt import RawClient
from tests.server import ThingcoreProcess, free_port, to_toml

from thingcore import __version__
from thingcore.cli import app
from thingcore.mqtt.packets import Disconnect, Pingreq, Pingresp

pytestmark = pytest.mark.integration

Factory = Callable[..., ThingcoreProcess]
THINGCORE = [sys.executable, "-m", "thingcore"]


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*THINGCORE, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


class BareProcess(ThingcoreProcess):
    """`thingcore serve` with only the arguments given: ports and paths from env or the TOML file."""

    def command(self) -> list[str]:
        return [*THINGCORE, "serve", *self.args]


# -- the command line ------------------------------------------------------------------------------


def test_version() -> None:
    r = run(["--version"])
    assert r.returncode == 0
    assert r.stdout.strip() == f"thingcore {__version__}"


def test_serve_help_lists_every_option() -> None:
    r = run(["serve", "--help"])
    assert r.returncode == 0, r.stderr
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    options = {opt for p in serve.params for opt in (*p.opts, *p.secondary_opts)}
    assert {"--config", "--data-dir", "--host", "--mqtt-port", "--mqtts-port", "--http-port", "--tls-cert",
            "--tls-key", "--tls-ca", "--require-client-cert", "--profile", "--no-persistence",
            "--log-level"} <= options
    for opt in options:
        assert re.search(rf"(^|[\s,]){re.escape(opt)}([\s,/=]|$)", r.stdout, re.M), f"{opt} missing from --help"
    # defaults and environment variables are shown, not eaten as markup
    assert "[default: 1883]" in r.stdout
    assert "THINGCORE_DATA_DIR" in r.stdout


# -- listeners, health ---------------------------------------------------------------------------------


def test_one_log_line_per_listener_and_healthz(thingcore_factory: Factory, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    tc = thingcore_factory(tls=True, args=["--tls-cert", str(pki["server"].cert),
                                           "--tls-key", str(pki["server"].key)])
    log = tc.log()
    lines = {name: re.findall(rf"\b{name} listener on (\S+)", log) for name in ("mqtt", "mqtts", "http")}
    assert lines == {
        "mqtt": [f"mqtt://127.0.0.1:{tc.mqtt_port}"],
        "mqtts": [f"mqtts://127.0.0.1:{tc.mqtts_port}"],
        "http": [f"http://127.0.0.1:{tc.http_port}"],
    }, log
    status, body = tc.http_get("/healthz")
    assert status == 200
    health = json.loads(body)
    assert health["status"] == "ok"
    assert {(li["name"], li["port"]) for li in health["listeners"]} == {
        ("mqtt", tc.mqtt_port), ("mqtts", tc.mqtts_port), ("http", tc.http_port)}
    assert "Traceback" not in log


def test_environment_variables(tmp_path: Path) -> None:
    mqtt_port, http_port = free_port(), free_port()
    env = {
        "THINGCORE_HOST": "127.0.0.1", "THINGCORE_MQTT_PORT": str(mqtt_port),
        "THINGCORE_HTTP_PORT": str(http_port), "THINGCORE_DATA_DIR": str(tmp_path / "envdata"),
        "THINGCORE_LIMITS__MAX_PACKET_SIZE": "2048",
    }
    tc = BareProcess(tmp_path, env=env)
    tc.mqtt_port, tc.http_port = mqtt_port, http_port
    with tc:
        with RawClient(tc.host, mqtt_port, level=5) as c:
            ack = c.connect("env-client")
        assert ack.reason_code == 0
        assert ack.properties["maximum_packet_size"] == 2048
        assert (tmp_path / "envdata").is_dir()
        assert f"mqtt listener on mqtt://127.0.0.1:{mqtt_port}" in tc.log()


def test_toml_config_and_precedence(tmp_path: Path) -> None:
    """TOML < THINGCORE_* < command line."""
    toml_port, env_port, http_port = free_port(), free_port(), free_port()
    config = tmp_path / "tc.toml"
    config.write_text(to_toml({
        "host": "127.0.0.1", "mqtt_port": toml_port, "http_port": http_port, "data_dir": tmp_path / "d",
        "limits": {"max_packet_size": 4096, "receive_maximum": 7},
    }))
    tc = BareProcess(tmp_path, args=["--config", str(config)], env={
        "THINGCORE_MQTT_PORT": str(env_port), "THINGCORE_LIMITS__RECEIVE_MAXIMUM": "9"})
    tc.http_port = http_port
    with tc:
        with RawClient(tc.host, env_port, level=5) as c:  # env beats the file
            ack = c.connect("toml-client")
        assert ack.properties["maximum_packet_size"] == 4096  # from the file
        assert ack.properties["receive_maximum"] == 9  # env beats the file, nested
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", toml_port), timeout=2).close()
    # the command line beats both
    cli_port = free_port()
    tc = BareProcess(tmp_path / "cli", args=["--config", str(config), "--mqtt-port", str(cli_port)],
                     env={"THINGCORE_MQTT_PORT": str(env_port)})
    tc.http_port = http_port
    with tc, RawClient(tc.host, cli_port, level=4) as c:
        assert c.connect("cli-client").reason_code == 0


BAD_CONFIGS = {
    "unknown key": ("foo = 1\n", "foo"),
    "unknown nested key": ("[limits]\nmax_bogus = 3\n", "limits.max_bogus"),
    "unknown key in an ACL rule": ('[auth]\nacl = [{effect = "allow", topc = "a/#"}]\n', "topc"),
    "invalid TOML": ("mqtt_port = = 3\n", "not valid TOML"),
    "wrong type": ('mqtt_port = "eighteen"\n', "mqtt_port"),
    "out of range": ("[limits]\nmax_packet_size = 1\n", "limits.max_packet_size"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config_is_a_clear_error(tmp_path: Path, name: str) -> None:
    text, expected = BAD_CONFIGS[name]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    r = run(["serve", "--config", str(path), "--data-dir", str(tmp_path / "d"), "--host", "127.0.0.1",
             "--http-port", "0"] + ([] if "mqtt_port" in text else ["--mqtt-port", "0"]), timeout=15)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stderr.startswith("error:"), r.stderr
    assert expected in r.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    r = run(["serve", "--config", str(tmp_path / "nope.toml")])
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    assert "config file not found" in r.stderr and "nope.toml" in r.stderr


def test_bad_environment_value(tmp_path: Path) -> None:
    r = run(["serve", "--data-dir", str(tmp_path)], env={"THINGCORE_MQTT_PORT": "not-a-port"})
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    assert "mqtt_port" in r.stderr


def test_unreadable_tls_certificate(tmp_path: Path) -> None:
    r = run(["serve", "--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--mqtts-port", "0",
             "--data-dir", str(tmp_path / "d"), "--tls-cert", str(tmp_path / "missing.crt"),
             "--tls-key", str(tmp_path / "missing.key")])
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    assert "TLS certificate" in r.stderr


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = run(["serve", "--host", "127.0.0.1", "--mqtt-port", str(port), "--http-port", "0",
                 "--data-dir", str(tmp_path / "d")])
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    assert "error:" in r.stderr and str(port) in r.stderr


# -- shutdown -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_clean_shutdown(thingcore_factory: Factory, sig: signal.Signals) -> None:
    tc = thingcore_factory()
    v5 = RawClient(tc.host, tc.mqtt_port, level=5)
    v311 = RawClient(tc.host, tc.mqtt_port, level=4)
    pahoc = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="paho-shutdown", protocol=paho.MQTTv5)
    disconnect_rc: list[int] = []
    pahoc.on_disconnect = lambda _c, _u, _f, rc, _p: disconnect_rc.append(rc.value)
    pahoc.connect(tc.host, tc.mqtt_port)
    pahoc.loop_start()
    try:
        assert v5.connect("sig-v5").reason_code == 0
        assert v311.connect("sig-311").reason_code == 0
        # a persistent session and a retained QoS 0 message, neither acknowledged by a commit
        with RawClient(tc.host, tc.mqtt_port, level=5) as s:
            assert s.connect("sig-persistent", properties={"session_expiry_interval": 600}).reason_code == 0
            s.subscribe("sig/queued", 1)
            s.disconnect()
        v5.publish("sig/retained", b"just before the signal", 0, retain=True)
        v5.send(Pingreq())  # handled in order: the PUBLISH has been processed when PINGRESP comes
        assert isinstance(v5.recv(), Pingresp)
        tc.proc.send_signal(sig)
        packets, closed = v5.read_until_closed(10)
        assert closed
        assert [(type(p), p.reason_code) for p in packets] == [(Disconnect, 0x8B)]
        packets, closed = v311.read_until_closed(10)
        assert closed and packets == []
        assert tc.proc.wait(15) == 0
    finally:
        v5.close()
        v311.close()
        pahoc.loop_stop()
    assert disconnect_rc == [0x8B]
    log = tc.log()
    assert "shutting down" in log and "stopped" in log and "Traceback" not in log
    tc.start()
    with RawClient(tc.host, tc.mqtt_port, level=5) as c:
        assert c.connect("sig-after").reason_code == 0
        c.subscribe("sig/#", 1)
        p = c.recv()
        assert (p.topic, p.payload, p.retain) == ("sig/retained", b"just before the signal", True)
    with RawClient(tc.host, tc.mqtt_port, level=5) as c:
        assert c.connect("sig-persistent", clean_start=False,
                         properties={"session_expiry_interval": 600}).session_present


def test_ports_released_after_stop(thingcore_factory: Factory) -> None:
    tc = thingcore_factory()
    assert tc.http_get("/healthz")[0] == 200
    assert tc.stop() == 0
    assert not tc.healthy()
    for port in (tc.mqtt_port, tc.http_port):  # nothing is left listening
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(1)
