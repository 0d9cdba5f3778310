"""SQL composition for queries and deletes, and the shaping of their answers.

Everything is built with ``psycopg.sql``: stored columns as identifiers from
the whitelist in ``properties``, every client value (JSON path elements
included) as a named parameter. The key's project, and its customer when it
has one, are conditions of every statement whatever the body says.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import sql

from eventbunker.query import filters, timeframes
from eventbunker.query.properties import COLUMNS, Params
from eventbunker.query.request import Delete, InvalidRequest, Query, Selection
from eventbunker.storage.rollups import DIGEST_COMPRESSION

MAX_BUCKETS = 10_000
MAX_ROWS = 10_000  # groups (times buckets) in one answer

# What an analysis answers for no events at all (empty buckets included).
EMPTY_RESULTS: dict[str, Any] = {"count": 0, "count_unique": 0, "sum": 0, "select_unique": []}
DISTINCT_ANALYSES = frozenset({"count_unique", "select_unique"})

# Columns of an extracted event, in order.
EXTRACTION_COLUMNS = (*COLUMNS, "properties")

Row = Sequence[Any]


@dataclass(frozen=True, slots=True)
class Scope:
    """What a key may see: its project, and only its customer's events if it has one."""

    project_id: int
    customer_identifier: str | None


@dataclass(frozen=True, slots=True)
class Plan:
    statement: sql.Composed
    params: dict[str, Any]
    shape: Callable[[list[Row]], Any]


@dataclass(frozen=True, slots=True)
class Segment:
    """``[start, end)`` read from ``level``'s rollup table, or raw events (None)."""

    level: str | None
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True, slots=True)
class Source:
    """Where a query reads: the raw events, or rollup levels with a raw tail
    (query/planner.py), as rollup-shaped rows; with ``sketch``, the one rollup
    sketch column (storage.rollups.SKETCHES) an approximate answer reads."""

    segments: tuple[Segment, ...] = ()
    sketch: str | None = None

    @property
    def is_rollup(self) -> bool:
        return bool(self.segments)

    @property
    def time_column(self) -> str:
        return "bucket" if self.segments else "timestamp"

    def relation(self, params: Params) -> sql.Composable:
        if not self.segments:
            return sql.Identifier("events")
        return sql.SQL("({}) AS r").format(
            sql.SQL(" UNION ALL ").join(_segment(s, self.sketch, params) for s in self.segments)
        )


_ROLLUP_COLUMNS = sql.SQL(
    "bucket, project_id, event_name, metric_name, customer_identifier, geo_country,"
    " ua_device_type, utm_source, events, metric_count, metric_sum, metric_min, metric_max"
)
# Raw events shaped as one-event rollup rows.
_RAW_AS_ROLLUP = sql.SQL(
    '"timestamp" AS bucket, project_id, event_name, metric_name, customer_identifier,'
    " geo_country, ua_device_type, utm_source, 1::bigint AS events,"
    " (metric_value IS NOT NULL)::int::bigint AS metric_count, metric_value AS metric_sum,"
    " metric_value AS metric_min, metric_value AS metric_max"
)


# One event as the sketch of a one-event rollup row.
_RAW_SKETCHES = {
    "distinct_ids": "hll_add(hll_empty(), hll_hash_text(distinct_id))",
    "customers": "hll_add(hll_empty(), hll_hash_text(customer_identifier))",
    "metric_digest": f"tdigest_add(NULL::tdigest, metric_value, {DIGEST_COMPRESSION})",
}


def _segment(segment: Segment, sketch: str | None, params: Params) -> sql.Composable:
    columns: sql.Composable
    if segment.level is None:
        columns, table, time = _RAW_AS_ROLLUP, sql.Identifier("events"), '"timestamp"'
        if sketch is not None:
            columns = sql.SQL("{}, {} AS {}").format(
                columns, sql.SQL(_RAW_SKETCHES[sketch]), sql.Identifier(sketch)
            )
    else:
        columns, table, time = _ROLLUP_COLUMNS, sql.Identifier(f"rollups_{segment.level}"), "bucket"
        if sketch is not None:
            columns = sql.SQL("{}, {}").format(columns, sql.Identifier(sketch))
    conditions: list[sql.Composable] = [sql.SQL("true")]
    if segment.start is not None:
        conditions.append(sql.SQL(time + " >= {}").format(params.add(segment.start, "timestamptz")))
    if segment.end is not None:
        conditions.append(sql.SQL(time + " < {}").format(params.add(segment.end, "timestamptz")))
    return sql.SQL("SELECT {} FROM {} WHERE {}").format(
        columns, table, sql.SQL(" AND ").join(conditions)
    )


RAW = Source()


def where(
    selection: Selection, scope: Scope, params: Params, source: Source = RAW
) -> sql.Composable:
    conditions: list[sql.Composable] = [
        sql.SQL("project_id = {}").format(params.add(scope.project_id, "bigint"))
    ]
    if scope.customer_identifier is not None:
        conditions.append(
            sql.SQL("customer_identifier = {}").format(
                params.add(scope.customer_identifier, "text")
            )
        )
    if selection.event_name is not None:
        conditions.append(
            sql.SQL("event_name = {}").format(params.add(selection.event_name, "text"))
        )
    if selection.metric_name is not None:
        conditions.append(
            sql.SQL("metric_name = {}").format(params.add(selection.metric_name, "text"))
        )
    if selection.timeframe is not None:
        conditions.append(
            sql.SQL("{t} >= {} AND {t} < {}").format(
                params.add(selection.timeframe.start, "timestamptz"),
                params.add(selection.timeframe.end, "timestamptz"),
                t=sql.Identifier(source.time_column),
            )
        )
    conditions.extend(filters.to_sql(f, params) for f in selection.filters)
    return sql.SQL(" AND ").join(conditions)


def delete_condition(delete: Delete, scope: Scope) -> tuple[sql.Composable, dict[str, Any]]:
    """The condition on ``events`` of a delete (run by storage.rollups.delete_events)."""
    params = Params()
    return where(delete.selection, scope, params), params.values


def build_query(query: Query, scope: Scope, source: Source = RAW) -> Plan:
    """The statement answering ``query`` from ``source`` (a rollup only for
    the queries query/planner.py finds covered)."""
    params = Params()
    if query.analysis == "extraction":
        return _extraction(query, scope, params)
    keys: list[sql.Composable] = []
    bucket_list: list[timeframes.Bucket] = []
    if query.interval is not None:
        assert query.selection.timeframe is not None
        try:
            bucket_list = timeframes.buckets(
                query.selection.timeframe, query.interval, query.selection.timezone, MAX_BUCKETS
            )
        except timeframes.InvalidTimeframe as exc:
            raise InvalidRequest("interval", str(exc)) from None
        keys.append(_bucket(query, params, source))
    keys.extend(prop.value(params) for prop in query.group_by)
    if query.analysis in DISTINCT_ANALYSES and not source.is_rollup:
        statement = _distinct_values(query, scope, keys, params)
    else:
        aggregate = (
            _rollup_aggregate(query, source, params)
            if source.is_rollup
            else _aggregate(query, params)
        )
        statement = sql.SQL("SELECT {} FROM {} WHERE {}").format(
            sql.SQL(", ").join([*keys, aggregate]),
            source.relation(params),
            where(query.selection, scope, params, source),
        )
    if keys:
        positions = sql.SQL(", ").join(sql.Literal(i + 1) for i in range(len(keys)))
        statement = sql.SQL("{} GROUP BY {} ORDER BY {} LIMIT {}").format(
            statement, positions, positions, sql.Literal(MAX_ROWS + 1)
        )
    return Plan(statement, params.values, _shaper(query, bucket_list))


def _bucket(query: Query, params: Params, source: Source) -> sql.Composable:
    """The start of each event's bucket, as time_bucket computes it in the query's zone."""
    assert query.interval is not None
    width = params.add(timeframes.BUCKET_WIDTHS[query.interval], "interval")
    tz = query.selection.timezone
    column = sql.Identifier(source.time_column)
    if tz.key == "UTC":  # the same buckets, without converting every timestamp
        return sql.SQL("time_bucket({}, {})").format(width, column)
    return sql.SQL("time_bucket({}, {}, {})").format(width, column, params.add(tz.key, "text"))


def _distinct_values(
    query: Query, scope: Scope, keys: list[sql.Composable], params: Params
) -> sql.Composed:
    """count_unique and select_unique over ``SELECT DISTINCT``: a hash aggregate,
    several times faster than ``count(DISTINCT ...)``, which sorts."""
    assert query.target is not None
    names = [sql.Identifier(f"k{i}") for i in range(len(keys))]
    value = sql.Identifier("v")
    columns = [sql.SQL("{} AS {}").format(k, n) for k, n in zip(keys, names, strict=True)]
    columns.append(sql.SQL("{} AS {}").format(query.target.value(params), value))
    if query.analysis == "count_unique":
        aggregate: sql.Composable = sql.SQL("count({})").format(value)
    else:
        aggregate = sql.SQL(
            "(array_agg({v} ORDER BY {v}) FILTER (WHERE {v} IS NOT NULL))[1:{limit}]"
        ).format(v=value, limit=params.add(query.limit, "integer"))
    return sql.SQL("SELECT {} FROM (SELECT DISTINCT {} FROM events WHERE {}) AS d").format(
        sql.SQL(", ").join([*names, aggregate]),
        sql.SQL(", ").join(columns),
        where(query.selection, scope, params),
    )


def _aggregate(query: Query, params: Params) -> sql.Composable:
    analysis = query.analysis
    if analysis == "count":
        return sql.SQL("count(*)")
    target = query.target
    assert target is not None
    number = target.number(params)
    if analysis == "sum":
        return sql.SQL("coalesce(sum({}), 0)").format(number)
    if analysis in ("avg", "min", "max"):
        return sql.SQL("{}({})").format(sql.SQL(analysis), number)
    return sql.SQL("percentile_cont({}) WITHIN GROUP (ORDER BY {})").format(
        _fraction(query, params), number
    )


def _fraction(query: Query, params: Params) -> sql.Composable:
    fraction = 0.5 if query.analysis == "median" else (query.percentile or 0.0) / 100
    return params.add(fraction, "double precision")


def _rollup_aggregate(query: Query, source: Source, params: Params) -> sql.Composable:
    """The aggregate over rollup rows equal to :func:`_aggregate` over the
    events; with a sketch, its estimate (query/planner.py says how close)."""
    if source.sketch == "metric_digest":
        return sql.SQL("tdigest_percentile(metric_digest, {})").format(_fraction(query, params))
    if source.sketch is not None:
        return sql.SQL("coalesce(round(hll_cardinality(hll_union_agg({}))), 0)::bigint").format(
            sql.Identifier(source.sketch)
        )
    return sql.SQL(
        {
            "count": "coalesce(sum(events), 0)::bigint",
            "sum": "coalesce(sum(metric_sum), 0)",
            "avg": "sum(metric_sum) / nullif(sum(metric_count), 0)::double precision",
            "min": "min(metric_min)",
            "max": "max(metric_max)",
        }[query.analysis]
    )


def _extraction(query: Query, scope: Scope, params: Params) -> Plan:
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in EXTRACTION_COLUMNS)
    statement = sql.SQL('SELECT {} FROM events WHERE {} ORDER BY "timestamp" DESC LIMIT {}').format(
        columns, where(query.selection, scope, params), params.add(query.limit, "integer")
    )
    tz = query.selection.timezone

    def shape(rows: list[Row]) -> list[dict[str, Any]]:
        return [
            {name: jsonable(value, tz) for name, value in zip(EXTRACTION_COLUMNS, row, strict=True)}
            for row in rows
        ]

    return Plan(statement, params.values, shape)


def jsonable(value: Any, tz: ZoneInfo) -> Any:
    """A value read from the database, as JSON: instants in RFC 3339 in ``tz``."""
    if isinstance(value, datetime):
        return value.astimezone(tz).isoformat()
    if isinstance(value, list):
        return [jsonable(v, tz) for v in value]
    return value


def _shaper(query: Query, bucket_list: list[timeframes.Bucket]) -> Callable[[list[Row]], Any]:
    tz = query.selection.timezone
    group_names = [p.name for p in query.group_by]
    empty = EMPTY_RESULTS.get(query.analysis)

    def result(value: Any) -> Any:
        return empty if value is None else jsonable(value, tz)

    def groups(rows: list[Row]) -> list[dict[str, Any]]:
        shaped = []
        for row in rows:
            item = {name: jsonable(v, tz) for name, v in zip(group_names, row, strict=False)}
            item["result"] = result(row[len(group_names)])
            shaped.append(item)
        return shaped

    def check_size(rows: list[Row]) -> None:
        if len(rows) > MAX_ROWS:
            raise InvalidRequest(
                "group_by", f"more than {MAX_ROWS} groups: narrow the query with filters"
            )

    if query.interval is None and not group_names:
        return lambda rows: result(rows[0][0])
    if query.interval is None:

        def grouped(rows: list[Row]) -> list[dict[str, Any]]:
            check_size(rows)
            return groups(rows)

        return grouped

    # time_bucket answers each bucket's start as an instant: the bucket is the
    # first one ending after it (robust to clipping and to DST changes).
    ends = [bucket.end.astimezone(UTC) for bucket in bucket_list]

    def series(rows: list[Row]) -> list[dict[str, Any]]:
        check_size(rows)
        by_bucket: dict[int, list[Row]] = {}
        for row in rows:
            index = bisect.bisect_right(ends, row[0])
            if index < len(ends):
                by_bucket.setdefault(index, []).append(row[1:])
        shaped = []
        for index, bucket in enumerate(bucket_list):
            found = by_bucket.get(index, [])
            if group_names:
                value: Any = groups(found)
            else:
                value = result(found[0][0]) if found else empty
            shaped.append(
                {
                    "timeframe": {
                        "start": bucket.start.isoformat(),
                        "end": bucket.end.isoformat(),
                    },
                    "value": value,
                }
            )
        return shaped

    return series
