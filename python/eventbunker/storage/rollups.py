"""Live rollups: kept true by the transactions that store and delete events.

Levels of the same table (migration 0011): by dimensions per hour and per
day (``rollups_hour``, ``rollups_day``), and with every dimension NULL per
minute, hour and day (``rollups_minute_all``, ...). Dimensions have no
minute level (migration 0018): at 20 M events over 90 days it held 0.75
rows per event (15 M rows, 4.6 GB of the 7.6 GB of rollups), nearly one
insert per stored event, and sustained batches stored 0.73x as fast with
rollups as without; without it 0.98x. A writer calls :func:`update_rollups`
with the batch's COPY rows inside its transaction: the Rust extension folds
the rows into per-minute groups (a JSON array), and one statement, whose one
parameter is that array, upserts every level (a temporary staging table
filled by COPY cut the drainer's commit rate 3 times on small batches).
A delete goes through :func:`delete_events`, which recomputes, from the
rows that remain, every bucket it touched (min and max cannot be
subtracted).

Each row also holds sketches (migration 0016), for the queries that accept
an approximate answer: HyperLogLog sets of ``distinct_id`` and of
``customer_identifier`` (postgresql-hll) and a t-digest of ``metric_value``
(the tdigest extension). Rust hashes each group's distinct ids as
``hll_hash_text`` does; the statement builds each group's sketches once,
and they merge like the counters: union on upsert, union across rows at
query time.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from eventbunker import _native

# The levels of each tier: by dimensions (""), and with every dimension NULL ("_all").
TIER_LEVELS = {"": ("hour", "day"), "_all": ("minute", "hour", "day")}  # finest first
TABLES = tuple(
    (level, f"rollups_{level}{tier}") for tier, levels in TIER_LEVELS.items() for level in levels
)
KEY = (
    "project_id",
    "event_name",
    "bucket",
    "metric_name",
    "customer_identifier",
    "geo_country",
    "ua_device_type",
    "utm_source",
)
DIMENSIONS = KEY[3:]
_KEY_LIST = ", ".join(KEY)
SKETCHES = ("distinct_ids", "customers", "metric_digest")
# t-digest compression: ~1 % rank error at worst (mid-range), less in the tails.
DIGEST_COMPRESSION = 100
_SKETCH_LIST = ", ".join(SKETCHES)
# The sketches of a set of events (sharing their rollup row).
_SKETCHES_OF_EVENTS = (
    "hll_add_agg(hll_hash_text(distinct_id)), hll_add_agg(hll_hash_text(customer_identifier)),"
    f" tdigest(metric_value, {DIGEST_COMPRESSION})"
)
# The groups' JSON (rust/src/rollup) as rows, each with its sketches.
_GROUPS = (
    # CASE: no subplan run for the (many) groups without ids or metrics.
    "SELECT g.*, CASE WHEN g.distinct_hashes IS NOT NULL THEN"
    " (SELECT hll_add_agg(h::hll_hashval) FROM unnest(g.distinct_hashes) h) END"
    " AS distinct_ids, CASE WHEN g.metric_values IS NOT NULL THEN"
    f" tdigest_add(NULL::tdigest, g.metric_values, {DIGEST_COMPRESSION}) END"
    " AS metric_digest FROM json_to_recordset(%s::json) AS g(bucket timestamptz,"
    " project_id bigint, event_name text, metric_name text, customer_identifier text,"
    " geo_country text, ua_device_type text, utm_source text, events bigint,"
    " metric_count bigint, metric_sum double precision, metric_min double precision,"
    " metric_max double precision, distinct_hashes bigint[],"
    " metric_values double precision[])"
)

# Per connection: created once, emptied by every commit that used it.
_DIRTY = (
    "CREATE TEMP TABLE IF NOT EXISTS rollup_dirty ("
    " project_id bigint, event_name text, minute timestamptz) ON COMMIT DELETE ROWS"
)


def _dimensions(table: str) -> str:
    if table.endswith("_all"):  # metric_name stays: it selects, it is no dimension
        return ", ".join(["metric_name", *(f"NULL::text AS {d}" for d in DIMENSIONS[1:])])
    return ", ".join(DIMENSIONS)


def _upsert(level: str, table: str) -> str:
    # Rows in key order: concurrent writers lock shared rows in one order.
    dims = ", ".join(DIMENSIONS)
    return (
        f"INSERT INTO {table} (bucket, project_id, event_name, {dims}, events,"
        f" metric_count, metric_sum, metric_min, metric_max, {_SKETCH_LIST})"
        f" SELECT time_bucket('1 {level}', bucket) AS b, project_id, event_name,"
        f" {_dimensions(table)},"
        " sum(events), sum(metric_count), sum(metric_sum), min(metric_min), max(metric_max),"
        " hll_union_agg(distinct_ids), hll_add_agg(hll_hash_text(customer_identifier)),"
        " tdigest(metric_digest)"
        f" FROM batch GROUP BY 1, 2, 3, {', '.join(str(i) for i in range(4, 9))}"
        f" ORDER BY project_id, event_name, b, {dims}"
        f" ON CONFLICT ({_KEY_LIST}) DO UPDATE SET"
        f" events = {table}.events + EXCLUDED.events,"
        f" metric_count = {table}.metric_count + EXCLUDED.metric_count,"
        f" metric_sum = coalesce({table}.metric_sum + EXCLUDED.metric_sum,"
        f" {table}.metric_sum, EXCLUDED.metric_sum),"
        f" metric_min = least({table}.metric_min, EXCLUDED.metric_min),"
        f" metric_max = greatest({table}.metric_max, EXCLUDED.metric_max),"
        + ",".join(
            f" {s} = coalesce(hll_union({table}.{s}, EXCLUDED.{s}), {table}.{s}, EXCLUDED.{s})"
            for s in SKETCHES[:2]
        )
        + f", metric_digest = tdigest_union({table}.metric_digest, EXCLUDED.metric_digest)"
    )


# One statement (prepared by psycopg after a few runs): the groups, with
# their sketches (built once: a CTE used more than once is materialised),
# feed one upsert per table.
_UPSERTS = (
    f"WITH batch AS ({_GROUPS}), "
    + ", ".join(f"into_{table} AS ({_upsert(level, table)})" for level, table in TABLES)
    + " SELECT 1"
)


async def update_rollups(conn: psycopg.AsyncConnection[Any], rows: bytes) -> int:
    """Add the events of ``rows`` (COPY text of ``events``, as just stored in
    the open transaction) to every rollup level; returns the number of groups."""
    if not rows:
        return 0
    groups, count = _native.rollup_groups(rows)
    await conn.execute(_UPSERTS, (groups.decode(),))
    return count


def _refresh(level: str, table: str) -> str:
    """Recompute the ``level`` buckets of ``rollup_dirty`` from the events left."""
    dims = ", ".join(DIMENSIONS)
    dirty = (
        f"SELECT DISTINCT project_id, event_name, time_bucket('1 {level}', minute) AS b"
        " FROM rollup_dirty"
    )
    return (
        f"DELETE FROM {table} r USING ({dirty}) d WHERE r.project_id = d.project_id"
        " AND r.event_name = d.event_name AND r.bucket = d.b;"
        f" INSERT INTO {table} (bucket, project_id, event_name, {dims}, events,"
        f" metric_count, metric_sum, metric_min, metric_max, {_SKETCH_LIST})"
        f" SELECT d.b, e.project_id, e.event_name, {_dimensions(table)},"
        " count(*), count(e.metric_value), sum(e.metric_value), min(e.metric_value),"
        f" max(e.metric_value), {_SKETCHES_OF_EVENTS}"
        f" FROM ({dirty}) d JOIN events e ON e.project_id = d.project_id"
        f' AND e.event_name = d.event_name AND e."timestamp" >= d.b'
        f" AND e.\"timestamp\" < d.b + interval '1 {level}'"
        " GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"
    )


_REFRESH = "; ".join(_refresh(level, table) for level, table in TABLES).encode()


async def delete_events(
    cur: psycopg.AsyncCursor[Any], condition: sql.Composable, params: dict[str, Any]
) -> int:
    """``DELETE FROM events WHERE condition`` in the open transaction, with the
    rollups of every touched bucket recomputed; returns the events deleted."""
    await cur.execute(_DIRTY)
    await cur.execute(
        sql.SQL(
            "WITH gone AS (DELETE FROM events WHERE {} RETURNING project_id, event_name,"
            " time_bucket('1 minute', \"timestamp\") AS minute),"
            " dirty AS (INSERT INTO rollup_dirty SELECT DISTINCT * FROM gone)"
            " SELECT count(*) FROM gone"
        ).format(condition),
        params,
    )
    row = await cur.fetchone()
    deleted = int(row[0]) if row else 0
    if deleted:
        await cur.execute(_REFRESH)
    return deleted


def rebuild_statement(project_id: int) -> bytes:
    """One simple-protocol statement (a transaction of its own under autocommit)
    recomputing every rollup of ``project_id`` from its events: for events
    stored by other means than our writers (a test loader, a bench, a repair)."""
    pid = int(project_id)
    dims = ", ".join(DIMENSIONS)
    statements = []
    for level, table in TABLES:
        statements += [
            f"DELETE FROM {table} WHERE project_id = {pid}",
            f"INSERT INTO {table} (bucket, project_id, event_name, {dims}, events,"
            f" metric_count, metric_sum, metric_min, metric_max, {_SKETCH_LIST})"
            f" SELECT time_bucket('1 {level}', \"timestamp\"), project_id, event_name,"
            f" {_dimensions(table)},"
            " count(*), count(metric_value), sum(metric_value), min(metric_value),"
            f" max(metric_value), {_SKETCHES_OF_EVENTS} FROM events WHERE project_id = {pid}"
            " GROUP BY 1, 2, 3, 4, 5, 6, 7, 8",
        ]
    return "; ".join(statements).encode()
