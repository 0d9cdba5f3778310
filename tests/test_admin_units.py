"""Small pieces of the admin side, without a server: chart, date ranges, proxies, last use."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest

from conftest import Project
from eventbunker import _native
from eventbunker.admin.projects import AdminError
from eventbunker.admin.usage import MAX_DAYS, parse_range
from eventbunker.ingest.auth import LAST_USED_INTERVAL_S, ApiKey, KeyCache
from eventbunker.ingest.enrichment import proxy_list
from eventbunker.web.chart import daily_chart, nice_ceiling, short_number
from eventbunker.web.explore import Choices, presented, query_body


def test_nice_ceiling_and_short_numbers() -> None:
    assert [nice_ceiling(v) for v in (0, 1, 2, 3, 7, 10, 11, 60, 101, 4999)] == [
        1,
        1,
        2,
        5,
        10,
        10,
        20,
        100,
        200,
        5000,
    ]
    assert [short_number(n) for n in (0, 999, 1000, 1500, 2_000_000)] == [
        "0",
        "999",
        "1k",
        "1.5k",
        "2M",
    ]


def test_daily_chart_geometry() -> None:
    start = date(2024, 1, 1)
    days = [(start + timedelta(days=i), v) for i, v in enumerate([0, 5, 100, 1, 0, 0, 0, 50])]
    chart = daily_chart(days)
    assert chart.total == 156
    assert [b.value for b in chart.bars] == [0, 5, 100, 1, 0, 0, 0, 50]
    tallest = max(chart.bars, key=lambda b: b.height)
    assert tallest.value == 100 and tallest.y == pytest.approx(chart.plot_bottom - tallest.height)
    # Any day with writes stays visible; empty days have no bar height.
    assert all(b.height >= 1.5 for b in chart.bars if b.value)
    assert all(b.height == 0 for b in chart.bars if not b.value)
    # Bars stay inside the drawing, left to right, without overlapping.
    xs = [b.x for b in chart.bars]
    assert xs == sorted(xs) and xs[0] >= chart.left
    assert all(a.x + a.width <= b.x for a, b in zip(chart.bars, chart.bars[1:], strict=False))
    assert chart.bars[-1].x + chart.bars[-1].width <= chart.width
    assert [t.label for t in chart.ticks] == ["0", "50", "100"]
    assert chart.labels[-1].text == "Jan 8" and chart.labels[-1].anchor == "end"
    assert chart.labels[0].text == "Jan 1"
    assert daily_chart([]).total == 0


def test_usage_range_parsing() -> None:
    today = date(2024, 5, 31)
    assert parse_range(None, None, today) == (date(2024, 5, 2), today)
    assert parse_range("2024-05-01", "2024-05-01", today) == (date(2024, 5, 1), date(2024, 5, 1))
    last = date(2024, 1, 1) + timedelta(days=MAX_DAYS - 1)
    assert parse_range("2024-01-01", last.isoformat(), today)[1] == last
    for start, end in [
        ("2024-01-01", (last + timedelta(days=1)).isoformat()),
        ("2024-05-02", "2024-05-01"),
        ("2024-02-30", None),
        ("05/01/2024", None),
    ]:
        with pytest.raises(AdminError):
            parse_range(start, end, today)


def test_trusted_proxies() -> None:
    """The web app asks the Rust parser ingest uses (one test of trust)."""
    proxies = _native.Enricher(trusted_proxies=proxy_list("10.0.0.0/8, 127.0.0.1 ::1"))
    assert proxies.trusts("10.1.2.3") and proxies.trusts("127.0.0.1") and proxies.trusts("::1")
    assert not proxies.trusts("192.168.1.1")
    assert not proxies.trusts("not-an-ip") and not proxies.trusts(None)
    assert not _native.Enricher().trusts("127.0.0.1")
    # IPv4-mapped IPv6 peers count as their IPv4 address, as for X-Forwarded-For.
    assert proxies.trusts("::ffff:10.1.2.3") and not proxies.trusts("::ffff:192.168.1.1")


def test_key_last_used_is_written_at_most_once_a_minute(
    database_url: str, db: psycopg.Connection[Any], project: Project
) -> None:
    now = [1000.0]
    cache = KeyCache(database_url, clock=lambda: now[0])

    def last_used() -> Any:
        row = db.execute(
            "SELECT last_used_at FROM api_keys WHERE project_id = %s AND kind = 'write'",
            (project.id,),
        ).fetchone()
        assert row is not None
        return row[0]

    async def scenario() -> None:
        assert last_used() is None
        key = await cache.authenticate(project.write_key)
        assert isinstance(key, ApiKey)
        assert last_used() is None  # nothing written on the request path
        await cache.refresh()
        first = last_used()
        assert first is not None
        # Used again and again within the minute: no new write.
        for _ in range(5):
            await cache.authenticate(project.write_key)
            now[0] += 5
            await cache.refresh()
        assert last_used() == first
        # A minute after the last write, the next refresh writes again.
        now[0] = 1000.0 + LAST_USED_INTERVAL_S
        await cache.refresh()
        second = last_used()
        assert second > first
        # Not used since: nothing more to write.
        now[0] += 2 * LAST_USED_INTERVAL_S
        await cache.refresh()
        assert last_used() == second
        await cache.stop()

    asyncio.run(scenario())


def test_explore_choices_make_the_query_body() -> None:
    default = Choices.from_params({}, "event:signup")
    assert query_body(default) == {
        "analysis": "count",
        "event_name": "signup",
        "timeframe": "this_7_days",
        "interval": "daily",
        "timezone": "UTC",
    }
    metric = Choices.from_params(
        {
            "selection": "metric:load_ms",
            "analysis": "percentile",
            "percentile": "99",
            "interval": "none",
            "group_by": " geo_country ",
        }
    )
    assert query_body(metric) == {
        "analysis": "percentile",
        "metric_name": "load_ms",
        "target_property": "metric_value",
        "percentile": 99.0,
        "timeframe": "this_7_days",
        "timezone": "UTC",
        "group_by": ["geo_country"],
    }
    # An unusable percentile is passed on, for the query API to refuse with its field.
    odd = Choices.from_params({"analysis": "percentile", "percentile": "lots"})
    assert query_body(odd)["percentile"] == "lots"


def test_explore_charts_and_tables() -> None:
    buckets = [
        {"timeframe": {"start": f"2024-01-0{d}T00:00:00+00:00", "end": "…"}, "value": v}
        for d, v in [(1, 3), (2, 0), (3, 7)]
    ]
    daily = presented({"analysis": "count", "interval": "daily"}, buckets)
    assert [b["value"] for b in daily["chart"]["bars"]] == [3, 0, 7]
    assert daily["chart"]["labels"][-1]["text"] == "Jan 3"
    assert daily["table"]["rows"][0] == ["2024-01-01T00:00:00+00:00", 3]
    groups = [{"geo_country": "US", "result": 2.5}, {"geo_country": None, "result": 1}]
    grouped = presented({"analysis": "avg", "group_by": ["geo_country"]}, groups)
    assert [b["name"] for b in grouped["chart"]["bars"]] == ["US", "(none)"]
    assert grouped["table"] == {
        "columns": ["geo_country", "result"],
        "rows": [["US", 2.5], [None, 1]],
    }
    both = [
        {"timeframe": {"start": "2024-01-01T00:00:00+00:00", "end": "…"}, "value": groups},
    ]
    summed = presented(
        {"analysis": "count", "interval": "daily", "group_by": ["geo_country"]}, both
    )
    assert [b["value"] for b in summed["chart"]["bars"]] == [3.5]
    assert len(summed["table"]["rows"]) == 2
    # Averages of groups do not add up: table only. One number: no chart.
    assert (
        presented({"analysis": "avg", "interval": "daily", "group_by": ["x"]}, both)["chart"]
        is None
    )
    single = presented({"analysis": "count"}, 42)
    assert single["chart"] is None and single["table"] == {"columns": ["result"], "rows": [[42]]}
