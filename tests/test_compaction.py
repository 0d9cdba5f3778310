"""Compaction of closed chunks (storage/compaction.py): their indexes rebuilt
full once their time range has settled, each chunk once, what an interrupted
rebuild leaves dropped, and the answers unchanged."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import query_reference as ref
from conftest import Project
from eventbunker.storage.compaction import LOCK_ID, compact_closed_chunks

OLD_DAY = datetime(2001, 3, 4, tzinfo=UTC)  # a chunk of its own in the shared test database


def compact(database_url: str) -> list[str]:
    async def run() -> list[str]:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await compact_closed_chunks(conn, max_chunks=10_000)

    return asyncio.run(run())


def chunk_of(db: psycopg.Connection[Any], instant: datetime) -> str:
    row = db.execute(
        "SELECT format('%%I.%%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks"
        " WHERE hypertable_name = 'events' AND range_start <= %s AND range_end > %s",
        (instant, instant),
    ).fetchone()
    assert row is not None
    return str(row[0])


def indexes(db: psycopg.Connection[Any], chunk: str) -> dict[str, tuple[int, bool, Any]]:
    """Each index of the chunk: its size, whether valid, its options."""
    rows = db.execute(
        "SELECT c.relname, pg_relation_size(c.oid), i.indisvalid, c.reloptions"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass",
        (chunk,),
    ).fetchall()
    return {str(r[0]): (int(r[1]), bool(r[2]), r[3]) for r in rows}


def answers(db: psycopg.Connection[Any], project_id: int) -> list[Any]:
    return db.execute(
        'SELECT event_name, count(*), min("timestamp"), max("timestamp") FROM events'
        " WHERE project_id = %s GROUP BY 1 ORDER BY 1",
        (project_id,),
    ).fetchall()


def test_closed_chunks_are_compacted_once_and_answers_stay(
    database_url: str, db: psycopg.Connection[Any], project: Project
) -> None:
    rng = random.Random(5)
    now = datetime.now(UTC)
    # Out-of-order times inside the day, as clients send them: half-full index pages.
    old: list[dict[str, Any]] = [
        {
            "timestamp": OLD_DAY + timedelta(seconds=rng.uniform(0, 86_399)),
            "event_name": rng.choice(("view", "click", "buy", "api")),
        }
        for _ in range(20_000)
    ]
    for event in old:
        if event["event_name"] == "api":
            event.update(metric_name="latency_ms", metric_value=rng.uniform(1, 100))
    ref.load(db, project.id, old)
    ref.load(db, project.id, [{"timestamp": now, "event_name": "view"}])
    old_chunk, open_chunk = chunk_of(db, OLD_DAY), chunk_of(db, now)
    before = indexes(db, old_chunk)
    expected = answers(db, project.id)
    # What a REINDEX CONCURRENTLY cut short leaves: an invalid *_ccnew index.
    leftover = old_chunk.split(".")[1] + "_leftover_ccnew"
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {leftover} ON {old_chunk} (project_id)")
    assert indexes(db, old_chunk)[leftover][1] is False

    # Another process compacting: nothing is done here.
    with psycopg.connect(database_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        assert compact(database_url) == []
        other.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))

    done = compact(database_url)
    assert old_chunk in done and open_chunk not in done
    after = indexes(db, old_chunk)
    assert leftover not in after
    assert set(after) == set(before)
    for name, (size, valid, options) in after.items():
        assert valid and options == ["fillfactor=100"], name
        assert size < before[name][0], (name, size, before[name][0])
    assert all(options is None for _, _, options in indexes(db, open_chunk).values())
    row = db.execute("SELECT 1 FROM chunk_compactions WHERE chunk = %s", (old_chunk,))
    assert row.fetchone() == (1,)
    assert answers(db, project.id) == expected
    # Once only; a late event still goes in.
    assert old_chunk not in compact(database_url)
    ref.load(db, project.id, [{"timestamp": OLD_DAY, "event_name": "late"}])
    assert {r[0]: r[1] for r in answers(db, project.id)}["late"] == 1
