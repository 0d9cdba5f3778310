"""Spool → TimescaleDB: copies durable records into ``events``, exactly once.

Each batch is one transaction: claim the batch's event ids (a retried id is
dropped), COPY the rows, add the billed counters and move the spool's
checkpoint. Because the checkpoint commits with the rows, a crash at any
point either stores a record and moves past it, or does neither: replay
from the checkpoint never stores a record twice.

A drainer serves its worker's own spool, and adopts the spools of workers
that died (their lock is free): on start-up that is the replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import shutil
import time
from pathlib import Path

import psycopg

from eventbunker import _native
from eventbunker.ingest.spool import Position, Spool, segment_path, segments, try_lock
from eventbunker.ingest.writer import EventWriter
from eventbunker.ops.metrics import Metrics

log = logging.getLogger(__name__)

ADOPT_EVERY_S = 5.0
PRUNE_IDS_EVERY_S = 600.0
MAX_BACKOFF_S = 2.0


class Drained(enum.Enum):
    """What one drain step did, and so whether the next waits."""

    NOTHING = "nothing was durable"
    CAUGHT_UP = "stored all that was durable"
    MORE_WAITING = "stored a full batch; more is durable"


class Drainer:
    def __init__(
        self,
        spool: Spool,
        writer: EventWriter,
        metrics: Metrics,
        *,
        interval_s: float = 0.05,
        batch_bytes: int = 1 << 20,
        idempotency_window_s: float = 48 * 3600,
    ) -> None:
        self._spool = spool
        self._writer = writer
        self._metrics = metrics
        self._interval_s = interval_s
        self._batch_bytes = batch_bytes
        self._idempotency_window_s = idempotency_window_s
        self._position = Position(1, 0)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.database_ok = True
        self.last_error = ""
        # Receipt time of the oldest record of a dead worker's spool being replayed.
        self._replaying_from_us: int | None = None

    def replay_lag_seconds(self) -> float:
        """Age of the oldest event of an adopted spool still being replayed (0 if none)."""
        since = self._replaying_from_us
        return max(0.0, time.time() - since / 1e6) if since is not None else 0.0

    @property
    def backlog_bytes(self) -> int:
        """Bytes of this worker's spool not yet in the database."""
        return self._spool.backlog_bytes

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Drain what is spooled (bounded by timeout_s), then stop."""
        self._stopping = True
        deadline = time.monotonic() + timeout_s
        while self._position < self._spool.durable and time.monotonic() < deadline:
            self._spool.durable_changed.set()
            await asyncio.sleep(0.02)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._writer.close()
        if self._position >= self._spool.durable:
            # Fully drained: the directory can go (its checkpoint row too).
            self._spool.release()
            shutil.rmtree(self._spool.directory, ignore_errors=True)
            with contextlib.suppress(psycopg.Error, OSError):
                await self._writer.forget_spool(self._spool.name)

    async def _run(self) -> None:
        next_adoption = 0.0
        next_prune = time.monotonic() + 10.0
        backoff = 0.05
        while True:
            try:
                if time.monotonic() >= next_adoption and not self._stopping:
                    await self._adopt_orphans()
                    next_adoption = time.monotonic() + ADOPT_EVERY_S
                if time.monotonic() >= next_prune:
                    await self._writer.prune_event_ids(self._idempotency_window_s)
                    await self._writer.enforce_retention()
                    self._writer.compact_in_background()
                    next_prune = time.monotonic() + PRUNE_IDS_EVERY_S
                drained = await self._drain_own()
            except (psycopg.Error, OSError) as exc:
                self._database_failed(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = 0.05
            self.database_ok = True
            if drained is Drained.NOTHING:
                self._spool.durable_changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._spool.durable_changed.wait(), ADOPT_EVERY_S)
            if drained is not Drained.MORE_WAITING:
                # Let more requests join the next batch: fewer, larger COPYs.
                # Draining again at once after a batch that caught up made
                # transactions of a few dozen single-event records, and
                # PostgreSQL spent 23.5 µs per event on them; waiting here
                # too: 11.3 µs, and 0.64 -> 0.75x the bare handler
                # (benches/ingest_load.py).
                await asyncio.sleep(self._interval_s)

    def _database_failed(self, exc: BaseException) -> None:
        if self.database_ok:
            log.warning("cannot write to the database, spooling (%s)", exc)
        self.database_ok = False
        self.last_error = str(exc)
        self._metrics.flush_failures += 1

    async def _drain_own(self) -> Drained:
        """Copy one batch of this worker's spool."""
        durable = self._spool.durable
        if self._position >= durable:
            return Drained.NOTHING
        batch, position = read_batch(
            self._spool.directory, self._position, durable, self._batch_bytes
        )
        if batch is None and position == self._position:
            return Drained.NOTHING
        if batch is not None:
            await self._write(self._spool.name, batch, position)
        if position.segment != self._position.segment:
            remove_segments_before(self._spool.directory, position.segment)
            self._spool.forget_segments_before(position.segment)
        self._position = position
        self._spool.mark_drained(position)
        return Drained.CAUGHT_UP if position >= durable else Drained.MORE_WAITING

    async def _write(self, spool_id: str, batch: _native.SpoolBatch, position: Position) -> None:
        started = time.perf_counter()
        stored = await self._writer.write_batch(spool_id, batch, position)
        self._metrics.flush_seconds.observe(time.perf_counter() - started)
        self._metrics.batch_sizes.observe(stored)
        self._metrics.accepted += stored

    async def _adopt_orphans(self) -> None:
        """Replay the spools of dead workers (on start-up: the last run's)."""
        for directory in sorted(self._spool.root.iterdir()):
            if directory == self._spool.directory or not directory.is_dir():
                continue
            lock = try_lock(directory)
            if lock is None:
                continue  # its worker is alive
            try:
                await self._replay(directory)
            finally:
                os.close(lock)

    async def _replay(self, directory: Path) -> None:
        spool_id = directory.name
        position = await self._writer.checkpoint(spool_id)
        existing = segments(directory)
        if position is None:
            position = Position(existing[0] if existing else 1, 0)
        log.info("replaying the spool %s from %s", spool_id, position)
        total = 0
        while True:
            batch, next_position = read_batch(directory, position, None, self._batch_bytes)
            if next_position == position:
                break
            if batch is not None:
                self._replaying_from_us = batch.min_received_at_us
                await self._write(spool_id, batch, next_position)
                total += batch.events
            position = next_position
            remove_segments_before(directory, position.segment)
        self._replaying_from_us = None
        log.info("spool %s replayed: %d events", spool_id, total)
        shutil.rmtree(directory, ignore_errors=True)
        await self._writer.forget_spool(spool_id)


def read_batch(
    directory: Path, start: Position, limit: Position | None, max_bytes: int
) -> tuple[_native.SpoolBatch | None, Position]:
    """Complete records from ``start``, up to ``limit`` (None: all there is).

    Returns the records (None if there are none) and the position after them;
    None and the same position when there is nothing more, or a later
    position with None when damage was skipped. Damage (a torn tail, a
    corrupt record) is logged and skipped to the next segment: the records
    before it are kept, the rest of that segment cannot be framed and is lost.
    """
    position = start
    while limit is None or position < limit:
        want = max_bytes
        if limit is not None and limit.segment == position.segment:
            want = limit.offset - position.offset
        data = _read(segment_path(directory, position.segment), position.offset, want)
        batch = _native.decode_spool(data, position.segment, position.offset)
        if batch.records:
            return batch, Position(position.segment, position.offset + batch.end)
        damage = batch.damage or ""
        if batch.stop == "incomplete":
            if batch.needed > len(data) == want == max_bytes:
                # One record larger than a batch: read it whole.
                max_bytes = batch.needed
                continue
            damage = f"torn record of {len(data)} bytes at offset {position.offset}"
        later = [n for n in segments(directory) if n > position.segment]
        if damage:
            log.error("spool %s segment %d damaged: %s", directory.name, position.segment, damage)
        if not later:
            return None, position
        position = Position(later[0], 0)
    return None, position


def _read(path: Path, offset: int, size: int) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(size)
    except FileNotFoundError:
        return b""


def remove_segments_before(directory: Path, segment: int) -> None:
    for number in segments(directory):
        if number < segment:
            with contextlib.suppress(FileNotFoundError):
                segment_path(directory, number).unlink()
