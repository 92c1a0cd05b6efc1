"""`thingcore things ...` against a running server: what an operator types and sees."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest
from tests.integration.mqtt_helpers import uid
from tests.server import free_port
from typer.testing import CliRunner

from thingcore.cli import app

pytestmark = pytest.mark.integration

runner = CliRunner()


def things(tc: Any, *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, ["things", *args, "--endpoint", f"http://127.0.0.1:{tc.http_port}"])
    assert result.exit_code == code, (result.stdout, result.stderr)
    return json.loads(result.stdout) if code == 0 else result.stderr


def name() -> str:
    return uid("cli").replace(".", "_")


def test_create_get_update_delete(thingcore) -> None:
    n = name()
    created = things(thingcore, "create", n, "--attr", "room=hall", "-a", "floor=2")
    assert created["thingName"] == n and created["thingArn"].endswith(f":thing/{n}")
    shown = things(thingcore, "get", n)
    assert shown["attributes"] == {"room": "hall", "floor": "2"} and shown["version"] == 1

    merged = things(thingcore, "update", n, "--attr", "floor=3", "--remove-attr", "room")
    assert merged["attributes"] == {"floor": "3"} and merged["version"] == 2
    replaced = things(thingcore, "update", n, "--replace", "--attr", "color=blue")
    assert replaced["attributes"] == {"color": "blue"}

    err = things(thingcore, "update", n, "--attr", "x=1", "--expected-version", "1", code=1)
    assert err.startswith("error: VersionConflictException:") and err.count("\n") == 1
    err = things(thingcore, "delete", n, "--expected-version", "1", code=1)
    assert "VersionConflictException" in err
    assert things(thingcore, "delete", n) == {"deleted": n}
    err = things(thingcore, "get", n, code=1)
    assert err.startswith("error: ResourceNotFoundException:") and n in err


def test_create_with_type_and_list_filters_and_pages(thingcore) -> None:
    tt = name()
    base = f"http://127.0.0.1:{thingcore.http_port}"
    assert httpx.post(f"{base}/thing-types/{tt}", json={}).status_code == 200
    batch = name()
    for i in range(3):
        things(thingcore, "create", f"{batch}-{i}", "--type", tt, "--attr", f"batch={batch}")
    page = things(thingcore, "list", "--attr", f"batch={batch}", "-n", "2")
    assert [t["thingName"] for t in page["things"]] == [f"{batch}-0", f"{batch}-1"]
    rest = things(thingcore, "list", "--attr", f"batch={batch}", "-n", "2", "--next-token", page["nextToken"])
    assert [t["thingName"] for t in rest["things"]] == [f"{batch}-2"] and "nextToken" not in rest
    everything = things(thingcore, "list", "--attr", f"batch={batch}", "-n", "1", "--all")
    assert len(everything["things"]) == 3 and "nextToken" not in everything
    typed = things(thingcore, "list", "--type", tt)
    assert {t["thingTypeName"] for t in typed["things"]} == {tt}
    prefixed = things(thingcore, "list", "--attr", f"batch={batch[:-4]}", "--prefix", "--all")
    assert {f"{batch}-{i}" for i in range(3)} <= {t["thingName"] for t in prefixed["things"]}
    err = things(thingcore, "create", name(), "--type", "no-such-type", code=1)
    assert "ResourceNotFoundException" in err


def test_bad_arguments_and_server_refusals_are_one_line(thingcore) -> None:
    assert "name=value" in things(thingcore, "create", name(), "--attr", "novalue", code=2)
    assert "nothing to update" in things(thingcore, "update", name(), code=2)
    err = things(thingcore, "create", "bad name", code=1)
    assert err.startswith("error: InvalidRequestException:")
    err = things(thingcore, "create", name(), "-a", "a=1", "-a", "b=2", "-a", "c=3", "-a", "d=4", code=1)
    assert "at most 3 attributes" in err


def test_unreachable_server_from_the_real_command(tmp_path) -> None:
    port = free_port()  # nothing listens here
    proc = subprocess.run([sys.executable, "-m", "thingcore", "things", "list"], capture_output=True, text=True,
                          env={"THINGCORE_ENDPOINT": f"http://127.0.0.1:{port}", "PATH": "/usr/bin:/bin"},
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"error: cannot reach thingcore at http://127.0.0.1:{port}")
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
