"""Per-project retention: events older than ``projects.retention_days`` go.

Cut-offs are UTC midnights, so every rollup bucket lies wholly on one side.
Where every project has a retention, the chunks older than the smallest
cut-off are dropped whole (``drop_chunks``, no row work) with the rollup
buckets before it. Otherwise a project's old events are deleted one UTC day
per transaction (bounded), through storage.rollups.delete_events so that
its rollups stay true. Billed write counters are not touched.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from eventbunker.storage.rollups import TABLES, delete_events

_CUTOFFS = (
    "SELECT id, date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    " - make_interval(days => retention_days) FROM projects WHERE retention_days IS NOT NULL"
)
_ALL_KEEP_LIMITS = "SELECT bool_and(retention_days IS NOT NULL) FROM projects"


async def enforce_retention(conn: psycopg.AsyncConnection[Any], max_days: int = 3) -> int:
    """Delete what is out of retention (autocommit ``conn``), at most ``max_days``
    UTC days per project a call (the drainer calls it between batches); returns the
    events deleted row by row (dropped chunks are not counted)."""
    cutoffs = [(int(p), c) for p, c in await (await conn.execute(_CUTOFFS)).fetchall()]
    if not cutoffs:
        return 0
    row = await (await conn.execute(_ALL_KEEP_LIMITS)).fetchone()
    if row and row[0]:
        oldest = min(c for _, c in cutoffs)
        async with conn.transaction():
            await conn.execute("SELECT drop_chunks('events', older_than => %s)", (oldest,))
            for _, table in TABLES:
                await conn.execute(
                    sql.SQL("DELETE FROM {} WHERE bucket < %s").format(sql.Identifier(table)),
                    (oldest,),
                )
    deleted = 0
    for project_id, cutoff in cutoffs:
        deleted += await _delete_before(conn, project_id, cutoff, max_days)
    return deleted


async def _delete_before(
    conn: psycopg.AsyncConnection[Any], project_id: int, cutoff: datetime, max_days: int
) -> int:
    deleted = 0
    for _ in range(max_days):
        cur = await conn.execute(
            "SELECT time_bucket('1 day', min(\"timestamp\")) FROM events"
            ' WHERE project_id = %s AND "timestamp" < %s',
            (project_id, cutoff),
        )
        row = await cur.fetchone()
        if row is None or row[0] is None:
            break
        day = row[0]
        async with conn.transaction(), conn.cursor() as cur:
            deleted += await delete_events(
                cur,
                sql.SQL(
                    'project_id = %(p)s AND "timestamp" >= %(d)s'
                    " AND \"timestamp\" < least(%(d)s + interval '1 day', %(c)s)"
                ),
                {"p": project_id, "d": day, "c": cutoff},
            )
    return deleted
