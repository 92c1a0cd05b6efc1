"""Local counterparts of the AWS services SQL functions reach (``ctx.services`` of an evaluation).

- ``get_thing_shadow(thing, roleArn[, shadowName])`` reads thingcore's shadow service;
- ``aws_lambda(functionArn, event)`` calls a function of ``[functions]`` (2 s limit, as on AWS);
- ``get_secret(secretId, 'SecretString'|'SecretBinary', [key], roleArn)`` reads ``[secrets]``;
- ``get_registry_data('DescribeThing'|'ListThingGroupsForThing', thing, roleArn)`` reads the registry;
- ``get_dynamodb(table, ...)`` reads the tables dynamoDB actions write (embedded or PostgreSQL).

Statements using these are evaluated in worker threads, so the blocking calls here never run on the
event loop; the few that could (a substitution template rendered by an action) are answered
directly when the data is in memory, and refused when they would block the loop.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

import orjson

from thingcore.rules.functions import FunctionError, FunctionRunner

AWS_LAMBDA_TIMEOUT = 2.0  # aws_lambda() must return within 2000 ms on AWS


class ServiceError(RuntimeError):
    """An external SQL function that cannot be answered; the evaluation fails with this message."""


def _runtime_error(message: str) -> Exception:
    try:
        from thingcore.rules.sql.errors import SqlRuntimeError
    except ImportError:  # pragma: no cover - the SQL package always has it
        return ServiceError(message)
    return SqlRuntimeError(message)


class Services:
    def __init__(self, functions: FunctionRunner | None, secrets: dict[str, str], account_id: str) -> None:
        self.functions = functions
        self.secrets = secrets
        self.account_id = account_id  #: what accountid() returns
        self.shadows: Any = None  #: the shadow service, when the server has one (set at start)
        self.registry: Any = None  #: the thing registry, when the server has one (set at start)
        self.tables: Any = None  #: dynamoDB actions' tables, read by get_dynamodb() (set by the server)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def bind(self, loop: asyncio.AbstractEventLoop, shadows: Any = None, registry: Any = None) -> None:
        self.loop = loop
        self._loop_thread = threading.get_ident()
        self.shadows = shadows
        self.registry = registry

    def _on_loop(self) -> bool:
        return threading.get_ident() == self._loop_thread

    # -- get_thing_shadow ---------------------------------------------------------------------------

    def get_thing_shadow(self, thing_name: str, role_arn: str, shadow_name: str | None = None) -> dict | None:
        shadows = self.shadows
        if shadows is None:
            raise _runtime_error("get_thing_shadow(): this server has no shadow service")
        reader = getattr(shadows, "get_document", None) or getattr(shadows, "get", None)
        if reader is None:
            raise _runtime_error("get_thing_shadow(): the shadow service offers no way to read a shadow")
        result = reader(thing_name, shadow_name) if shadow_name is not None else reader(thing_name)
        if inspect.isawaitable(result):
            if self._on_loop() or self.loop is None:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                raise _runtime_error("get_thing_shadow() cannot be used in a substitution template here")
            result = asyncio.run_coroutine_threadsafe(_await(result), self.loop).result(AWS_LAMBDA_TIMEOUT)
        if isinstance(result, bytes | bytearray):
            result = orjson.loads(result)
        return result

    # -- aws_lambda ---------------------------------------------------------------------------------

    def call_function(self, function_arn: str, payload: Any) -> Any:
        if self.functions is None:
            raise _runtime_error("aws_lambda(): no functions are configured")
        if self._on_loop():
            raise _runtime_error("aws_lambda() cannot be used in a substitution template")
        try:
            return self.functions.invoke_blocking(function_arn, payload, AWS_LAMBDA_TIMEOUT)
        except FunctionError as exc:
            raise _runtime_error(f"aws_lambda(): {exc.message}") from None

    # -- get_secret ---------------------------------------------------------------------------------

    def get_secret(self, secret_id: str, secret_type: str, key: str | None = None,
                   role_arn: str | None = None) -> str | bytes:
        """The secret's value (the SQL function applies ``key`` and base64 itself)."""
        name = secret_id.split(":secret:", 1)[-1] if secret_id.startswith("arn:") else secret_id
        value = self.secrets.get(name)
        if value is None:
            # an ARN's name carries a random 6-character suffix on AWS (name-AbCdEf)
            base, dash, suffix = name.rpartition("-")
            value = self.secrets.get(base) if dash and len(suffix) == 6 else None
        if value is None:
            raise _runtime_error(f"get_secret(): secret {name!r} is not configured in [secrets]")
        return value.encode() if secret_type == "SecretBinary" else value

    # -- get_registry_data --------------------------------------------------------------------------

    def get_registry_data(self, api: str, thing_name: str, role_arn: str | None = None) -> dict | None:
        registry = self.registry
        if registry is None:
            raise _runtime_error("get_registry_data(): this server has no thing registry")
        if self._on_loop() or self.loop is None:
            raise _runtime_error("get_registry_data() cannot be used in a substitution template")
        return asyncio.run_coroutine_threadsafe(_registry_read(registry, api, thing_name), self.loop) \
            .result(AWS_LAMBDA_TIMEOUT)

    # -- get_dynamodb -------------------------------------------------------------------------------

    def get_dynamodb(self, table: str, hash_key_name: str, hash_key_value: Any, range_key_name: str | None = None,
                     range_key_value: Any = None, role_arn: str | None = None) -> dict | None:
        """The item of a dynamoDB/dynamoDBv2 action's table (thingcore.destinations.tables), or None."""
        tables = self.tables
        if tables is None:
            raise _runtime_error("get_dynamodb(): this server has no tables")
        if self._on_loop() or self.loop is None:
            raise _runtime_error("get_dynamodb() cannot be used in a substitution template")
        from thingcore.destinations.tables import TableError, key_text

        key = (key_text(hash_key_value), key_text(range_key_value) if range_key_name else "")
        try:
            item = asyncio.run_coroutine_threadsafe(tables.get(table, key), self.loop).result(AWS_LAMBDA_TIMEOUT)
        except TableError as exc:
            raise _runtime_error(f"get_dynamodb(): {exc}") from None
        if item is None or key_text(item.get(hash_key_name)) != key[0]:
            return None
        if range_key_name and key_text(item.get(range_key_name)) != key[1]:
            return None
        return item


async def _await(awaitable: Any) -> Any:
    return await awaitable


async def _registry_read(registry: Any, api: str, thing_name: str) -> dict | None:
    from thingcore.registry import NotFound

    try:
        thing = await registry.things.describe(thing_name)
    except NotFound:
        return None
    if api == "DescribeThing":
        return thing
    return {"thingGroups": []}  # thingcore has no thing groups yet: every thing is in none
