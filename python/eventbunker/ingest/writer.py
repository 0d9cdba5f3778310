"""Writes one group-commit batch to TimescaleDB.

The rows arrive already encoded for ``COPY ... FROM STDIN`` (text format) by
the Rust extension; the billed write counters are added in the same
transaction, so a committed batch is counted exactly once and a failed one
not at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg

from eventbunker._native import EVENT_COLUMNS

# Built once from our own column list (no user input reaches this text).
COPY_EVENTS = (
    "COPY events (" + ", ".join(f'"{c}"' for c in EVENT_COLUMNS) + ") FROM STDIN"
).encode()

CounterKey = tuple[int, date]  # (project_id, UTC day of receipt)


@dataclass(slots=True)
class Written:
    """What one flush adds to a (project, day) counter."""

    events: int = 0
    latency_ms_sum: float = 0.0  # receipt to commit, summed over the events
    latency_ms_max: float = 0.0


def _counters_then_commit(shard: int, counts: dict[CounterKey, Written]) -> bytes:
    # Only integers, ISO dates and finite floats we computed ourselves are
    # spelled into this text, so literals are safe and save a round trip.
    values = ", ".join(
        f"({project_id}, '{day.isoformat()}', {shard}, {w.events},"
        f" {w.latency_ms_sum!r}, {w.latency_ms_max!r})"
        for (project_id, day), w in counts.items()
    )
    return (
        "INSERT INTO write_counters"
        " (project_id, day, shard, events, latency_ms_sum, latency_ms_max)"
        f" VALUES {values}"
        " ON CONFLICT (project_id, day, shard) DO UPDATE SET"
        " events = write_counters.events + EXCLUDED.events,"
        " latency_ms_sum = write_counters.latency_ms_sum + EXCLUDED.latency_ms_sum,"
        " latency_ms_max = greatest(write_counters.latency_ms_max, EXCLUDED.latency_ms_max);"
        " COMMIT"
    ).encode()


class EventWriter:
    """One database connection, used by one flusher at a time."""

    def __init__(self, conninfo: str, shard: int) -> None:
        self._conninfo = conninfo
        self._shard = shard
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def write(self, chunks: Sequence[bytes], counts: dict[CounterKey, Written]) -> None:
        """COPY ``chunks`` and add ``counts`` in one transaction; raise if not committed.

        Four round trips: BEGIN, the COPY (two), then the counters and the
        COMMIT sent together as one simple query.
        """
        conn = await self._connection()
        try:
            await conn.execute(b"BEGIN")
            async with conn.cursor() as cur, cur.copy(COPY_EVENTS) as copy:
                await copy.write(b"".join(chunks))
            await conn.execute(_counters_then_commit(self._shard, counts))
        except psycopg.OperationalError:
            await self.close()  # reconnect on the next batch
            raise
        except BaseException:
            await self._rollback()
            raise

    async def _rollback(self) -> None:
        try:
            if self._conn is not None and not self._conn.closed:
                await self._conn.execute(b"ROLLBACK")
        except psycopg.Error:
            await self.close()

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            # Autocommit: the transaction is spelled out in write().
            self._conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=5
            )
        return self._conn
