"""One bulk import: a body stream → chunks of lines → Rust → COPY, in batches.

Three stages run at once so that TimescaleDB never waits on us: the body is
read and cut into chunks of whole lines; each chunk is prepared by Rust in a
thread (it releases the GIL); the writer streams the rows into a COPY and
commits every ``BATCH_BYTES``. Each commit carries the batch's event-id
claims, its billed and rejected counters and, for a named import, how far
the import got: a re-sent import skips exactly the lines already stored.
Bounded queues between the stages keep memory flat for any body size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from eventbunker import _native
from eventbunker.config import Settings
from eventbunker.errors import ErrorCode, Refusal, field_detail
from eventbunker.imports.body import BodyError, GzipStream, LineChunker, LongLine, skip_lines
from eventbunker.ingest.auth import ApiKey, KeyCache
from eventbunker.ingest.enrichment import build_enricher
from eventbunker.ingest.pipeline import COUNTER_SHARDS, limits_of
from eventbunker.ingest.rejections import ADD_REJECTED
from eventbunker.ingest.writer import (
    COPY_EVENTS,
    CounterKey,
    Written,
    add_counters,
    copy_claims,
    count_written,
    keep_claimed,
)
from eventbunker.storage.rollups import update_rollups

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # lines handed to Rust at once
BATCH_BYTES = 32 << 20  # rows per transaction
BATCH_SECONDS = 1.0  # ...or less, when the body trickles in
QUEUE_DEPTH = 4  # prepared chunks waiting for the writer
MAX_ERRORS = 100
IMPORT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

GET_PROGRESS = (
    "SELECT import_id, committed_lines, accepted, rejected, duplicates, errors,"
    " created_at, updated_at FROM imports WHERE project_id = %s AND import_id = %s"
    # A customer-scoped key sees its customer's imports only; an unscoped key all.
    " AND (%s::text IS NULL OR customer_identifier = %s)"
)
# An import claims its event ids with one COPY (writer.copy_claims); only when
# an id is there already (a re-run) or repeats does it claim them one by one.
CLAIM_IDS = (
    "INSERT INTO event_ids (project_id, event_id) SELECT %s, unnest(%s::text[])"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)
# Each claim COPY is a subtransaction; PostgreSQL tracks 64 per transaction
# cheaply, more slow down every snapshot of other sessions.
MAX_CLAIMS_PER_BATCH = 48
MOVE_PROGRESS = (
    "UPDATE imports SET committed_lines = %s, accepted = accepted + %s,"
    " rejected = rejected + %s, duplicates = duplicates + %s, errors = errors || %s::jsonb,"
    " updated_at = now()"
    " WHERE project_id = %s AND import_id = %s AND committed_lines = %s"
)


class ClientGone(Exception):
    """The client disconnected before the end of the body."""


class BodyStalled(ClientGone):
    """No byte of the body came for the idle bound: the client is stuck."""


@dataclass(slots=True)
class ImportOutcome:
    """What an import request did; committed work only."""

    import_id: str | None
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    skipped: int = 0  # lines already committed by an earlier run of the import
    lines: int = 0  # lines of this body committed or skipped, blank ones too
    committed_lines: int = 0  # the import's last committed line number
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
            "lines": self.lines,
            "errors": self.errors,
            "import_id": self.import_id,
            "committed_lines": self.committed_lines,
        }


class ImportFailed(Exception):
    """The import stopped; ``outcome`` says what was committed before."""

    def __init__(self, refusal: Refusal, outcome: ImportOutcome) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal
        self.outcome = outcome


@dataclass(slots=True, kw_only=True)
class _Chunk:
    """One prepared chunk of lines, numbered ``first_line``..``last_line``."""

    first_line: int
    last_line: int
    skipped: int = 0  # lines an earlier run committed, at the start
    rows: bytes = b""
    count: int = 0
    event_ids: list[str | None] | None = None  # None: no row has an id
    id_rows: bytes = b""  # COPY rows (project_id, event_id) of the rows with an id
    rejected: int = 0
    rejected_by_code: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    received_at_us: int = 0


@dataclass(slots=True)
class _End:
    failure: Refusal | None = None


def check_import_id(import_id: str | None) -> None:
    if import_id is not None and not IMPORT_ID.fullmatch(import_id):
        raise Refusal(
            ErrorCode.INVALID_IMPORT_ID,
            "X-Import-Id must be 1 to 128 characters of letters, digits and . _ : -",
        )


class ImportJob:
    def __init__(
        self,
        conninfo: str,
        key: ApiKey,
        limits: _native.Limits,
        enricher: _native.Enricher | None,
        *,
        import_id: str | None = None,
        first_line: int = 1,
        gzip: bool = False,
        shard: int = 0,
        rollups: bool = True,
    ) -> None:
        check_import_id(import_id)
        if first_line < 1:
            raise first_line_refused("X-Import-First-Line must be at least 1")
        if import_id is None and first_line != 1:
            raise first_line_refused("X-Import-First-Line needs an X-Import-Id")
        self._conninfo = conninfo
        self._key = key
        self._limits = limits
        self._enricher = enricher
        self._import_id = import_id
        self._rollups = rollups
        self._first_line = first_line
        self._gzip = gzip
        self._shard = shard
        self.outcome = ImportOutcome(import_id, committed_lines=first_line - 1)
        self._errors_kept = 0  # errors the import's row holds (at most MAX_ERRORS)

    async def run(self, body: AsyncIterator[bytes]) -> ImportOutcome:
        """Import the whole body; raises ImportFailed (what was committed stays)."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=5,
                application_name="eventbunker-import",
            )
        except (psycopg.Error, OSError):
            raise self._failed(_storage_unavailable()) from None
        try:
            already = await self._committed_before(conn)
            queue: asyncio.Queue[_Chunk | _End] = asyncio.Queue(QUEUE_DEPTH)
            reader = asyncio.create_task(self._prepare(body, queue, already))
            try:
                await _Writer(conn, self).run(queue)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        finally:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
        return self.outcome

    async def _committed_before(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """For a named import: the lines an earlier run committed (0 if new)."""
        if self._import_id is None:
            return 0
        try:
            await conn.execute(
                "INSERT INTO imports (project_id, import_id, customer_identifier)"
                " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (self._key.project_id, self._import_id, self._key.customer_identifier),
            )
            cur = await conn.execute(
                "SELECT committed_lines, jsonb_array_length(errors) FROM imports"
                " WHERE project_id = %s AND import_id = %s",
                (self._key.project_id, self._import_id),
            )
            row = await cur.fetchone()
        except (psycopg.Error, OSError):
            raise self._failed(_storage_unavailable()) from None
        committed = int(row[0]) if row else 0
        self._errors_kept = int(row[1]) if row else 0
        if self._first_line > committed + 1:
            # The answer's committed_lines is what is stored, never the
            # requested line: a client resumes from that field.
            self.outcome.committed_lines = committed
            raise self._failed(
                Refusal(
                    ErrorCode.IMPORT_GAP,
                    f"import {self._import_id} has committed lines up to {committed}:"
                    f" send from line {committed + 1}, not {self._first_line}",
                )
            )
        self.outcome.committed_lines = max(committed, self._first_line - 1)
        return committed

    async def _prepare(
        self, body: AsyncIterator[bytes], queue: asyncio.Queue[_Chunk | _End], committed: int
    ) -> None:
        """Reader stage: body → whole-line chunks → Rust → queue."""
        next_line = self._first_line
        to_skip = max(0, committed - (self._first_line - 1))
        chunker = LineChunker(CHUNK_BYTES, self._limits.max_body_bytes)
        gunzip = GzipStream() if self._gzip else None
        failure: Refusal | None = None

        async def handle(item: bytes | LongLine) -> None:
            nonlocal next_line, to_skip
            skipped = 0
            if to_skip:
                if isinstance(item, LongLine):
                    item, skipped = b"", 1
                else:
                    item, skipped = skip_lines(item, to_skip)
                to_skip -= skipped
                next_line += skipped
                if not item:
                    await queue.put(self._skipped_only(next_line, skipped))
                    return
            chunk = await self._prepared(item, next_line, skipped)
            next_line = chunk.last_line + 1
            await queue.put(chunk)

        try:
            async for data in body:
                for piece in gunzip.feed(data) if gunzip else (data,):
                    for item in chunker.feed(piece):
                        await handle(item)
            if gunzip:
                for item in chunker.feed(gunzip.finish()):
                    await handle(item)
            for item in chunker.finish():
                await handle(item)
        except (BodyError, ClientGone) as exc:
            # The lines before the cut are whole: keep them; the one it cut
            # is not.
            for item in chunker.whole_lines():
                await handle(item)
            if isinstance(exc, BodyError):
                failure = Refusal(ErrorCode.INVALID_GZIP, str(exc))
            elif isinstance(exc, BodyStalled):
                failure = Refusal(ErrorCode.REQUEST_TIMEOUT, str(exc))
            else:
                failure = Refusal(ErrorCode.CLIENT_DISCONNECTED, "the client went away")
        except Exception:
            log.exception("import %s: reading the body failed", self._import_id)
            failure = Refusal(ErrorCode.INTERNAL_ERROR, "the import failed; see the server log")
        await queue.put(_End(failure))

    def _skipped_only(self, next_line: int, skipped: int) -> _Chunk:
        return _Chunk(first_line=next_line - skipped, last_line=next_line - 1, skipped=skipped)

    async def _prepared(self, item: bytes | LongLine, first_line: int, skipped: int) -> _Chunk:
        received_at_us = time.time_ns() // 1000
        if isinstance(item, LongLine):
            limit = self._limits.max_body_bytes
            error = {
                "line": first_line,
                "code": ErrorCode.BODY_TOO_LARGE,
                "field": None,
                "message": f"line of {item.size} bytes is longer than the limit of {limit}",
            }
            return _Chunk(
                first_line=first_line - skipped,
                last_line=first_line,
                skipped=skipped,
                rejected=1,
                rejected_by_code={ErrorCode.BODY_TOO_LARGE: 1},
                errors=[error],
                received_at_us=received_at_us,
            )
        p = await asyncio.to_thread(
            _native.prepare_lines,
            item,
            first_line=first_line,
            project_id=self._key.project_id,
            customer_identifier=self._key.customer_identifier,
            received_at_us=received_at_us,
            limits=self._limits,
            enricher=self._enricher,
            max_errors=MAX_ERRORS,
        )
        id_rows = p.id_rows
        return _Chunk(
            first_line=first_line - skipped,
            last_line=first_line + p.lines - 1,
            skipped=skipped,
            rows=p.rows,
            count=p.count,
            event_ids=p.event_ids if id_rows else None,
            id_rows=id_rows,
            rejected=p.rejected,
            rejected_by_code=p.rejected_by_code,
            errors=p.errors,
            received_at_us=received_at_us,
        )

    def _failed(self, refusal: Refusal) -> ImportFailed:
        return ImportFailed(refusal, self.outcome)


class _Writer:
    """Writer stage: queue → COPY, committed in batches."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], job: ImportJob) -> None:
        self._conn = conn
        self._job = job
        self._copy: contextlib.AsyncExitStack | None = None
        self._copy_writer: psycopg.AsyncCopy | None = None
        self._open = False
        self._batch: list[_Chunk] = []
        self._stored: list[int] = []  # rows stored per chunk of the batch
        self._rows: list[bytes] = []  # the rows stored, for the rollups
        self._claims = 0  # chunks whose ids the batch claimed
        self._bytes = 0
        self._opened_at = 0.0

    async def run(self, queue: asyncio.Queue[_Chunk | _End]) -> None:
        try:
            while True:
                item = await self._next(queue)
                if item is None:
                    await self._commit()
                    continue
                if isinstance(item, _End):
                    await self._commit()
                    if item.failure is not None:
                        raise self._job._failed(item.failure)
                    return
                await self._add(item)
                if self._bytes >= BATCH_BYTES or self._claims >= MAX_CLAIMS_PER_BATCH:
                    await self._commit()
        except (psycopg.Error, OSError):
            await self._rollback()
            raise self._job._failed(_storage_unavailable()) from None
        except BaseException:
            await self._rollback()
            raise

    async def _next(self, queue: asyncio.Queue[_Chunk | _End]) -> _Chunk | _End | None:
        """The next chunk; None when the open batch is due for a commit first."""
        if not self._open:
            return await queue.get()
        remaining = self._opened_at + BATCH_SECONDS - time.monotonic()
        try:
            return await asyncio.wait_for(queue.get(), max(remaining, 0.0))
        except TimeoutError:
            return None

    async def _add(self, chunk: _Chunk) -> None:
        if not self._open:
            await self._conn.execute(b"BEGIN")
            self._open = True
            self._opened_at = time.monotonic()
        rows, stored = chunk.rows, chunk.count
        if chunk.event_ids is not None:
            rows, stored = await self._claim(chunk)
        if rows:
            if self._copy is None or self._copy_writer is None:
                self._copy = contextlib.AsyncExitStack()
                cur = await self._copy.enter_async_context(self._conn.cursor())
                self._copy_writer = await self._copy.enter_async_context(cur.copy(COPY_EVENTS))
            await self._copy_writer.write(rows)
            self._rows.append(rows)
        self._batch.append(chunk)
        self._stored.append(stored)
        self._bytes += len(rows)

    async def _claim(self, chunk: _Chunk) -> tuple[bytes, int]:
        """Claim the chunk's event ids; its rows without the already-stored ones."""
        assert chunk.event_ids is not None
        # Claims are statements of their own: not inside a COPY.
        await self._end_copy()
        self._claims += 1
        if await copy_claims(self._conn, chunk.id_rows):
            return chunk.rows, chunk.count  # all new: the usual case
        project_id = self._job._key.project_id
        ids = [i for i in chunk.event_ids if i is not None]
        cur = await self._conn.execute(CLAIM_IDS, (project_id, ids))
        claimed = {(project_id, str(i)) for (i,) in await cur.fetchall()}
        return keep_claimed(chunk.rows, chunk.count, project_id, chunk.event_ids, claimed)

    async def _end_copy(self) -> None:
        if self._copy is not None:
            copy, self._copy, self._copy_writer = self._copy, None, None
            await copy.aclose()

    async def _commit(self) -> None:
        if not self._open:
            return
        await self._end_copy()
        if self._job._rollups:
            await update_rollups(self._conn, b"".join(self._rows))
        job, outcome = self._job, self._job.outcome
        project_id = job._key.project_id
        now_us = time.time_ns() // 1000
        counts: dict[CounterKey, Written] = {}
        rejected_by_code: Counter[str] = Counter()
        accepted = rejected = duplicates = skipped = 0
        for chunk, stored in zip(self._batch, self._stored, strict=True):
            if stored:
                count_written(counts, project_id, chunk.received_at_us, stored, now_us)
            rejected_by_code.update(chunk.rejected_by_code)
            accepted += stored
            duplicates += chunk.count - stored
            rejected += chunk.rejected
            skipped += chunk.skipped
        last_line = self._batch[-1].last_line
        if counts:
            await self._conn.execute(add_counters(job._shard, counts).encode())
        if rejected_by_code:
            today = datetime.now(UTC).date()
            reasons = list(rejected_by_code)
            await self._conn.execute(
                ADD_REJECTED,
                (
                    job._shard,
                    [project_id] * len(reasons),
                    [today] * len(reasons),
                    reasons,
                    [rejected_by_code[r] for r in reasons],
                ),
            )
        errors = [
            {k: e[k] for k in ("line", "field", "message")}
            for chunk in self._batch
            for e in chunk.errors
        ]
        kept = errors[: MAX_ERRORS - job._errors_kept]
        if job._import_id is not None and last_line > outcome.committed_lines:
            cur = await self._conn.execute(
                MOVE_PROGRESS,
                (
                    last_line,
                    accepted,
                    rejected,
                    duplicates,
                    Jsonb(kept),
                    project_id,
                    job._import_id,
                    outcome.committed_lines,
                ),
            )
            if cur.rowcount != 1:
                # Answer where the import really is: the other request's line.
                outcome.committed_lines = await self._committed_now(project_id, job._import_id)
                raise job._failed(
                    Refusal(
                        ErrorCode.IMPORT_CONFLICT,
                        f"import {job._import_id} was moved on by another request;"
                        " ask GET /v1/events/import/{id} where to resume",
                    )
                )
        await self._conn.execute(b"COMMIT")
        self._open = False
        outcome.accepted += accepted
        outcome.rejected += rejected
        outcome.duplicates += duplicates
        outcome.skipped += skipped
        outcome.lines = last_line - (job._first_line - 1)
        outcome.committed_lines = max(outcome.committed_lines, last_line)
        outcome.errors += errors[: MAX_ERRORS - len(outcome.errors)]
        job._errors_kept += len(kept)
        self._batch, self._stored, self._rows, self._claims, self._bytes = [], [], [], 0, 0

    async def _committed_now(self, project_id: int, import_id: str) -> int:
        """The import's committed line as stored now (by whichever request)."""
        cur = await self._conn.execute(
            "SELECT committed_lines FROM imports WHERE project_id = %s AND import_id = %s",
            (project_id, import_id),
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _rollback(self) -> None:
        # The connection is this import's own: closing it rolls back the
        # batch, even in the middle of a COPY.
        self._copy = self._copy_writer = None
        self._batch, self._stored, self._rows, self._claims, self._bytes = [], [], [], 0, 0
        self._open = False
        with contextlib.suppress(psycopg.Error):
            await self._conn.close()


async def import_progress(
    conn: psycopg.AsyncConnection[Any], key: ApiKey, import_id: str
) -> dict[str, Any] | None:
    """A named import's committed progress, or None if there is no such import
    (a customer-scoped key's: another customer's or an unscoped import is not there)."""
    check_import_id(import_id)
    cur = await conn.execute(
        GET_PROGRESS, (key.project_id, import_id, *[key.customer_identifier] * 2)
    )
    row = await cur.fetchone()
    if row is None:
        return None
    names = ("import_id", "committed_lines", "accepted", "rejected", "duplicates", "errors")
    progress: dict[str, Any] = dict(zip(names, row[:6], strict=True))
    progress["created_at"] = row[6].isoformat()
    progress["updated_at"] = row[7].isoformat()
    return progress


def first_line_refused(message: str) -> Refusal:
    """400 invalid_first_line, its detail naming the header."""
    return Refusal(
        ErrorCode.INVALID_FIRST_LINE, message, field_detail("X-Import-First-Line", message)
    )


def _storage_unavailable() -> Refusal:
    return Refusal(
        ErrorCode.STORAGE_UNAVAILABLE,
        "the database is unavailable; what was committed stays, resume from committed_lines + 1",
    )


async def import_direct(
    conninfo: str,
    secret: str,
    chunks: AsyncIterator[bytes] | Iterator[bytes],
    *,
    import_id: str | None,
    first_line: int = 1,
    gzip: bool = False,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """The import path without the server, for ``eventbunker import --database-url``:
    the same key check, Rust preparation and batched COPY. Returns the answer
    the server would give; raises Refusal, or ImportFailed after a start."""
    settings = settings or Settings.from_env()
    keys = KeyCache(conninfo)
    try:
        key = await keys.require(secret, "write")
    finally:
        await keys.stop()
    job = ImportJob(
        conninfo,
        key,
        limits_of(settings),
        build_enricher(settings),
        import_id=import_id,
        first_line=first_line,
        gzip=gzip,
        shard=os.getpid() % COUNTER_SHARDS,
        rollups=settings.rollups,
    )
    return (await job.run(_as_async(chunks))).as_dict()


async def import_progress_direct(
    conninfo: str, secret: str, import_id: str
) -> dict[str, Any] | None:
    """``GET /v1/events/import/{import_id}`` without the server."""
    keys = KeyCache(conninfo)
    try:
        key = await keys.require(secret, "write")
    finally:
        await keys.stop()
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        return await import_progress(conn, key, import_id)


async def _as_async(chunks: AsyncIterator[bytes] | Iterator[bytes]) -> AsyncIterator[bytes]:
    if isinstance(chunks, AsyncIterator):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk
            await asyncio.sleep(0)  # let the stages behind it run
