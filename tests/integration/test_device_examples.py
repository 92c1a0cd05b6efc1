"""The examples/ programs run as written (only the port differs) against a real thingcore: the sensor's
readings arrive, and the boto3 back end and the shadow device bring a shadow into sync together."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.device_helpers import Inbox, device, uid
from tests.server import ThingcoreProcess

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    with ThingcoreProcess(tmp_path_factory.mktemp("device-examples")) as tc:
        yield tc


def _example(name: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(EXAMPLES / name), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_every_example_says_how_to_run_it() -> None:
    for path in sorted(EXAMPLES.glob("*.py")):
        assert path.read_text().startswith("# Run: python examples/"), path.name


def test_sensor_publishes_telemetry(server: ThingcoreProcess) -> None:
    sensor_id = uid("sensor")
    inbox = Inbox("telemetry")
    with device(server) as watcher:
        watcher.subscribe(f"sensors/{sensor_id}/telemetry", inbox)
        proc = _example("sensor.py", "--endpoint", server.host, "--port", str(server.mqtt_port), "--id", sensor_id,
                        "--count", "3", "--interval", "0.05")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        readings = [m.json() for m in inbox.take(3)]
    assert all(set(r) == {"celsius", "ts"} for r in readings)
    assert out.count(f"sensors/{sensor_id}/telemetry {{") == 3  # one line per reading


def test_backend_and_shadow_device_converge(server: ThingcoreProcess) -> None:
    pytest.importorskip("boto3", reason="boto3 (test extra) runs the back-end example")
    thing = uid("lamp")
    lamp = _example("shadow_device.py", "--endpoint", server.host, "--port", str(server.mqtt_port),
                    "--thing", thing, "--deltas", "1")
    try:
        assert lamp.stdout is not None
        lines = []
        for line in lamp.stdout:  # wait until the lamp listens for deltas
            lines.append(line)
            if line.startswith("waiting for deltas"):
                break
        else:
            pytest.fail(f"the shadow device stopped early: {''.join(lines)}"
                        f"{lamp.stderr.read() if lamp.stderr else ''}")
        backend = _example("backend_boto3.py", "color=blue", "brightness=80", "--thing", thing,
                           "--endpoint-url", f"http://{server.host}:{server.http_port}")
        out, err = backend.communicate(timeout=60)
        assert backend.returncode == 0, err
        assert "in sync at version" in out
        assert "'color': 'blue'" in out and "'brightness': 80" in out
        rest, lamp_err = lamp.communicate(timeout=60)
        assert lamp.returncode == 0, lamp_err
        assert "delta (version 2): {'color': 'blue', 'brightness': 80}" in rest
    finally:
        lamp.kill()
