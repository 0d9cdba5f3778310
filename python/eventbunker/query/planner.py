"""Rollup or raw rows: the planner picks, per query, where it is answered.

A query is covered by the rollups (storage/rollups.py) when everything it
selects, filters and groups on is a rollup column, its analysis is one the
rollups hold exactly (count; sum, avg, min, max of ``metric_value``), and
every time boundary it has (timeframe ends, interval buckets in its zone)
but the end (usually "now") falls on a bucket of a level. Then it reads the
coarsest such level up to the last whole bucket before the end, the finer
levels after it, and the raw events of the last partial minute: the answer
is the raw answer, because each rollup row lies wholly inside one bucket of
the query. Everything else reads the events as before.

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
from eventbunker.storage.rollups import DIMENSIONS

ROLLUP_ANALYSES = frozenset({"count", "sum", "avg", "min", "max"})
# Columns a rollup row holds one value of (filters and group_by on them).
ROLLUP_COLUMNS = frozenset({"event_name", *DIMENSIONS})
# Coarsest first: the fewest rows to read.
LEVELS = (
    ("day", timedelta(days=1)),
    ("hour", timedelta(hours=1)),
    ("minute", timedelta(minutes=1)),
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def plan(query: Query, scope: Scope, *, rollups: bool = True) -> Plan:
    """The plan answering ``query``: from a rollup level when one covers it
    (and ``rollups`` allows it), else from the events."""
    source = rollup_source(query, scope.customer_identifier is not None) if rollups else None
    return build_query(query, scope, source or RAW)


def rollup_source(query: Query, customer_scoped: bool = False) -> Source | None:
    """The coarsest rollup level that answers ``query`` exactly, if any: of the
    dimensionless tables when no dimension is used (nor a customer's key)."""
    if query.analysis not in ROLLUP_ANALYSES:
        return None
    if query.target is not None and query.target.column != "metric_value":
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
    for index, (_level, width) in enumerate(LEVELS):
        if all(_floor(b, width) == b for b in boundaries):
            return Source(_segments(index, start, end, tier))
    return None


def _floor(instant: datetime, width: timedelta) -> datetime:
    return instant - (instant.astimezone(UTC) - EPOCH) % width


def _segments(
    first: int, start: datetime | None, end: datetime | None, tier: str
) -> tuple[Segment, ...]:
    """Level ``first`` from ``start``, then each finer level from the last whole
    bucket of the coarser one before ``end``, then raw events (no bound: all time)."""
    if end is None:
        return (Segment(LEVELS[first][0] + tier, start, None),)
    segments = []
    lower = start
    for level, width in LEVELS[first:]:
        cut = _floor(end, width)
        if lower is not None and cut < lower:
            cut = lower
        if lower is None or cut > lower:
            segments.append(Segment(level + tier, lower, cut))
        lower = cut
    if lower is None or lower < end:
        segments.append(Segment(None, lower, end))
    return tuple(segments)
