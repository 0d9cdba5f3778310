"""Which event ids of a request were already accepted, to report ``duplicates``.

The drainer is what guarantees an id is stored once (it claims ids in
``event_ids`` in the same transaction as the rows). This makes the answer
exact: once a request is durable in the spool, its ids are claimed in
``event_id_claims``, shared by every worker, node and restart, so a retry
that reaches another worker before the first is drained is still counted.
Which ids were stored or claimed before is asked before the append, the
claim made after it: a drainer or writer may store the request's own events
in the meantime (a scale-out writer often does), and they must not count as
duplicates of themselves. Only requests that carry ids pay those two round
trips; ids this worker accepted recently are known duplicates without them.
If the database cannot answer, the request is still accepted (and
deduplicated by the drainer).
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

# Before the append: the request's ids an earlier request claimed or stored.
EARLIER = (
    "SELECT event_id FROM event_id_claims WHERE project_id = %s AND event_id = ANY(%s)"
    " UNION SELECT event_id FROM event_ids WHERE project_id = %s AND event_id = ANY(%s)"
)
# After it: the ids no concurrent request claimed first.
CLAIM = (
    "INSERT INTO event_id_claims (project_id, event_id)"
    " SELECT DISTINCT %s, unnest(%s::text[])"
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

    async def earlier(self, project_id: int, event_ids: list[str | None]) -> set[str]:
        """Before the append: the ids an earlier request accepted."""
        present = {i for i in event_ids if i is not None}
        known = {i for i in present if (project_id, i) in self._recent}
        unknown = list(present - known)
        if unknown:
            found = await self._ask(EARLIER, (project_id, unknown, project_id, unknown))
            known |= found or set()
        return known

    async def count(self, project_id: int, event_ids: list[str | None], earlier: set[str]) -> int:
        """After the append: claim the ids not ``earlier``; the request's duplicates."""
        present = [i for i in event_ids if i is not None]
        if not present:
            return 0
        unclaimed = list({i for i in present if i not in earlier})
        fresh: set[str] = set()
        if unclaimed:
            claimed = await self._ask(CLAIM, (project_id, unclaimed))
            fresh = set(unclaimed) if claimed is None else claimed
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

    async def _ask(self, statement: str, params: tuple[object, ...]) -> set[str] | None:
        """The event ids ``statement`` returns; None if the database cannot answer."""
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
                    self._conn.execute(statement, params), LOOKUP_TIMEOUT_S
                )
                return {str(row[0]) for row in await cur.fetchall()}
        except (psycopg.Error, OSError, TimeoutError):
            await self.close()
            return None

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None
