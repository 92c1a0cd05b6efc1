"""Findings 14 and 15: request bodies are refused before they are read, and HTTP connections are bounded
(an idle timeout before and between requests, a cap on how many are open), written with raw sockets so
the test decides exactly what is sent and when.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.integration.mqtt_helpers import PahoClient, uid, wait_for
from tests.server import HOST, ThingcoreProcess

pytestmark = pytest.mark.integration

HUGE = 400 * 1024 * 1024
BODY_ROUTES = ("/rules/{n}", "/things/{n}", "/things/{n}/shadow", "/topics/t/{n}", "/api/v1/rules/test")


def rss(tc: ThingcoreProcess) -> int:
    assert tc.proc is not None
    for line in Path(f"/proc/{tc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def head(path: str, port: int, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {HOST}:{port}", "Content-Type: application/json", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket, timeout: float = 3.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the one response on this socket (AssertionError if none in time)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"no response within {timeout} s") from None
        if not chunk:
            raise AssertionError(f"connection closed without a response: {data!r}")
        data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.fixture(scope="module")
def tc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    with ThingcoreProcess(tmp_path_factory.mktemp("httpedge-resources")) as server:
        yield server


# -- finding 14: bodies --------------------------------------------------------------------------------------


def test_a_huge_declared_body_is_refused_before_it_is_read(tc: ThingcoreProcess) -> None:
    for route in BODY_ROUTES:
        path = route.format(n=uid("big").replace("-", "_"))
        with socket.create_connection((HOST, tc.http_port)) as sock:
            sock.sendall(head(path, tc.http_port, f"Content-Length: {HUGE}") + b"{" * 65536)
            status, headers, body = read_response(sock)  # without the other 399.9 MB
            assert status == 413, (path, body)
            assert headers["x-amzn-errortype"] == "RequestEntityTooLargeException"
            assert "max_body_size" in json.loads(body)["message"]
            assert headers["connection"] == "close"


def test_chunked_bodies_are_cut_at_the_limit(tc: ThingcoreProcess) -> None:
    """Three 64 MB uploads of unknown length at once: each is answered 413 after about the limit."""
    before = rss(tc)
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    results: list[tuple[int, int]] = []

    def upload(path: str) -> None:
        with socket.create_connection((HOST, tc.http_port)) as sock:
            sock.sendall(head(path, tc.http_port, "Transfer-Encoding: chunked"))
            sent = 0
            while sent < 64 * 1024 * 1024 and not select.select([sock], [], [], 0)[0]:
                try:
                    sock.sendall(chunk)
                except OSError:
                    break
                sent += 65536
            results.append((read_response(sock, 30)[0], sent))

    threads = [threading.Thread(target=upload, args=(route.format(n=uid("chunk").replace("-", "_")),))
               for route in BODY_ROUTES[:3]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [status for status, _ in results] == [413, 413, 413], results
    assert all(sent < 16 * 1024 * 1024 for _, sent in results), results
    assert rss(tc) - before < 48 * 1024 * 1024
    assert "chunked body over" in tc.log()


def test_max_body_size_is_one_limit_for_every_route(thingcore_factory: Callable[..., ThingcoreProcess]) -> None:
    server = thingcore_factory({"http": {"max_body_size": 4096}})
    with httpx.Client(base_url=f"http://{HOST}:{server.http_port}", timeout=10) as http:
        topic = f"limit/{uid()}"
        assert http.post(f"/topics/{topic}", content=b"x" * 4096).status_code == 200
        for route in BODY_ROUTES:
            resp = http.post(route.format(n=uid("n").replace("-", "_")), content=b"x" * 4097)
            assert resp.status_code == 413, (route, resp.text)


def test_an_anonymous_remote_caller_is_refused_before_its_body(
        thingcore_factory: Callable[..., ThingcoreProcess]) -> None:
    """A non-loopback caller (through a trusted local proxy) with no credentials, and anonymous HTTP
    callers admitted from loopback only: 403 at once, for a body under the limit it never sends."""
    server = thingcore_factory({"http": {"trusted_proxies": ["127.0.0.1"]}})
    for route in BODY_ROUTES:
        path = route.format(n=uid("anon").replace("-", "_"))
        with socket.create_connection((HOST, server.http_port)) as sock:
            sock.sendall(head(path, server.http_port, "Content-Length: 100000", "X-Forwarded-For: 203.0.113.9"))
            status, _headers, body = read_response(sock)
            assert status in (401, 403), (path, body)
    assert "refused POST /rules/" in server.log()


# -- finding 15: connections ---------------------------------------------------------------------------------


def test_idle_and_slow_connections_are_closed_while_mqtt_clients_connect(
        thingcore_factory: Callable[..., ThingcoreProcess]) -> None:
    server = thingcore_factory({"http": {"idle_timeout": 1.0}})
    idle = [socket.create_connection((HOST, server.http_port)) for _ in range(50)]
    slow = [socket.create_connection((HOST, server.http_port)) for _ in range(5)]
    kept = socket.create_connection((HOST, server.http_port))
    try:
        kept.sendall(f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        assert read_response(kept)[0] == 200
        started = time.monotonic()
        with PahoClient(server.mqtt_port) as device:  # MQTT is served meanwhile
            device.connect()
        request = f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{server.http_port}\r\n".encode()
        for i in range(8):  # a byte of the head every 0.25 s: the head is due in 1 s all the same
            for sock in slow:
                try:
                    sock.sendall(request[i:i + 1])
                except OSError:  # closed by the server already
                    pass
            time.sleep(0.25)
        assert all(closed_by_server(s, 1.5) for s in [*idle, *slow, kept])
        assert time.monotonic() - started < 4.0
        with PahoClient(server.mqtt_port) as device:
            device.connect()
    finally:
        for sock in [*idle, *slow, kept]:
            sock.close()


def test_connections_past_the_cap_get_503_and_a_log_line(thingcore_factory: Callable[..., ThingcoreProcess]) -> None:
    server = thingcore_factory({"http": {"idle_timeout": 2.0, "max_connections": 20}})
    idle = [socket.create_connection((HOST, server.http_port)) for _ in range(20)]
    try:
        time.sleep(0.3)  # accepted by the server's loop
        with socket.create_connection((HOST, server.http_port)) as extra:
            status, headers, body = read_response(extra)
            assert status == 503
            assert headers["x-amzn-errortype"] == "ServiceUnavailableException"
            assert "max_connections" in json.loads(body)["message"]
            assert closed_by_server(extra, 1)
        with PahoClient(server.mqtt_port) as device:
            device.connect()
        wait_for(lambda: "HTTP listener full" in server.log(), what="the log line")
        assert all(closed_by_server(s, 3) for s in idle)  # the idle ones go, and room is made
        with httpx.Client(timeout=5) as http:
            assert http.get(f"http://{HOST}:{server.http_port}/healthz").status_code == 200
    finally:
        for sock in idle:
            sock.close()
