"""``dynamoDB`` and ``dynamoDBv2``: write the SELECT result into a table (AWS DynamoDBAction, DynamoDBv2Action).

``dynamoDB`` writes one item per message: ``hashKeyField`` = ``hashKeyValue``, optionally ``rangeKeyField`` =
``rangeKeyValue`` (``*KeyType`` NUMBER writes numbers), and the SELECT result under ``payloadField``
(default ``payload``; a binary result is written as base64). ``operation`` (a template) is INSERT (put,
the default), UPDATE (only the payload attribute changes) or DELETE. ``dynamoDBv2`` writes the whole
SELECT result (a JSON object) as the item of ``putItem.tableName``; its key attributes are those the table
was registered with (by a ``dynamoDB`` action) or ``[destinations.tables.keys]``.

Tables are the embedded ones or PostgreSQL (see :mod:`thingcore.destinations.tables`). A backend that is
unreachable is tried again with the rule's back-off, then reaches the error action.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from thingcore.destinations.data import data_destinations
from thingcore.destinations.tables import TableError, check_table_name, key_text
from thingcore.rules.actions.base import (
    Action,
    ActionConfigError,
    ActionEnv,
    ActionError,
    Firing,
    TemplateField,
    params_check,
)

_TYPES = ("STRING", "NUMBER")
_OPS = ("INSERT", "UPDATE", "DELETE")


def _key_value(value: str, kind: str, field: str) -> Any:
    if kind == "STRING":
        return value
    try:
        number = float(value)
    except ValueError:
        raise ActionError(f"{field} {value!r} is not a NUMBER") from None
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number


def _table(field: TemplateField, firing: Firing) -> str:
    name = field.render(firing)
    try:
        check_table_name(name)
    except TableError as exc:
        raise ActionError(str(exc)) from None
    return name


class _TableAction(Action):
    concurrency = 64  # deliveries waiting on one group commit or batch (embedded storage, PostgreSQL)

    def __init__(self, params: dict[str, Any], env: ActionEnv) -> None:
        super().__init__(params, env)
        self._registered: set[str] = set()

    @property
    def tables(self) -> Any:
        return data_destinations(self.env).tables


class DynamoDBAction(_TableAction):
    kind = "dynamoDB"
    failed_action = "DynamoAction"

    def __init__(self, params: dict[str, Any], env: ActionEnv) -> None:
        super().__init__(params, env)
        params_check(params, "dynamoDB", {"tableName", "roleArn", "operation", "hashKeyField", "hashKeyValue",
                                          "hashKeyType", "rangeKeyField", "rangeKeyValue", "rangeKeyType",
                                          "payloadField"}, {"tableName", "hashKeyField", "hashKeyValue"})
        self.table = TemplateField(params["tableName"], env, "dynamoDB.tableName")
        if self.table.const is not None:
            try:
                check_table_name(self.table.const)
            except TableError as exc:
                raise ActionConfigError(f"dynamoDB.tableName: {exc}") from None
        self.hash_field = self._name(params, "hashKeyField")
        self.hash_value = TemplateField(params["hashKeyValue"], env, "dynamoDB.hashKeyValue")
        self.hash_type = self._type(params, "hashKeyType")
        self.range_field = self._name(params, "rangeKeyField") if "rangeKeyField" in params else None
        if (self.range_field is None) != ("rangeKeyValue" not in params):
            raise ActionConfigError("dynamoDB: rangeKeyField and rangeKeyValue go together")
        self.range_value = TemplateField(params["rangeKeyValue"], env, "dynamoDB.rangeKeyValue") \
            if self.range_field else None
        self.range_type = self._type(params, "rangeKeyType")
        self.payload_field = TemplateField(params.get("payloadField", "payload"), env, "dynamoDB.payloadField")
        self.operation = TemplateField(params.get("operation", "INSERT"), env, "dynamoDB.operation")
        if self.operation.const is not None and self.operation.const.upper() not in _OPS:
            raise ActionConfigError("dynamoDB.operation must be INSERT, UPDATE or DELETE")

    @staticmethod
    def _name(params: dict[str, Any], key: str) -> str:
        value = params[key]
        if not isinstance(value, str) or not value:
            raise ActionConfigError(f"dynamoDB.{key} must be a non-empty string")
        return value

    @staticmethod
    def _type(params: dict[str, Any], key: str) -> str:
        value = params.get(key, "STRING")
        if value not in _TYPES:
            raise ActionConfigError(f"dynamoDB.{key} must be STRING or NUMBER")
        return value

    def resource(self, firing: Firing) -> str:
        return self.table.render(firing)

    def _render(self, firing: Firing) -> tuple[str, str, dict[str, Any], tuple[str, str], str]:
        table = _table(self.table, firing)
        op = self.operation.render(firing).upper() or "INSERT"
        if op not in _OPS:
            raise ActionError(f"operation {op!r} is not INSERT, UPDATE or DELETE")
        keys: dict[str, Any] = {self.hash_field: _key_value(self.hash_value.render(firing), self.hash_type,
                                                            "hashKeyValue")}
        range_text = ""
        if self.range_field and self.range_value is not None:
            rv = _key_value(self.range_value.render(firing), self.range_type, "rangeKeyValue")
            keys[self.range_field] = rv
            range_text = key_text(rv)
        payload_field = self.payload_field.render(firing) or "payload"
        return table, op, keys, (key_text(keys[self.hash_field]), range_text), payload_field

    def _payload(self, firing: Firing) -> Any:
        raw = firing.payload
        return orjson.loads(raw) if firing.is_json else base64.b64encode(raw).decode()

    async def execute(self, firing: Firing) -> None:  # type: ignore[override]
        table, op, keys, key, payload_field = self._render(firing)
        try:
            if table not in self._registered:
                await self.tables.register(table, self.hash_field, self.range_field)
                self._registered.add(table)
            if op == "DELETE":
                await self.tables.delete(table, key)
            elif op == "UPDATE":
                await self.tables.update(table, key, {**keys, payload_field: self._payload(firing)})
            else:
                await self.tables.put(table, key, {**keys, payload_field: self._payload(firing)})
        except TableError as exc:
            raise ActionError(f"{table}: {exc}", retryable=exc.retryable) from None

    def describe(self, firing: Firing) -> dict[str, Any]:
        table, op, keys, _key, payload_field = self._render(firing)
        return {"tableName": table, "operation": op, "item": {**keys, payload_field: self._payload(firing)}}


class DynamoDBv2Action(_TableAction):
    kind = "dynamoDBv2"
    failed_action = "DynamoActionV2"

    def __init__(self, params: dict[str, Any], env: ActionEnv) -> None:
        super().__init__(params, env)
        params_check(params, "dynamoDBv2", {"roleArn", "putItem"}, {"putItem"})
        put = params["putItem"]
        if not isinstance(put, dict) or set(put) != {"tableName"}:
            raise ActionConfigError("dynamoDBv2.putItem must be {\"tableName\": ...}")
        self.table = TemplateField(put["tableName"], env, "dynamoDBv2.putItem.tableName")
        if self.table.const is not None:
            try:
                check_table_name(self.table.const)
            except TableError as exc:
                raise ActionConfigError(f"dynamoDBv2.putItem.tableName: {exc}") from None

    def resource(self, firing: Firing) -> str:
        return self.table.render(firing)

    def _item(self, firing: Firing) -> dict[str, Any]:
        if not isinstance(firing.output, dict):
            raise ActionError("dynamoDBv2 writes a JSON object: the SELECT result is not one")
        return firing.output

    async def _keys(self, table: str) -> tuple[str, str | None]:
        configured = data_destinations(self.env).table_keys.get(table)
        if configured is not None:
            return configured.hash, configured.range
        schema = await self.tables.schema(table)
        if schema is None:
            raise ActionError(f"table {table} has no key schema: write it once with a dynamoDB action or set "
                              f"[destinations.tables.keys] {table} = {{ hash = \"...\", range = \"...\" }}")
        return schema["hashKey"], schema.get("rangeKey")

    async def execute(self, firing: Firing) -> None:  # type: ignore[override]
        table = _table(self.table, firing)
        item = self._item(firing)
        try:
            hash_key, range_key = await self._keys(table)
            missing = [k for k in (hash_key, range_key) if k is not None and k not in item]
            if missing:
                raise ActionError(f"{table}: the item has no value for key attribute(s) {', '.join(missing)}")
            if table not in self._registered:
                await self.tables.register(table, hash_key, range_key)
                self._registered.add(table)
            key = (key_text(item[hash_key]), key_text(item[range_key]) if range_key else "")
            await self.tables.put(table, key, item)
        except TableError as exc:
            raise ActionError(f"{table}: {exc}", retryable=exc.retryable) from None

    def describe(self, firing: Firing) -> dict[str, Any]:
        return {"tableName": self.table.render(firing), "item": self._item(firing)}
