"""Every operator with AWS's typing and conversion rules (iot-sql-operators, iot-sql-data-types),
including the Undefined and type-mismatch rows of each table."""

from __future__ import annotations

import pytest
from tests.unit.test_sql_helpers import V1, V2, run, value

from thingcore.rules.sql import UNDEFINED

U = UNDEFINED
DOC = {"t": True, "f": False, "n": None, "i": 3, "d": 2.5, "s": "abc", "ns": "4", "ts": "TRUE",
       "a": [1, 2], "o": {"k": 1}}


def v(expr: str, version: str = V2) -> object:
    return value(expr, DOC, version=version)


@pytest.mark.parametrize(("expr", "expected"), [
    ("true AND true", True), ("true AND false", False), ("false AND false", False),
    ("'true' AND t", True), ("'TRUE' AND 'false'", False), ("ts AND t", True),
    ("t AND i", U), ("t AND n", U), ("t AND missing", U), ("false AND missing", U), ("'yes' AND t", U),
    ("true OR false", True), ("false OR false", False), ("'false' OR 'True'", True),
    ("t OR missing", U), ("f OR 1", U), ("t OR a", U),
    ("NOT true", False), ("NOT false", True), ("NOT 'false'", True), ("NOT 'x'", U), ("NOT missing", U),
    ("NOT 0", U), ("NOT n", U),
])
def test_logical(expr: str, expected: object) -> None:
    assert v(expr) is expected


@pytest.mark.parametrize(("expr", "expected"), [
    ("3 = 3", True), ("3 = 4", False), ("3 = 3.0", True), ("2.5 = d", True), ("'a' = 'a'", True),
    ("'a' = 'A'", False), ("s = 'abc'", True), ("[1, 2] = a", True), ("[2, 1] = a", False), ("[1] = a", False),
    ("{'k': 1} = o", True), ("{'k': 1.0} = o", True), ("{'k': 2} = o", False), ("n = NULL", True),
    ("t = true", True),
    # mismatched types are false (no conversion): numeric strings are not numbers here
    ("3 = '3'", False), ("ns = 4", False), ("t = 'true'", False), ("n = 0", False), ("a = o", False),
    # Undefined on either side is Undefined
    ("missing = 1", U), ("1 = missing", U), ("missing = missing", U), ("n = missing", U),
])
def test_equals(expr: str, expected: object) -> None:
    assert v(expr) is expected


@pytest.mark.parametrize(("expr", "expected"), [
    ("3 <> 4", True), ("3 <> 3", False), ("3 <> 3.0", False), ("'a' <> 'b'", True), ("[1, 2] <> a", False),
    ("{'k': 1} <> o", False), ("NULL <> NULL", False), ("n <> n", False),
    ("3 <> '3'", True), ("t <> 1", True), ("missing <> 1", U), ("1 <> missing", U),
])
def test_not_equals(expr: str, expected: object) -> None:
    assert v(expr) is expected


@pytest.mark.parametrize(("expr", "expected"), [
    ("3 > 2", True), ("2 > 3", False), ("2.5 > 2", True), ("d >= 2.5", True), ("i < 3.5", True),
    ("i <= 3", True), ("i < 3", False),
    # strings that parse as decimals are compared as numbers
    ("'10' > 9", True), ("ns > 3", True), ("'5E-1' < 1", True), ("'-1.5' <= -1.5", True), ("'10' > '9'", True),
    # anything else is Undefined
    ("'abc' > 1", U), ("t > 0", U), ("n > 0", U), ("a > 0", U), ("o < 1", U), ("missing > 1", U),
    ("1 > missing", U), ("' 5' > 1", U), ("'+5' > 1", U), ("'5.' > 1", U),
])
def test_ordering(expr: str, expected: object) -> None:
    assert v(expr) is expected


@pytest.mark.parametrize(("expr", "expected"), [
    ("1 + 2", 3), ("1 + 2.5", 3.5), ("d + d", 5), ("'a' + 'b'", "ab"), ("'a' + 1", "a1"), ("1 + 'a'", "1a"),
    ("'n=' + 2.5", "n=2.5"), ("s + t", "abctrue"), ("'x' + a", "x[1,2]"), ("'x' + o", 'x{"k":1}'),
    ("ns + 1", "41"),  # + concatenates as soon as one side is a string
    ("'x' + n", U), ("'x' + missing", U), ("t + 1", U), ("1 + n", U), ("a + 1", U), ("missing + 1", U),
])
def test_plus(expr: str, expected: object) -> None:
    assert v(expr) == expected if expected is not U else v(expr) is U


@pytest.mark.parametrize(("expr", "expected"), [
    ("7 - 2", 5), ("7 - 2.5", 4.5), ("ns - 1", 3), ("'10' - '2.5'", 7.5), ("2 * 3", 6), ("2 * 1.5", 3),
    ("ns * 2", 8), ("7 / 2", 3), ("-7 / 2", -3), ("7 / -2", -3), ("7.5 / 2", 3.75), ("'9' / 2", 4.5),
    ("7 % 3", 1), ("-7 % 3", -1), ("7 % -3", 1), ("7.5 % 2", 1.5), ("'7' % 2", 1),
    ("7 / 0", U), ("7 % 0", U), ("7.5 / 0", U), ("'a' - 1", U), ("t * 2", U), ("n - 1", U), ("missing * 2", U),
    ("a / 2", U), ("-i", -3), ("-d", -2.5), ("-ns", -4), ("-'x'", U), ("-missing", U),
])
def test_arithmetic(expr: str, expected: object) -> None:
    got = v(expr)
    if expected is U:
        assert got is U
    else:
        assert got == expected and type(got) is type(expected)


def test_int_arithmetic_stays_exact_beyond_doubles() -> None:
    assert v("12345678901234567890 + 1") == 12345678901234567891
    assert v("99999999999999999999 * 3") == 299999999999999999997


def test_whole_decimal_results_depend_on_version() -> None:
    assert v("2.5 * 2", V1) == 5.0 and type(v("2.5 * 2", V1)) is float
    assert v("2.5 * 2", V2) == 5 and type(v("2.5 * 2", V2)) is int
    assert v("'10' - 2", V1) == 8.0 and type(v("'10' - 2", V1)) is float
    # a whole-number literal is an Int under 2016-03-23, so this is Int division there
    assert v("7.0 / 2", V1) == 3.5
    assert v("7.0 / 2", V2) == 3


@pytest.mark.parametrize(("expr", "expected"), [
    ("3 IN [1, 2, 3]", True), ("4 IN [1, 2, 3]", False), ("'b' IN ['a', 'b']", True), ("2 IN a", True),
    ("2.0 IN a", True), ("'2' IN a", False), ("missing IN a", U), ("1 IN o", U), ("1 IN 's'", U),
    ("{'k': 1} IN [o]", True),
])
def test_in(expr: str, expected: object) -> None:
    assert v(expr) is expected


def test_precedence() -> None:
    assert v("1 + 2 * 3") == 7
    assert v("(1 + 2) * 3") == 9
    assert v("10 - 4 - 3") == 3
    assert v("2 * 3 % 4") == 2
    assert v("NOT 1 = 2") is True
    assert v("true OR false AND false") is True
    assert v("(true OR false) AND false") is False
    assert v("1 + 1 = 2 AND 3 > 2") is True
    assert v("- 2 * 3") == -6


def test_member_access_and_undefined() -> None:
    doc = {"a": {"b": {"c": 1}}, "arr": [{"x": 1}], "s": "str"}
    assert run("SELECT a.b.c AS v, a.b AS w, a.missing.c AS x, s.length AS y, arr.x AS z FROM 't'", doc) == \
        {"v": 1, "w": {"c": 1}}


def test_keywords_and_function_names_are_case_insensitive() -> None:
    doc = {"a": 5, "b": "x"}
    assert run("select a as A, UPPER(b) as B, Upper(b) as C from 't' where a > 1 and NOT false", doc) == \
        {"A": 5, "B": "X", "C": "X"}
    assert run("SeLeCt VaLuE a FrOm 't' WhErE TRUE", doc) == 5


def test_case() -> None:
    sql = "SELECT CASE x WHEN 1 THEN 'one' WHEN 1.0 THEN 'never' WHEN 'two' THEN 2 END AS v FROM 't'"
    assert run(sql, {"x": 1}) == {"v": "one"}
    assert run(sql, {"x": "two"}) == {"v": 2}
    assert run(sql, {"x": 3}) == {}  # no match, no ELSE: Undefined
    assert run(sql, {}) == {}  # subject Undefined: Undefined
    assert run("SELECT CASE x WHEN 1 THEN 'a' ELSE 'b' END AS v FROM 't'", {"x": "1"}) == {"v": "b"}
    assert run("SELECT CASE x WHEN y THEN 'same' ELSE 'diff' END AS v FROM 't'", {"x": 2, "y": 2}) == {"v": "same"}
    assert run("SELECT CASE x WHEN 1 THEN 'a' ELSE 'b' END AS v FROM 't'", {}) == {}


def test_literals() -> None:
    assert v("NULL") is None
    assert v("TRUE") is True and v("false") is False
    assert v("1E3", V1) == 1000.0 and v("1E3") == 1000
    assert v("1.5e-3") == 0.0015
    assert v(".5") == 0.5
    assert v("'it''s'") == "it's"
    assert v('"double \\"quoted\\""') == 'double "quoted"'
    assert v("'tab\\tnew\\nline \\u00e9'") == "tab\tnew\nline é"
    assert v("'\\d+'") == "\\d+"
    assert v("{'a': 1, 'b': missing, 'c': [1, missing, 'x']}") == {"a": 1, "c": [1, "x"]}
    assert v("[]") == [] and v("{}") == {}
