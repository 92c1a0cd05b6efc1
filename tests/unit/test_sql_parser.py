"""Statements that cannot be compiled: each error names the place (offset, line, column) and what
was expected there, so `rules test` and CreateTopicRule's SqlParseException can point at it."""

from __future__ import annotations

import pytest
from tests.unit.test_sql_helpers import V1, V2

from thingcore.rules.sql import SqlError, compile_sql, compile_template


def error(sql: str, version: str = V2) -> SqlError:
    with pytest.raises(SqlError) as info:
        compile_sql(sql, version)
    return info.value


@pytest.mark.parametrize(("sql", "position", "fragment", "expected"), [
    ("", 0, "empty SQL statement", ["SELECT"]),
    ("SELEC * FROM 'a'", 0, "expected SELECT or SET but found identifier 'SELEC'", ["SELECT", "SET"]),
    ("SELECT FROM 'a'", 7, "expected an expression but found keyword FROM", ["an expression"]),
    ("SELECT a, FROM 'a'", 10, "expected an expression", ["an expression"]),
    ("SELECT a b FROM 'a'", 9, "found identifier 'b'", ["','", "AS", "FROM", "WHERE", "the end of the statement"]),
    ("SELECT * FROM a/b", 14, "the FROM topic filter must be quoted", ["a quoted topic filter"]),
    ("SELECT * FROM 'a' WHERE", 23, "found the end of the statement", ["an expression"]),
    ("SELECT * FROM 'a' WHERE a = 1 extra", 30, "found identifier 'extra'",
     ["an operator", "the end of the statement"]),
    ("SELECT * FROM 'a' b", 18, "expected WHERE or the end", ["WHERE", "the end of the statement"]),
    ("SELECT (1 FROM 'a'", 10, "expected ')'", ["')'"]),
    ("SELECT f(1, FROM 'a'", 12, "expected an expression", ["an expression"]),
    ("SELECT upper(a b) FROM 'a'", 15, "expected ',' or ')'", ["','", "')'"]),
    ("SELECT CASE a END FROM 'a'", 14, "CASE needs at least one WHEN", ["WHEN"]),
    ("SELECT CASE a WHEN 1 THEN 2 FROM 'a'", 28, "expected WHEN, ELSE or END", ["WHEN", "ELSE", "END"]),
    ("SELECT cast(a AS float) FROM 'a'", 17, "unknown cast type", None),
    ("SELECT cast(a, 'int') FROM 'a'", 13, "expected AS", ["AS"]),
    ("SELECT {a: 1} FROM 'a'", 8, "object literal keys must be quoted strings", ["a quoted key"]),
    ("SELECT [1, 2 FROM 'a'", 13, "expected ',' or ']'", ["','", "']'"]),
    ("SELECT 'abc FROM 'a'", 18, "found identifier 'a'", None),
    ("SELECT 'abc FROM a", 7, "unterminated string", ["'"]),
    ("SELECT # FROM 'a'", 7, "unexpected character '#'", []),
    ("SELECT 12abc FROM 'a'", 7, "malformed number", []),
    ("SELECT @ FROM 'a'", 7, "a variable name must follow '@'", ["@name"]),
])
def test_syntax_errors(sql: str, position: int, fragment: str, expected: list[str] | None) -> None:
    e = error(sql)
    assert fragment in e.message
    assert e.position == position
    if expected is not None:
        assert e.expected == expected


def test_error_has_line_and_column_in_multi_line_statements() -> None:
    e = error("SELECT\n  a,\n  b +\nFROM 'x'")
    assert (e.line, e.column, e.position) == (4, 1, 18)
    assert str(e).endswith("at line 4, column 1")


@pytest.mark.parametrize(("sql", "fragment"), [
    ("SELECT * FROM 'a' WHERE x != 1", "'!=' is not AWS IoT SQL; use '<>'"),
    ("SELECT * FROM 'a' WHERE x == 1", "'==' is not AWS IoT SQL; use '='"),
    ("SELECT a || b FROM 'a'", "concatenate with '+' or concat()"),
    ("SELECT a[0] FROM 'a'", "use get(array, index)"),
    ("SELECT a.1 FROM 'a'", "cannot start with a digit"),
    ("SELECT a.-b FROM 'a'", "names with '-' or leading digits need get(object, \"name\")"),
    ("SELECT CASE WHEN a > 1 THEN 1 END FROM 'a'", "only the simple CASE form"),
    ("SELECT VALUE a, b FROM 'a'", "SELECT VALUE takes a single expression"),
    ("SELECT VALUE a AS b FROM 'a'", "takes no AS alias"),
    ("SELECT (SELECT a) AS x FROM 'a'", "a nested SELECT needs FROM"),
    ("SELECT uper(a) FROM 'a'", "unknown function uper(); did you mean upper()"),
    ("SELECT nosuchthing(a) FROM 'a'", "unknown function nosuchthing()"),
    ("SELECT @x FROM 'a'", "variable @x is not defined"),
    ("SET @x = 1, @x = 2 SELECT @x FROM 'a'", "variable @x is assigned twice"),
    ("SET @x = @x SELECT 1 FROM 'a'", "variable @x is not defined"),
    ("SET @" + "v" * 65 + " = 1 SELECT 1 FROM 'a'", "longer than 64 characters"),
    ("SELECT * FROM 'a/#/b'", "invalid topic filter in FROM: '#' must be the whole last level"),
    ("SELECT * FROM 'a/b+'", "'+' must be a whole level"),
    ("SELECT * FROM ''", "invalid topic filter in FROM: empty topic filter"),
    ("SELECT * FROM '$share/g/a'", "shared subscription"),
])
def test_helpful_messages(sql: str, fragment: str) -> None:
    assert fragment in error(sql).message


def test_unsupported_functions_are_refused_at_creation() -> None:
    e = error("SELECT machinelearning_predict('model', 'arn:role', *) AS p FROM 'a'")
    assert "Amazon Machine Learning" in e.message and e.position == 7
    e = error("SELECT decode(*, 'proto', 'ExtName', 'bucket', 'key', 'file.desc', 'Msg') AS p FROM 'a'")
    assert "protobuf" in e.message


@pytest.mark.parametrize(("sql", "what"), [
    ("SELECT {'a': 1} AS o FROM 'a'", "an object literal"),
    ("SELECT [1] AS a FROM 'a'", "an array literal"),
    ("SELECT (SELECT a FROM b) AS x FROM 'a'", "a nested SELECT"),
    ("SELECT cast(1 as Bool) AS b FROM 'a'", "cast to Bool"),
    ("SELECT cast(1 as Decimal) AS b FROM 'a'", "cast to Decimal"),
    ("SELECT isUndefined(a) AS b FROM 'a'", "isundefined()"),
])
def test_2016_syntax_under_2015(sql: str, what: str) -> None:
    e = error(sql, V1)
    assert e.message.startswith(f"{what} needs awsIotSqlVersion 2016-03-23")
    compile_sql(sql, V2)


def test_unknown_sql_version() -> None:
    with pytest.raises(SqlError, match="unsupported awsIotSqlVersion '2017-01-01'"):
        compile_sql("SELECT 1 AS a FROM 'a'", "2017-01-01")
    assert compile_sql("SELECT 1 AS a FROM 'a'", "beta").version == "beta"
    assert compile_sql("SELECT 1 AS a FROM 'a'", None).version == V2


@pytest.mark.parametrize(("text", "position", "fragment"), [
    ("${", 2, "expected an expression"),
    ("${}", 2, "empty substitution template"),
    ("x/${a", 5, "expected '}'"),
    ("${foo()}", 2, "unknown function foo()"),
    ("a ${b + } c", 8, "expected an expression but found '}'"),
])
def test_template_errors(text: str, position: int, fragment: str) -> None:
    with pytest.raises(SqlError) as info:
        compile_template(text)
    assert fragment in info.value.message
    assert info.value.position == position


def test_compiled_query_attributes() -> None:
    q = compile_sql("SELECT a FROM 'sensors/+/data' WHERE b > 1", V1)
    assert (q.sql, q.version, q.topic_filter, q.needs_services) == \
        ("SELECT a FROM 'sensors/+/data' WHERE b > 1", V1, "sensors/+/data", False)
    assert compile_sql("SELECT a").topic_filter == ""  # Basic Ingest-only rule
    assert compile_sql('SELECT a FROM "dq/#"').topic_filter == "dq/#"
    assert compile_sql("SELECT get_thing_shadow('t', 'arn') AS s FROM 'a'").needs_services
    assert compile_sql("SELECT a FROM 'a' WHERE aws_lambda('arn', *).ok = true").needs_services
    assert compile_sql("SELECT get_or_default(get_secret('s', 'SecretString', 'arn'), 'x') FROM 'a'").needs_services
    assert q.functions == frozenset()
    assert compile_sql("SELECT upper(a) AS u, md5(b) AS h FROM 'a'").functions == {"upper", "md5"}


def test_matches_follows_aws_topic_rules() -> None:
    q = compile_sql("SELECT * FROM 'a/#'")
    assert q.matches("a/b") and q.matches("a/b/c")
    assert not q.matches("a")  # AWS: 'a/#' does not match the parent level
    assert not q.matches("b/a")
    assert compile_sql("SELECT * FROM '+/x'").matches("dev/x")
    assert not compile_sql("SELECT * FROM '+/x'").matches("$aws/x")
    delta = compile_sql("SELECT * FROM '$aws/things/+/shadow/update/delta'")
    assert delta.matches("$aws/things/t1/shadow/update/delta")
    assert not compile_sql("SELECT *").matches("a")


def test_identifiers_value_and_set_stay_usable_as_attribute_names() -> None:
    from tests.unit.test_sql_helpers import run
    assert run("SELECT value FROM 't'", {"value": 1}) == {"value": 1}
    assert run("SELECT value, set FROM 't'", {"value": 1, "set": 2}) == {"value": 1, "set": 2}
    assert run("SELECT value - 1 AS v FROM 't'", {"value": 3}) == {"v": 2}
    assert run("SELECT VALUE value FROM 't'", {"value": 3}) == 3
    assert run("SELECT a.end AS e, a.select AS s FROM 't'", {"a": {"end": 1, "select": 2}}) == {"e": 1, "s": 2}


def test_absurd_nesting_is_refused_not_a_crash() -> None:
    assert "more than 64 levels deep" in error("SELECT " + "(" * 70 + "1" + ")" * 70 + " FROM 'a'").message
    assert "more than 64 levels deep" in error("SELECT " + "upper(" * 70 + "a" + ")" * 70 + " FROM 'a'").message
    assert "more than 200 levels deep" in error("SELECT " + " + ".join(["a"] * 300) + " AS x FROM 'a'").message
    from tests.unit.test_sql_helpers import run
    assert run("SELECT " + " + ".join(["a"] * 150) + " AS x FROM 'a'", {"a": 1}) == {"x": 150}
