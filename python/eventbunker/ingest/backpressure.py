"""Backpressure: keep the queryable lag bounded instead of letting a backlog grow.

The lag is the age of the oldest acknowledged event not yet in the database.
Past a soft target (a twentieth of ``--max-lag-seconds``: 0.1 s by default) a new request is held
until the drainer catches up: clients with a fixed number of connections (every
SDK, wrk) then send only as fast as events are stored, and the CPU the requests
would have used goes to the drain. A request still held when the lag passes
the bound is refused with 503 ``overloaded`` + Retry-After. During a database
outage nothing is held: the spool absorbs the backlog up to its size limit.

Measured with ``benches/sustained_batches.py`` (32 connections of 100-event
batches on 2 cores): refusing at the bound alone turned 82 % of the requests
into 503s that each still cost a parse of the request, the stored rate fell
to 0.38x ``\\copy``, and the lag swung between 2 and 10 s. Holding from a
quarter of the bound on: 0.78x, lag p99 1.8 s; from a tenth: 0.97x, p99 0.9 s
(2 MiB drain batches); from a twentieth with 1 MiB batches: lag p99 0.7 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from eventbunker.errors import ErrorCode, Refusal

SOFT_TARGET_SHARE = 0.05  # of the bound: where holding starts
MAX_HOLD_SHARE = 0.5  # of the bound: the longest a request is held


class Backpressure:
    def __init__(
        self,
        lag_seconds: Callable[[], float],
        database_ok: Callable[[], bool],
        caught_up: asyncio.Event,
        max_lag_s: float,
    ) -> None:
        """``caught_up`` is set whenever the drain moves forward."""
        self._lag_seconds = lag_seconds
        self._database_ok = database_ok
        self._caught_up = caught_up
        self.max_lag_s = max_lag_s
        self._soft_s = max_lag_s * SOFT_TARGET_SHARE
        self._max_hold_s = max_lag_s * MAX_HOLD_SHARE

    def behind(self) -> bool:
        """True when a new request must wait for the drain (cheap: every request asks)."""
        return self._lag_seconds() > self._soft_s and self._database_ok()

    def shedding(self) -> bool:
        """True while new requests are refused (the lag is past its bound)."""
        return self._lag_seconds() > self.max_lag_s and self._database_ok()

    async def admit(self) -> None:
        """Hold the request while the drain is behind; raise a 503 past the bound."""
        deadline = time.monotonic() + self._max_hold_s
        while self.behind() and not self.shedding():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._caught_up.wait(), remaining)
            except TimeoutError:
                break
        if self.shedding():
            raise Refusal(
                ErrorCode.OVERLOADED,
                f"events are waiting longer than {self.max_lag_s:g} s to be stored;"
                " retry after the Retry-After delay",
            )
