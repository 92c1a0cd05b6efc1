"""Start and stop the brokers under test: mosquitto and thingcore, on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import wire

HOST = "127.0.0.1"
NOFILE = 65536


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _raise_child_nofile() -> None:
    """preexec_fn: give the broker as many file descriptors as we are allowed to."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    except (ValueError, OSError):
        limit = NOFILE if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def mqtt_probe(port: int, timeout: float = 2.0, credentials: tuple[str, str] | None = None) -> None:
    """One CONNECT / CONNACK round trip; raises if the broker does not accept a client."""
    user, password = credentials or (None, None)
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(wire.connect("bench-probe", 0, username=user, password=password))
        data = b""
        while len(data) < 4:
            chunk = s.recv(4 - len(data))
            if not chunk:
                raise ConnectionError("closed before CONNACK")
            data += chunk
        if data[0] != wire.CONNACK or data[3] != 0:
            raise ConnectionError(f"bad CONNACK {data.hex()}")
        s.sendall(wire.DISCONNECT_PACKET)


class Broker:
    label = "broker"

    def __init__(self, workdir: Path, label: str | None = None) -> None:
        if label:
            self.label = label
        self.workdir = workdir / self.label
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.ws_port = 0  # MQTT over WebSocket (path ws_path) on this port
        self.ws_path = "/mqtt"
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "broker.log"
        self.starts = 0
        # (user name, password) the readiness probe logs in with, when anonymous clients are refused
        self.credentials: tuple[str, str] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        raise NotImplementedError

    def version(self) -> str:
        return ""

    def env(self) -> dict[str, str] | None:
        return None

    def login(self, role: str) -> tuple[str, str] | None:
        """(user name, password) for a load's client ("sub", "pub<i>", "idle<i>"); None: anonymous."""
        return None

    def start(self, timeout: float = 30.0) -> None:
        self.port = free_port()
        self.starts += 1
        cmd = self.command()
        log = open(self.workdir / "stdout.log", "ab")  # noqa: SIM115 - lives as long as the child
        self.proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            env=self.env(),
            preexec_fn=_raise_child_nofile,
            start_new_session=True,  # Ctrl-C reaches us, and we stop the broker ourselves
        )
        log.close()
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.label} exited with code {self.proc.returncode} on start-up:\n{self.log_tail()}"
                )
            try:
                mqtt_probe(self.port, credentials=self.credentials)
                return
            except OSError as exc:
                last = exc
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.label} did not accept MQTT clients within {timeout:.0f} s ({last!r})")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        out = []
        for path in (self.workdir / "stdout.log", self.log_path):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.extend(f"  {path.name}: {line}" for line in text)
        return "\n".join(out)


class Mosquitto(Broker):
    label = "mosquitto"

    def command(self) -> list[str]:
        self.ws_port = free_port()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    f"listener {self.port} {HOST}",
                    "allow_anonymous true",
                    "persistence false",
                    # the same queue and in-flight limits as thingcore gets (see Thingcore.env)
                    "max_queued_messages 1000000",
                    "max_inflight_messages 100",
                    "max_connections -1",
                    # asyncio/uvloop sockets (thingcore, the generator) have TCP_NODELAY on.
                    "set_tcp_nodelay true",
                    f"log_dest file {self.log_path}",
                    "log_type error",
                    "log_type warning",
                    # as root, mosquitto would otherwise switch to the 'mosquitto' user, which
                    # cannot write to our temporary directory.
                    "user root" if os.geteuid() == 0 else "",
                    # MQTT over WebSocket (libwebsockets) on a second listener
                    f"listener {self.ws_port} {HOST}",
                    "protocol websockets",
                    "",
                ]
            )
        )
        return ["mosquitto", "-c", str(conf)]

    def version(self) -> str:
        try:
            out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, timeout=5)
        except OSError:
            return "?"
        first = (out.stdout or out.stderr).splitlines()
        return first[0].replace("mosquitto version ", "") if first else "?"


class Thingcore(Broker):
    label = "thingcore"

    def command(self) -> list[str]:
        data = self.workdir / f"data-{self.starts}"
        http_port = self.ws_port = free_port()  # /mqtt on the HTTP port
        return [
            sys.executable,
            "-m",
            "thingcore",
            "serve",
            "--host",
            HOST,
            "--mqtt-port",
            str(self.port),
            "--http-port",
            str(http_port),
            "--data-dir",
            str(data),
            *self.extra_args(),
        ]

    def extra_args(self) -> list[str]:
        """More `thingcore serve` arguments (a subclass adds `--config`)."""
        return []

    def env(self) -> dict[str, str] | None:
        # thingcore's defaults (100 in flight, 1 000 queued, back-pressure on QoS 1/2 publishers while a
        # subscriber's queue drains): it loses no acknowledged message without a bigger queue.
        # BENCH_THINGCORE_QUEUE sets the queue bound, to compare like for like with mosquitto's.
        env = dict(os.environ)
        if env.get("PYTHONPATH"):  # the broker runs in its own directory: a relative entry would miss
            env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(x) for x in env["PYTHONPATH"].split(os.pathsep) if x)
        if "BENCH_THINGCORE_QUEUE" in os.environ:
            env["THINGCORE_LIMITS__MAX_QUEUED_MESSAGES"] = os.environ["BENCH_THINGCORE_QUEUE"]
        env["THINGCORE_LIMITS__MAX_INFLIGHT"] = "100"
        return env

    def version(self) -> str:
        try:
            from importlib.metadata import version

            return version("thingcore")
        except Exception:
            return "?"


def thingcore_available() -> tuple[bool, str]:
    try:
        out = subprocess.run(
            [sys.executable, "-m", "thingcore", "serve", "--help"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, repr(exc)
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines()
        return False, lines[-1] if lines else f"exit code {out.returncode}"
    return True, ""
