"""Rollup or raw rows: the planner picks, per query, where it is answered.

A query is covered by the rollups (storage/rollups.py) when everything it
selects, filters and groups on is a rollup column, its analysis is one the
rollups hold exactly (count; sum, avg, min, max of ``metric_value``), and
every time boundary it has (timeframe ends, interval buckets in its zone)
falls on a bucket of a level. Then it reads the coarsest such level; the
answer is the raw answer, because each rollup row lies wholly inside one
bucket of the query. Everything else reads the events as before.

Sums are of doubles in another order (per minute, then across minutes), as
PostgreSQL's own parallel aggregation does: identical whenever the float
additions are exact (integers, halves, cents below 2^53), otherwise equal
to the last bits of rounding.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from eventbunker.query import timeframes
from eventbunker.query.builder import RAW, Plan, Scope, Source, build_query
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
    source = rollup_source(query) if rollups else None
    return build_query(query, scope, source or RAW)


def rollup_source(query: Query) -> Source | None:
    """The coarsest rollup level that answers ``query`` exactly, if any."""
    if query.analysis not in ROLLUP_ANALYSES:
        return None
    if query.target is not None and query.target.column != "metric_value":
        return None
    selection = query.selection
    columns = [f.property.column for f in selection.filters]
    columns += [p.column for p in query.group_by]
    if any(c not in ROLLUP_COLUMNS for c in columns):
        return None
    boundaries: list[datetime] = []
    if selection.timeframe is not None:
        boundaries += [selection.timeframe.start, selection.timeframe.end]
        if query.interval is not None:
            try:
                buckets = timeframes.buckets(
                    selection.timeframe, query.interval, selection.timezone, 100_000
                )
            except timeframes.InvalidTimeframe:
                return None  # the raw path gives the refusal
            boundaries += [b.start for b in buckets]
    for level, width in LEVELS:
        if all((b.astimezone(UTC) - EPOCH) % width == timedelta(0) for b in boundaries):
            return Source(table=f"rollups_{level}", time_column="bucket")
    return None
