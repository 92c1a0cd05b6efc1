"""regexp_matches / regexp_replace / regexp_substr: Java regex syntax, invalid patterns, and the
guard that stops a catastrophic pattern instead of stalling the broker."""

from __future__ import annotations

import pytest
from tests.unit.test_sql_helpers import value

from thingcore.rules.sql import UNDEFINED

U = UNDEFINED
DOC = {"s": "device-42 temp=21.5", "n": None, "arr": ["A", "b"]}


@pytest.mark.parametrize(("expr", "expected"), [
    ("regexp_matches('aaaa', 'a{2,}')", True), ("regexp_matches('aaaa', 'b')", False),
    ("regexp_matches(s, '\\d+')", True), ("regexp_matches(s, '^temp')", False), ("regexp_matches(123, '^1')", True),
    ("regexp_matches(arr, '\"b\"')", True), ("regexp_matches(true, 'ru')", True),
    ("regexp_matches(s, '(?<id>\\d+)')", True), ("regexp_matches('ab', 'a++b')", True),
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


def test_catastrophic_backtracking_is_cut_short() -> None:
    # (a|aa)+$ against 'aaaa...!' takes exponential time; the guard answers Undefined instead
    subject = "a" * 40 + "!"
    assert value(f"regexp_matches('{subject}', '(a|aa)+$')") is U
    assert value(f"regexp_replace('{subject}', '(a|aa)+$', 'x')") is U
    assert value(f"regexp_substr('{subject}', '(a|aa)+$')") is U


def test_oversized_inputs_are_undefined() -> None:
    assert value("regexp_matches(s, 'a')", {"s": "a" * 300_000}) is U
    assert value("regexp_matches('a', p)", {"p": "a" * 5000}) is U
