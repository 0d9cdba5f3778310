"""The deadline of a request body, for every request of an event loop at once.

A body not whole within its deadline is answered 408 (see
``endpoint.read_limited_body``). ``asyncio.timeout`` around each read costs
about 5 µs per request on Python 3.11 here (a context manager, a timer handle
pushed into and removed from the loop's heap, a reschedule): 9 % of a
single-event POST in py-spy's samples at saturation. Here a request costs a
dict insert and a pop (~0.2 µs), and one sweep task per loop, every
``SWEEP_INTERVAL_S``, cancels the tasks whose deadline passed. A deadline is
therefore met to within one sweep interval.

The streamed import keeps ``asyncio.timeout``: its deadline is per chunk of a
long body, read by a task of the import job, not by the request's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

SWEEP_INTERVAL_S = 0.1


class BodyTimeout(Exception):
    """The body read was cancelled at its deadline."""


class _Watch:
    """The tasks of one loop that are reading a body, with their deadlines."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.reading: dict[asyncio.Task[object], float] = {}
        self.expired: set[asyncio.Task[object]] = set()
        self.sweeper = loop.create_task(self._sweep(), name="eventbunker-body-deadlines")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = self.loop.time()
            late = [task for task, deadline in self.reading.items() if deadline <= now]
            for task in late:
                del self.reading[task]
                self.expired.add(task)
                task.cancel()


_watch: _Watch | None = None


def _current_watch() -> _Watch:
    global _watch
    loop = asyncio.get_running_loop()
    if _watch is None or _watch.loop is not loop or _watch.sweeper.done():
        _watch = _Watch(loop)
    return _watch


async def within(timeout_s: float, read: Awaitable[T]) -> T:
    """``await read``, or BodyTimeout once ``timeout_s`` has passed."""
    task = asyncio.current_task()
    if task is None:  # not run by a task: nothing could cancel it
        return await read
    watch = _current_watch()
    watch.reading[task] = watch.loop.time() + timeout_s
    try:
        return await read
    except asyncio.CancelledError:
        if task not in watch.expired:
            raise
        watch.expired.discard(task)
        task.uncancel()
        raise BodyTimeout from None
    finally:
        watch.reading.pop(task, None)
        watch.expired.discard(task)
