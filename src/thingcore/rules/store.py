"""Where rules live: storage documents (namespace ``rule``) and the rules directory read at start-up.

A stored document is the AWS rule resource as JSON (ruleName, sql, awsIotSqlVersion, actions,
errorAction, ruleDisabled, description, createdAt, ruleArn), so a backup of the table is a backup of
the rules in AWS's own shape.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson

from thingcore.rules.model import RULE_NAME
from thingcore.storage import Storage

log = logging.getLogger("thingcore.rules")

NAMESPACE = "rule"


class RuleFileError(Exception):
    """A rule file that cannot be used, named with its path."""


class RuleStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def load_all(self) -> list[dict[str, Any]]:
        """Every stored rule; a document that is not a rule is logged and skipped, never deleted."""
        rules = []
        for key, value in await self.storage.list_documents(NAMESPACE):
            try:
                doc = orjson.loads(value)
                if not isinstance(doc, dict) or doc.get("ruleName") != key:
                    raise ValueError("not a rule document")
            except ValueError as exc:
                log.error("stored rule %r is unreadable (%s); it is kept but not loaded", key, exc)
                continue
            rules.append(doc)
        return rules

    def save(self, resource: dict[str, Any]) -> asyncio.Future[None]:
        return self.storage.put_document(NAMESPACE, resource["ruleName"], orjson.dumps(resource))

    def delete(self, name: str) -> asyncio.Future[None]:
        return self.storage.delete_document(NAMESPACE, name)


def read_rule_file(path: Path) -> tuple[str, Any]:
    """``(rule name, topicRulePayload)`` from a JSON file.

    The file holds a ``topicRulePayload`` (the rule is named after the file), or the input of
    ``aws iot create-topic-rule --cli-input-json``: ``{"ruleName": ..., "topicRulePayload": {...}}``.
    """
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise RuleFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise RuleFileError(f"{path}: not valid JSON: {exc}") from exc
    if isinstance(data, dict) and "topicRulePayload" in data:
        name = data.get("ruleName") or path.stem
        payload = data["topicRulePayload"]
    else:
        name, payload = path.stem, data
    if not isinstance(name, str) or not RULE_NAME.match(name) or len(name) > 128:
        raise RuleFileError(f"{path}: rule name {name!r} is not valid (letters, digits and _ only, at most 128)")
    return name, payload


def read_directory(directory: Path) -> list[tuple[Path, str, Any]]:
    """Every ``*.json`` file of the rules directory, sorted by name: ``(path, rule name, payload)``."""
    if not directory.is_dir():
        raise RuleFileError(f"rules directory {directory} does not exist or is not a directory")
    out: list[tuple[Path, str, Any]] = []
    seen: dict[str, Path] = {}
    for path in sorted(directory.glob("*.json")):
        name, payload = read_rule_file(path)
        if name in seen:
            raise RuleFileError(f"{path}: rule {name} is also defined in {seen[name]}")
        seen[name] = path
        out.append((path, name, payload))
    return out
