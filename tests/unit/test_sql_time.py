"""parse_time (Joda-Time patterns) and time_to_epoch (JDK 11 DateTimeFormatter patterns)."""

from __future__ import annotations

import pytest
from tests.unit.test_sql_helpers import value

from thingcore.rules.sql import UNDEFINED

U = UNDEFINED
T = 1500000000123  # 2017-07-14T02:40:00.123Z, a Friday


@pytest.mark.parametrize(("expr", "expected"), [
    # the documented examples
    ("parse_time(\"yyyy.MM.dd G 'at' HH:mm:ss z\", 100000000, 'America/Belize')", "1970.01.01 AD at 21:46:40 CST"),
    ("parse_time('yyyy', 1500000000000, 'UTC')", "2017"),
    # letters
    (f"parse_time(\"yyyy-MM-dd'T'HH:mm:ss.SSSZZ\", {T})", "2017-07-14T02:40:00.123+00:00"),
    (f"parse_time('yy M d H m s S', {T})", "17 7 14 2 40 0 1"),
    (f"parse_time('EEE EEEE MMM MMMM D', {T})", "Fri Friday Jul July 195"),
    (f"parse_time('hh:mm a K k', {T})", "02:40 AM 2 2"),
    (f"parse_time('h a', {T + 12 * 3600_000})", "2 PM"),
    (f"parse_time('HH:mm Z ZZ ZZZ z', {T}, 'America/New_York')", "22:40 -0400 -04:00 America/New_York EDT"),
    (f"parse_time('HH:mm ZZ', {T}, '+05:30')", "08:10 +05:30"),
    (f"parse_time(\"'quoted ''text''' yyyy\", {T})", "quoted 'text' 2017"),
    (f"parse_time('yyyy', '{T}')", "2017"),
    (f"parse_time('yyyy', {T}.7)", "2017"),
    # Undefined
    (f"parse_time('yyyy', {T}, 'Nowhere/Special')", U), ("parse_time('yyyy', 'x')", U),
    ("parse_time('yyyy', missing)", U), (f"parse_time(5, {T})", U), (f"parse_time('qqq', {T})", U),
    (f"parse_time(\"'open\", {T})", U),
])
def test_parse_time(expr: str, expected: object) -> None:
    got = value(expr)
    assert got is expected if expected is U else got == expected


@pytest.mark.parametrize(("expr", "expected"), [
    # the documented examples
    ("time_to_epoch('2020-04-03 09:45:18 UTC+01:00', 'yyyy-MM-dd HH:mm:ss VV')", 1585903518000),
    ("time_to_epoch('18 December 2015', 'dd MMMM yyyy')", 1450396800000),
    ("time_to_epoch('2007-12-03 10:15:30.592 America/Los_Angeles', 'yyyy-MM-dd HH:mm:ss.SSS z')", 1196705730592),
    # more patterns
    ("time_to_epoch('1970-01-01', 'yyyy-MM-dd')", 0),
    ("time_to_epoch(\"2017-07-14T02:40:00.123Z\", \"yyyy-MM-dd'T'HH:mm:ss.SSSX\")", T),
    ("time_to_epoch('2017-07-14T04:40:00+02:00', \"uuuu-MM-dd'T'HH:mm:ssXXX\")", T - 123),
    ("time_to_epoch('14/Jul/2017:02:40:00 +0000', 'dd/MMM/yyyy:HH:mm:ss Z')", T - 123),
    ("time_to_epoch('07/14/17 02:40 AM', 'MM/dd/yy hh:mm a')", T - 123),
    ("time_to_epoch('07/14/17 02:40 PM', 'MM/dd/yy hh:mm a')", T - 123 + 12 * 3600_000),
    ("time_to_epoch('2017-07-13 22:40:00 EDT', 'yyyy-MM-dd HH:mm:ss z')", T - 123),
    ("time_to_epoch('2017-07-14', 'yyyy-MM-dd[ HH:mm]')", T - 123 - (2 * 3600 + 40 * 60) * 1000),
    ("time_to_epoch('2017-07-14 02:40', 'yyyy-MM-dd[ HH:mm]')", T - 123),
    ("time_to_epoch('2017 195', 'yyyy D')", T - 123 - (2 * 3600 + 40 * 60) * 1000),
    # Java's SMART resolver moves Feb 31 to Feb 28
    ("time_to_epoch('2021-02-31', 'yyyy-MM-dd')", 1614470400000),
    # Undefined
    ("time_to_epoch('nope', 'yyyy-MM-dd')", U), ("time_to_epoch('2021-13-01', 'yyyy-MM-dd')", U),
    ("time_to_epoch('2021-01-01 25:00', 'yyyy-MM-dd HH:mm')", U), ("time_to_epoch('12:00', 'HH:mm')", U),
    ("time_to_epoch('2021 Mars', 'yyyy Zone')", U), ("time_to_epoch('2021-01-01 X/Y', 'yyyy-MM-dd VV')", U),
    ("time_to_epoch(missing, 'yyyy')", U), ("time_to_epoch('2021', n)", U), ("time_to_epoch('2021', 'qq')", U),
])
def test_time_to_epoch(expr: str, expected: object) -> None:
    got = value(expr, {"n": None})
    assert got is expected if expected is U else got == expected


def test_round_trip() -> None:
    # X is a DateTimeFormatter letter that Joda-Time (parse_time) does not know
    assert value(f"parse_time(\"yyyy-MM-dd'T'HH:mm:ss.SSSXXX\", {T}, 'Asia/Kolkata')") is U
    assert value(f"time_to_epoch(parse_time('yyyy-MM-dd HH:mm:ss.SSS Z', {T}, 'Asia/Kolkata'), "
                 f"'yyyy-MM-dd HH:mm:ss.SSS Z')") == T
