"""Admin work on the database: the shared sync functions, run in threads.

The admin API and the web app call the same functions as the CLI (plain
psycopg, one transaction each). Admin traffic is small, so each worker keeps
a few connections and runs those calls in worker threads, off the event loop
that serves ingest.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio.to_thread
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

P = ParamSpec("P")
T = TypeVar("T")

POOL_WAIT_S = 5.0


class StorageUnavailable(Exception):
    """The database cannot answer now."""


class AdminStore:
    def __init__(
        self, conninfo: str, size: int = 3, application_name: str = "eventbunker-admin"
    ) -> None:
        self._pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=size,
            open=False,
            timeout=POOL_WAIT_S,
            kwargs={
                "autocommit": True,
                "connect_timeout": 5,
                "application_name": application_name,
                # Timestamps in answers are UTC, whatever the server's zone.
                "options": "-c TimeZone=UTC",
            },
            name="admin",
        )
        self._opened = False

    async def start(self) -> None:
        # Do not wait for the database: requests answer 503 until it is there.
        await anyio.to_thread.run_sync(functools.partial(self._pool.open, wait=False))
        self._opened = True

    async def stop(self) -> None:
        if self._opened:
            await anyio.to_thread.run_sync(self._pool.close)
            self._opened = False

    @asynccontextmanager
    async def lifespan(self, _app: object) -> AsyncIterator[None]:
        """For ``Litestar(lifespan=[...])``: the pool lives as long as the app."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def run(
        self,
        fn: Callable[Concatenate[psycopg.Connection[Any], P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``fn(conn, *args, **kwargs)`` on a pooled connection, in a thread."""

        def call() -> T:
            try:
                with self._pool.connection() as conn:
                    return fn(conn, *args, **kwargs)
            except (PoolTimeout, psycopg.OperationalError) as exc:
                raise StorageUnavailable(str(exc)) from exc

        return await anyio.to_thread.run_sync(call)
