"""Usage of an account's projects per UTC day: billed writes, refusals, latency.

* ``events``: the billed write count, the sum of ``write_counters`` over its
  shards. The counters are added in the transaction that stores the events,
  so a day's count is exactly what was written that day (UTC day of
  receipt). Deleting events later does not reduce it: it is what was
  written, not what is still stored.
* ``rejected``: refused ingest requests by reason (``rejected_counters``).
* ``latency_ms_mean`` / ``latency_ms_max``: receipt to commit (queryable),
  ``sum(latency_ms_sum) / sum(events)`` and the largest of the flushes.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from eventbunker.admin.accounts import get_project
from eventbunker.admin.projects import AdminError

MAX_DAYS = 366


def today_utc() -> date:
    return datetime.now(UTC).date()


def parse_range(start: str | None, end: str | None, today: date | None = None) -> tuple[date, date]:
    """``start``/``end`` as ``YYYY-MM-DD``, both inclusive; default: the last 30 days."""
    try:
        end_day = date.fromisoformat(end) if end else (today or today_utc())
        start_day = date.fromisoformat(start) if start else end_day - timedelta(days=29)
    except ValueError as exc:
        raise AdminError(f"start and end must be dates as YYYY-MM-DD: {exc}") from None
    if start_day > end_day:
        raise AdminError("start must not be after end")
    if (end_day - start_day).days + 1 > MAX_DAYS:
        raise AdminError(f"a usage report covers at most {MAX_DAYS} days")
    return start_day, end_day


def _mean(latency_sum: float, events: int) -> float | None:
    return round(latency_sum / events, 3) if events else None


def usage(
    conn: psycopg.Connection[Any],
    account_id: int,
    start: date,
    end: date,
    project_id: int | None = None,
) -> dict[str, Any]:
    """Every day of ``start..end`` (inclusive) for each project of the account."""
    if project_id is not None:
        projects = [get_project(conn, account_id, project_id)]
    else:
        projects = [
            {"id": int(r[0]), "name": r[1]}
            for r in conn.execute(
                "SELECT id, name FROM projects WHERE account_id = %s ORDER BY id", (account_id,)
            )
        ]
    ids = [p["id"] for p in projects]
    written: dict[tuple[int, date], tuple[int, float, float]] = {
        (int(r[0]), r[1]): (int(r[2]), float(r[3]), float(r[4]))
        for r in conn.execute(
            "SELECT project_id, day, sum(events), sum(latency_ms_sum), max(latency_ms_max)"
            " FROM write_counters WHERE project_id = ANY(%s) AND day BETWEEN %s AND %s"
            " GROUP BY project_id, day",
            (ids, start, end),
        )
    }
    rejected: defaultdict[tuple[int, date], dict[str, int]] = defaultdict(dict)
    for r in conn.execute(
        "SELECT project_id, day, reason, sum(requests) FROM rejected_counters"
        " WHERE project_id = ANY(%s) AND day BETWEEN %s AND %s"
        " GROUP BY project_id, day, reason ORDER BY reason",
        (ids, start, end),
    ):
        rejected[(int(r[0]), r[1])][r[2]] = int(r[3])

    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    report = []
    for project in projects:
        total_events, total_latency, total_max = 0, 0.0, None
        total_rejected: defaultdict[str, int] = defaultdict(int)
        rows = []
        for day in days:
            events, latency_sum, latency_max = written.get((project["id"], day), (0, 0.0, 0.0))
            refused = rejected.get((project["id"], day), {})
            rows.append(
                {
                    "day": day.isoformat(),
                    "events": events,
                    "rejected": refused,
                    "latency_ms_mean": _mean(latency_sum, events),
                    "latency_ms_max": latency_max if events else None,
                }
            )
            total_events += events
            total_latency += latency_sum
            if events:
                total_max = latency_max if total_max is None else max(total_max, latency_max)
            for reason, n in refused.items():
                total_rejected[reason] += n
        report.append(
            {
                "project_id": project["id"],
                "name": project["name"],
                "total": {
                    "events": total_events,
                    "rejected": dict(sorted(total_rejected.items())),
                    "latency_ms_mean": _mean(total_latency, total_events),
                    "latency_ms_max": total_max,
                },
                "days": rows,
            }
        )
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "timezone": "UTC",
        "projects": report,
    }


def billed_today(conn: psycopg.Connection[Any], project_id: int) -> int:
    """Today's (UTC) billed writes of one project; the caller checked the account."""
    row = conn.execute(
        "SELECT coalesce(sum(events), 0) FROM write_counters"
        " WHERE project_id = %s AND day = (now() AT TIME ZONE 'UTC')::date",
        (project_id,),
    ).fetchone()
    assert row is not None
    return int(row[0])
