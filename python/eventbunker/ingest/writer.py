"""Writes spooled records into TimescaleDB, one transaction per batch.

In that transaction: the batch's event ids are claimed (a retried id is
dropped), the rows are COPYed (already encoded for ``COPY ... FROM STDIN``
by the Rust extension), the rollups take them in (storage/rollups.py), the
billed write counters grow by what was stored,
and the spool checkpoint moves past the batch. So a record is stored and
counted exactly once, or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from eventbunker import _native
from eventbunker._native import EVENT_COLUMNS
from eventbunker.ingest.spool import Position
from eventbunker.storage.compaction import compact_closed_chunks
from eventbunker.storage.retention import enforce_retention
from eventbunker.storage.rollups import update_rollups

log = logging.getLogger(__name__)

# Built once from our own column list (no user input reaches this text).
COPY_EVENTS = (
    "COPY events (" + ", ".join(f'"{c}"' for c in EVENT_COLUMNS) + ") FROM STDIN"
).encode()

# Claiming ids with one COPY costs half an INSERT ... ON CONFLICT (3.7 vs 7.2 us
# of PostgreSQL per id, measured for imports); it fails whole on a stored or
# repeated id, and then the batch claims them one by one.
COPY_CLAIMS = b"COPY event_ids (project_id, event_id) FROM STDIN"
CLAIM_EVENT_IDS = (
    "INSERT INTO event_ids (project_id, event_id)"
    " SELECT * FROM unnest(%s::bigint[], %s::text[])"
    " ON CONFLICT DO NOTHING RETURNING project_id, event_id"
)

CounterKey = tuple[int, date]  # (project_id, UTC day of receipt)
EPOCH = date(1970, 1, 1)
# Gives the batch to store, inside its transaction (before anything is stored).
Select = Callable[[psycopg.AsyncConnection[Any]], Awaitable[_native.SpoolBatch]]


@dataclass(slots=True)
class Written:
    """What one batch adds to a (project, day) counter."""

    events: int = 0
    latency_ms_sum: float = 0.0  # receipt to commit, summed over the events
    latency_ms_max: float = 0.0


class EventWriter:
    """One database connection of one worker's drainer (or of a stream writer)."""

    def __init__(
        self,
        conninfo: str,
        shard: int,
        application_name: str = "eventbunker-drainer",
        *,
        rollups: bool = True,
    ) -> None:
        self._conninfo = conninfo
        self._rollups = rollups
        self._shard = shard
        self._application_name = application_name
        self._conn: psycopg.AsyncConnection[Any] | None = None
        # Chunk compaction runs beside the writes, never in their way.
        self._compaction: asyncio.Task[list[str]] | None = None

    async def write_batch(
        self, spool_id: str, batch: _native.SpoolBatch, position: Position
    ) -> int:
        """Store ``batch`` and move ``spool_id``'s checkpoint to ``position``.

        Returns the number of events stored (retried ids are not). Raises
        if the transaction did not commit.
        """

        async def whole(_: psycopg.AsyncConnection[Any]) -> _native.SpoolBatch:
            return batch

        return await self.store(whole, _checkpoint(spool_id, position))

    async def store(self, select: Select, position_sql: str) -> int:
        """One transaction: the batch ``select`` gives (it runs first in the
        transaction: the stream writer leaves redelivered messages out there),
        its event-id claims, COPY, billed counters, and ``position_sql`` (the
        statement recording how far the source got; "" when ``select`` did).

        Returns the number of events stored; raises if it did not commit.
        """
        conn = await self._connection()
        try:
            await conn.execute(b"BEGIN")
            batch = await select(conn)
            claimed = None  # None: every id is new (or there are none)
            if batch.has_event_ids and not await copy_claims(conn, batch.id_rows()):
                claimed = await claim_event_ids(conn, batch.event_ids())
            rows, counters = batch.select(claimed, time.time_ns() // 1000)
            if rows:
                async with conn.cursor() as cur, cur.copy(COPY_EVENTS) as copy:
                    await copy.write(rows)
                if self._rollups:
                    await update_rollups(conn, rows)
            counts = {
                (project_id, EPOCH + timedelta(days=day)): Written(events, latency_sum, latency_max)
                for project_id, day, events, latency_sum, latency_max in counters
            }
            await conn.execute(_counters_position_commit(self._shard, counts, position_sql))
        except psycopg.OperationalError:
            await self.close()  # reconnect on the next batch
            raise
        except BaseException:
            await self._rollback()
            raise
        return sum(w.events for w in counts.values())

    async def checkpoint(self, spool_id: str) -> Position | None:
        conn = await self._connection()
        cur = await conn.execute(
            'SELECT segment, "offset" FROM spool_checkpoints WHERE spool_id = %s', (spool_id,)
        )
        row = await cur.fetchone()
        return Position(int(row[0]), int(row[1])) if row else None

    async def forget_spool(self, spool_id: str) -> None:
        conn = await self._connection()
        await conn.execute("DELETE FROM spool_checkpoints WHERE spool_id = %s", (spool_id,))

    async def prune_event_ids(self, window_s: float) -> None:
        conn = await self._connection()
        await conn.execute(
            "DELETE FROM event_ids WHERE received_at < now() - make_interval(secs => %s)",
            (window_s,),
        )

    async def enforce_retention(self) -> int:
        return await enforce_retention(await self._connection())

    def compact_in_background(self) -> None:
        """Start compacting settled chunks (storage/compaction.py) unless that is
        still running: on a connection of its own, as a task, because rebuilding
        indexes takes seconds that must not hold the writes."""
        if self._compaction is None or self._compaction.done():
            self._compaction = asyncio.create_task(self._compact())

    async def _compact(self) -> list[str]:
        try:
            done = await self._compact_on_own_connection()
        except (psycopg.Error, OSError) as exc:
            log.warning("chunk compaction failed (retried later): %s", exc)
            return []
        if done:
            log.info("compacted the indexes of %s", ", ".join(done))
        return done

    async def _compact_on_own_connection(self) -> list[str]:
        async with await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=5,
            application_name=self._application_name + "-compaction",
            # Never queue for long behind DDL or old transactions: retried in 10 min.
            options="-c lock_timeout=10s",
        ) as conn:
            return await compact_closed_chunks(conn)

    async def close(self) -> None:
        if self._compaction is not None:
            # An interrupted rebuild leaves invalid copies, dropped by the next one.
            self._compaction.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compaction
            self._compaction = None
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None

    async def _rollback(self) -> None:
        try:
            if self._conn is not None and not self._conn.closed:
                await self._conn.execute(b"ROLLBACK")
        except psycopg.Error:
            await self.close()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            # Autocommit: the transaction is spelled out in write_records().
            self._conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=5,
                application_name=self._application_name,
            )
        return self._conn


async def copy_claims(conn: psycopg.AsyncConnection[Any], id_rows: bytes) -> bool:
    """Claim ids with one COPY in a savepoint of the open transaction; False (and
    nothing claimed) if one is stored already or repeats."""
    await conn.execute(b"SAVEPOINT claim")
    try:
        async with conn.cursor() as cur, cur.copy(COPY_CLAIMS) as copy:
            await copy.write(id_rows)
    except psycopg.errors.UniqueViolation:
        await conn.execute(b"ROLLBACK TO SAVEPOINT claim")
        await conn.execute(b"RELEASE SAVEPOINT claim")
        return False
    await conn.execute(b"RELEASE SAVEPOINT claim")
    return True


async def claim_event_ids(
    conn: psycopg.AsyncConnection[Any], pairs: Iterable[tuple[int, str]]
) -> set[tuple[int, str]]:
    """Claim (project_id, event_id) pairs in the open transaction; the ones
    returned were new, the others are stored already (retries)."""
    projects: list[int] = []
    ids: list[str] = []
    for project_id, event_id in pairs:
        projects.append(project_id)
        ids.append(event_id)
    if not ids:
        return set()
    cur = await conn.execute(CLAIM_EVENT_IDS, (projects, ids))
    return {(int(p), str(i)) for p, i in await cur.fetchall()}


def keep_claimed(
    rows: bytes,
    count: int,
    project_id: int,
    event_ids: Sequence[str | None] | None,
    claimed: set[tuple[int, str]],
) -> tuple[bytes, int]:
    """``rows`` without those whose id was not claimed; and how many remain.

    An id is stored by its first occurrence only (it leaves ``claimed``).
    """
    if event_ids is None or not any(i is not None for i in event_ids):
        return rows, count
    kept = [
        row
        # COPY text escapes newlines inside values: one row per line.
        for row, event_id in zip(rows.split(b"\n")[:-1], event_ids, strict=True)
        if event_id is None or _take(claimed, (project_id, event_id))
    ]
    return (b"\n".join(kept) + b"\n" if kept else b""), len(kept)


def count_written(
    counts: dict[CounterKey, Written],
    project_id: int,
    received_at_us: int,
    stored: int,
    now_us: int,
) -> None:
    """Add ``stored`` events received at ``received_at_us`` to their day's counter."""
    day = datetime.fromtimestamp(received_at_us / 1_000_000, UTC).date()
    written = counts.setdefault((project_id, day), Written())
    latency_ms = max(0.0, (now_us - received_at_us) / 1000)
    written.events += stored
    written.latency_ms_sum += latency_ms * stored
    written.latency_ms_max = max(written.latency_ms_max, latency_ms)


def _take(claimed: set[tuple[int, str]], key: tuple[int, str]) -> bool:
    if key in claimed:
        claimed.discard(key)
        return True
    return False


def add_counters(shard: int, counts: dict[CounterKey, Written]) -> str:
    """The statement adding ``counts`` to the billed write counters ("" for none).

    Only integers, ISO dates and finite floats we computed are spelled into it.
    """
    if not counts:
        return ""
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
        " latency_ms_max = greatest(write_counters.latency_ms_max, EXCLUDED.latency_ms_max)"
    )


def _checkpoint(spool_id: str, position: Position) -> str:
    # Only the spool id (our own hex name, checked) and integers are spelled in.
    if not spool_id.replace("-", "").isalnum():
        raise ValueError(f"unexpected spool id {spool_id!r}")
    return (
        'INSERT INTO spool_checkpoints (spool_id, segment, "offset")'
        f" VALUES ('{spool_id}', {position.segment}, {position.offset})"
        " ON CONFLICT (spool_id) DO UPDATE SET segment = EXCLUDED.segment,"
        ' "offset" = EXCLUDED."offset", updated_at = now()'
    )


def _counters_position_commit(
    shard: int, counts: dict[CounterKey, Written], position_sql: str
) -> bytes:
    # One simple query (one round trip): counters, position, COMMIT.
    statements = [add_counters(shard, counts)] if counts else []
    if position_sql:
        statements.append(position_sql)
    statements.append("COMMIT")
    return "; ".join(statements).encode()
