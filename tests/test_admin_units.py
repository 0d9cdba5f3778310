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
