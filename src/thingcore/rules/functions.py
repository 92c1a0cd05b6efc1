"""Local Lambda functions: Python ``handler(event, context)`` callables named in the configuration.

    [functions]
    enrich = "mypkg.handlers:enrich"          # an importable module
    alarm = "handlers/alarm.py:handler"       # or a file, relative to the working directory

A rule addresses a function by the name in its ARN (``arn:aws:lambda:<region>:<account>:function:enrich``,
an alias or version after it is ignored), or by the bare name. Handlers run in a bounded thread pool
(``[rules] function_workers``, the concurrency limit) with a timeout (``function_timeout``); a
handler that overruns is reported as failed, and its thread stays busy until the handler returns,
since Python cannot stop a thread. The same runner serves the lambda action and SQL ``aws_lambda()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import importlib.util
import logging
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("thingcore.functions")

Handler = Callable[[Any, Any], Any]


class FunctionError(Exception):
    """A function that does not exist, failed, or overran its timeout."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class LambdaContext:
    """The attributes of AWS Lambda's Python context object that make sense locally."""

    def __init__(self, name: str, arn: str, timeout: float, region: str) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = arn
        self.memory_limit_in_mb = 128
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "thingcore"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout
        self.region = region

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


def function_name(function_arn: str) -> str:
    """``arn:aws:lambda:r:a:function:NAME[:qualifier]`` -> NAME; any other string: its last ``:`` segment."""
    parts = function_arn.split(":")
    if len(parts) >= 7 and parts[0] == "arn" and parts[5] == "function":
        return parts[6]
    return parts[-1]


def load_handler(spec: str) -> Handler:
    """Import ``module:function`` or ``path/to/file.py:function``; ValueError with the reason."""
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise ValueError(f"{spec!r} is not 'module:function' or 'file.py:function'")
    try:
        if module_part.endswith(".py"):
            path = Path(module_part).resolve()
            name = f"thingcore_function_{path.stem}_{abs(hash(str(path)))}"
            loader_spec = importlib.util.spec_from_file_location(name, path)
            if loader_spec is None or loader_spec.loader is None or not path.is_file():
                raise ValueError(f"file {module_part} not found")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_part)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"cannot import {module_part}: {type(exc).__name__}: {exc}") from exc
    handler = getattr(module, attr, None)
    if not callable(handler):
        raise ValueError(f"{module_part} has no function {attr!r}")
    return handler


class FunctionRunner:
    def __init__(self, specs: dict[str, str], *, workers: int, timeout: float, region: str = "us-east-1",
                 account_id: str = "000000000000") -> None:
        self.handlers: dict[str, Handler] = {}
        errors = []
        for name, spec in specs.items():
            try:
                self.handlers[name] = load_handler(spec)
            except ValueError as exc:
                errors.append(f"function {name}: {exc}")
        if errors:
            raise ValueError("; ".join(errors))
        self.workers = workers
        self.timeout = timeout
        self.region = region
        self.account_id = account_id
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.invocations = 0
        self.failures = 0

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="thingcore-fn")
        return self._pool

    def exists(self, function_arn: str) -> bool:
        return function_name(function_arn) in self.handlers

    def _submit(self, function_arn: str, event: Any, timeout: float) -> concurrent.futures.Future:
        name = function_name(function_arn)
        handler = self.handlers.get(name)
        if handler is None:
            known = ", ".join(sorted(self.handlers)) or "none configured"
            raise FunctionError(f"function {name!r} is not configured in [functions] (known: {known})")
        arn = function_arn if function_arn.startswith("arn:") else \
            f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"
        context = LambdaContext(name, arn, timeout, self.region)
        self.invocations += 1
        return self._executor().submit(handler, event, context)

    async def invoke(self, function_arn: str, event: Any, timeout: float | None = None) -> Any:
        """Run the handler off the event loop; FunctionError when it raises or overruns."""
        timeout = timeout or self.timeout
        fut = asyncio.wrap_future(self._submit(function_arn, event, timeout))
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self.failures += 1
            raise FunctionError(f"function {function_name(function_arn)} timed out after {timeout:g} s",
                                retryable=True) from None
        except Exception as exc:
            self.failures += 1
            raise FunctionError(f"function {function_name(function_arn)} failed: {type(exc).__name__}: {exc}",
                                retryable=True) from exc

    def invoke_blocking(self, function_arn: str, event: Any, timeout: float) -> Any:
        """The same from a worker thread (SQL ``aws_lambda()`` evaluation); never call it on the event loop."""
        fut = self._submit(function_arn, event, timeout)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            self.failures += 1
            raise FunctionError(f"function {function_name(function_arn)} timed out after {timeout:g} s") from None
        except Exception as exc:
            self.failures += 1
            raise FunctionError(f"function {function_name(function_arn)} failed: {type(exc).__name__}: {exc}") \
                from exc

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
