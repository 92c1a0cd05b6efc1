"""scripts/serve hands its arguments to `thingcore serve`, not to pip (scripts/_venv.sh is sourced)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _fake_venv(tmp_path: Path) -> Path:
    """A venv whose pip refuses loudly and whose `thingcore` is this checkout's, so nothing is installed."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text('#!/bin/sh\nif [ "$2" = pip ]; then echo "pip called: $*" >&2; exit 3; fi\n'
                      f'exec {sys.executable} "$@"\n')
    thingcore = bin_dir / "thingcore"
    thingcore.write_text(f'#!/bin/sh\nexec {sys.executable} -m thingcore "$@"\n')
    for f in (python, thingcore):
        f.chmod(0o755)
    return tmp_path / "venv"


def test_serve_script_passes_help_to_thingcore_serve(tmp_path: Path) -> None:
    env = {**os.environ, "THINGCORE_VENV": str(_fake_venv(tmp_path)), "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([str(ROOT / "scripts" / "serve"), "--help"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pip called" not in result.stderr
    assert "thingcore serve [OPTIONS]" in result.stdout
    assert "--mqtt-port" in result.stdout
