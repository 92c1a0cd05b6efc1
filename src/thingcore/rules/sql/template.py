"""Substitution templates: ``${expression}`` inside action parameters (iot-substitution-templates).

Expressions are evaluated against the original message (SELECT aliases are not visible, SET
variables of the statement just evaluated on the same context are). The result is converted to a
string; Undefined and Null render as the empty string. ``$$`` is a literal ``$`` (AWS's way to
republish to ``$aws/...`` topics).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .compiler import NOT_CONST, Compiler, Env, check_version, const_of
from .context import MessageContext
from .errors import SqlError
from .limits import DEFAULT_LIMITS, Limits
from .parser import parse_template_expression
from .values import UNDEFINED, to_string


def render_value(v: Any) -> str:
    if type(v) is str:
        return v
    if v is UNDEFINED or v is None:
        return ""
    if type(v) is bytes:
        return v.decode("utf-8", "replace")
    s = to_string(v)
    return "" if s is UNDEFINED else s


class Template:
    __slots__ = ("_meter", "_parts", "_v2", "functions", "limits", "needs_services", "text", "version")

    def __init__(self, text: str, version: str, parts: list[str | Callable[[Env], Any]], needs_services: bool,
                 functions: frozenset[str], limits: Limits = DEFAULT_LIMITS) -> None:
        self.text = text
        self.limits = limits
        # one meter reused, with a fresh budget per render, for templates rendered on the event loop (those
        # without external functions: nothing re-enters them); the others get one per render
        self._meter = None if needs_services else limits.meter()
        self.version = version
        self.needs_services = needs_services
        self.functions = functions
        self._parts = parts
        self._v2 = version != "2015-10-08"

    def __repr__(self) -> str:
        return f"Template({self.text!r})"

    @property
    def is_constant(self) -> bool:
        return all(type(p) is str for p in self._parts)

    def render(self, ctx: MessageContext, selected: Any = None) -> str:
        """The text with every ``${...}`` replaced. ``selected`` (the SELECT output) is accepted for
        the engine's convenience but, as on AWS, templates read the original message only."""
        parts = self._parts
        if len(parts) == 1 and type(parts[0]) is str:
            return parts[0]
        root = ctx.document()
        meter = self._meter
        if meter is None:
            meter = self.limits.meter()
        else:
            meter.left = meter.max_cost
        env = Env(ctx, root, ctx._variables or {}, self.version, self._v2, meter=meter)
        out = []
        for p in parts:
            out.append(p if type(p) is str else render_value(p(env)))  # type: ignore[operator]
        return "".join(out)


def compile_template(text: str, version: str | None = "2016-03-23", limits: Limits = DEFAULT_LIMITS) -> Template:
    """Compile an action parameter; raises SqlError (position relative to ``text``) for a bad ``${...}``.
    Rendering is bounded by ``limits`` as a statement's evaluation is (SqlLimitError past them)."""
    if not isinstance(text, str):
        raise SqlError("a substitution template must be a string")
    version = check_version(version)
    try:
        return _compile_template(text, version, limits)
    except RecursionError:
        raise SqlError("the substitution template nests too deeply to be compiled") from None


def _compile_template(text: str, version: str, limits: Limits) -> Template:
    compiler = Compiler(text, version, template=True, limits=limits)
    parts: list[str | Callable[[Env], Any]] = []
    literal: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "$" and i + 1 < n and text[i + 1] == "$":
            literal.append("$")
            i += 2
            continue
        if c == "$" and i + 1 < n and text[i + 1] == "{":
            node, end = parse_template_expression(text, i + 2)
            fn = compiler.expr(node)
            c_value = const_of(fn)
            if c_value is not NOT_CONST and c_value is not UNDEFINED:
                literal.append(render_value(c_value))
            else:
                if literal:
                    parts.append("".join(literal))
                    literal = []
                parts.append(fn)
            i = end
            continue
        literal.append(c)
        i += 1
    if literal or not parts:
        parts.append("".join(literal))
    return Template(text, version, parts, compiler.needs_services, frozenset(compiler.functions), limits)
