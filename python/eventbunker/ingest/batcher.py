"""Group commit: many requests, one COPY, one transaction, one fsync.

Requests queue their prepared rows and wait. Each flusher takes everything
waiting (up to ``batch_max_rows``), writes it in one transaction and only
then releases the waiting requests, which answer ``202``. While one flusher
waits for its commit the others gather the next batch, so the batch size
grows with the load instead of the latency. The queue is bounded: past
``queue_max_rows`` a request is refused at once (``503``) rather than left
to wait without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import psycopg

from eventbunker.ingest.writer import CounterKey, EventWriter, Written
from eventbunker.ops.metrics import Metrics

log = logging.getLogger(__name__)


class Overloaded(Exception):
    """The queue is full: answer 503 and let the client retry."""


class StorageUnavailable(Exception):
    """The batch holding the request could not be committed."""


@dataclass(slots=True)
class _Pending:
    rows: bytes
    count: int
    project_id: int
    received_at_us: int
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommitter:
    def __init__(
        self,
        writer_factory: Callable[[int], EventWriter],
        metrics: Metrics,
        *,
        flushers: int = 2,
        batch_max_rows: int = 5000,
        batch_max_wait_s: float = 0.0,
        queue_max_rows: int = 50_000,
    ) -> None:
        self._writers = [writer_factory(i) for i in range(flushers)]
        self._metrics = metrics
        self._batch_max_rows = batch_max_rows
        self._batch_max_wait_s = batch_max_wait_s
        self._queue_max_rows = queue_max_rows
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._flush_loop(w)) for w in self._writers]

    async def stop(self) -> None:
        """Flush what is queued, then stop the flushers."""
        while self._queue:
            self._wakeup.set()
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for writer in self._writers:
            await writer.close()

    async def submit(self, rows: bytes, count: int, project_id: int, received_at_us: int) -> None:
        """Return once the rows are committed; raise Overloaded or StorageUnavailable."""
        if self._queued_rows + count > self._queue_max_rows:
            raise Overloaded
        pending = _Pending(rows, count, project_id, received_at_us)
        self._queue.append(pending)
        self._queued_rows += count
        self._metrics.queue_events = self._queued_rows
        self._wakeup.set()
        await pending.done

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        rows = 0
        while self._queue and (not batch or rows + self._queue[0].count <= self._batch_max_rows):
            pending = self._queue.popleft()
            batch.append(pending)
            rows += pending.count
        self._queued_rows -= rows
        self._metrics.queue_events = self._queued_rows
        return batch

    async def _flush_loop(self, writer: EventWriter) -> None:
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self._batch_max_wait_s > 0 and self._queued_rows < self._batch_max_rows:
                await asyncio.sleep(self._batch_max_wait_s)
            batch = self._take_batch()
            if batch:
                await self._flush(writer, batch)

    async def _flush(self, writer: EventWriter, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            await writer.write([p.rows for p in batch], _counts(batch))
        except psycopg.OperationalError as exc:
            # The database is unreachable: the whole batch fails, nothing of it is stored.
            self._metrics.flush_failures += 1
            log.warning("flush of %d requests failed: %s", len(batch), exc)
            _fail(batch, StorageUnavailable(str(exc)))
            return
        except psycopg.Error as exc:
            # The data was refused (it should never be: the rows are sanitised
            # in Rust). Write each request alone so one cannot fail the others.
            self._metrics.flush_failures += 1
            log.error("batch refused, retrying its %d requests one by one: %s", len(batch), exc)
            await self._flush_one_by_one(writer, batch)
            return
        self._metrics.flush_seconds.observe(time.perf_counter() - started)
        _succeed(batch, self._metrics)

    async def _flush_one_by_one(self, writer: EventWriter, batch: list[_Pending]) -> None:
        for pending in batch:
            try:
                await writer.write([pending.rows], _counts([pending]))
            except psycopg.Error as exc:
                log.error("request of %d events refused by the database: %s", pending.count, exc)
                _fail([pending], StorageUnavailable(str(exc)))
            else:
                _succeed([pending], self._metrics)


def _counts(batch: list[_Pending]) -> dict[CounterKey, Written]:
    """Billed writes and receipt-to-commit latency per (project, UTC day of receipt)."""
    now_us = time.time_ns() // 1000
    counts: dict[CounterKey, Written] = {}
    for pending in batch:
        day = _utc_day(pending.received_at_us)
        written = counts.setdefault((pending.project_id, day), Written())
        latency_ms = max(0.0, (now_us - pending.received_at_us) / 1000)
        written.events += pending.count
        written.latency_ms_sum += latency_ms * pending.count
        written.latency_ms_max = max(written.latency_ms_max, latency_ms)
    return counts


def _utc_day(epoch_us: int) -> date:
    return datetime.fromtimestamp(epoch_us / 1_000_000, UTC).date()


def _succeed(batch: list[_Pending], metrics: Metrics) -> None:
    events = 0
    for pending in batch:
        events += pending.count
        if not pending.done.done():
            pending.done.set_result(None)
    metrics.accepted += events
    metrics.batch_sizes.observe(events)


def _fail(batch: list[_Pending], error: Exception) -> None:
    for pending in batch:
        if not pending.done.done():
            pending.done.set_exception(error)
