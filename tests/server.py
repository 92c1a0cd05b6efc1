"""Start a real `thingcore serve` process on free loopback ports in a temporary directory.

    with ThingcoreProcess(tmp_path, config={"limits": {"max_queued_messages": 10}}) as tc:
        client.connect("127.0.0.1", tc.mqtt_port)

The process is stopped with SIGTERM (clean shutdown) on exit; `kill()` sends SIGKILL for crash
tests and `restart()` starts it again on the same ports and data directory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(config: dict[str, Any]) -> str:
    """A small TOML writer for test configurations (top-level keys and one level of tables)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for table, values in config.items():
        if isinstance(values, dict):
            lines.append(f"\n[{table}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


class ThingcoreProcess:
    def __init__(self, directory: Path, config: dict[str, Any] | None = None, *, args: list[str] | None = None,
                 env: dict[str, str] | None = None, tls: bool = False) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.directory / "data"
        self.mqtt_port = free_port()
        self.http_port = free_port()
        self.mqtts_port = free_port() if tls else None
        self.config_path = self.directory / "thingcore.toml"
        self.config_path.write_text(to_toml(config or {}))
        self.args = args or []
        self.env = env or {}
        self.log_path = self.directory / "thingcore.log"
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return HOST

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "thingcore", "serve", "--config", str(self.config_path),
            "--host", HOST, "--mqtt-port", str(self.mqtt_port), "--http-port", str(self.http_port),
            "--data-dir", str(self.data_dir), *self.args,
        ]
        if self.mqtts_port:
            cmd += ["--mqtts-port", str(self.mqtts_port)]
        return cmd

    def start(self, timeout: float = 20.0) -> ThingcoreProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"thingcore exited with {self.proc.returncode}:\n{self.log()}")
            if self.healthy():
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"thingcore did not become healthy in {timeout} s:\n{self.log()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.http_port}/healthz", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def http_get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.http_port}{path}", timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def metrics(self) -> dict[str, float]:
        _status, body = self.http_get("/metrics")
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait: the clean shutdown path."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"thingcore did not stop on SIGTERM within {timeout} s:\n{self.log()}") from None

    def kill(self) -> None:
        """SIGKILL: the crash path (nothing gets flushed)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> ThingcoreProcess:
        self.stop()
        return self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except FileNotFoundError:
            return ""

    def __enter__(self) -> ThingcoreProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.kill()


def password_file(path: Path, users: dict[str, str]) -> Path:
    """A password file with these users (name -> password), written as `thingcore passwd add` writes it."""
    from thingcore.auth import PasswordFile

    passwords = PasswordFile(path)
    for user, password in users.items():
        passwords.set(user, password)
    passwords.save()
    return path
