"""regexp_matches / regexp_replace / regexp_substr: Java regex syntax on RE2, invalid patterns, what RE2
cannot run (refused), and patterns that backtrack exponentially elsewhere answered in linear time."""

from __future__ import annotations

import pytest
from tests.unit.test_sql_helpers import value

from thingcore.rules.sql import UNDEFINED, SqlError, SqlRuntimeError, compile_sql

U = UNDEFINED
DOC = {"s": "device-42 temp=21.5", "n": None, "arr": ["A", "b"]}


@pytest.mark.parametrize(("expr", "expected"), [
    ("regexp_matches('aaaa', 'a{2,}')", True), ("regexp_matches('aaaa', 'b')", False),
    ("regexp_matches(s, '\\d+')", True), ("regexp_matches(s, '^temp')", False), ("regexp_matches(123, '^1')", True),
    ("regexp_matches(arr, '\"b\"')", True), ("regexp_matches(true, 'ru')", True),
    ("regexp_matches(s, '(?<id>\\d+)')", True), ("regexp_matches('ab', 'a+b')", True),
    ("regexp_matches('AB', '(?i)ab')", True), ("regexp_matches('a.b', '\\Qa.b\\E')", True),
    ("regexp_matches('axb', '\\Qa.b\\E')", False), ("regexp_matches('abc', 'c\\z')", True),
    ("regexp_matches('x', '\\p{Lu}')", False), ("regexp_matches('X', '\\p{Lu}')", True),
    ("regexp_matches(n, 'a')", U), ("regexp_matches(missing, 'a')", U), ("regexp_matches('a', n)", U),
    ("regexp_matches('a', '(')", U), ("regexp_matches('a', '[a')", U),
    ("regexp_replace('abcd', 'bc', 'x')", "axd"), ("regexp_replace('abcd', 'b(.*)d', '$1')", "ac"),
    ("regexp_replace('a1b22', '\\d', '#')", "a#b##"), ("regexp_replace('abc', '(?<x>b)', '[${x}]')", "a[b]c"),
    ("regexp_replace('abc', 'b', '\\$1')", "a$1c"), ("regexp_replace('abc', 'b', 'x\\\\y')", "axyc"),
    ("regexp_replace('abc', '(b)', '$12')", "ab2c"), ("regexp_replace('abc', 'x*', '-')", "-a-b-c-"),
    ("regexp_replace('abc', 'b', '$2')", U), ("regexp_replace('abc', 'b', '$')", U),
    ("regexp_replace('abc', 'b', '${nope}')", U), ("regexp_replace('abc', '(', 'x')", U),
    ("regexp_replace(n, 'a', 'b')", U), ("regexp_replace('a', 'a', n)", U),
    ("regexp_substr('hihihello', 'hi')", "hi"), ("regexp_substr('hihihello', '(hi)*')", "hihi"),
    ("regexp_substr(s, '\\d+\\.\\d+')", "21.5"), ("regexp_substr('abc', 'x')", U), ("regexp_substr('abc', '(')", U),
    ("regexp_substr(n, 'a')", U),
])
def test_regex_functions(expr: str, expected: object) -> None:
    got = value(expr, DOC)
    assert got is expected if expected is U or isinstance(expected, bool) else got == expected


def test_catastrophic_backtracking_runs_in_linear_time() -> None:
    # (a|aa)+$ against 'aaaa...!' takes exponential time on a backtracking engine; RE2 answers at once
    subject = "a" * 40 + "!"
    assert value(f"regexp_matches('{subject}', '(a|aa)+$')") is False
    assert value(f"regexp_replace('{subject}', '(a|aa)+$', 'x')") == subject
    assert value(f"regexp_substr('{subject}', '(a|aa)+$')") is U
    assert value("regexp_matches(s, '(x+x+)+y')", {"s": "x" * 200_000}) is False


def test_large_subjects_are_searched() -> None:
    assert value("regexp_matches(s, 'a$')", {"s": "b" * 300_000 + "a"}) is True


@pytest.mark.parametrize("pattern", ["a++b", "(?=a)", "(?!a)", "(?<=a)b", "(?<!a)b", "(\\w)\\1", "(?<x>a)\\k<x>",
                                     "(?>a)", "[a-z&&[^b]]", "\\Z", "\\G", "(?x)a", "\\p{Alpha}", "a{1001}"])
def test_what_re2_cannot_run_is_refused_at_creation(pattern: str) -> None:
    with pytest.raises(SqlError, match="RE2"):
        compile_sql(f"SELECT regexp_matches(s, '{pattern}') AS v FROM 't'")


def test_what_re2_cannot_run_from_the_message_fails_the_evaluation() -> None:
    q = compile_sql("SELECT regexp_replace(s, p, 'x') AS v FROM 't'")
    from tests.unit.test_sql_helpers import ctx
    with pytest.raises(SqlRuntimeError, match="lookahead"):
        q.evaluate(ctx({"s": "abc", "p": "a(?=b)"}))
    with pytest.raises(SqlRuntimeError, match="longer than"):
        q.evaluate(ctx({"s": "abc", "p": "a" * 5000}))


def test_empty_matches_step_over_whole_characters() -> None:
    assert value("regexp_replace('héé', 'x*', '-')") == "-h-é-é-"
    assert value("regexp_replace('abc', 'b*', '-')") == "-a--c-"
