"""regexp_matches / regexp_replace / regexp_substr with Java regular-expression syntax.

Patterns run on the ``regex`` module, which speaks the Java dialect far better than ``re``
(possessive quantifiers, atomic groups, ``(?<name>...)``, ``\\p{...}`` classes) and, crucially,
takes a timeout: a catastrophic pattern such as ``(a|aa)+$`` stops after
:data:`MATCH_TIMEOUT` seconds and the function yields Undefined instead of stalling the broker.
A few Java-only forms are translated (``\\Q...\\E``, ``\\z``/``\\Z``). Replacement strings use
Java's syntax (``$1``, ``${name}``, ``\\$``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import regex

from ..values import UNDEFINED, to_string
from .registry import sqlfunc

MATCH_TIMEOUT = 0.05  # seconds per call
MAX_PATTERN = 4096  # characters
MAX_SUBJECT = 256 * 1024  # characters searched; longer inputs are Undefined


def translate_java_pattern(pattern: str) -> str:
    """Rewrite the few Java constructs the ``regex`` module reads differently."""
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            if e == "Q":  # \Q...\E quotes literally
                end = pattern.find("\\E", i + 2)
                literal = pattern[i + 2:] if end < 0 else pattern[i + 2:end]
                out.append(regex.escape(literal))
                i = n if end < 0 else end + 2
                continue
            if e == "z":
                out.append(r"\Z")
            elif e == "Z":
                out.append(r"(?=\n?\Z)")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


@lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> Any:
    """The compiled pattern, or None when it is not a valid (Java) regular expression."""
    if len(pattern) > MAX_PATTERN:
        return None
    try:
        return regex.compile(translate_java_pattern(pattern), regex.VERSION0)
    except (regex.error, ValueError, OverflowError):
        return None


def _replacement(template: str, compiled: Any) -> Callable[[Any], str] | None:
    """A function building Java's replacement text for a match, or None when the template is invalid."""
    parts: list[str | int] = []
    literal: list[str] = []
    i = 0
    n = len(template)
    groups = compiled.groups
    names = compiled.groupindex
    while i < n:
        c = template[i]
        if c == "\\":
            if i + 1 >= n:
                return None
            literal.append(template[i + 1])
            i += 2
            continue
        if c == "$":
            if i + 1 >= n:
                return None
            if template[i + 1] == "{":
                end = template.find("}", i + 2)
                if end < 0 or template[i + 2:end] not in names:
                    return None
                ref: int = names[template[i + 2:end]]
                i = end + 1
            elif template[i + 1].isdigit():
                ref = int(template[i + 1])
                if ref > groups:
                    return None
                i += 2
                while i < n and template[i].isdigit() and ref * 10 + int(template[i]) <= groups:
                    ref = ref * 10 + int(template[i])
                    i += 1
            else:
                return None
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(ref)
            continue
        literal.append(c)
        i += 1
    if literal:
        parts.append("".join(literal))

    def build(m: Any) -> str:
        return "".join(p if type(p) is str else (m.group(p) or "") for p in parts)
    return build


def _prepare(s: Any, pattern: Any) -> tuple[Any, Any]:
    text = to_string(s)
    pat = to_string(pattern)
    if text is UNDEFINED or pat is UNDEFINED or len(text) > MAX_SUBJECT:
        return UNDEFINED, None
    compiled = compile_pattern(pat)
    if compiled is None:
        return UNDEFINED, None
    return text, compiled


@sqlfunc("regexp_matches", 2)
def sql_regexp_matches(s: Any, pattern: Any) -> Any:
    text, compiled = _prepare(s, pattern)
    if compiled is None:
        return UNDEFINED
    try:
        return compiled.search(text, timeout=MATCH_TIMEOUT) is not None
    except TimeoutError:
        return UNDEFINED


@sqlfunc("regexp_replace", 3)
def sql_regexp_replace(s: Any, pattern: Any, replacement: Any) -> Any:
    text, compiled = _prepare(s, pattern)
    repl = to_string(replacement)
    if compiled is None or repl is UNDEFINED:
        return UNDEFINED
    build = _replacement(repl, compiled)
    if build is None:
        return UNDEFINED
    try:
        return compiled.sub(build, text, timeout=MATCH_TIMEOUT)
    except TimeoutError:
        return UNDEFINED


@sqlfunc("regexp_substr", 2)
def sql_regexp_substr(s: Any, pattern: Any) -> Any:
    """The first match (possibly empty); Undefined when there is none."""
    text, compiled = _prepare(s, pattern)
    if compiled is None:
        return UNDEFINED
    try:
        m = compiled.search(text, timeout=MATCH_TIMEOUT)
    except TimeoutError:
        return UNDEFINED
    return UNDEFINED if m is None else m.group(0)
