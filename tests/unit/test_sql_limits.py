"""The bounds on a statement (at compile time) and on each evaluation (value size, cost): hostile statements
and messages stop quickly with a clear error, in little memory; ordinary ones are untouched."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest
from tests.unit.test_sql_helpers import ctx, value

from thingcore.rules.sql import SqlError, compile_sql, compile_template
from thingcore.rules.sql.limits import DEFAULT_LIMITS, MAX_SQL_LENGTH, Limits, SqlLimitError, weigh

SMALL = Limits(max_value_size=10_000, max_cost=1_000_000)


def evaluate(sql: str, payload: Any, limits: Limits | None = None) -> Any:
    q = compile_sql(sql, limits=limits) if limits is not None else compile_sql(sql)
    r = q.evaluate(ctx(payload))
    return r.output if r.matched else None


def bounded(sql: str, payload: Any, match: str, seconds: float = 1.0, megabytes: float = 50.0) -> None:
    """The evaluation fails with SqlLimitError naming ``match``, fast and in little memory."""
    q = compile_sql(sql)
    c = ctx(payload)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(SqlLimitError, match=match):
            q.evaluate(c)
        took = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert took < seconds * 5  # tracemalloc slows Python down a few times
    assert peak < megabytes * 1e6, f"{peak / 1e6:.0f} MB"


# -- growing strings -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("sql", "payload"), [
    ("SELECT replace(replace(replace(s, 'a', s), 'a', s), 'a', s) AS x FROM 't'", {"s": "a" * 300}),
    ("SELECT replace(s, '', s) AS x FROM 't'", {"s": "a" * 2000}),
    ("SELECT concat(s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s) AS x FROM 't'", {"s": "a" * 120_000}),
    ("SET @a = s + s, @b = @a + @a, @c = @b + @b, @d = @c + @c, @e = @d + @d SELECT @e AS x FROM 't'",
     {"s": "a" * 120_000}),
    ("SELECT regexp_replace(s, 'a', s) AS x FROM 't'", {"s": "a" * 2000}),
    ("SELECT encode(encode(encode(encode(encode(s, 'base64'), 'base64'), 'base64'), 'base64'), 'base64') AS x "
     "FROM 't'", {"s": "a" * 800_000}),
    ("SELECT rpad(s, 1000) AS x FROM 't'", {"s": "a" * (DEFAULT_LIMITS.max_value_size - 500)}),
], ids=["nested-replace", "replace-empty", "concat", "plus", "regexp_replace", "encode", "rpad"])
def test_values_that_would_grow_past_max_value_size_stop_the_evaluation(sql: str, payload: Any) -> None:
    bounded(sql, payload, "max_value_size")


def test_the_size_is_checked_before_the_string_is_built() -> None:
    # 300 ** 4 = 8.1e9 characters: only a check made before building keeps memory flat
    bounded("SELECT replace(replace(replace(s, 'a', s), 'a', s), 'a', s) AS x FROM 't'", {"s": "a" * 300},
            "max_value_size", megabytes=5)


def test_constant_expressions_past_the_limits_are_refused_at_compile_time() -> None:
    sql = "SELECT " + "replace(" * 7 + "'aaaaaaaaaa'" + ", 'a', 'aaaaaaaaaa')" * 7 + " AS x FROM 't'"
    started = time.perf_counter()
    with pytest.raises(SqlError, match="max_value_size") as caught:
        compile_sql(sql)
    assert time.perf_counter() - started < 1
    assert caught.value.position is not None


# -- arrays and objects that share parts ---------------------------------------------------------------

@pytest.mark.parametrize("sql", [
    "SET @a = [s, s], @b = [@a, @a], @c = [@b, @b], @d = [@c, @c], @e = [@d, @d] SELECT md5(@e) AS x FROM 't'",
    "SET @a = {'x': s, 'y': s}, @b = {'x': @a, 'y': @a}, @c = {'x': @b, 'y': @b}, @d = {'x': @c, 'y': @c} "
    "SELECT @d AS x FROM 't'",
    "SELECT (SELECT VALUE @s FROM items) AS x FROM 't'",
    "SELECT concat(items, items, items, items, items, items, items, items, items, items) AS x FROM 't'",
], ids=["array-literal", "object-literal", "nested-select", "concat-arrays"])
def test_containers_sharing_a_big_value_are_measured_as_serialized(sql: str) -> None:
    sql = sql.replace("SELECT (SELECT VALUE @s", "SET @s = s SELECT (SELECT VALUE @s")
    # stopped by the size of what is built, or by the work of weighing it: either way quickly, in little memory
    bounded(sql, {"s": "a" * 300_000, "items": ["x" * 400] * 1000}, "max_value_size|max_evaluation_cost")


def test_a_long_select_list_has_its_output_measured() -> None:
    items = ", ".join(f"s AS k{i}" for i in range(40))
    bounded(f"SELECT {items} FROM 't'", {"s": "a" * 200_000}, "SELECT output")


def test_transform_stays_undefined_past_aws_limit_without_serializing() -> None:
    sql = "SELECT transform('enrichArray', o, items) AS x FROM 't'"
    payload = {"o": {"big": "b" * 100_000}, "items": [{"i": i} for i in range(1000)]}
    out = evaluate(sql, payload)
    assert out == {}


# -- work that is not size: loops, regular expressions, comparisons --------------------------------------

@pytest.mark.parametrize(("sql", "payload"), [
    ("SET @a = items SELECT (SELECT VALUE (SELECT VALUE 1 FROM @a WHERE false) FROM @a) AS x FROM 't'",
     {"items": [0] * 5000}),
    ("SELECT regexp_replace(s, '(b|a)', '$1$1') AS x FROM 't'", {"s": "ab" * 100_000}),
    ("SELECT regexp_replace(s, 'x*', '-') AS x FROM 't'", {"s": "ab" * 100_000}),
    ("SET @a = items SELECT (SELECT VALUE @a = @a FROM @a) AS x FROM 't'", {"items": list(range(5000))}),
    ("SET @a = items SELECT (SELECT VALUE x IN @a FROM @a) AS x FROM 't'", {"items": list(range(5000))}),
    ("SET @s = s SELECT (SELECT VALUE regexp_matches(@s, 'z') FROM items) AS x FROM 't'",
     {"s": "a" * 500_000, "items": [0] * 1000}),
    ("SET @s = s SELECT (SELECT VALUE md5(@s) FROM items) AS x FROM 't'", {"s": "a" * 500_000, "items": [0] * 1000}),
], ids=["nested-loops", "regexp-matches-many", "regexp-empty-matches", "compare-arrays", "in-arrays",
        "regexp-over-shared-subject", "hash-over-shared-subject"])
def test_work_past_the_budget_stops_the_evaluation_early(sql: str, payload: Any) -> None:
    bounded(sql, payload, "max_evaluation_cost")


def test_get_or_default_does_not_hide_an_exhausted_budget() -> None:
    sql = ("SET @a = items SELECT get_or_default((SELECT VALUE (SELECT VALUE 1 FROM @a WHERE false) FROM @a), 0) "
           "AS x FROM 't'")
    bounded(sql, {"items": [0] * 5000}, "max_evaluation_cost")


def test_the_budget_is_per_evaluation() -> None:
    q = compile_sql("SELECT (SELECT VALUE upper(n) FROM items) AS x FROM 't'", limits=Limits(max_cost=100_000))
    doc = {"items": [{"n": "ab"}] * 500}
    for _ in range(300):  # each message gets the whole budget again (the loop path reuses one meter)
        assert q.run(None, doc) == {"x": ["AB"] * 500}
        assert q.evaluate(ctx(doc)).output == {"x": ["AB"] * 500}


def test_configured_limits_apply() -> None:
    with pytest.raises(SqlLimitError, match="10,000"):
        evaluate("SELECT concat(s, s) AS x FROM 't'", {"s": "a" * 6000}, SMALL)
    assert evaluate("SELECT concat(s, s) AS x FROM 't'", {"s": "a" * 4000}, SMALL) == {"x": "a" * 8000}


def test_templates_are_bounded_too() -> None:
    t = compile_template("${replace(replace(s, 'a', s), 'a', s)}")
    with pytest.raises(SqlLimitError, match="max_value_size"):
        t.render(ctx({"s": "a" * 200}))


def test_int_products_past_34_digits_become_decimals() -> None:
    assert value("x * x * x * x * x * x * x * x", {"x": 10 ** 9}) == pytest.approx(1e72)
    assert value("x * x", {"x": 10 ** 16}) == 10 ** 32


# -- ordinary statements are untouched -------------------------------------------------------------------

@pytest.mark.parametrize(("sql", "payload", "expected"), [
    ("SELECT replace(s, 'a', 'bb') AS x FROM 't'", {"s": "aaa"}, {"x": "bbbbbb"}),
    ("SELECT concat(a, [3], 'x') AS x FROM 't'", {"a": [1, 2]}, {"x": [1, 2, 3, "x"]}),
    ("SELECT (SELECT VALUE n FROM e WHERE v > 1) AS x FROM 't'",
     {"e": [{"n": i, "v": i} for i in range(2000)]}, {"x": list(range(2, 2000))}),
    ("SELECT encode(*, 'base64') AS x FROM 't'", b"\x00" * 1_048_576, {"x": "AAAA" * 349_525 + "AA=="}),
    ("SELECT regexp_replace(s, '[^0-9]', '') AS x FROM 't'", {"s": "a1b2" * 1000}, {"x": "12" * 1000}),
    ("SELECT lower(s) AS x FROM 't'", {"s": "A" * 1_000_000}, {"x": "a" * 1_000_000}),
    ("SELECT {'a': s, 'b': [s, s]} AS x FROM 't'", {"s": "q"}, {"x": {"a": "q", "b": ["q", "q"]}}),
])
def test_ordinary_statements_are_not_affected(sql: str, payload: Any, expected: Any) -> None:
    assert evaluate(sql, payload) == expected


# -- the statement itself --------------------------------------------------------------------------------

@pytest.mark.parametrize(("sql", "says"), [
    ("SELECT " + "-" * 5000 + "a AS x FROM 't'", "levels deep"),
    ("SELECT " + "NOT " * 5000 + "a AS x FROM 't'", "levels deep"),
    ("SELECT " + "+" * 5000 + "a AS x FROM 't'", "levels deep"),
    ("SELECT " + "(" * 5000 + "a" + ")" * 5000 + " AS x FROM 't'", "levels deep"),
    ("SELECT " + "a + " * 5000 + "a AS x FROM 't'", "levels deep"),
    ("SELECT " + "upper(a), " * 1001 + "1 AS x FROM 't'", "more than 1000 functions"),
    ("SELECT " + ", ".join(["a"] * 20_001) + " FROM 't'", "more than 20000 expressions"),
    ("SELECT a FROM 't' WHERE a = '" + "b" * MAX_SQL_LENGTH + "'", "characters long"),
])
def test_pathological_statements_are_sql_errors(sql: str, says: str) -> None:
    with pytest.raises(SqlError, match=says):
        compile_sql(sql)


def test_deep_templates_are_sql_errors() -> None:
    with pytest.raises(SqlError, match="levels deep"):
        compile_template("${" + "-" * 5000 + "a}")


def test_weigh_stops_early_on_shared_structures() -> None:
    x: Any = "a" * 100
    for _ in range(60):  # 2 ** 60 leaves when serialized
        x = [x, x]
    total, steps = weigh(x, 10_000)
    assert total > 10_000
    assert steps < 1000
