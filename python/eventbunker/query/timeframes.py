"""Timeframes and interval buckets, in the query's time zone.

Relative timeframes follow Keen IO:

- ``this_N_<unit>``: from the start of the unit N-1 units before the current
  one, to now. ``this_7_days`` is today (so far) and the 6 days before it;
  ``this_1_hours`` is the current hour so far.
- ``previous_N_<unit>``: the N complete units before the current one.
  ``previous_7_days`` ends at today's midnight and starts 7 days earlier.
- ``today`` is ``this_1_days``, ``yesterday`` is ``previous_1_days``.

Units are ``minutes``, ``hours``, ``days``, ``weeks`` (starting on Monday,
like ISO weeks and TimescaleDB's ``time_bucket``), ``months`` and ``years``
(the singular is accepted too). Days, weeks, months and years follow the
calendar of the time zone (a day across a DST change is 23 or 25 hours);
minutes and hours are absolute durations ending on the zone's hour.

An absolute timeframe is ``{"start", "end"}`` in RFC 3339 with an offset;
``start`` is included, ``end`` excluded.

Interval buckets are the zone's wall-clock minutes, hours, days, Monday
weeks, months or years, as ``time_bucket(interval, ts, timezone)`` computes
them; the first and last buckets are clipped to the timeframe.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UNITS = ("minute", "hour", "day", "week", "month", "year")
MAX_UNITS = 100_000

Interval = Literal["minutely", "hourly", "daily", "weekly", "monthly", "yearly"]
INTERVALS: dict[Interval, str] = {
    "minutely": "minute",
    "hourly": "hour",
    "daily": "day",
    "weekly": "week",
    "monthly": "month",
    "yearly": "year",
}
# The ``interval`` argument of time_bucket for each unit.
BUCKET_WIDTHS = {
    "minute": "1 minute",
    "hour": "1 hour",
    "day": "1 day",
    "week": "1 week",
    "month": "1 month",
    "year": "1 year",
}

_RELATIVE = re.compile(r"(this|previous)_([0-9]{1,9})_(minute|hour|day|week|month|year)s?")


class InvalidTimeframe(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Timeframe:
    """``[start, end)``, both aware."""

    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Bucket:
    """One interval bucket: ``key`` is its wall-clock start (naive), the bounds are clipped."""

    key: datetime
    start: datetime
    end: datetime


def zone(name: object) -> ZoneInfo:
    """The IANA time zone ``name``; raise ``InvalidTimeframe`` if there is none."""
    if not isinstance(name, str) or not name:
        raise InvalidTimeframe("must be an IANA time zone name such as 'Europe/Paris'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidTimeframe(f"unknown time zone {name!r}") from None


def parse_instant(value: object) -> datetime:
    """An RFC 3339 timestamp with an offset."""
    if not isinstance(value, str):
        raise InvalidTimeframe("must be an RFC 3339 timestamp string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidTimeframe(f"{value!r} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InvalidTimeframe(f"{value!r} has no UTC offset (add 'Z' or '+hh:mm')")
    return parsed


def resolve(value: object, tz: ZoneInfo, now: datetime) -> Timeframe:
    """The timeframe ``value`` (a relative name or ``{"start", "end"}``) means at ``now``."""
    if isinstance(value, dict):
        if set(value) != {"start", "end"}:
            raise InvalidTimeframe("an absolute timeframe is exactly {'start', 'end'}")
        try:
            start = parse_instant(value["start"])
        except InvalidTimeframe as exc:
            raise InvalidTimeframe(f"start: {exc}") from None
        try:
            end = parse_instant(value["end"])
        except InvalidTimeframe as exc:
            raise InvalidTimeframe(f"end: {exc}") from None
        if start.astimezone(UTC) >= end.astimezone(UTC):
            raise InvalidTimeframe("start must be before end")
        return Timeframe(start, end)
    if not isinstance(value, str):
        raise InvalidTimeframe(
            "must be a relative timeframe such as 'this_7_days' or {'start', 'end'}"
        )
    if value == "today":
        return relative("this", 1, "day", tz, now)
    if value == "yesterday":
        return relative("previous", 1, "day", tz, now)
    match = _RELATIVE.fullmatch(value)
    if match is None:
        raise InvalidTimeframe(
            f"{value!r} is not a timeframe: use this_N_<unit> or previous_N_<unit>"
            f" with a unit among {', '.join(u + 's' for u in UNITS)}, today, yesterday,"
            " or {'start', 'end'}"
        )
    count = int(match[2])
    if not 1 <= count <= MAX_UNITS:
        raise InvalidTimeframe(f"the number of units must be between 1 and {MAX_UNITS}")
    return relative(match[1], count, match[3], tz, now)


def relative(which: str, count: int, unit: str, tz: ZoneInfo, now: datetime) -> Timeframe:
    current = unit_start(now, unit, tz)
    try:
        if which == "this":
            return Timeframe(shift(current, unit, -(count - 1), tz), now)
        return Timeframe(shift(current, unit, -count, tz), current)
    except (OverflowError, ValueError):
        raise InvalidTimeframe("the timeframe reaches outside the supported dates") from None


def unit_start(instant: datetime, unit: str, tz: ZoneInfo) -> datetime:
    """The start of the ``unit`` (in ``tz``) that holds ``instant``, as an aware instant."""
    local = instant.astimezone(tz)
    if unit == "minute":
        return local.replace(second=0, microsecond=0)
    if unit == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    return _midnight(floor_date(local.date(), unit), tz)


def shift(start: datetime, unit: str, count: int, tz: ZoneInfo) -> datetime:
    """``start`` (a unit start) moved by ``count`` units: absolute for minutes and
    hours, along the calendar of ``tz`` for the others."""
    if unit == "minute":
        return (start.astimezone(UTC) + timedelta(minutes=count)).astimezone(tz)
    if unit == "hour":
        return (start.astimezone(UTC) + timedelta(hours=count)).astimezone(tz)
    return _midnight(add_units(start.astimezone(tz).date(), unit, count), tz)


def floor_date(day: date, unit: str) -> date:
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    if unit == "year":
        return day.replace(month=1, day=1)
    return day


def add_units(day: date, unit: str, count: int) -> date:
    if unit == "day":
        return day + timedelta(days=count)
    if unit == "week":
        return day + timedelta(weeks=count)
    months = count * (12 if unit == "year" else 1)
    index = day.year * 12 + (day.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=tz)


def floor_wall(wall: datetime, unit: str) -> datetime:
    """The start of the bucket holding the naive wall-clock time ``wall``."""
    if unit == "minute":
        return wall.replace(second=0, microsecond=0)
    if unit == "hour":
        return wall.replace(minute=0, second=0, microsecond=0)
    return datetime.combine(floor_date(wall.date(), unit), time())


def next_wall(wall: datetime, unit: str) -> datetime:
    if unit == "minute":
        return wall + timedelta(minutes=1)
    if unit == "hour":
        return wall + timedelta(hours=1)
    return datetime.combine(add_units(wall.date(), unit, 1), time())


def buckets(timeframe: Timeframe, unit: str, tz: ZoneInfo, limit: int) -> list[Bucket]:
    """Every bucket of ``timeframe``, empty or not; raise if there are more than ``limit``."""
    found: list[Bucket] = []
    for bucket in _iter_buckets(timeframe, unit, tz):
        if len(found) == limit:
            raise InvalidTimeframe(
                f"this timeframe has more than {limit} {unit} buckets: use a larger interval"
            )
        found.append(bucket)
    return found


def _iter_buckets(timeframe: Timeframe, unit: str, tz: ZoneInfo) -> Iterator[Bucket]:
    # Compare in UTC: Python compares two datetimes of the same tzinfo by their
    # wall clocks, which is wrong across DST changes.
    tf_start, tf_end = timeframe.start.astimezone(UTC), timeframe.end.astimezone(UTC)
    wall = floor_wall(timeframe.start.astimezone(tz).replace(tzinfo=None), unit)
    while True:
        following = next_wall(wall, unit)
        start = max(wall.replace(tzinfo=tz).astimezone(UTC), tf_start)
        end = min(following.replace(tzinfo=tz).astimezone(UTC), tf_end)
        if start >= tf_end:
            return
        if start < end:  # a wall-clock hour skipped by a DST change is no bucket
            yield Bucket(wall, start.astimezone(tz), end.astimezone(tz))
        wall = following
