"""Which event ids of a request were already accepted, to report ``duplicates``.

The drainer is what guarantees an id is stored once (it claims ids in the
same transaction as the rows); this only answers the client truthfully for
the common case, a retry: ids this worker accepted recently are remembered
(bounded), others are looked up among the stored ones. If the database
cannot answer, the request is still accepted and deduplicated later.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from typing import Any

import psycopg

LOOKUP_TIMEOUT_S = 0.5


class DuplicateCheck:
    def __init__(self, conninfo: str, capacity: int = 100_000) -> None:
        self._conninfo = conninfo
        self._capacity = capacity
        self._recent: OrderedDict[tuple[int, str], None] = OrderedDict()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    async def count(self, project_id: int, event_ids: list[str | None]) -> int:
        present = [i for i in event_ids if i is not None]
        if not present:
            return 0
        known = {i for i in present if (project_id, i) in self._recent}
        unknown = [i for i in present if i not in known]
        if unknown:
            known |= await self._stored(project_id, unknown)
        duplicates = 0
        seen: set[str] = set()
        for event_id in present:
            if event_id in known or event_id in seen:
                duplicates += 1
            seen.add(event_id)
        return duplicates

    def remember(self, project_id: int, event_ids: list[str | None]) -> None:
        for event_id in event_ids:
            if event_id is not None:
                self._recent[(project_id, event_id)] = None
        while len(self._recent) > self._capacity:
            self._recent.popitem(last=False)

    async def _stored(self, project_id: int, ids: list[str]) -> set[str]:
        try:
            async with self._lock:
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self._conninfo, autocommit=True, connect_timeout=2
                    )
                cur = await asyncio.wait_for(
                    self._conn.execute(
                        "SELECT event_id FROM event_ids WHERE project_id = %s"
                        " AND event_id = ANY(%s)",
                        (project_id, ids),
                    ),
                    LOOKUP_TIMEOUT_S,
                )
                return {str(row[0]) for row in await cur.fetchall()}
        except (psycopg.Error, OSError, TimeoutError):
            await self.close()
            return set()

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None
