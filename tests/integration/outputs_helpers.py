"""Real destinations for the rule output tests: an SMTP server, an index-API HTTP server, moto's S3 server."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message as EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from tests.server import free_port

TIMEOUT = 10.0


class Mailbox:
    """An aiosmtpd server on a free loopback port keeping every message it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[EmailMessage] = []
        self.cond = threading.Condition()
        box = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                with box.cond:
                    box.messages.append(message_from_bytes(envelope.content))
                    box.cond.notify_all()
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> Mailbox:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def wait(self, n: int, timeout: float = TIMEOUT) -> list[EmailMessage]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.messages) >= n, timeout):
                raise AssertionError(f"{len(self.messages)} of {n} e-mails arrived in {timeout} s")
            return list(self.messages)


def body_text(mail: EmailMessage) -> str:
    part = mail
    if mail.is_multipart():
        part = next(p for p in mail.walk() if p.get_content_type() == "text/plain")
    payload = part.get_payload(decode=True)
    return payload.decode() if isinstance(payload, bytes) else str(payload)


class IndexServer:
    """Speaks the two calls of the Elasticsearch/OpenSearch index API the actions use: PUT and GET
    ``/<index>/_doc/<id>``. It is not Elasticsearch: it checks the wire format the actions send."""

    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], Any] = {}
        self.requests: list[tuple[str, str, str]] = []  # method, path, content-type
        self.cond = threading.Condition()
        store = self

        class Handler(BaseHTTPRequestHandler):
            def _split(self) -> tuple[str, str] | None:
                parts = self.path.split("/")
                if len(parts) == 4 and parts[2] == "_doc":
                    return unquote(parts[1]), unquote(parts[3])
                return None

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                target = self._split()
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                if target is None:
                    return self._answer(400, {"error": "bad path"})
                try:
                    doc = json.loads(raw)
                except ValueError:
                    return self._answer(400, {"error": {"type": "mapper_parsing_exception"}})
                with store.cond:
                    created = target not in store.docs
                    store.docs[target] = doc
                    store.requests.append(("PUT", self.path, self.headers.get("content-type", "")))
                    store.cond.notify_all()
                self._answer(201 if created else 200, {"_index": target[0], "_id": target[1],
                                                       "result": "created" if created else "updated"})

            def do_GET(self) -> None:
                target = self._split()
                if target is None or target not in store.docs:
                    return self._answer(404, {"found": False})
                self._answer(200, {"_index": target[0], "_id": target[1], "found": True,
                                   "_source": store.docs[target]})

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def start(self) -> IndexServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def wait_doc(self, index: str, doc_id: str, timeout: float = TIMEOUT) -> Any:
        with self.cond:
            if not self.cond.wait_for(lambda: (index, doc_id) in self.docs, timeout):
                raise AssertionError(f"{index}/{doc_id} was not indexed in {timeout} s")
            return self.docs[(index, doc_id)]


@contextmanager
def moto_s3(port: int | None = None) -> Iterator[str]:
    """moto's server mode on a free (or the given) loopback port: a real HTTP S3 API (PutObject, GetObject, ...)."""
    port = port or free_port()
    exe = shutil.which("moto_server")
    cmd = [exe] if exe else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


class Forwarder:
    """A TCP port forwarding to another (both ways, one thread per direction): an endpoint that can be brought
    up at a chosen moment, in front of a server that is already set up."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream = socket.create_connection(target)

                def pump(src: socket.socket, dst: socket.socket) -> None:
                    try:
                        while data := src.recv(65536):
                            dst.sendall(data)
                    except OSError:
                        pass
                    finally:
                        with contextlib.suppress(OSError):
                            dst.shutdown(socket.SHUT_WR)

                back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
                back.start()
                pump(self.request, upstream)
                back.join(TIMEOUT)
                upstream.close()

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
