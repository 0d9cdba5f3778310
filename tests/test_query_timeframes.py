"""Relative timeframes and interval buckets, as pure functions (no database)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventbunker.query import timeframes
from eventbunker.query.timeframes import InvalidTimeframe, Timeframe

NOW = datetime(2024, 3, 13, 15, 42, 10, 123456, tzinfo=UTC)  # a Wednesday
UTC_ZONE = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")  # DST from 2024-03-10 02:00, to 2024-11-03 02:00
KOLKATA = ZoneInfo("Asia/Kolkata")  # +05:30


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def utc(instant: datetime) -> datetime:
    # Python subtracts two datetimes of the same zone by their wall clocks.
    return instant.astimezone(UTC)


@pytest.mark.parametrize(
    ("name", "start", "end"),
    [
        ("this_1_minutes", "2024-03-13T15:42:00Z", None),
        ("this_5_minutes", "2024-03-13T15:38:00Z", None),
        ("previous_30_minutes", "2024-03-13T15:12:00Z", "2024-03-13T15:42:00Z"),
        ("this_3_hours", "2024-03-13T13:00:00Z", None),
        ("previous_24_hours", "2024-03-12T15:00:00Z", "2024-03-13T15:00:00Z"),
        ("today", "2024-03-13T00:00:00Z", None),
        ("this_1_day", "2024-03-13T00:00:00Z", None),
        ("this_7_days", "2024-03-07T00:00:00Z", None),
        ("yesterday", "2024-03-12T00:00:00Z", "2024-03-13T00:00:00Z"),
        ("previous_7_days", "2024-03-06T00:00:00Z", "2024-03-13T00:00:00Z"),
        ("this_1_weeks", "2024-03-11T00:00:00Z", None),
        ("this_2_weeks", "2024-03-04T00:00:00Z", None),
        ("previous_1_weeks", "2024-03-04T00:00:00Z", "2024-03-11T00:00:00Z"),
        ("this_1_months", "2024-03-01T00:00:00Z", None),
        ("this_3_months", "2024-01-01T00:00:00Z", None),
        ("previous_2_months", "2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z"),
        ("previous_14_months", "2023-01-01T00:00:00Z", "2024-03-01T00:00:00Z"),
        ("this_1_years", "2024-01-01T00:00:00Z", None),
        ("previous_1_years", "2023-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
    ],
)
def test_keen_relative_timeframes_in_utc(name: str, start: str, end: str | None) -> None:
    resolved = timeframes.resolve(name, UTC_ZONE, NOW)
    assert resolved.start == at(start)
    assert resolved.end == (NOW if end is None else at(end))


def test_days_follow_the_zone_calendar_across_dst() -> None:
    now = at("2024-03-11T12:00:00-04:00")
    yesterday = timeframes.resolve("yesterday", NEW_YORK, now)
    assert yesterday.start == at("2024-03-10T00:00:00-05:00")
    assert yesterday.end == at("2024-03-11T00:00:00-04:00")
    assert utc(yesterday.end) - utc(yesterday.start) == timedelta(hours=23)
    assert timeframes.resolve("this_2_days", NEW_YORK, now).start == yesterday.start


def test_hours_start_on_the_zone_hour() -> None:
    # 15:42 UTC is 21:12 in Kolkata: the hour started at 15:30 UTC.
    assert timeframes.resolve("this_1_hours", KOLKATA, NOW).start == at("2024-03-13T15:30:00Z")
    assert timeframes.resolve("today", KOLKATA, NOW).start == at("2024-03-13T00:00:00+05:30")


def test_absolute_timeframe() -> None:
    resolved = timeframes.resolve(
        {"start": "2024-01-01T00:00:00+01:00", "end": "2024-01-02T00:00:00Z"}, UTC_ZONE, NOW
    )
    assert resolved == Timeframe(at("2023-12-31T23:00:00Z"), at("2024-01-02T00:00:00Z"))


@pytest.mark.parametrize(
    "value",
    [
        "this_0_days",
        "last_3_days",
        "this_3_fortnights",
        "this_days",
        "previous_-1_days",
        "this_1000000_days",
        "this_100000_years",
        42,
        None,
        ["this_1_days"],
        {"start": "2024-01-01T00:00:00Z"},
        {"start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z"},
        {"start": "2024-01-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"},
        {"start": "2024-01-01T00:00:00", "end": "2024-01-02T00:00:00Z"},
        {"start": "yesterday", "end": "2024-01-02T00:00:00Z"},
        {"start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z", "x": 1},
    ],
)
def test_invalid_timeframes(value: object) -> None:
    with pytest.raises(InvalidTimeframe):
        timeframes.resolve(value, UTC_ZONE, NOW)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../../etc/passwd", "UTC\x00", 5])
def test_unknown_zones(name: object) -> None:
    with pytest.raises(InvalidTimeframe):
        timeframes.zone(name)


ZONES = st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"])
UNITS = st.sampled_from(timeframes.UNITS)
INSTANTS = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)


def local_units_between(start: datetime, end: datetime, unit: str, tz: ZoneInfo) -> int:
    """How many unit starts of ``tz`` lie in [start, end) — a reference count."""
    a, b = start.astimezone(tz), end.astimezone(tz)
    if unit == "minute":
        return round((utc(end) - utc(start)) / timedelta(minutes=1))
    if unit == "hour":
        return round((utc(end) - utc(start)) / timedelta(hours=1))
    if unit in ("day", "week"):
        days = (b.date() - a.date()).days
        return days if unit == "day" else days // 7
    months = (b.year - a.year) * 12 + b.month - a.month
    return months if unit == "month" else months // 12


def is_unit_start(instant: datetime, unit: str, tz: ZoneInfo) -> bool:
    local = instant.astimezone(tz)
    if (local.second, local.microsecond) != (0, 0):
        return False
    if unit == "minute":
        return True
    if local.minute != 0:
        return False
    if unit == "hour":
        return True
    if local.hour != 0:
        return False
    return {
        "day": True,
        "week": local.weekday() == 0,
        "month": local.day == 1,
        "year": (local.month, local.day) == (1, 1),
    }[unit]


@settings(max_examples=300, deadline=None)
@given(now=INSTANTS, zone_name=ZONES, unit=UNITS, count=st.integers(1, 40))
def test_relative_timeframe_invariants(
    now: datetime, zone_name: str, unit: str, count: int
) -> None:
    tz = ZoneInfo(zone_name)
    this = timeframes.resolve(f"this_{count}_{unit}s", tz, now)
    previous = timeframes.resolve(f"previous_{count}_{unit}s", tz, now)
    current = timeframes.resolve(f"this_1_{unit}s", tz, now)
    assert this.end == now
    assert this.start <= now < current.start + timedelta(days=400)
    assert is_unit_start(this.start, unit, tz)
    assert is_unit_start(previous.start, unit, tz)
    assert previous.end == current.start <= now
    # this_N covers the current unit and N-1 before it; previous_N the N before it.
    assert local_units_between(this.start, current.start, unit, tz) == count - 1
    assert local_units_between(previous.start, previous.end, unit, tz) == count


def check_buckets(tf: Timeframe, unit: str, tz: ZoneInfo) -> list[timeframes.Bucket]:
    found = timeframes.buckets(tf, unit, tz, 100_000)
    # As instants: Python (PEP 495) calls two datetimes of different zones
    # unequal whenever one is a wall time repeated by a DST change, even when
    # they are the same instant (found by hypothesis at 2001-10-28 02:00 Paris).
    assert utc(found[0].start) == utc(tf.start)
    assert utc(found[-1].end) == utc(tf.end)
    for bucket, following in itertools.pairwise(found):
        assert bucket.end == following.start
        assert is_unit_start(following.start, unit, tz)
        assert following.key > bucket.key
    for bucket in found:
        assert bucket.start < bucket.end
        # The naive wall-clock time of its start in tz: at or after its key.
        assert bucket.start.astimezone(tz).replace(tzinfo=None, fold=0) >= bucket.key
    return found


@settings(max_examples=200, deadline=None)
@given(
    start=INSTANTS,
    length=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=120)),
    zone_name=ZONES,
    unit=st.sampled_from(["hour", "day", "week", "month"]),
)
def test_buckets_tile_the_timeframe(
    start: datetime, length: timedelta, zone_name: str, unit: str
) -> None:
    check_buckets(Timeframe(start, start + length), unit, ZoneInfo(zone_name))


def test_hourly_buckets_across_dst_changes() -> None:
    spring = check_buckets(
        Timeframe(at("2024-03-10T00:00:00-05:00"), at("2024-03-10T05:00:00-04:00")),
        "hour",
        NEW_YORK,
    )
    # 02:00 does not exist that night: 00, 01, 03, 04.
    assert [b.key.hour for b in spring] == [0, 1, 3, 4]
    autumn = check_buckets(
        Timeframe(at("2024-11-03T00:00:00-04:00"), at("2024-11-03T03:00:00-05:00")),
        "hour",
        NEW_YORK,
    )
    # 01:00 happens twice: its bucket (like time_bucket's) lasts two hours.
    assert [b.key.hour for b in autumn] == [0, 1, 2]
    assert utc(autumn[1].end) - utc(autumn[1].start) == timedelta(hours=2)


def test_weekly_and_monthly_buckets() -> None:
    tf = Timeframe(at("2024-01-10T12:00:00Z"), at("2024-03-02T00:00:00Z"))
    weeks = check_buckets(tf, "week", UTC_ZONE)
    assert weeks[0].start == tf.start and weeks[0].key.date() == date(2024, 1, 8)
    assert weeks[1].start == at("2024-01-15T00:00:00Z")
    months = check_buckets(tf, "month", UTC_ZONE)
    assert [b.key.month for b in months] == [1, 2, 3]
    assert months[2].start == at("2024-03-01T00:00:00Z")


def test_too_many_buckets() -> None:
    tf = Timeframe(at("2024-01-01T00:00:00Z"), at("2025-01-01T00:00:00Z"))
    with pytest.raises(InvalidTimeframe, match="minute buckets"):
        timeframes.buckets(tf, "minute", UTC_ZONE, 10_000)
