"""API key authentication through a per-worker cache.

Keys are looked up by the SHA-256 of the secret. Known keys stay cached and
are re-checked against the database every ``refresh_interval`` (250 ms by
default) in one query, so a revoked or deleted key is refused by every
worker within that interval; the same query brings each key's project rate
limit (ingest/rate_limits.py), so a change made in the admin API applies
within that interval too, with no query on the request path. Unknown and
revoked keys are cached briefly
(bounded) so that a flood of bad keys does not become a flood of queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.types import Guard

from eventbunker.admin.keys import hash_secret
from eventbunker.errors import ErrorCode, Refusal

log = logging.getLogger(__name__)

NEGATIVE_TTL_S = 1.0
NEGATIVE_MAX_ENTRIES = 10_000
# [admin: last_used_at] A key's ``last_used_at`` is written by the refresh
# loop, at most once a minute per key and worker: never on the request path.
LAST_USED_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    project_id: int
    kind: str
    customer_identifier: str | None
    # The project's own rate limit; None: the server's (--rate-limit-*).
    rate_limit_events_per_second: float | None = None
    rate_limit_burst: int | None = None


def presented_secret(api_key: str | None, authorization: str | None) -> str | None:
    """The key a request presents: ``X-Api-Key``, else ``Authorization: Bearer``."""
    if api_key is None and authorization and authorization[:7].lower() == "bearer ":
        api_key = authorization[7:].strip()
    return api_key or None


def connection_secret(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """``presented_secret`` of a Litestar request (project keys and admin keys alike)."""
    headers = connection.headers
    return presented_secret(headers.get("x-api-key"), headers.get("authorization"))


class KeyStatus:
    UNKNOWN = "unknown"
    REVOKED = "revoked"


class KeyCache:
    def __init__(
        self,
        conninfo: str,
        refresh_interval_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._conninfo = conninfo
        self._refresh_interval_s = refresh_interval_s
        self._clock = clock
        self._known: dict[bytes, ApiKey] = {}
        # hash -> (KeyStatus, expiry); insertion-ordered for eviction.
        self._refused: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Future[ApiKey | str]] = {}
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        # [admin: last_used_at] ids of keys used since their last write, and when that was.
        self._used: set[int] = set()
        self._used_written_at: dict[int, float] = {}
        # Whether the last round trip of the refresh loop reached the database.
        self.database_ok = True

    async def start(self) -> None:
        self._task = asyncio.create_task(self._refresh_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            await self._conn.close()

    async def authenticate(self, secret: str) -> ApiKey | str:
        """The key for ``secret``, or a ``KeyStatus`` saying why there is none."""
        digest = hash_secret(secret)
        key = self._known.get(digest)
        if key is not None:
            self._used.add(key.id)  # [admin: last_used_at]
            return key
        refused = self._refused.get(digest)
        if refused is not None:
            if refused[1] > self._clock():
                return refused[0]
            del self._refused[digest]
        # Concurrent requests with the same new key share one lookup.
        pending = self._inflight.get(digest)
        if pending is not None:
            return await pending
        future: asyncio.Future[ApiKey | str] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            result = await self._lookup(digest)
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: the waiters re-raise it themselves
            raise
        finally:
            del self._inflight[digest]

    async def require(self, secret: str | None, kind: str) -> ApiKey:
        """The valid key of ``kind`` for ``secret``, or a Refusal saying why not."""
        if not secret:
            raise Refusal(
                ErrorCode.MISSING_KEY, f"send a {kind} key in X-Api-Key or Authorization: Bearer"
            )
        try:
            result = await self.authenticate(secret)
        except psycopg.Error:
            raise Refusal(
                ErrorCode.STORAGE_UNAVAILABLE, "cannot check the key now; retry"
            ) from None
        if result == KeyStatus.UNKNOWN:
            raise Refusal(ErrorCode.UNKNOWN_KEY, "this key does not exist")
        if result == KeyStatus.REVOKED:
            raise Refusal(ErrorCode.REVOKED_KEY, "this key was revoked")
        assert isinstance(result, ApiKey)
        if result.kind != kind:
            raise Refusal(
                ErrorCode.WRONG_KEY_KIND, f"this needs a {kind} key, not a {result.kind} key"
            )
        return result

    async def ping(self) -> None:
        """Raise unless the database answers."""
        async with self._lock:
            conn = await self._connection()
            try:
                await conn.execute("SELECT 1")
            except psycopg.Error:
                await self._drop_connection()
                raise

    async def _lookup(self, digest: bytes) -> ApiKey | str:
        async with self._lock:
            conn = await self._connection()
            try:
                cur = await conn.execute(
                    "SELECT k.id, k.project_id, k.kind, k.customer_identifier,"
                    " k.revoked_at IS NOT NULL,"
                    " p.rate_limit_events_per_second, p.rate_limit_burst"
                    " FROM api_keys k JOIN projects p ON p.id = k.project_id"
                    " WHERE k.key_hash = %s",
                    (digest,),
                )
                row = await cur.fetchone()
            except psycopg.Error:
                await self._drop_connection()
                raise
        if row is None or row[4]:
            status = KeyStatus.UNKNOWN if row is None else KeyStatus.REVOKED
            self._refused[digest] = (status, self._clock() + NEGATIVE_TTL_S)
            while len(self._refused) > NEGATIVE_MAX_ENTRIES:
                self._refused.popitem(last=False)
            return status
        key = ApiKey(
            id=row[0],
            project_id=row[1],
            kind=row[2],
            customer_identifier=row[3],
            rate_limit_events_per_second=row[5],
            rate_limit_burst=row[6],
        )
        self._known[digest] = key
        self._used.add(key.id)  # [admin: last_used_at]
        return key

    async def refresh(self) -> None:
        """Drop every cached key that was revoked or deleted since it was cached,
        and take up the rate limits of the others' projects."""
        if not self._known:
            return
        hashes = list(self._known)
        async with self._lock:
            conn = await self._connection()
            try:
                cur = await conn.execute(
                    "SELECT k.key_hash, p.rate_limit_events_per_second, p.rate_limit_burst"
                    " FROM api_keys k JOIN projects p ON p.id = k.project_id"
                    " WHERE k.key_hash = ANY(%s) AND k.revoked_at IS NULL",
                    (hashes,),
                )
                valid = {bytes(row[0]): (row[1], row[2]) for row in await cur.fetchall()}
            except psycopg.Error:
                await self._drop_connection()
                raise
        for digest in hashes:
            limit = valid.get(digest)
            key = self._known.get(digest)
            if limit is None:
                self._known.pop(digest, None)
            elif key is not None and limit != (
                key.rate_limit_events_per_second,
                key.rate_limit_burst,
            ):
                self._known[digest] = replace(
                    key, rate_limit_events_per_second=limit[0], rate_limit_burst=limit[1]
                )
        await self._write_last_used()

    async def _write_last_used(self) -> None:
        """[admin: last_used_at] One UPDATE for the keys used and not written for a minute."""
        now = self._clock()
        written_at = self._used_written_at
        due = [
            key_id
            for key_id in self._used
            if key_id not in written_at or now - written_at[key_id] >= LAST_USED_INTERVAL_S
        ]
        if not due:
            return
        async with self._lock:
            conn = await self._connection()
            try:
                await conn.execute(
                    "UPDATE api_keys SET last_used_at = now() WHERE id = ANY(%s)", (due,)
                )
            except psycopg.Error:
                await self._drop_connection()
                raise
        for key_id in due:
            self._used.discard(key_id)
            self._used_written_at[key_id] = now

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_interval_s)
            try:
                await (self.refresh() if self._known else self.ping())
                self.database_ok = True
            except psycopg.Error as exc:
                self.database_ok = False
                log.warning("key refresh failed (will retry): %s", exc)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=5
            )
        return self._conn

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None


# --- For the Litestar handlers (query, delete, import progress) ---------------

KEY_STATE = "api_key"  # where ``key_guard`` leaves the key in the request's state


def key_guard(keys: KeyCache, kind: str) -> Guard:
    """A guard (it runs before the body is read): the request presents a valid
    ``kind`` key, which handlers then take as their ``key`` argument
    (``KEY_DEPENDENCY``)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: Any) -> None:
        connection.state[KEY_STATE] = await keys.require(connection_secret(connection), kind)

    return guard


def _guarded_key(request: Request[Any, Any, Any]) -> ApiKey:
    key: ApiKey = request.state[KEY_STATE]
    return key


KEY_DEPENDENCY = {"key": Provide(_guarded_key, sync_to_thread=False)}
