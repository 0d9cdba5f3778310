"""Refused ingest requests per project, UTC day and reason, for usage reports.

Counted in memory and added to ``rejected_counters`` once a second, off the
request path: a refused request costs no database write of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

import psycopg

log = logging.getLogger(__name__)

ADD_REJECTED = (
    "INSERT INTO rejected_counters (project_id, day, reason, shard, requests)"
    " SELECT p, d, r, %s, n FROM unnest(%s::bigint[], %s::date[], %s::text[], %s::bigint[])"
    " AS t(p, d, r, n)"
    " ON CONFLICT (project_id, day, reason, shard)"
    " DO UPDATE SET requests = rejected_counters.requests + EXCLUDED.requests"
)

RejectionKey = tuple[int, date, str]


class RejectionCounter:
    def __init__(self, conninfo: str, shard: int, interval_s: float = 1.0) -> None:
        self._conninfo = conninfo
        self._shard = shard
        self._interval_s = interval_s
        self._pending: Counter[RejectionKey] = Counter()
        self._task: asyncio.Task[None] | None = None

    def add(self, project_id: int, reason: str) -> None:
        day = datetime.fromtimestamp(time.time(), UTC).date()
        self._pending[(project_id, day, reason)] += 1

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(psycopg.Error, OSError):
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        taken, self._pending = self._pending, Counter()
        keys = list(taken)
        try:
            conn: psycopg.AsyncConnection[Any]
            async with await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=5
            ) as conn:
                await conn.execute(
                    ADD_REJECTED,
                    (
                        self._shard,
                        [k[0] for k in keys],
                        [k[1] for k in keys],
                        [k[2] for k in keys],
                        [taken[k] for k in keys],
                    ),
                )
        except BaseException:
            self._pending.update(taken)  # keep them for the next try
            raise

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.flush()
            except (psycopg.Error, OSError) as exc:
                log.warning("could not record rejected requests (will retry): %s", exc)
