"""Every pure built-in function: the documented examples (iot-sql-functions) and the Undefined /
wrong-type rows of each function's table."""

from __future__ import annotations

import math

import pytest
from tests.unit.test_sql_helpers import V1, V2, value

from thingcore.rules.sql import FUNCTIONS, UNDEFINED

U = UNDEFINED
DOC = {"n": None, "arr": [1, 2, 3], "obj": {"a": "b"}, "s": "hello", "i": 13, "d": 2.5, "t": True}


def v(expr: str, version: str = V2) -> object:
    return value(expr, DOC, version=version)


def check(expr: str, expected: object, version: str = V2) -> None:
    got = v(expr, version)
    if expected is U:
        assert got is U, f"{expr} -> {got!r}, expected Undefined"
    elif isinstance(expected, float) and not expected.is_integer():
        assert isinstance(got, float) and math.isclose(got, expected, rel_tol=1e-12), f"{expr} -> {got!r}"
    else:
        assert got == expected and type(got) is type(expected), f"{expr} -> {got!r}, expected {expected!r}"


CASES = [
    # abs
    ("abs(-5)", 5), ("abs(-5.5)", 5.5), ("abs('-5.123')", 5.123), ("abs(t)", U), ("abs('x')", U), ("abs(arr)", U),
    ("abs(obj)", U), ("abs(n)", U), ("abs(missing)", U),
    # trigonometry and friends (double precision; non-real results are Undefined)
    ("acos(0)", 1.5707963267948966), ("asin(0)", 0), ("atan(0)", 0), ("atan2(1, 0)", 1.5707963267948966),
    ("cos(0)", 1), ("cosh(2.3)", 5.037220649268761), ("sin(0)", 0), ("sinh(2.3)", 4.936961805545957),
    ("tan(3)", -0.1425465430742778), ("tanh(2.3)", 0.9800963962661914), ("exp(1)", math.e), ("ln(exp(1))", 1),
    ("log(100)", 2), ("sqrt(9)", 3), ("sqrt('16')", 4), ("power(2, 5)", 32), ("power('2', '0.5')", math.sqrt(2)),
    ("acos(2)", U), ("asin(-1.5)", U), ("sqrt(-1)", U), ("ln(0)", U), ("log(-1)", U), ("exp(100000)", U),
    ("power(-8, 0.5)", U), ("cos(t)", U), ("sin('x')", U), ("tan(n)", U), ("sqrt(arr)", U), ("atan2(1, 'x')", U),
    ("power(2, missing)", U),
    # rounding
    ("ceil(1.2)", 2), ("ceil(-1.2)", -1), ("ceil(5)", 5), ("ceil('1.2')", 2), ("ceil(t)", U), ("ceil('x')", U),
    ("floor(1.2)", 1), ("floor(-1.2)", -2), ("floor('-1.2')", -2), ("floor(n)", U),
    ("round(1.2)", 1), ("round(1.5)", 2), ("round(1.7)", 2), ("round(-1.1)", -1), ("round(-1.5)", -2),
    ("round(2.5)", 3), ("round(7)", 7), ("round('2.5')", 3), ("round(arr)", U),
    ("sign(-7)", -1), ("sign(0)", 0), ("sign(13)", 1), ("sign(-0.5)", -1), ("sign('3.2')", 1), ("sign(t)", U),
    ("trunc(2.3, 0)", 2), ("trunc(2.3123, 2)", 2.31), ("trunc(2.888, 2)", 2.88), ("trunc(2.00, 5)", 2),
    ("trunc(-2.888, 1)", -2.8), ("trunc(5, 2)", 5), ("trunc('2.345', 1)", 2.3), ("trunc(2.345, 1.9)", 2.3),
    ("trunc(2.345, -3)", 2), ("trunc('x', 1)", U), ("trunc(2.5, 'x')", U), ("trunc(t, 1)", U),
    # remainder
    ("mod(8, 3)", 2), ("remainder(8, 3)", 2), ("mod(-8, 3)", -2), ("mod(8.5, 3)", 2.5), ("mod('8', 3)", 2),
    ("mod(8, 0)", U), ("mod(t, 3)", U),
    # bits
    ("bitand(13, 5)", 5), ("bitor(8, 5)", 13), ("bitxor(13, 5)", 8), ("bitnot(13)", 2),
    ("bitand(13.9, 5.2)", 5), ("bitor('8', '5.7')", 13), ("bitand(t, 1)", U), ("bitxor(1, 'x')", U),
    ("bitnot('x')", U), ("bitnot(n)", U),
    # nanvl
    ("nanvl(8, 3)", 8), ("nanvl(missing, 3)", 3), ("nanvl(n, 3)", 3), ("nanvl('x', 3)", "x"),
    # strings
    ("chr(65)", "A"), ("chr(49)", "1"), ("chr(65.9)", "A"), ("chr('66')", "B"), ("chr(128)", U), ("chr(-1)", U),
    ("chr(t)", U), ("chr(n)", U),
    ("concat()", U), ("concat(1)", 1), ("concat([1, 2, 3], 4)", [1, 2, 3, 4]),
    ("concat([1, 2, 3], 'hello')", [1, 2, 3, "hello"]), ("concat('con', 'cat')", "concat"),
    ("concat(1, 'hello')", "1hello"), ("concat('he','is','man')", "heisman"),
    ("concat([1, 2, 3], 'hello', [4, 5, 6])", [1, 2, 3, "hello", 4, 5, 6]), ("concat('a', n)", U),
    ("endswith('cat','at')", True), ("endswith('cat','c')", False), ("endswith(123, 3)", True),
    ("endswith(n, 'x')", U), ("endswith('x', missing)", U),
    ("startswith('ranger','ran')", True), ("startswith(true, 'tr')", True), ("startswith('a', n)", U),
    ("indexof('abcd', 'bc')", 1), ("indexof('abcd', 'x')", -1), ("indexof(12345, 34)", 2), ("indexof(n, 'a')", U),
    ("length('hi')", 2), ("length(false)", 5), ("length(arr)", 7), ("length(n)", U), ("length(missing)", U),
    ("numbytes('hi')", 2), ("numbytes('€')", 3), ("numbytes(n)", U),
    ("lower('HELLO')", "hello"), ("lower(['HELLO'])", '["hello"]'), ("lower(n)", U),
    ("upper('hello')", "HELLO"), ("upper(['hello'])", '["HELLO"]'), ("upper(2.5)", "2.5"), ("upper(missing)", U),
    ("lpad('hello', 2)", "  hello"), ("lpad(1, 3)", "   1"), ("lpad('a', 1.9)", " a"), ("lpad('a', '2')", "  a"),
    ("lpad('a', -5)", "a"), ("lpad('a', t)", U), ("lpad(n, 2)", U), ("lpad('a', 'x')", U),
    ("rpad('hello', 2)", "hello  "), ("rpad(1, 3)", "1   "), ("rpad('a', missing)", U),
    ("ltrim(' h i ')", "h i "), ("rtrim(' h i ')", " h i"), ("trim(' hi ')", "hi"), ("trim('\\t x \\t')", "x"),
    ("trim(12)", "12"), ("ltrim(n)", U), ("rtrim(missing)", U),
    ("replace('abcd', 'bc', 'x')", "axd"), ("replace('abcdabcd', 'b', 'x')", "axcdaxcd"),
    ("replace(1212, 1, 3)", "3232"),
    ("replace('a', n, 'b')", U),
    ("substring('012345', 0)", "012345"), ("substring('012345', 2)", "2345"), ("substring('012345', 2.745)", "2345"),
    ("substring(123, 2)", "3"), ("substring('012345', -1)", "012345"), ("substring(true, 1.2)", "rue"),
    ("substring(false, -2.411E247)", "false"), ("substring('012345', 1, 3)", "12"),
    ("substring('012345', -50, 50)", "012345"), ("substring('012345', 3, 1)", ""), ("substring('012345', t)", U),
    ("substring(n, 1)", U), ("substring('abc', '1')", "bc"),
    # documents and types
    ("get(['a', 'b', 'c'], 1)", "b"), ("get({'a':'b'}, 'a')", "b"), ("get('abc', 1)", "b"), ("get(arr, '2')", 3),
    ("get(arr, 1.6)", 3), ("get(arr, 3)", U), ("get(arr, -1)", U), ("get(arr, 'x')", U), ("get(obj, 1)", U),
    ("get(obj, 'zz')", U), ("get(5, 0)", U), ("get(n, 0)", U),
    ("isNull(5)", False), ("isNull(NULL)", True), ("isNull(n)", True), ("isNull(missing)", False),
    ("isUndefined(5)", False), ("isUndefined(floor([1,2,3]))", True), ("isUndefined(n)", False),
    ("isUndefined(missing)", True),
    ("get_or_default(missing, 'd')", "d"), ("get_or_default(n, 'd')", "d"), ("get_or_default(s, 'd')", "hello"),
    ("get_or_default(0, 1)", 0),
    ("transform('enrichArray', {'k': 1}, [{'a': 1}, {'b': 2}])", [{"a": 1, "k": 1}, {"b": 2, "k": 1}]),
    ("transform('other', {'k': 1}, [{'a': 1}])", U), ("transform('enrichArray', arr, [{'a': 1}])", U),
    ("transform('enrichArray', obj, obj)", U),
    # hashes
    ("md2('hello')", "a9046c73e00331af68917d3804f70655"), ("md5('hello')", "5d41402abc4b2a76b9719d911017c592"),
    ("sha1('hello')", "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"),
    ("sha224('hello')", "ea09ae9cc6768c50fcee903ed054556e5bfc8347907f12598aa24193"),
    ("sha256('hello')", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
    ("sha384('')", "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b"),
    ("sha512('')", "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d28"
                   "77eec2f63b931bd47417a81a538327af927da3e"),
    ("md5(1)", "c4ca4238a0b923820dcc509a6f75849b"), ("md5(n)", U), ("sha256(missing)", U),
    # encode / decode
    ("encode('hello', 'base64')", "aGVsbG8="), ("encode(12, 'base64')", "MTI="),
    ("encode(obj, 'base64')", "eyJhIjoiYiJ9"),
    ("encode('x', 'hex')", U), ("encode(n, 'base64')", U),
    ("decode('aGVsbG8=', 'base64')", "hello"), ("decode('eyJhIjoiYiJ9', 'base64')", {"a": "b"}),
    ("decode('MTI=', 'base64')", 12), ("decode('not base64!', 'base64')", None), ("decode('aGVsbG8=', 'hex')", U),
    ("decode(n, 'base64')", U),
]


@pytest.mark.parametrize(("expr", "expected"), CASES)
def test_function(expr: str, expected: object) -> None:
    check(expr, expected)


def test_whole_number_results_keep_their_decimal_point_under_2015() -> None:
    check("power(2, 5)", 32.0, V1)
    check("sqrt(9)", 3.0, V1)
    check("log(100)", 2.0, V1)
    check("trunc(2.00, 5)", 2, V1)


def test_functions_new_in_2016_are_refused_under_2015() -> None:
    from thingcore.rules.sql import SqlError, compile_sql
    for fn in ("isUndefined(a)", "encode(a, 'base64')", "decode(a, 'base64')", "indexof(a, 'b')", "length(a)",
               "numbytes(a)", "transform('enrichArray', a, b)", "parse_time('yyyy', 0)", "time_to_epoch(a, 'yyyy')"):
        with pytest.raises(SqlError, match="needs awsIotSqlVersion 2016-03-23"):
            compile_sql(f"SELECT {fn} AS v FROM 't'", V1)
        compile_sql(f"SELECT {fn} AS v FROM 't'", V2)


def test_wrong_argument_count_is_undefined_with_a_warning() -> None:
    from thingcore.rules.sql import compile_sql
    q = compile_sql("SELECT abs(1, 2) AS a, upper() AS b, 1 AS c FROM 't'")
    assert any("abs() takes 1 arguments but is given 2" in w for w in q.warnings)
    assert value("abs(1, 2)") is U
    assert value("substring('abc')") is U


def test_random_functions_differ_per_call() -> None:
    uuids = {value("newuuid()") for _ in range(5)}
    assert len(uuids) == 5 and all(len(u) == 36 and u.count("-") == 4 for u in uuids)
    r = value("rand()")
    assert isinstance(r, float) and 0.0 <= r < 1.0


def test_every_registered_function_has_a_case_here_or_elsewhere() -> None:
    """A new function must come with tests; context, time, regex and external ones live in
    test_sql_context.py, test_sql_time.py, test_sql_regex.py and test_sql_external.py."""
    covered = {c[0].split("(")[0].lower() for c in CASES}
    elsewhere = {"topic", "clientid", "principal", "sourceip", "traceid", "timestamp", "accountid", "sql_version",
                 "get_mqtt_property", "get_user_properties", "newuuid", "rand", "parse_time", "time_to_epoch",
                 "regexp_matches", "regexp_replace", "regexp_substr", "aws_lambda", "get_thing_shadow",
                 "get_dynamodb", "get_secret", "get_registry_data", "machinelearning_predict"}
    assert set(FUNCTIONS) - covered - elsewhere == set()
