"""Real PostgreSQL, Redis and NATS JetStream servers for the destination tests, on free loopback ports.

Each runs from its Debian package's binary in a fresh temp directory and is gone after the test module; a
missing program skips the tests that need it, naming the program. PostgreSQL refuses to run as root, so as
root it runs as the ``postgres`` user the Debian package creates (``runuser``).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from tests.server import free_port


def _program(name: str, *extra_dirs: str) -> str:
    for pattern in extra_dirs:
        for d in sorted(glob.glob(pattern), reverse=True):
            if os.access(os.path.join(d, name), os.X_OK):
                return os.path.join(d, name)
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)),
                                      None)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package: {_PACKAGES.get(name, name)})")
    return path


_PACKAGES = {"postgres": "postgresql", "initdb": "postgresql", "redis-server": "redis-server",
             "nats-server": "nats-server"}


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


class Engine:
    """A server process in a temp directory; ``stop()`` then ``start()`` brings it back on the same port."""

    name = ""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"thingcore-{self.name}-"))
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "server.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Engine:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        try:
            _wait_port(self.port, self.proc, self.name)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}:\n{self.log.read_text(errors='replace')[-2000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis(Engine):
    name = "redis"

    def __init__(self) -> None:
        self.binary = _program("redis-server")
        super().__init__()

    def command(self) -> list[str]:
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.dir), "--daemonize", "no"]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class Nats(Engine):
    name = "nats"

    def __init__(self) -> None:
        self.binary = _program("nats-server")
        super().__init__()

    def command(self) -> list[str]:
        return [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.dir / "js")]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


class Postgres(Engine):
    name = "postgres"

    def __init__(self) -> None:
        self.binary = _program("postgres", "/usr/lib/postgresql/*/bin")
        self.initdb = _program("initdb", "/usr/lib/postgresql/*/bin")
        super().__init__()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                pytest.skip("runuser is not installed (PostgreSQL cannot run as root)")
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = [runuser, "-u", "postgres", "--"]
            self.log.touch()
            shutil.chown(self.log, "postgres", "postgres")
        subprocess.run([*self.as_user, self.initdb, "-D", str(self.dir / "data"), "-A", "trust", "-U", "thingcore",
                        "--no-sync", "-E", "UTF8"], check=True, capture_output=True)

    def command(self) -> list[str]:
        return [*self.as_user, self.binary, "-D", str(self.dir / "data"), "-k", str(self.dir), "-h", "127.0.0.1",
                "-p", str(self.port), "-F", "-c", "max_connections=50"]

    @property
    def dsn(self) -> str:
        return f"postgresql://thingcore@127.0.0.1:{self.port}/postgres"
