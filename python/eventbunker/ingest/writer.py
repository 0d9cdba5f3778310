"""Writes one group-commit batch to TimescaleDB.

The rows arrive already encoded for ``COPY ... FROM STDIN`` (text format) by
the Rust extension; the billed write counters are added in the same
transaction, so a committed batch is counted exactly once and a failed one
not at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import date
from typing import Any

import psycopg
from psycopg import sql

from eventbunker._native import EVENT_COLUMNS

COPY_EVENTS = sql.SQL("COPY events ({}) FROM STDIN").format(
    sql.SQL(", ").join(sql.Identifier(c) for c in EVENT_COLUMNS)
)

ADD_TO_COUNTERS = (
    "INSERT INTO write_counters (project_id, day, shard, events)"
    " SELECT p, d, %s, n FROM unnest(%s::bigint[], %s::date[], %s::bigint[]) AS t(p, d, n)"
    " ON CONFLICT (project_id, day, shard)"
    " DO UPDATE SET events = write_counters.events + EXCLUDED.events"
)

CounterKey = tuple[int, date]  # (project_id, UTC day of receipt)


class EventWriter:
    """One database connection, used by one flusher at a time."""

    def __init__(self, conninfo: str, shard: int) -> None:
        self._conninfo = conninfo
        self._shard = shard
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def write(self, chunks: Sequence[bytes], counts: dict[CounterKey, int]) -> None:
        """COPY ``chunks`` and add ``counts`` in one transaction; raise if not committed."""
        conn = await self._connection()
        try:
            async with conn.transaction(), conn.cursor() as cur:
                async with cur.copy(COPY_EVENTS) as copy:
                    await copy.write(b"".join(chunks))
                keys = list(counts)
                await cur.execute(
                    ADD_TO_COUNTERS,
                    (
                        self._shard,
                        [k[0] for k in keys],
                        [k[1] for k in keys],
                        [counts[k] for k in keys],
                    ),
                )
        except psycopg.OperationalError:
            await self.close()  # reconnect on the next batch
            raise

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await psycopg.AsyncConnection.connect(self._conninfo, connect_timeout=5)
        return self._conn
