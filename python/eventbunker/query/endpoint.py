"""``POST /v1/query`` and ``POST /v1/delete``: Litestar handlers over a connection pool.

Each request: refuse browsers (query and delete keys must never live in a
web page, so a request carrying ``Origin`` or ``Sec-Fetch-Mode: cors`` is
refused and no CORS header is ever sent here) and authenticate the key
through the worker's :class:`KeyCache` (a guard, so that both come before
the body); Litestar validates the body against its Struct
(``query/request.py``); then one statement runs under ``SET LOCAL
statement_timeout``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
from litestar import Router, post
from litestar.connection import ASGIConnection
from litestar.datastructures import ResponseHeader
from litestar.openapi import ResponseSpec
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from eventbunker.config import Settings
from eventbunker.errors import ErrorCode, Refusal
from eventbunker.ingest.auth import KEY_DEPENDENCY, ApiKey, KeyCache, key_guard
from eventbunker.ops.openapi import RetryAfterDocumented, error_answers, key_security
from eventbunker.query import planner
from eventbunker.query.builder import Scope, delete_condition
from eventbunker.query.request import (
    DeleteAnswer,
    DeleteBody,
    InvalidRequest,
    QueryAnswer,
    QueryBody,
    parse_delete,
    parse_query,
)
from eventbunker.refusals import exception_handlers, strict_bodies
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


def _errors(kind: str) -> dict[int, ResponseSpec]:
    return error_answers(
        {
            400: "Malformed JSON, or an invalid request; details name the field",
            401: f"Missing or unknown key (send a {kind} key)",
            403: f"Key of another kind than {kind}, revoked, or a browser request"
            " (Origin or Sec-Fetch-Mode: cors): call this API from a server",
            413: "Body over the limit",
            500: "The statement failed; see the server log",
            503: "Overloaded, storage unavailable, or the statement timed out; see Retry-After",
        }
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
        self._rollups = settings.rollups
        self._pool = _pool(conninfo, settings, "query")
        # Queries may read from a streaming replica; deletes write the primary.
        self._read_pool = (
            _pool(settings.query_database_url, settings, "query-replica")
            if settings.query_database_url
            else self._pool
        )
        self._opened = False
        self.router = self._make_router()

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

    def _make_router(self) -> Router:
        common: dict[str, Any] = {
            "status_code": 200,
            "operation_class": RetryAfterDocumented,
            "dependencies": KEY_DEPENDENCY,
        }

        @post(
            "/v1/query",
            summary="Run an analysis (query key)",
            description="Properties are stored column names, `metric_value`, `timestamp` or"
            " `properties.a.b` paths. A key with a customer_identifier sees only that"
            " customer's events.",
            guards=[_refuse_browsers, key_guard(self._keys, "query")],
            security=key_security("query"),
            responses=_errors("query"),
            **common,
        )
        async def query(data: QueryBody, key: ApiKey) -> QueryAnswer:
            with _invalid_query():
                answered = await self.answer(data, _scope(key))
            return QueryAnswer(result=answered["result"])

        @post(
            "/v1/delete",
            summary="Delete events (delete key)",
            description="Deletes the events the selection matches (event_name, metric_name,"
            ' timeframe, filters); an empty selection is refused unless "all": true.',
            guards=[_refuse_browsers, key_guard(self._keys, "delete")],
            security=key_security("delete"),
            responses=_errors("delete"),
            **common,
        )
        async def delete(data: DeleteBody, key: ApiKey) -> DeleteAnswer:
            with _invalid_query():
                selection = parse_delete(data, self._clock())
                condition, params = delete_condition(selection, _scope(key))
            async with self._transaction(self._pool, self._delete_timeout_ms) as cur:
                return DeleteAnswer(deleted=await delete_events(cur, condition, params))

        return Router(
            "/",
            route_handlers=[query, delete],
            before_request=strict_bodies(ErrorCode.INVALID_QUERY),
            response_headers=[ResponseHeader(name="Cache-Control", value="no-store")],
            exception_handlers=exception_handlers(ErrorCode.INVALID_QUERY, NO_STORE),
        )

    async def answer(self, body: QueryBody | dict[str, Any], scope: Scope) -> dict[str, Any]:
        """The answer ``{"result": ...}`` to a query body, seen with ``scope``'s
        rights; raises ``InvalidRequest`` or ``Refusal``. ``POST /v1/query`` and
        the web app's Explore page both answer through this."""
        plan = planner.plan(parse_query(body, self._clock()), scope, rollups=self._rollups)
        async with self._transaction(self._read_pool, self._query_timeout_ms) as cur:
            await cur.execute(plan.statement, plan.params)
            rows = await cur.fetchall()
        return {"result": plan.shape(rows)}

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
            raise Refusal(code, message) from None
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


@contextlib.contextmanager
def _invalid_query() -> Iterator[None]:
    """What the body means, refused with the field it names."""
    try:
        yield
    except InvalidRequest as exc:
        raise Refusal(ErrorCode.INVALID_QUERY, str(exc), exc.details()) from None


def _scope(key: ApiKey) -> Scope:
    return Scope(key.project_id, key.customer_identifier)


def _refuse_browsers(connection: ASGIConnection[Any, Any, Any, Any], _: Any) -> None:
    headers = connection.headers
    if "origin" in headers or headers.get("sec-fetch-mode", "").lower() == "cors":
        raise Refusal(
            ErrorCode.BROWSER_REFUSED,
            "query and delete keys are refused from browsers: call this API from a server",
        )
