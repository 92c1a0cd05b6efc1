"""``thingcore simulate`` as a user runs it: 50 thermostats for 5 seconds against a real server, with
progress on stderr and a JSON summary on stdout; their shadows follow a desired setpoint set before
the run (caught up at start) and during it (a delta)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from tests.integration.device_helpers import Inbox, uid
from tests.server import ThingcoreProcess, free_port

from thingcore.device import Device

pytestmark = pytest.mark.integration

DEVICES = 50


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    with ThingcoreProcess(tmp_path_factory.mktemp("device-simulate")) as tc:
        yield tc


def _simulate(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "thingcore", "simulate", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _shadow(http: httpx.Client, thing: str) -> httpx.Response:
    return http.get(f"/things/{thing}/shadow")


def test_fifty_thermostats_report_progress_and_follow_their_shadows(server: ThingcoreProcess) -> None:
    prefix = uid("thermo")
    early, late = f"{prefix}-0000", f"{prefix}-0001"
    with httpx.Client(base_url=f"http://{server.host}:{server.http_port}", timeout=10) as http:
        # a setpoint desired before the device starts: it reads it from the shadow at start
        assert http.post(f"/things/{early}/shadow", json={"state": {"desired": {"setpoint": 19.5}}}).status_code == 200
        proc = _simulate("--devices", str(DEVICES), "--duration", "5", "--endpoint", server.host,
                         "--port", str(server.mqtt_port), "--prefix", prefix, "--progress-every", "0.5")
        try:
            deadline = time.monotonic() + 30
            while _shadow(http, late).status_code != 200:  # wait until the device has reported
                assert proc.poll() is None and time.monotonic() < deadline, "the thermostat never reported"
                time.sleep(0.1)
            # a setpoint desired while it runs: it arrives as a delta and is reported back
            assert http.post(f"/things/{late}/shadow", json={"state": {"desired": {"setpoint": 25.5}}}).status_code \
                == 200
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        summary = json.loads(out)
        assert summary["ever_connected"] == DEVICES
        assert summary["errors"] == 0, summary["last_error"]
        assert summary["sent"] > 0 and summary["reports"] >= DEVICES
        assert summary["deltas"] >= 1
        progress = [line for line in err.splitlines() if line.startswith("t=")]
        assert len(progress) >= 3, err
        assert any(f"connected={DEVICES}/{DEVICES}" in line for line in progress), err
        assert all(line.endswith("errors=0") for line in progress), err  # one whole line each, not wrapped
        for thing, setpoint in ((early, 19.5), (late, 25.5)):
            doc = _shadow(http, thing).json()
            assert doc["state"]["reported"]["setpoint"] == setpoint, doc
            assert "setpoint" not in doc["state"].get("delta", {}), doc
            assert isinstance(doc["state"]["reported"]["temperature"], float)


def test_telemetry_over_websockets_reaches_subscribers(server: ThingcoreProcess) -> None:
    prefix = uid("tele")
    inbox = Inbox("telemetry")
    with Device(server.host, uid("watcher"), port=server.mqtt_port) as watcher:
        watcher.subscribe(f"sim/{prefix}-0000/telemetry", inbox)
        proc = _simulate("--devices", "1", "--rate", "5", "--duration", "2", "--endpoint", server.host,
                         "--transport", "websockets", "--port", str(server.http_port), "--prefix", prefix)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert json.loads(out)["sent"] >= 1
        assert set(inbox.get().json()) == {"temperature", "setpoint", "heating", "ts"}


def test_unreachable_server_is_one_clear_error() -> None:
    proc = _simulate("--devices", "3", "--duration", "1", "--endpoint", "127.0.0.1", "--port", str(free_port()))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in err
    assert "error: no device could connect to 127.0.0.1" in err
    assert "Connection refused" in err
