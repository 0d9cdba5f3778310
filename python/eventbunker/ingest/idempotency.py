"""Which event ids of a request were already accepted, to report ``duplicates``.

The drainer is what guarantees an id is stored once (it claims ids in
``event_ids`` in the same transaction as the rows). This makes the answer
exact: once a request is durable in the spool, its ids are claimed in
``event_id_claims``, shared by every worker, node and restart, so a retry
that reaches another worker before the first is drained is still counted.
Only requests that carry ids pay that round trip; ids this worker accepted
recently are known duplicates without one. If the database cannot answer,
the request is still accepted (and deduplicated by the drainer).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from typing import Any

import psycopg

LOOKUP_TIMEOUT_S = 0.5
# Claims outlive the idempotency window of event_ids (24 h at least).
CLAIM_WINDOW_S = 48 * 3600
PRUNE_EVERY_S = 3600.0

# The ids of the request that no worker claimed and no event stored yet.
CLAIM = (
    "WITH ids AS (SELECT DISTINCT unnest(%s::text[]) AS event_id)"
    " INSERT INTO event_id_claims (project_id, event_id)"
    " SELECT %s, ids.event_id FROM ids WHERE NOT EXISTS"
    " (SELECT 1 FROM event_ids e WHERE e.project_id = %s AND e.event_id = ids.event_id)"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)
PRUNE = "DELETE FROM event_id_claims WHERE claimed_at < now() - make_interval(secs => %s)"


class DuplicateCheck:
    def __init__(self, conninfo: str, capacity: int = 100_000) -> None:
        self._conninfo = conninfo
        self._capacity = capacity
        self._recent: OrderedDict[tuple[int, str], None] = OrderedDict()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()
        self._pruned_at = float("-inf")

    async def count(self, project_id: int, event_ids: list[str | None]) -> int:
        present = [i for i in event_ids if i is not None]
        if not present:
            return 0
        unknown = [i for i in present if (project_id, i) not in self._recent]
        fresh = await self._claim(project_id, unknown) if unknown else set()
        duplicates = 0
        for event_id in present:
            if event_id in fresh:
                fresh.discard(event_id)  # a repeat within the request is a duplicate
            else:
                duplicates += 1
        return duplicates

    def remember(self, project_id: int, event_ids: list[str | None]) -> None:
        for event_id in event_ids:
            if event_id is not None:
                self._recent[(project_id, event_id)] = None
        while len(self._recent) > self._capacity:
            self._recent.popitem(last=False)

    async def _claim(self, project_id: int, ids: list[str]) -> set[str]:
        """Claim ``ids``; return those nobody had claimed or stored before."""
        try:
            async with self._lock:
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self._conninfo, autocommit=True, connect_timeout=2
                    )
                if time.monotonic() - self._pruned_at > PRUNE_EVERY_S:
                    self._pruned_at = time.monotonic()
                    await self._conn.execute(PRUNE, (CLAIM_WINDOW_S,))
                cur = await asyncio.wait_for(
                    self._conn.execute(CLAIM, (ids, project_id, project_id)), LOOKUP_TIMEOUT_S
                )
                return {str(row[0]) for row in await cur.fetchall()}
        except (psycopg.Error, OSError, TimeoutError):
            await self.close()
            return set(ids)

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None
