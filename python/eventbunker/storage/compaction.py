"""Closed chunks' indexes rebuilt full, once, in the background.

While a chunk of ``events`` takes events, its B-tree pages fill to about
half: timestamps arrive a little out of order, so inserts land inside each
(project, event name) run rather than at its end, and a page split there
leaves two half-full pages. Measured at 1M imported events
(benches/bytes_per_event.py): the three indexes took 151.4 of the 557.9 bytes
per event, 84.2 once rebuilt (events_project_event_time 84.8 → 43.6,
events_project_time 44.5 → 29.0, events_project_metric_time 22.2 → 11.6):
490.6 bytes per event, 12 % less.
PostgreSQL has no online compaction for that but a rebuild:
once a chunk's time range has ended a day ago (late events are rare by then),
its indexes are set to fillfactor 100 (nothing more is expected in them) and
rebuilt by ``REINDEX TABLE CONCURRENTLY``, which lets reads and writes go on.
``chunk_compactions`` records each chunk done. A late event still goes in; it
splits the page it lands on, as before.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

LOCK_ID = 0x45564E43  # "EVNC": one compaction at a time across workers and nodes
SETTLE = timedelta(days=1)

_PENDING = (
    "SELECT c.chunk_schema, c.chunk_name, format('%%I.%%I', c.chunk_schema, c.chunk_name)"
    " FROM timescaledb_information.chunks c"
    " WHERE c.hypertable_schema = current_schema() AND c.hypertable_name = 'events'"
    " AND c.range_end < now() - %(settle)s AND NOT EXISTS (SELECT 1 FROM chunk_compactions k"
    "  WHERE k.chunk = format('%%I.%%I', c.chunk_schema, c.chunk_name))"
    " ORDER BY c.range_end DESC LIMIT %(limit)s"
)
# What an interrupted REINDEX CONCURRENTLY leaves (a server stopping mid-way):
# invalid copies named *_ccnew / *_ccold, dropped before the next rebuild.
_LEFTOVERS = (
    "SELECT n.nspname, ic.relname FROM pg_index i"
    " JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace"
    " JOIN timescaledb_information.chunks c"
    "  ON i.indrelid = format('%I.%I', c.chunk_schema, c.chunk_name)::regclass"
    " WHERE c.hypertable_schema = current_schema() AND c.hypertable_name = 'events'"
    " AND NOT i.indisvalid AND ic.relname ~ '_cc(new|old)[0-9]*$'"
)
_INDEXES = (
    "SELECT n.nspname, ic.relname FROM pg_index i"
    " JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace"
    " WHERE i.indrelid = %s::regclass"
)


async def compact_closed_chunks(
    conn: psycopg.AsyncConnection[Any], max_chunks: int = 2, settle: timedelta = SETTLE
) -> list[str]:
    """Rebuild the indexes of up to ``max_chunks`` closed chunks not yet compacted
    (newest first: the most read), on an autocommit ``conn`` (REINDEX CONCURRENTLY
    runs outside transactions); the chunks done. Nothing while another process
    compacts."""
    row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_ID,))).fetchone()
    if not row or not row[0]:
        return []
    done: list[str] = []
    try:
        # Chunks dropped since (retention) leave nothing to remember.
        await conn.execute("DELETE FROM chunk_compactions WHERE to_regclass(chunk) IS NULL")
        for index_schema, index in await (await conn.execute(_LEFTOVERS)).fetchall():
            await conn.execute(
                sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                    sql.Identifier(index_schema, index)
                )
            )
        pending = await conn.execute(_PENDING, {"settle": settle, "limit": max_chunks})
        for schema, name, qualified in await pending.fetchall():
            indexes = await (await conn.execute(_INDEXES, (qualified,))).fetchall()
            for index_schema, index in indexes:
                await conn.execute(
                    sql.SQL("ALTER INDEX {} SET (fillfactor = 100)").format(
                        sql.Identifier(index_schema, index)
                    )
                )
            await conn.execute(
                sql.SQL("REINDEX TABLE CONCURRENTLY {}").format(sql.Identifier(schema, name))
            )
            await conn.execute(
                "INSERT INTO chunk_compactions (chunk) VALUES (%s) ON CONFLICT DO NOTHING",
                (qualified,),
            )
            done.append(qualified)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    return done
