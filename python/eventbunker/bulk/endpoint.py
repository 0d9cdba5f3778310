"""``POST /v1/events/import`` and ``GET /v1/events/import/{import_id}``, raw ASGI
routes (``routing.RawRouter``).

Raw because the body is streamed into the import as it arrives (a
framework handler would read it whole first); the work is in ``job.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import psycopg

from eventbunker import _native
from eventbunker.bulk.job import (
    BodyStalled,
    ClientGone,
    ImportFailed,
    ImportJob,
    first_line_refused,
    import_progress,
)
from eventbunker.errors import ErrorCode, Refusal, error_document
from eventbunker.ingest.auth import ApiKey, KeyCache
from eventbunker.ingest.endpoint import (
    Receive,
    Scope,
    Send,
    content_encoding_is_gzip,
    header_map,
    presented_key,
    refuse,
    respond,
)
from eventbunker.ops.metrics import Metrics

IMPORT_PATH = "/v1/events/import"
# imports.committed_lines is a bigint: a larger line number cannot be stored
# nor answered (it used to answer 500).
MAX_LINE_NUMBER = (1 << 63) - 1
PROGRESS_PREFIX = IMPORT_PATH + "/"
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
            await self._import(key, headers, receive, send)
        except Refusal as refusal:
            self._metrics.reject(refusal.code)
            await refuse(send, refusal)

    async def progress(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /v1/events/import/{import_id}``: where an import stands."""
        try:
            key = await self._keys.require(presented_key(header_map(scope)), "write")
            answer = await self._progress(key, scope["path"][len(PROGRESS_PREFIX) :])
        except Refusal as refusal:
            self._metrics.reject(refusal.code)
            await refuse(send, refusal)
            return
        await respond(send, 200, orjson.dumps(answer))

    async def _import(
        self, key: ApiKey, headers: dict[bytes, bytes], receive: Receive, send: Send
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
            outcome = await job.run(_body(receive, self._body_idle_timeout_s))
        except ImportFailed as failed:
            self._metrics.accepted += failed.outcome.accepted
            self._metrics.reject(failed.refusal.code)
            refusal = failed.refusal
            document = error_document(refusal.code, refusal.message, refusal.details)
            await refuse(send, refusal, orjson.dumps({**document, **failed.outcome.as_dict()}))
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


async def _body(receive: Receive, idle_timeout_s: float) -> AsyncIterator[bytes]:
    """The request body as it arrives; a pause longer than ``idle_timeout_s``
    ends it (an import may take hours, but not stop sending)."""
    while True:
        try:
            async with asyncio.timeout(idle_timeout_s):
                message = await receive()
        except TimeoutError:
            raise BodyStalled(f"no byte of the body came for {idle_timeout_s:g} s") from None
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return
