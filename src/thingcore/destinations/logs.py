"""CloudWatch Logs' counterpart: one JSON-lines file per log group under ``<data dir>/logs``.

Each line is ``{"logGroupName", "timestamp" (ms), "message"}``. File names are the group names
percent-encoded (``/aws/iot/x`` -> ``%2Faws%2Fiot%2Fx.jsonl``). Appends run in the destinations' thread pool,
one group's lines under one lock so concurrent batches never interleave within a line.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from urllib.parse import quote

import orjson


def log_file(root: Path, group: str) -> Path:
    return root / (quote(group, safe="") + ".jsonl")


class LogGroups:
    def __init__(self, root: Path, stdout: bool) -> None:
        self.root = root
        self.stdout = stdout
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def append(self, group: str, events: list[tuple[int, str]]) -> None:
        """Append ``(timestamp ms, message)`` events; raises OSError when the disk refuses."""
        data = b"".join(orjson.dumps({"logGroupName": group, "timestamp": ts, "message": msg}) + b"\n"
                        for ts, msg in events)
        with self._guard:
            lock = self._locks.setdefault(group, threading.Lock())
        with lock:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(log_file(self.root, group), "ab") as f:
                f.write(data)
        if self.stdout:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()

    def read(self, group: str) -> list[dict]:
        path = log_file(self.root, group)
        if not path.exists():
            return []
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
