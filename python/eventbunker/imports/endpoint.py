"""``POST /v1/events/import``, a raw ASGI route (``routing.RawRouter``), and
``GET /v1/events/import/{import_id}``, a Litestar handler.

The POST is raw because the body is streamed into the import as it arrives
(a framework handler would read it whole first); the work is in ``job.py``.
Write keys may be used from browsers, so both answer with CORS headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import msgspec
import orjson
import psycopg
from litestar import Router, get
from litestar.datastructures import ResponseHeader

from eventbunker import _native
from eventbunker.errors import ErrorCode, Refusal, error_document
from eventbunker.imports.job import (
    BodyStalled,
    ClientGone,
    ImportFailed,
    ImportJob,
    first_line_refused,
    import_progress,
)
from eventbunker.ingest.auth import KEY_DEPENDENCY, ApiKey, KeyCache, key_guard
from eventbunker.ingest.endpoint import (
    Receive,
    Scope,
    Send,
    content_encoding_is_gzip,
    header_map,
    presented_key,
    refuse,
    refuse_unread,
    respond,
)
from eventbunker.ops.metrics import Metrics
from eventbunker.ops.openapi import RetryAfterDocumented, error_answers, key_security
from eventbunker.refusals import exception_handlers

IMPORT_PATH = "/v1/events/import"
# imports.committed_lines is a bigint: a larger line number cannot be stored
# nor answered (it used to answer 500).
MAX_LINE_NUMBER = (1 << 63) - 1
PROGRESS_PREFIX = IMPORT_PATH + "/"
CORS = {"Access-Control-Allow-Origin": "*"}
MEDIA_TYPES = frozenset(
    {
        b"",
        b"application/x-ndjson",
        b"application/ndjson",
        b"application/jsonl",
        b"application/x-jsonlines",
        b"application/json",
        b"text/plain",
    }
)


class LineError(msgspec.Struct):
    line: int
    field: str | None
    message: str


class ImportProgress(msgspec.Struct):
    """A named import's committed progress: resume it from ``committed_lines + 1``."""

    import_id: str
    committed_lines: int
    accepted: int
    rejected: int
    duplicates: int
    errors: Annotated[list[LineError], msgspec.Meta(description="the first problems")]
    created_at: datetime
    updated_at: datetime


class ImportEndpoint:
    def __init__(
        self,
        keys: KeyCache,
        conninfo: str,
        limits: _native.Limits,
        enricher: _native.Enricher | None,
        metrics: Metrics,
        shard: int,
        body_idle_timeout_s: float = 30.0,
        rollups: bool = True,
    ) -> None:
        self._keys = keys
        self._rollups = rollups
        self._body_idle_timeout_s = body_idle_timeout_s
        self._conninfo = conninfo
        self._limits = limits
        self._enricher = enricher
        self._metrics = metrics
        self._shard = shard

    async def start(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /v1/events/import``: stream the body into an import job."""
        headers = header_map(scope)
        try:
            key = await self._keys.require(presented_key(headers), "write")
            await self._import(key, headers, _Body(receive, self._body_idle_timeout_s), send)
        except Refusal as refusal:  # before a byte of the body was read
            self._metrics.reject(refusal.code)
            await refuse_unread(send, receive, refusal, self._body_idle_timeout_s)

    def progress_router(self) -> Router:
        """``GET /v1/events/import/{import_id}``: where an import stands."""

        @get(
            PROGRESS_PREFIX + "{import_id:str}",
            summary="How far a named import has committed",
            guards=[key_guard(self._keys, "write")],
            dependencies=KEY_DEPENDENCY,
            security=key_security("write"),
            responses=error_answers(
                {
                    400: "Not an import id",
                    401: "Missing or unknown key",
                    403: "Key of another kind, or revoked",
                    404: "No such import in the key's project",
                    503: "Storage unavailable; see Retry-After",
                }
            ),
            operation_class=RetryAfterDocumented,
        )
        async def import_progress(key: ApiKey, import_id: str) -> ImportProgress:
            return msgspec.convert(await self._progress(key, import_id), ImportProgress)

        return Router(
            "/",
            route_handlers=[import_progress],
            response_headers=[ResponseHeader(name=name, value=v) for name, v in CORS.items()],
            exception_handlers=exception_handlers(
                ErrorCode.INVALID_REQUEST, CORS, count=self._metrics.reject
            ),
        )

    async def _import(
        self, key: ApiKey, headers: dict[bytes, bytes], body: _Body, send: Send
    ) -> None:
        media_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if media_type not in MEDIA_TYPES:
            raise Refusal(
                ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send NDJSON (application/x-ndjson) or text/plain"
            )
        import_id = headers.get(b"x-import-id")
        first_line = headers.get(b"x-import-first-line", b"1").strip()
        if not first_line.isdigit() or int(first_line) > MAX_LINE_NUMBER:
            raise first_line_refused(
                f"X-Import-First-Line must be a line number from 1 to {MAX_LINE_NUMBER}"
            )
        job = ImportJob(
            self._conninfo,
            key,
            self._limits,
            self._enricher,
            import_id=import_id.decode("latin-1").strip() if import_id is not None else None,
            first_line=int(first_line),
            gzip=content_encoding_is_gzip(headers),
            shard=self._shard,
            rollups=self._rollups,
        )
        try:
            outcome = await job.run(body.chunks())
        except ImportFailed as failed:
            self._metrics.accepted += failed.outcome.accepted
            self._metrics.reject(failed.refusal.code)
            refusal = failed.refusal
            document = error_document(refusal.code, refusal.message, refusal.details)
            answer = orjson.dumps({**document, **failed.outcome.as_dict()})
            if body.done:
                await refuse(send, refusal, answer)
            else:  # refused part-way (import_gap before a byte, bad gzip, storage)
                await refuse_unread(send, body.receive, refusal, self._body_idle_timeout_s, answer)
            return
        self._metrics.accepted += outcome.accepted
        await respond(send, 200, orjson.dumps(outcome.as_dict()))

    async def _progress(self, key: ApiKey, import_id: str) -> dict[str, Any]:
        try:
            async with await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=5
            ) as conn:
                answer = await import_progress(conn, key, import_id)
        except (psycopg.Error, OSError):
            raise Refusal(
                ErrorCode.STORAGE_UNAVAILABLE, "cannot read the import now; retry"
            ) from None
        if answer is None:
            raise Refusal(ErrorCode.IMPORT_NOT_FOUND, f"no import {import_id!r} in this project")
        return answer


class _Body:
    """The request body as it arrives (``chunks``); a pause longer than
    ``idle_timeout_s`` ends it (an import may take hours, but not stop
    sending). ``done``: nothing more of it is to be read (it ended, stalled,
    or the client went away)."""

    def __init__(self, receive: Receive, idle_timeout_s: float) -> None:
        self.receive = receive
        self.done = False
        self._idle_timeout_s = idle_timeout_s

    async def chunks(self) -> AsyncIterator[bytes]:
        while not self.done:
            try:
                async with asyncio.timeout(self._idle_timeout_s):
                    message = await self.receive()
            except TimeoutError:
                self.done = True
                raise BodyStalled(
                    f"no byte of the body came for {self._idle_timeout_s:g} s"
                ) from None
            if message["type"] == "http.disconnect":
                self.done = True
                raise ClientGone
            self.done = not message.get("more_body", False)
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
