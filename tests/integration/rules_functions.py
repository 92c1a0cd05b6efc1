"""Lambda-style handlers the rules tests configure in ``[functions]`` (loaded by the server process).

Each appends what it saw to the JSON-lines file named by THINGCORE_TEST_FUNCTION_LOG, so the test
process can read what the server's function runner passed in.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any


def _log(kind: str, event: Any, context: Any) -> None:
    path = os.environ["THINGCORE_TEST_FUNCTION_LOG"]
    record = {"kind": kind, "event": event, "function_name": context.function_name,
              "arn": context.invoked_function_arn, "remaining_ms": context.get_remaining_time_in_millis(),
              "request_id": context.aws_request_id}
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def record(event: Any, context: Any) -> dict[str, Any]:
    _log("record", event, context)
    return {"ok": True}


def fail(event: Any, context: Any) -> None:
    _log("fail", event, context)
    raise RuntimeError("sensor calibration table missing")


def slow(event: Any, context: Any) -> None:
    _log("slow", event, context)
    time.sleep(3)


def enrich(event: Any, context: Any) -> dict[str, Any]:
    """For SQL aws_lambda(): returns a computed document."""
    return {"sum": event["a"] + event["b"], "by": context.function_name}
