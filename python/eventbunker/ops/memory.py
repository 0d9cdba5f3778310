"""Memory given back after a burst: glibc settings for the workers, and a trim.

A burst of large batches on many connections (2 workers, 128 connections of
1,000-event batches for 10 s) raised the workers' RSS by 226-250 MB, and
30 s later 148-224 MB of it was still held: glibc keeps what is freed. With
both fixes below, 60-116 MB is (the rest: Granian's jemalloc and heap
fragments a trim cannot return). Two causes, two
fixes, measured by tests/test_memory_after_overload.py:

- glibc's mmap threshold rises to the size of any mmapped block freed, so
  after the first 120 KB body every body is carved from the heaps, and one
  heap per thread that allocates (Granian's runtime threads create the
  request bodies): fragmented, never returned. A fixed threshold (64 KiB:
  bodies are mmapped, and unmapped when freed) and two arenas per process
  kept 60 MB of it, not 150-220 (no fewer requests per second).
- ``malloc_trim`` returns the free pages inside the heaps: every
  ``TRIM_EVERY_S`` once the RSS grew ``TRIM_AFTER_BYTES`` above its floor,
  until trims stop giving much back (:class:`MemoryTrimmer`). Kept as our
  own few lines: no maintained library does it, and it is one libc call.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)

# Environment defaults of the worker processes (glibc reads them at start-up).
WORKER_ENVIRONMENT = {
    "MALLOC_ARENA_MAX": "2",
    "MALLOC_MMAP_THRESHOLD_": str(64 << 10),
}
TRIM_EVERY_S = 5.0
TRIM_AFTER_BYTES = 16 << 20
SETTLED_BYTES = 4 << 20


def worker_environment(environ: dict[str, str]) -> dict[str, str]:
    """``WORKER_ENVIRONMENT`` where ``environ`` (the operator's) does not set them."""
    return {name: value for name, value in WORKER_ENVIRONMENT.items() if name not in environ}


def resident_bytes() -> int:
    """This process's RSS."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _glibc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none (musl)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


class MemoryTrimmer:
    """Once the worker's RSS has grown, give the free pages back to the system.

    Trims every ``every_s`` from the time the RSS is ``TRIM_AFTER_BYTES``
    above its floor, until a trim gives back less than ``SETTLED_BYTES``
    (what the worker's own background work takes again within a period): the
    RSS then is the new floor, and an idle worker is not trimmed again."""

    def __init__(
        self,
        trim: Callable[[], object] | None = None,
        resident: Callable[[], int] = resident_bytes,
        every_s: float = TRIM_EVERY_S,
    ) -> None:
        self._trim = trim if trim is not None else _glibc_trim()
        self._resident = resident
        self._every_s = every_s
        self._floor_bytes: int | None = None  # None: not settled yet (trim at the first check)
        self._task: asyncio.Task[None] | None = None
        self.trims = 0

    async def start(self) -> None:
        if self._trim is None:
            log.info("no malloc_trim in this C library: memory is not trimmed")
            return
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def check(self) -> bool:
        """Trim if the RSS grew past its floor, or has not settled since; True if it did."""
        if self._trim is None:
            return False
        held = self._resident()
        if self._floor_bytes is not None and held < self._floor_bytes + TRIM_AFTER_BYTES:
            return False
        await asyncio.to_thread(self._trim)  # a few ms on a large heap: off the event loop
        self.trims += 1
        left = self._resident()
        self._floor_bytes = left if held - left < SETTLED_BYTES else None
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            await self.check()
