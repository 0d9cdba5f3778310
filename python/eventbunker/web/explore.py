"""The Explore page's queries: a ``/v1/query`` body made from a few choices, and
its answer as a chart and a table.

The browser only sends choices (event or metric, analysis, timeframe,
interval, group-by); the server builds the query body from them, shows it to
copy, and answers it through the query layer (``QueryApi.answer``) with the
rights of the project's unscoped query key, so no key ever reaches the page.
Everything a choice can get wrong is refused by the query API's own
validation, with its own message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg

from eventbunker.admin import accounts
from eventbunker.web.chart import Chart, Point, bar_chart

ANALYSES = ("count", "count_unique", "sum", "avg", "min", "max", "median", "percentile")
# Totals of these over groups are meaningful: their interval charts add the groups up.
ADDITIVE = frozenset({"count", "sum"})
TIMEFRAMES = (
    ("this_60_minutes", "Last 60 minutes"),
    ("this_24_hours", "Last 24 hours"),
    ("this_7_days", "Last 7 days"),
    ("this_30_days", "Last 30 days"),
    ("this_90_days", "Last 90 days"),
    ("previous_7_days", "The 7 days before today"),
)
NO_INTERVAL = "none"
INTERVALS = (NO_INTERVAL, "minutely", "hourly", "daily", "weekly", "monthly")
GROUP_BY_SUGGESTIONS = (
    "geo_country",
    "ua_device_type",
    "ua_browser",
    "ua_os",
    "utm_source",
    "customer_identifier",
    "url_path",
    "referrer_host",
    "distinct_id",
)
LABEL_FORMATS = {
    "minutely": "%H:%M",
    "hourly": "%H:%M",
    "daily": "%b %-d",
    "weekly": "%b %-d",
    "monthly": "%b %Y",
}
MAX_NAMES = 200


@dataclass(frozen=True, slots=True)
class Choices:
    """What the page's form holds; ``selection`` is ``event:NAME`` or ``metric:NAME``."""

    selection: str = ""
    analysis: str = "count"
    target_property: str = ""
    percentile: str = "95"
    timeframe: str = "this_7_days"
    interval: str = "daily"
    group_by: str = ""
    timezone: str = "UTC"

    @classmethod
    def from_params(cls, params: Mapping[str, str], default_selection: str = "") -> Choices:
        defaults = cls(selection=default_selection)
        return cls(
            **{
                name: str(params.get(name, "")).strip() or getattr(defaults, name)
                for name in cls.__slots__
            }
        )


def query_body(choices: Choices) -> dict[str, Any]:
    """The ``/v1/query`` body the choices stand for (fields left empty are left out)."""
    body: dict[str, Any] = {"analysis": choices.analysis}
    kind, _, name = choices.selection.partition(":")
    if name:
        body["metric_name" if kind == "metric" else "event_name"] = name
    if choices.analysis != "count":
        target = choices.target_property or ("metric_value" if kind == "metric" else "")
        if target:
            body["target_property"] = target
    if choices.analysis == "percentile":
        try:
            body["percentile"] = float(choices.percentile)
        except ValueError:
            body["percentile"] = choices.percentile  # refused, with its field, by the query API
    body["timeframe"] = choices.timeframe
    if choices.interval != NO_INTERVAL:
        body["interval"] = choices.interval
    body["timezone"] = choices.timezone
    if choices.group_by:
        body["group_by"] = [choices.group_by]
    return body


def names(conn: psycopg.Connection[Any], account_id: int, project_id: int) -> list[str]:
    """The project's event names and metric names as selections (``event:…``,
    ``metric:…``), from the daily rollups: a few rows per name and day."""
    accounts.get_project(conn, account_id, project_id)
    rows = conn.execute(
        "SELECT DISTINCT 'event:' || event_name FROM rollups_day_all WHERE project_id = %s"
        " UNION SELECT DISTINCT 'metric:' || metric_name FROM rollups_day_all"
        " WHERE project_id = %s AND metric_name IS NOT NULL ORDER BY 1 LIMIT %s",
        (project_id, project_id, MAX_NAMES),
    ).fetchall()
    return [str(r[0]) for r in rows]


def presented(body: dict[str, Any], result: Any) -> dict[str, Any]:
    """The answer as the page draws it: the query, its result, chart, table."""
    chart = chart_of(body, result)
    return {
        "query": body,
        "result": result,
        "chart": None if chart is None else asdict(chart),
        "table": table_of(body, result),
    }


def _group_value(row: Mapping[str, Any], group_by: list[str]) -> str:
    return " / ".join("(none)" if row.get(g) is None else str(row.get(g)) for g in group_by)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0


def chart_of(body: dict[str, Any], result: Any) -> Chart | None:
    """Bars per interval bucket or per group; with both, the groups' totals per
    bucket for additive analyses (nothing to draw for the others, nor for one number)."""
    group_by: list[str] = body.get("group_by", [])
    interval = body.get("interval")
    if not isinstance(result, list):
        return None
    if interval:
        label_format = LABEL_FORMATS.get(str(interval), "%Y-%m-%d %H:%M")
        points = []
        for bucket in result:
            value = bucket["value"]
            if group_by:
                if body["analysis"] not in ADDITIVE:
                    return None
                value = sum(_number(g["result"]) for g in value)
            start = datetime.fromisoformat(bucket["timeframe"]["start"])
            points.append(Point(start.isoformat(), start.strftime(label_format), _number(value)))
        return bar_chart(points)
    if group_by:
        points = [
            Point(_group_value(row, group_by), _group_value(row, group_by), _number(row["result"]))
            for row in result
        ]
        return bar_chart(points)
    return None


def table_of(body: dict[str, Any], result: Any) -> dict[str, Any]:
    """Columns and rows: one per bucket (and group), or per group, or the one number."""
    group_by: list[str] = body.get("group_by", [])
    if not isinstance(result, list):
        return {"columns": ["result"], "rows": [[result]]}
    if body.get("interval"):
        if group_by:
            rows = [
                [b["timeframe"]["start"], *(g.get(c) for c in group_by), g["result"]]
                for b in result
                for g in b["value"]
            ]
            return {"columns": ["start", *group_by, "result"], "rows": rows}
        return {
            "columns": ["start", "value"],
            "rows": [[b["timeframe"]["start"], b["value"]] for b in result],
        }
    return {
        "columns": [*group_by, "result"],
        "rows": [[*(row.get(c) for c in group_by), row["result"]] for row in result],
    }
