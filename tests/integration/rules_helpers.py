"""Helpers for the rules tests: boto3's iot client, a recording HTTP server, the test functions' log."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from tests.server import ThingcoreProcess

FUNCTIONS_FILE = Path(__file__).with_name("rules_functions.py")
TIMEOUT = 10.0
#: [rules] settings that let actions reach the tests' HTTP servers. They listen on 127.0.0.1, which rule
#: actions may not connect to unless the operator allows it: these tests allow it, explicitly.
LOOPBACK_DESTINATIONS = {"allowed_destination_networks": ["127.0.0.0/8"]}


def iot_client(tc: ThingcoreProcess, region: str = "us-east-1") -> Any:
    return boto3.client("iot", endpoint_url=f"http://127.0.0.1:{tc.http_port}", region_name=region,
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 1}))


def function_spec(name: str) -> str:
    """A `[functions]` entry for a handler of tests/integration/rules_functions.py (the file form)."""
    return f"{FUNCTIONS_FILE}:{name}"


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 200  #: what the server answered


@dataclass
class RecordingServer:
    """An HTTP server in a thread: records every POST; answers from a per-path script, then ``status``."""

    scripts: dict[str, list[int]] = field(default_factory=dict)
    status: int = 200  #: the answer once a path's script is used up (503: a destination that is down)
    held: set[str] = field(default_factory=set)  #: paths whose answers wait for release()
    released: threading.Event = field(default_factory=threading.Event)
    hits: list[Hit] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    httpd: ThreadingHTTPServer | None = None
    on_hit: Any = None  #: called with each recorded Hit, in the request's thread, before the answer

    def start(self) -> RecordingServer:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with recorder.cond:
                    script = recorder.scripts.get(self.path)
                    status = script.pop(0) if script else recorder.status
                    recorder.hits.append(Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                             status))
                    hold = self.path in recorder.held
                    recorder.cond.notify_all()
                if recorder.on_hit is not None:
                    recorder.on_hit(recorder.hits[-1])
                if hold:
                    recorder.released.wait(TIMEOUT * 3)
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def wait_hits(self, path: str, n: int, timeout: float = TIMEOUT) -> list[Hit]:
        def mine() -> list[Hit]:
            return [h for h in self.hits if h.path == path]

        with self.cond:
            if not self.cond.wait_for(lambda: len(mine()) >= n, timeout):
                raise AssertionError(f"{path}: {len(mine())} of {n} requests in {timeout} s")
            return mine()

    def wait_for_hit(self, what: str, match: Any, timeout: float = TIMEOUT) -> Hit:
        """The first request ``match(hit)`` accepts, waiting for it."""
        with self.cond:
            if not self.cond.wait_for(lambda: any(match(h) for h in self.hits), timeout):
                raise AssertionError(f"no {what} in {timeout} s")
            return next(h for h in self.hits if match(h))

    def release(self) -> None:
        self.released.set()

    def stop(self) -> None:
        self.released.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


def read_function_log(path: Path, n: int, kind: str | None = None, timeout: float = TIMEOUT,
                      where: Any = None) -> list[dict]:
    """Wait until the test functions logged `n` records (of `kind`, matching `where`); returns them.

    Polls: a file written by another process has no event to wait on."""
    deadline = time.monotonic() + timeout
    while True:
        records = []
        if path.exists():
            records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if kind is not None:
            records = [r for r in records if r["kind"] == kind]
        if where is not None:
            records = [r for r in records if where(r)]
        if len(records) >= n:
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(records)} of {n} function calls logged in {timeout} s")
        time.sleep(0.02)


def rule_name(prefix: str = "rule") -> str:
    from tests.integration.mqtt_helpers import uid

    return uid(prefix).replace("-", "_")


def confirm_destination(iot: Any, web: RecordingServer, url: str | None = None) -> str:
    """A topic rule destination for ``url`` (default: the whole server), created and confirmed as its owner
    would: the confirmation message thingcore POSTs to the server carries the token we confirm with."""
    url = url or web.url + "/"
    arn = iot.create_topic_rule_destination(
        destinationConfiguration={"httpUrlConfiguration": {"confirmationUrl": url}})["topicRuleDestination"]["arn"]
    hit = web.wait_for_hit(f"confirmation message for {arn}",
                           lambda h: h.headers.get("x-amz-rules-engine-destination-arn") == arn)
    iot.confirm_topic_rule_destination(confirmationToken=json.loads(hit.body)["confirmationToken"])
    return arn
