"""Rollup or raw rows: the planner picks, per query, where it is answered.

A query is covered by the rollups (storage/rollups.py) when everything it
selects, filters and groups on is a rollup column, its analysis is one the
rollups hold exactly (count; sum, avg, min, max of ``metric_value``), and
every time boundary it has (timeframe ends, interval buckets in its zone)
but the end (usually "now") falls on a bucket of a level. Then it reads the
coarsest such level up to the last whole bucket before the end, the finer
levels after it, and the raw events after the last whole bucket of the
finest level (a minute; an hour for dimensions, which have no minute
level: storage/rollups.py): the answer
is the raw answer, because each rollup row lies wholly inside one bucket of
the query. Everything else reads the events as before.

With ``"approximate": true``, count_unique of ``distinct_id`` or
``customer_identifier`` and median/percentile of ``metric_value`` are covered
too, answered from the rollups' sketches (migration 0016), raw tail included
as one-event sketches. Their error, checked by tests/test_sketches.py:
- count_unique (HyperLogLog, 2^11 registers): exact up to ~160 distinct
  values (the sketch keeps the hashes themselves), then a relative standard
  error of 1.04/sqrt(2048) = 2.3 % (within 7 % for 99.7 % of answers);
- median and percentile (t-digest, compression 100): the rank of the answer
  among the raw values is within 1 percentage point of the one asked (far
  closer in the tails: p95, p99), interpolated between centroids.
Other targets of those analyses read raw rows and stay exact.

Sums are of doubles in another order (per minute, then across minutes), as
PostgreSQL's own parallel aggregation does: identical whenever the float
additions are exact (integers, halves, cents below 2^53), otherwise equal
to the last bits of rounding.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from eventbunker.query import timeframes
from eventbunker.query.builder import RAW, Plan, Scope, Segment, Source, build_query
from eventbunker.query.request import Query
from eventbunker.storage.rollups import DIMENSIONS, TIER_LEVELS

ROLLUP_ANALYSES = frozenset({"count", "sum", "avg", "min", "max"})
# The sketch answering an approximate analysis of a target column.
SKETCHES = {
    "count_unique": {"distinct_id": "distinct_ids", "customer_identifier": "customers"},
    "median": {"metric_value": "metric_digest"},
    "percentile": {"metric_value": "metric_digest"},
}
# Columns a rollup row holds one value of (filters and group_by on them).
ROLLUP_COLUMNS = frozenset({"event_name", *DIMENSIONS})
WIDTHS = {"day": timedelta(days=1), "hour": timedelta(hours=1), "minute": timedelta(minutes=1)}
# Per tier, coarsest first (TIER_LEVELS lists them finest first): the fewest rows to read.
LEVELS = {
    tier: tuple((level, WIDTHS[level]) for level in reversed(levels))
    for tier, levels in TIER_LEVELS.items()
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def plan(query: Query, scope: Scope, *, rollups: bool = True) -> Plan:
    """The plan answering ``query``: from a rollup level when one covers it
    (and ``rollups`` allows it), else from the events."""
    source = rollup_source(query, scope.customer_identifier is not None) if rollups else None
    return build_query(query, scope, source or RAW)


def rollup_source(query: Query, customer_scoped: bool = False) -> Source | None:
    """The coarsest rollup level that answers ``query`` exactly (or from its
    sketches, when it asks for an approximate answer), if any: of the
    dimensionless tables when no dimension is used (nor a customer's key)."""
    sketch = None
    column = query.target.column if query.target is not None else None  # None: properties.*
    if query.analysis in ROLLUP_ANALYSES:
        if query.target is not None and column != "metric_value":
            return None
    elif query.approximate and column is not None:
        sketch = SKETCHES.get(query.analysis, {}).get(column)
        if sketch is None:
            return None
    else:
        return None
    selection = query.selection
    columns = [f.property.column for f in selection.filters]
    columns += [p.column for p in query.group_by]
    if any(c not in ROLLUP_COLUMNS for c in columns):
        return None
    tier = "" if customer_scoped or set(columns) & set(DIMENSIONS[1:]) else "_all"
    boundaries: list[datetime] = []
    start = end = None
    if selection.timeframe is not None:
        start, end = selection.timeframe.start, selection.timeframe.end
        boundaries.append(start)
        if query.interval is not None:
            try:
                buckets = timeframes.buckets(
                    selection.timeframe, query.interval, selection.timezone, 100_000
                )
            except timeframes.InvalidTimeframe:
                return None  # the raw path gives the refusal
            boundaries += [b.start for b in buckets]
    levels = LEVELS[tier]
    for index, (_level, width) in enumerate(levels):
        if all(_floor(b, width) == b for b in boundaries):
            return Source(_segments(levels[index:], start, end, tier), sketch)
    return None


def _floor(instant: datetime, width: timedelta) -> datetime:
    return instant - (instant.astimezone(UTC) - EPOCH) % width


def _segments(
    levels: tuple[tuple[str, timedelta], ...],
    start: datetime | None,
    end: datetime | None,
    tier: str,
) -> tuple[Segment, ...]:
    """The first of ``levels`` from ``start``, then each finer one from the last
    whole bucket of the coarser one before ``end``, then raw events (no bound: all time)."""
    if end is None:
        return (Segment(levels[0][0] + tier, start, None),)
    segments = []
    lower = start
    for level, width in levels:
        cut = _floor(end, width)
        if lower is not None and cut < lower:
            cut = lower
        if lower is None or cut > lower:
            segments.append(Segment(level + tier, lower, cut))
        lower = cut
    if lower is None or lower < end:
        segments.append(Segment(None, lower, end))
    return tuple(segments)
