"""parse_time() and time_to_epoch(): Java date/time patterns on Python datetimes.

``parse_time(pattern, epochMillis[, zone])`` formats with Joda-Time pattern letters;
``time_to_epoch(text, pattern)`` parses with JDK 11 DateTimeFormatter letters. The common letters
are implemented (era, years, months, days, weekdays, AM/PM, the four hour kinds, minutes, seconds,
fractions, zone names, ids and offsets, quoted literals, ``[optional]`` sections when parsing);
an unknown letter, like a value that does not fit the pattern, makes the function Undefined.
Time zones come from the system's tz database (``zoneinfo``). A parse pattern becomes an RE2 expression
(linear time: a pattern taken from the message cannot make matching backtrack).
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import re2

from ..limits import Meter
from ..values import UNDEFINED, to_int, to_string
from .registry import V2016, sqlfunc

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
MONTHS = [calendar.month_name[i] for i in range(1, 13)]
MONTHS_SHORT = [calendar.month_abbr[i] for i in range(1, 13)]
DAYS = [calendar.day_name[i] for i in range(7)]  # Monday first
DAYS_SHORT = [calendar.day_abbr[i] for i in range(7)]
# Zone abbreviations Java's 'z' accepts when parsing (TimeZone short names; the common ones).
ABBREVIATIONS = {
    "UTC": "UTC", "GMT": "UTC", "UT": "UTC", "Z": "UTC",
    "EST": "America/New_York", "EDT": "America/New_York", "CST": "America/Chicago", "CDT": "America/Chicago",
    "MST": "America/Denver", "MDT": "America/Denver", "PST": "America/Los_Angeles", "PDT": "America/Los_Angeles",
    "AKST": "America/Anchorage", "AKDT": "America/Anchorage", "HST": "Pacific/Honolulu",
    "BST": "Europe/London", "CET": "Europe/Paris", "CEST": "Europe/Paris", "EET": "Europe/Helsinki",
    "EEST": "Europe/Helsinki", "WET": "Europe/Lisbon", "WEST": "Europe/Lisbon", "IST": "Asia/Kolkata",
    "JST": "Asia/Tokyo", "KST": "Asia/Seoul", "AEST": "Australia/Sydney", "AEDT": "Australia/Sydney",
}
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.max_mem = 1 << 20
_OFFSET = re.compile(r"(?:(?:UTC|GMT|UT)?([+-])(\d{1,2})(?::?(\d{2}))?(?::?(\d{2}))?)|(?:UTC|GMT|UT|Z)")


class PatternError(ValueError):
    """The pattern uses a letter or form this implementation (or Java) does not accept."""


def tokenize(pattern: str) -> list[tuple[str, Any]]:
    """Pattern -> [("field", (letter, count)) | ("text", str) | ("[", None) | ("]", None)]."""
    out: list[tuple[str, Any]] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c.isascii() and c.isalpha():
            j = i
            while j < n and pattern[j] == c:
                j += 1
            out.append(("field", (c, j - i)))
            i = j
        elif c == "'":
            j = i + 1
            text: list[str] = []
            while True:
                if j >= n:
                    raise PatternError("unterminated quote in pattern")
                if pattern[j] == "'":
                    if j + 1 < n and pattern[j + 1] == "'":
                        text.append("'")
                        j += 2
                        continue
                    break
                text.append(pattern[j])
                j += 1
            out.append(("text", "".join(text) if j > i + 1 else "'"))
            i = j + 1
        elif c in "[]":
            out.append((c, None))
            i += 1
        else:
            out.append(("text", c))
            i += 1
    return out


def zone_from_id(zone: str) -> dt.tzinfo | None:
    """A region id (``America/Belize``), ``UTC``/``GMT``, or an offset (``+01:00``, ``UTC+01:00``)."""
    m = _OFFSET.fullmatch(zone)
    if m is not None:
        if m.group(1) is None:
            return UTC
        hours, minutes, seconds = int(m.group(2)), int(m.group(3) or 0), int(m.group(4) or 0)
        if hours > 18 or minutes > 59 or seconds > 59:
            return None
        delta = dt.timedelta(hours=hours, minutes=minutes, seconds=seconds)
        return dt.timezone(-delta if m.group(1) == "-" else delta)
    if not zone or zone.startswith(("/", ".")) or ".." in zone:
        return None
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


# -- formatting (Joda-Time letters) -------------------------------------------------------------------

def _offset_text(d: dt.datetime, colon: bool) -> str:
    off = d.utcoffset() or dt.timedelta(0)
    total = int(off.total_seconds())
    sign = "-" if total < 0 else "+"
    total = abs(total)
    hh, mm = divmod(total // 60, 60)
    return f"{sign}{hh:02d}:{mm:02d}" if colon else f"{sign}{hh:02d}{mm:02d}"


def _zone_id(d: dt.datetime) -> str:
    tz = d.tzinfo
    key = getattr(tz, "key", None)
    if key:
        return key
    if tz is UTC or d.utcoffset() == dt.timedelta(0):
        return "UTC"
    return _offset_text(d, True)


def _format_field(d: dt.datetime, letter: str, count: int) -> str:
    if letter == "G":
        return ("AD" if d.year > 0 else "BC") if count < 4 else ("Anno Domini" if d.year > 0 else "Before Christ")
    if letter in "yYu":
        return f"{d.year % 100:02d}" if count == 2 else str(d.year).zfill(count)
    if letter == "x":  # Joda week-year
        year = d.isocalendar()[0]
        return f"{year % 100:02d}" if count == 2 else str(year).zfill(count)
    if letter == "C":
        return str(d.year // 100).zfill(count)
    if letter in "ML":
        if count >= 4:
            return MONTHS[d.month - 1]
        if count == 3:
            return MONTHS_SHORT[d.month - 1]
        return str(d.month).zfill(count)
    if letter == "d":
        return str(d.day).zfill(count)
    if letter == "D":
        return str(d.timetuple().tm_yday).zfill(count)
    if letter == "w":
        return str(d.isocalendar()[1]).zfill(count)
    if letter == "E":
        return DAYS[d.weekday()] if count >= 4 else DAYS_SHORT[d.weekday()]
    if letter == "e":
        return str(d.isoweekday()).zfill(count)
    if letter == "a":
        return "AM" if d.hour < 12 else "PM"
    if letter == "H":
        return str(d.hour).zfill(count)
    if letter == "k":
        return str(d.hour or 24).zfill(count)
    if letter == "K":
        return str(d.hour % 12).zfill(count)
    if letter == "h":
        return str(d.hour % 12 or 12).zfill(count)
    if letter == "m":
        return str(d.minute).zfill(count)
    if letter == "s":
        return str(d.second).zfill(count)
    if letter == "S":
        micros = f"{d.microsecond:06d}"
        return (micros + "0" * count)[:count]
    if letter == "z":
        if count >= 4:
            return _zone_id(d)
        name = d.tzname()
        return name if name and not name.startswith(("UTC+", "UTC-")) else _offset_text(d, True)
    if letter == "Z":
        if count == 1:
            return _offset_text(d, False)
        if count == 2:
            return _offset_text(d, True)
        return _zone_id(d)
    raise PatternError(f"unsupported pattern letter {letter!r}")


@lru_cache(maxsize=256)
def _format_plan(pattern: str) -> tuple[tuple[str, Any], ...]:
    plan = tuple((kind, v) for kind, v in tokenize(pattern) if kind not in "[]")
    for kind, v in plan:
        if kind == "field":
            _format_field(EPOCH, *v)  # raises for unsupported letters, once per pattern
    return plan


def format_time(pattern: str, millis: int, zone: dt.tzinfo) -> str:
    d = (EPOCH + dt.timedelta(milliseconds=millis)).astimezone(zone)
    return "".join(v if kind == "text" else _format_field(d, *v) for kind, v in _format_plan(pattern))


@sqlfunc("parse_time", 2, 3, since=V2016, metered=True)
def sql_parse_time(meter: Meter, pattern: Any, millis: Any, zone: Any = "UTC") -> Any:
    """Format epoch milliseconds with a Joda-Time pattern in a zone (default UTC)."""
    if type(pattern) is not str or type(zone) is not str:
        return UNDEFINED
    meter.charge(len(pattern) * 4)  # the output is about as long as the pattern
    ms = to_int(millis)
    tz = zone_from_id(zone)
    if type(ms) is not int or tz is None:
        return UNDEFINED
    try:
        return format_time(pattern, ms, tz)
    except (PatternError, OverflowError, ValueError):
        return UNDEFINED


# -- parsing (JDK 11 DateTimeFormatter letters) --------------------------------------------------------

_NAMES_RE = "|".join(sorted(MONTHS + MONTHS_SHORT, key=len, reverse=True))
_DAYS_RE = "|".join(sorted(DAYS + DAYS_SHORT, key=len, reverse=True))


_TWO = r"\d{2}"
_ONE_OR_TWO = r"\d{1,2}"


def _field_regex(letter: str, count: int, name: str) -> str:
    if letter in "yu":
        if count == 2:
            return rf"(?P<{name}>\d{{2}})"
        return rf"(?P<{name}>[+-]?\d{{{max(count, 1)},9}})"
    if letter in "ML":
        if count >= 4:
            return rf"(?P<{name}>{'|'.join(MONTHS)})"
        if count == 3:
            return rf"(?P<{name}>{'|'.join(MONTHS_SHORT)})"
        return rf"(?P<{name}>{_TWO if count == 2 else _ONE_OR_TWO})"
    if letter in "dHhKkms":
        return rf"(?P<{name}>{_TWO if count == 2 else _ONE_OR_TWO})"
    if letter == "D":
        return rf"(?P<{name}>\d{{{count},3}})"
    if letter == "S":
        return rf"(?P<{name}>\d{{{count}}})"
    if letter == "n":
        return rf"(?P<{name}>\d{{1,9}})"
    if letter == "a":
        return rf"(?P<{name}>AM|PM|am|pm)"
    if letter in "Ec":
        return rf"(?P<{name}>{_DAYS_RE})"
    if letter == "e":
        return rf"(?P<{name}>\d)"
    if letter == "G":
        return rf"(?P<{name}>AD|BC|Anno Domini|Before Christ)"
    if letter in "zV":
        return rf"(?P<{name}>[A-Za-z][A-Za-z0-9_/+\-:]*)"
    if letter in "XxZO":
        return rf"(?P<{name}>Z|(?:GMT|UTC)?[+-]\d{{1,2}}(?::?\d{{2}})?(?::?\d{{2}})?|GMT|UTC)"
    raise PatternError(f"unsupported pattern letter {letter!r}")


@lru_cache(maxsize=256)
def _parse_plan(pattern: str) -> tuple[Any, dict[str, tuple[str, int]]]:
    parts: list[str] = []
    fields: dict[str, tuple[str, int]] = {}
    depth = 0
    for kind, v in tokenize(pattern):
        if kind == "text":
            parts.append(re.escape(v))
        elif kind == "[":
            parts.append("(?:")
            depth += 1
        elif kind == "]":
            if depth == 0:
                raise PatternError("unbalanced ']' in pattern")
            parts.append(")?")
            depth -= 1
        else:
            letter, count = v
            name = f"f{len(fields)}"
            fields[name] = (letter, count)
            parts.append(_field_regex(letter, count, name))
    parts.append(")?" * depth)
    return re2.compile("(?i)" + "".join(parts), _RE2_OPTIONS), fields



def parse_epoch_millis(text: str, pattern: str) -> int | None:
    regex, fields = _parse_plan(pattern)
    m = regex.fullmatch(text)
    if m is None:
        return None
    year = month = day = yday = None
    hour = minute = second = micros = 0
    half = None
    hour12 = None
    zone: dt.tzinfo | None = None
    bc = False
    for name, (letter, count) in fields.items():
        raw = m.group(name)
        if raw is None:
            continue
        if letter in "yu":
            year = int(raw)
            if count == 2:
                year += 2000
        elif letter in "ML":
            if raw.isdigit():
                month = int(raw)
            else:
                low = raw.lower()
                names = [x.lower() for x in (MONTHS if count >= 4 else MONTHS_SHORT)]
                month = names.index(low) + 1
        elif letter == "d":
            day = int(raw)
        elif letter == "D":
            yday = int(raw)
        elif letter == "H":
            hour = int(raw)
        elif letter == "k":
            hour = int(raw) % 24
        elif letter in "hK":
            hour12 = int(raw) % 12
        elif letter == "m":
            minute = int(raw)
        elif letter == "s":
            second = int(raw)
        elif letter == "S":
            micros = int((raw + "000000")[:6])
        elif letter == "n":
            micros = int(raw.zfill(9)[:6])
        elif letter == "a":
            half = raw.upper()
        elif letter == "G":
            bc = raw.upper().startswith("B")
        elif letter in "zV":
            zone = zone_from_id(raw) or (ZoneInfo(ABBREVIATIONS[raw.upper()]) if raw.upper() in ABBREVIATIONS
                                         else None)
            if zone is None:
                return None
        elif letter in "XxZO":
            zone = zone_from_id(raw)
            if zone is None:
                return None
    if year is None:
        return None
    if bc:
        year = 1 - year
    if hour12 is not None:
        hour = hour12 + (12 if half == "PM" else 0)
    if not (0 <= hour < 24 and 0 <= minute < 60 and 0 <= second < 60):
        return None
    if yday is not None and month is None:
        base = dt.date(year, 1, 1) + dt.timedelta(days=yday - 1)
        if base.year != year:
            return None
        month, day = base.month, base.day
    month = month or 1
    day = day or 1
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    # Java's SMART resolver moves a day past the month's end (Feb 31) to the month's last day.
    day = min(day, calendar.monthrange(year, month)[1])
    local = dt.datetime(year, month, day, hour, minute, second, micros)
    aware = local.replace(tzinfo=zone or UTC)
    delta = aware - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@sqlfunc("time_to_epoch", 2, since=V2016, metered=True)
def sql_time_to_epoch(meter: Meter, text: Any, pattern: Any) -> Any:
    """Parse a date/time string with a JDK 11 pattern into epoch milliseconds (UTC unless it has a zone)."""
    s = to_string(text)
    p = to_string(pattern)
    if s is UNDEFINED or p is UNDEFINED:
        return UNDEFINED
    meter.charge(len(s) * (1 + len(p) // 40) + len(p) * 4)  # as a regexp_matches() of the compiled pattern
    try:
        ms = parse_epoch_millis(s, p)
    except (PatternError, ValueError, OverflowError, re2.error):
        return UNDEFINED
    return UNDEFINED if ms is None else ms
