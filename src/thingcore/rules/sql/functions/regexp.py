"""regexp_matches / regexp_replace / regexp_substr with Java regular-expression syntax, run on RE2.

AWS evaluates these with Java's backtracking engine; here they run on RE2 (``google-re2``), whose time is
linear in the subject, so no pattern and no message can stall the broker. RE2 reads Java's common syntax
alike (classes, ``\\p{Lu}``, ``(?<name>...)``, ``\\Q...\\E``, ``\\z``, lazy quantifiers, ``(?i)``); what it
lacks — backreferences, lookaround, atomic groups, possessive quantifiers, class intersections, a few
escapes and flags — is named by :func:`unsupported` and refused: when the pattern is a literal, at rule
creation (``SqlParseException``); when it comes from the message, as an evaluation error (the rule's
error action gets it). An invalid pattern is Undefined, as on AWS. Replacement strings use Java's syntax
(``$1``, ``${name}``, ``\\$``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import re2

from ..limits import STEP, Meter, SqlLimitError
from ..values import UNDEFINED, to_string
from .registry import sqlfunc

MAX_PATTERN = 4096  # characters
PATTERN_CACHE = 128  # compiled patterns kept (each may hold up to MAX_MEM for its program and DFA)
MAX_MEM = 1 << 20  # bytes RE2 may use per pattern; bigger programs are refused
MATCH_COST = 100 * STEP  # one replaced match: a few Python-level steps, up to about 10 µs
PATTERN_FUNCTIONS = {"regexp_matches": 1, "regexp_replace": 1, "regexp_substr": 1}  # name -> pattern argument

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_OPTIONS.max_mem = MAX_MEM
_SAFE_FLAGS = frozenset("ims-")  # embedded flags RE2 reads as Java does (Java's U and RE2's U differ)
_JAVA_CLASSES = frozenset({"Lower", "Upper", "ASCII", "Alpha", "Digit", "Alnum", "Punct", "Graph", "Print",
                           "Blank", "Cntrl", "XDigit", "Space"})


class UnsupportedPattern(SqlLimitError):
    """A valid Java pattern that RE2 cannot run (a limit of this implementation, reported as the others)."""


def unsupported(pattern: str) -> str | None:
    """What in ``pattern`` (Java syntax) RE2 cannot run, or None. Scans once, outside and inside classes."""
    i = 0
    n = len(pattern)
    depth = 0  # inside a character class
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            if e == "Q":  # literal text up to \E
                end = pattern.find("\\E", i + 2)
                i = n if end < 0 else end + 2
                continue
            if e.isdigit() and e != "0" and not depth:
                return f"a backreference (\\{e})"
            if e == "k" and pattern.startswith("<", i + 2):
                return "a named backreference (\\k<name>)"
            if e in "GZ":
                return f"\\{e}" + (" (use \\z or $)" if e == "Z" else "")
            if e in "hHvVRX":
                return f"Java's \\{e}"
            if e in "pP" and pattern.startswith("{", i + 2):
                end = pattern.find("}", i + 3)
                name = pattern[i + 3:end] if end > 0 else ""
                if name in _JAVA_CLASSES or name.startswith(("java", "Is", "In")):
                    return f"the class \\{e}{{{name}}}"
            i += 2
            continue
        if depth:
            if c == "[":
                return "a nested character class ([...[...]])"
            if c == "&" and pattern.startswith("&&", i):
                return "a character class intersection (&&)"
            if c == "]":
                depth = 0
            i += 1
            continue
        if c == "[":
            depth = 1
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            if i < n and pattern[i] == "]":  # a leading ] is literal
                i += 1
            continue
        if c == "(" and pattern.startswith("?", i + 1):
            rest = pattern[i + 2:i + 4]
            if rest[:1] in ("=", "!"):
                return "a lookahead ((?=...) or (?!...))"
            if rest in ("<=", "<!"):
                return "a lookbehind ((?<=...) or (?<!...))"
            if rest[:1] == ">":
                return "an atomic group ((?>...))"
            if rest[:1] != "<" and rest[:1] != ":":
                j = i + 2
                while j < n and pattern[j] not in ":)":
                    if pattern[j] not in _SAFE_FLAGS:
                        return f"the embedded flag {pattern[j]!r}"
                    j += 1
            i += 2
            continue
        if c in "*+?}" and pattern.startswith("+", i + 1):
            return "a possessive quantifier (*+, ++, ?+, {n}+)"
        i += 1
    return None


@lru_cache(maxsize=PATTERN_CACHE)
def compile_pattern(pattern: str) -> tuple[Any, str | None]:
    """(compiled, None); (None, what RE2 lacks) for a Java pattern RE2 cannot run; (None, None) when the
    pattern is not a valid regular expression at all."""
    if len(pattern) > MAX_PATTERN:
        return None, f"a pattern longer than {MAX_PATTERN} characters"
    reason = unsupported(pattern)
    if reason is not None:
        return None, reason
    try:
        return re2.compile(pattern, _OPTIONS), None
    except re2.error as exc:
        try:  # valid elsewhere (e.g. a{1001}, a huge program): a limit of RE2's, not a mistake
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError, ValueError):
            return None, None
        detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        return None, f"a construct RE2 refuses ({detail})"


def pattern_error(pattern: str) -> str | None:
    """Why a literal pattern cannot run here (for the compiler), or None."""
    _compiled, reason = compile_pattern(pattern)
    if reason is None:
        return None
    return f"the regular expression {_short(pattern)} uses {reason}, which thingcore's linear-time engine " \
           "(RE2) does not support"


def _short(pattern: str) -> str:
    return repr(pattern if len(pattern) <= 60 else pattern[:57] + "...")


def _replacement(template: str, compiled: Any) -> Callable[[Any], bytes] | None:
    """A function building Java's replacement text (UTF-8) for a match, or None when the template is invalid."""
    parts: list[bytes | int] = []
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
                parts.append("".join(literal).encode("utf-8", "surrogatepass"))
                literal = []
            parts.append(ref)
            continue
        literal.append(c)
        i += 1
    if literal:
        parts.append("".join(literal).encode("utf-8", "surrogatepass"))

    def build(m: Any) -> bytes:
        return b"".join(p if type(p) is bytes else (m.group(p) or b"") for p in parts)
    return build


def _prepare(meter: Meter, s: Any, pattern: Any) -> tuple[Any, Any]:
    """The subject and the compiled pattern, charging the search; (UNDEFINED, None) for Undefined results."""
    text = to_string(s)
    pat = to_string(pattern)
    if text is UNDEFINED or pat is UNDEFINED:
        return UNDEFINED, None
    compiled, reason = compile_pattern(pat)
    if compiled is None:
        if reason is not None:
            raise UnsupportedPattern(pattern_error(pat) or reason)
        return UNDEFINED, None
    # RE2 is linear in the subject; a big program (counted repetitions) costs more per character
    meter.charge(len(text) * (1 + compiled.programsize // 40))
    return text, compiled


@sqlfunc("regexp_matches", 2, metered=True)
def sql_regexp_matches(meter: Meter, s: Any, pattern: Any) -> Any:
    text, compiled = _prepare(meter, s, pattern)
    if compiled is None:
        return UNDEFINED
    return compiled.search(text) is not None


@sqlfunc("regexp_replace", 3, metered=True)
def sql_regexp_replace(meter: Meter, s: Any, pattern: Any, replacement: Any) -> Any:
    text, compiled = _prepare(meter, s, pattern)
    repl = to_string(replacement)
    if compiled is None or repl is UNDEFINED:
        return UNDEFINED
    build = _replacement(repl, compiled)
    if build is None:
        return UNDEFINED
    data = text.encode("utf-8", "surrogatepass")
    n = len(data)
    limit = meter.max_value_size * 4  # UTF-8 bytes of max_value_size characters, at most
    out: list[bytes] = []
    size = 0
    last = pos = 0
    search = compiled.search
    while pos <= n:
        m = search(data, pos)
        if m is None:
            break
        meter.charge(MATCH_COST)
        start, end = m.span()
        piece = build(m)
        out.append(data[last:start])
        out.append(piece)
        size += start - last + len(piece)
        if size > limit:
            meter.size(size // 4 + 1, "the string regexp_replace() builds")
        last = end
        if end == start:  # an empty match: step over one character (never into a UTF-8 sequence)
            pos = end + 1
            while pos < n and 0x80 <= data[pos] < 0xC0:
                pos += 1
            if end < n:
                out.append(data[end:pos])
                last = pos
        else:
            pos = end
    out.append(data[last:])
    result = b"".join(out).decode("utf-8", "surrogatepass")
    meter.size(len(result), "the string regexp_replace() builds")
    return result


@sqlfunc("regexp_substr", 2, metered=True)
def sql_regexp_substr(meter: Meter, s: Any, pattern: Any) -> Any:
    """The first match (possibly empty); Undefined when there is none."""
    text, compiled = _prepare(meter, s, pattern)
    if compiled is None:
        return UNDEFINED
    m = compiled.search(text)
    return UNDEFINED if m is None else m.group(0)
