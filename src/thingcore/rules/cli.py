"""``thingcore rules``: manage and test the topic rules of a running server over its HTTP API.

Uses the AWS ``iot`` paths boto3 uses (and ``/api/v1/rules/test``), prints JSON, and turns an
unreachable server or an API error into one line on stderr with a non-zero exit (1: the server said
no or is unreachable, 2: bad arguments or an unreadable file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from thingcore.apiclient import DEFAULT_ENDPOINT, APIError, Endpoint, fail, print_json, request
from thingcore.rules.store import RuleFileError, read_rule_file

rules_app = typer.Typer(
    name="rules",
    help="List, show, apply, delete, enable, disable and test topic rules of a running server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

Token = Annotated[str | None, typer.Option("--token", envvar="THINGCORE_ADMIN_TOKEN",
                                           help="The [admin] token, when the server has one (for `test`).")]
Name = Annotated[str, typer.Argument(help="Rule name (letters, digits and _).")]


def _call(endpoint: str, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
          token: str | None = None, missing_ok: bool = False) -> dict[str, Any] | None:
    try:
        data = request(endpoint, method, path, params=params, json_body=body, token=token)
    except APIError as exc:
        if exc.kind == "UnauthorizedException" and exc.message.startswith("Access to topic rule"):
            # AWS's answer for a rule that does not exist
            if missing_ok:
                return None
            raise fail(f"no such rule ({exc})") from None
        raise fail(str(exc)) from None
    return data if isinstance(data, dict) else {"result": data}


_print = print_json
_fail = fail


def _rule(name: str) -> str:
    return "/rules/" + quote(name, safe="")


@rules_app.command("list")
def list_rules(
    topic: Annotated[str | None, typer.Option(help="Only rules whose FROM is this filter or matches this topic.")]
    = None,
    disabled: Annotated[bool | None, typer.Option("--disabled/--enabled", help="Only disabled / enabled rules.",
                                                  show_default=False)] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """List rules (every page): name, FROM filter, enabled, created."""
    rules: list[dict[str, Any]] = []
    token = None
    while True:
        params = {"topic": topic, "ruleDisabled": None if disabled is None else str(disabled).lower(),
                  "nextToken": token}
        page = _call(endpoint, "GET", "/rules", params=params) or {}
        rules += page.get("rules", [])
        token = page.get("nextToken")
        if not token:
            break
    _print({"rules": rules})


@rules_app.command("show")
def show(name: Name, endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """Show a rule: its ARN and topicRulePayload members."""
    _print(_call(endpoint, "GET", _rule(name)))


@rules_app.command("apply")
def apply(
    file: Annotated[Path, typer.Argument(help="JSON file: a topicRulePayload (named after the file) or "
                                              "{\"ruleName\": ..., \"topicRulePayload\": {...}}.")],
    name: Annotated[str | None, typer.Option("--name", "-n", help="Rule name (default: from the file).")] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """Create the rule, or replace it when it exists; prints the rule as stored."""
    try:
        file_name, payload = read_rule_file(file)
    except RuleFileError as exc:
        raise _fail(str(exc), 2) from None
    rule_name = name or file_name
    exists = _call(endpoint, "GET", _rule(rule_name), missing_ok=True) is not None
    _call(endpoint, "PATCH" if exists else "POST", _rule(rule_name), body=payload)
    result = _call(endpoint, "GET", _rule(rule_name)) or {}
    _print({"action": "replaced" if exists else "created", **result})


@rules_app.command("delete")
def delete(name: Name, endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """Delete a rule."""
    _call(endpoint, "DELETE", _rule(name))
    _print({"deleted": name})


@rules_app.command("enable")
def enable(name: Name, endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """Enable a rule."""
    _call(endpoint, "POST", _rule(name) + "/enable")
    _print({"ruleName": name, "ruleDisabled": False})


@rules_app.command("disable")
def disable(name: Name, endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """Disable a rule: messages stop reaching it, its definition stays."""
    _call(endpoint, "POST", _rule(name) + "/disable")
    _print({"ruleName": name, "ruleDisabled": True})


@rules_app.command("test")
def test(
    topic: Annotated[str, typer.Option("--topic", "-t", help="The message's topic.")],
    sql: Annotated[str | None, typer.Option("--sql", "-s", help="The statement (or --rule NAME).")] = None,
    payload: Annotated[str, typer.Option("--payload", "-p", help="The message payload (text, usually JSON).")] = "",
    rule: Annotated[str | None, typer.Option("--rule", "-r", help="Test an existing rule's SQL and actions.")]
    = None,
    version: Annotated[str, typer.Option("--sql-version", help="awsIotSqlVersion (a rule without one gets "
                                                               "2015-10-08).")] = "2016-03-23",
    actions: Annotated[Path | None, typer.Option(
        "--actions", help="JSON file with a list of actions (or a whole topicRulePayload) to render.")] = None,
    client_id: Annotated[str | None, typer.Option("--client-id", help="What clientid() returns.")] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
) -> None:
    """Evaluate a statement against one message without side effects: SELECT output, WHERE, actions."""
    if sql is None and rule is None:
        raise _fail("give --sql or --rule", 2)
    body: dict[str, Any] = {"topic": topic, "payload": payload, "clientId": client_id}
    if rule is not None:
        body["ruleName"] = rule
    if sql is not None:
        body.update(sql=sql, awsIotSqlVersion=version)
    if actions is not None:
        try:
            data = json.loads(actions.read_text())
        except (OSError, ValueError) as exc:
            raise _fail(f"{actions}: {exc}", 2) from None
        if isinstance(data, dict):
            data = data.get("topicRulePayload", data)
            body["errorAction"] = data.get("errorAction")
            data = data.get("actions", [])
        body["actions"] = data
    _print(_call(endpoint, "POST", "/api/v1/rules/test", body=body, token=token))
