"""``POST /v1/query`` and ``POST /v1/delete``: Litestar handlers over a connection pool.

Each request: refuse browsers (query and delete keys must never live in a
web page, so a request carrying ``Origin`` or ``Sec-Fetch-Mode: cors`` is
refused and no CORS header is ever sent here), authenticate the key through
the worker's :class:`KeyCache`, validate the body, then run one statement
under ``SET LOCAL statement_timeout``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from litestar import MediaType, Request, Response, post
from litestar.handlers import HTTPRouteHandler
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from eventbunker.config import Settings
from eventbunker.errors import ErrorCode, Refusal
from eventbunker.ingest.auth import KeyCache, presented_secret
from eventbunker.query import planner
from eventbunker.query.builder import Scope, delete_condition
from eventbunker.query.request import InvalidRequest, parse_delete, parse_query
from eventbunker.storage.rollups import delete_events

log = logging.getLogger(__name__)

POOL_WAIT_S = 5.0
NO_STORE = {"Cache-Control": "no-store"}

# Per transaction: the time limit; no JIT (its compile time, 100+ ms, costs more
# than it saves on these scans); memory for hash aggregates and sorts, which
# otherwise spill to disk from a few hundred thousand distinct values on.
_SET_LIMITS = (
    "SELECT set_config('statement_timeout', %s, true), set_config('jit', 'off', true),"
    " set_config('work_mem', '64MB', true)"
)


class QueryApi:
    """The query and delete handlers of one worker, and the connection pool they share."""

    def __init__(
        self,
        keys: KeyCache,
        conninfo: str,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._query_timeout_ms = settings.query_timeout_ms
        self._delete_timeout_ms = settings.delete_timeout_ms
        self._pool = _pool(conninfo, settings, "query")
        # Queries may read from a streaming replica; deletes write the primary.
        self._read_pool = (
            _pool(settings.query_database_url, settings, "query-replica")
            if settings.query_database_url
            else self._pool
        )
        self._opened = False
        self.handlers: list[HTTPRouteHandler] = self._make_handlers()

    async def start(self) -> None:
        # Do not wait for the database: requests answer 503 until it is there.
        await self._pool.open(wait=False)
        if self._read_pool is not self._pool:
            await self._read_pool.open(wait=False)
        self._opened = True

    async def stop(self) -> None:
        if self._opened:
            await self._pool.close()
            if self._read_pool is not self._pool:
                await self._read_pool.close()
            self._opened = False

    def _make_handlers(self) -> list[HTTPRouteHandler]:
        @post(
            "/v1/query",
            status_code=200,
            media_type=MediaType.JSON,
            summary="Run an analysis (query key)",
        )
        async def query(request: Request[Any, Any, Any]) -> Response[bytes]:
            return await self._handle(request, "query", self.answer)

        @post(
            "/v1/delete",
            status_code=200,
            media_type=MediaType.JSON,
            summary="Delete events (delete key)",
        )
        async def delete(request: Request[Any, Any, Any]) -> Response[bytes]:
            return await self._handle(request, "delete", self._delete)

        return [query, delete]

    async def _handle(
        self,
        request: Request[Any, Any, Any],
        kind: str,
        run: Callable[[Any, Scope], Awaitable[dict[str, Any]]],
    ) -> Response[bytes]:
        try:
            _refuse_browsers(request)
            secret = presented_secret(
                request.headers.get("x-api-key"), request.headers.get("authorization")
            )
            key = await self._keys.require(secret, kind)
            body = await _json_body(request)
            scope = Scope(key.project_id, key.customer_identifier)
            answer = await run(body, scope)
        except Refusal as refusal:
            return refusal.response(NO_STORE)
        except InvalidRequest as exc:
            return Refusal(ErrorCode.INVALID_QUERY, str(exc), exc.details()).response(NO_STORE)
        return Response(
            orjson.dumps(answer), status_code=200, media_type=MediaType.JSON, headers=NO_STORE
        )

    async def answer(self, body: Any, scope: Scope) -> dict[str, Any]:
        """The answer ``{"result": ...}`` to a query body, seen with ``scope``'s
        rights; raises ``InvalidRequest`` or ``Refusal``. ``POST /v1/query`` and
        the web app's Explore page both answer through this."""
        query = parse_query(body, self._clock())
        plan = planner.plan(query, scope)
        async with self._transaction(self._read_pool, self._query_timeout_ms) as cur:
            await cur.execute(plan.statement, plan.params)
            rows = await cur.fetchall()
        return {"result": plan.shape(rows)}

    async def _delete(self, body: Any, scope: Scope) -> dict[str, Any]:
        delete = parse_delete(body, self._clock())
        condition, params = delete_condition(delete, scope)
        async with self._transaction(self._pool, self._delete_timeout_ms) as cur:
            deleted = await delete_events(cur, condition, params)
        return {"deleted": deleted}

    @contextlib.asynccontextmanager
    async def _transaction(
        self, pool: AsyncConnectionPool, timeout_ms: int
    ) -> AsyncIterator[psycopg.AsyncCursor[Any]]:
        try:
            async with (
                pool.connection() as conn,
                conn.transaction(),
                conn.cursor() as cur,
            ):
                await cur.execute(_SET_LIMITS, (str(timeout_ms),))
                yield cur
        except pg_errors.QueryCanceled:
            raise Refusal(
                ErrorCode.QUERY_TIMEOUT,
                f"the statement ran longer than {timeout_ms} ms: narrow the timeframe or filters",
            ) from None
        except PoolTimeout:
            if pool.get_stats().get("pool_size", 0) == 0:
                code, message = (
                    ErrorCode.STORAGE_UNAVAILABLE,
                    "the database cannot be reached; retry",
                )
            else:
                code, message = ErrorCode.OVERLOADED, "too many queries running; retry"
            raise Refusal(503, code, message) from None
        except psycopg.DataError as exc:
            # A value the database cannot use: a time zone Python knows and this
            # PostgreSQL does not, a stored JSON number beyond double precision...
            raise Refusal(ErrorCode.INVALID_QUERY, str(exc).strip()) from None
        except psycopg.OperationalError as exc:
            log.warning("query failed: %s", exc)
            raise Refusal(
                ErrorCode.STORAGE_UNAVAILABLE,
                "the database cannot answer now; retry",
            ) from None
        except psycopg.Error:
            log.exception("query failed")
            raise Refusal(
                ErrorCode.INTERNAL_ERROR, "the query failed; see the server log"
            ) from None


def _pool(conninfo: str, settings: Settings, name: str) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        conninfo,
        min_size=1,
        max_size=max(1, settings.query_pool_size),
        open=False,
        timeout=POOL_WAIT_S,
        kwargs={"autocommit": True, "connect_timeout": 5, "application_name": "eventbunker"},
        name=name,
    )


def _refuse_browsers(request: Request[Any, Any, Any]) -> None:
    if "origin" in request.headers or request.headers.get("sec-fetch-mode", "").lower() == "cors":
        raise Refusal(
            ErrorCode.BROWSER_REFUSED,
            "query and delete keys are refused from browsers: call this API from a server",
        )


async def _json_body(request: Request[Any, Any, Any]) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Refusal(
            ErrorCode.MALFORMED_JSON,
            f"the body is not valid JSON: {exc}",
            [{"index": None, "field": "body", "message": str(exc)}],
        ) from None
