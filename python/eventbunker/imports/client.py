"""``eventbunker import``: send a file to the bulk import, resuming without duplicates.

One streaming POST /v1/events/import per attempt (or one in-process import
with ``--database-url``/``--data-dir``). Before each attempt the server says
how many lines of this import are committed; the source skips them locally
and the body starts at the next line (``X-Import-First-Line``). The server
records committed lines in the same transaction as the events, so a crash of
either side, a retry or a rerun of the same command never stores a line twice.
"""

from __future__ import annotations

import asyncio
import errno
import http.client
import os
import random
import select
import ssl
import sys
import time
import urllib.parse
import uuid
import zlib
from collections.abc import Coroutine, Generator, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Protocol, TextIO, TypeVar

import orjson
import psycopg

from eventbunker.config import Settings
from eventbunker.errors import ErrorCode, Refusal
from eventbunker.imports.progress import Progress, choose_mode
from eventbunker.imports.sources import STDIN, Format, Source, SourceError, default_import_id

DEFAULT_URL = "http://127.0.0.1:8000"
IMPORT_PATH = "/v1/events/import"
USER_AGENT = "eventbunker-import/0.1"
MAX_ERRORS = 100
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
EARLY_ANSWER_WAIT_S = 5.0
# Socket timeout: the server reads the body continuously and answers right
# after its end, so a long silence means a stuck connection (then: retry).
DEFAULT_TIMEOUT_S = 120.0
PROGRESS_TIMEOUT_S = 30.0
# Answers worth another attempt: the server (or a proxy before it) is busy,
# restarting or briefly down; 409: the previous attempt's request is still
# being wound up by the server (a killed client is noticed a little later).
RETRY_STATUSES = frozenset({408, 409, 429, 502, 503, 504})
RETRY_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.ETIMEDOUT})

_T = TypeVar("_T")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REJECTED = 3  # --fail-on-rejected
EXIT_INTERRUPTED = 130


class Transient(Exception):
    """Worth another attempt, after asking again where the import stands."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        answer: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.answer = answer


class Fatal(Exception):
    """Stops the import: a refused key, a bad request, an unreadable file..."""

    def __init__(self, message: str, *, answer: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.answer = answer


class Transport(Protocol):
    """Where the lines go: a server over HTTP, or the database in-process."""

    target: str

    def progress(self, import_id: str) -> dict[str, Any] | None:
        """The import's record (``committed_lines``...), None for a new import."""

    def send(self, body: Iterator[bytes], import_id: str, first_line: int) -> dict[str, Any]:
        """Import the body's lines from ``first_line``; the server's answer."""


class HttpTransport:
    """The bulk import endpoint of a running server, with stdlib http.client."""

    def __init__(
        self, url: str, key: str, *, gzip: bool = False, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Fatal(f"not an http(s) URL: {url!r}")
        self.target = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")  # a server behind a path on a proxy
        self._key = key
        self._gzip = gzip
        self._timeout = timeout

    def progress(self, import_id: str) -> dict[str, Any] | None:
        conn = self._connection(min(self._timeout, PROGRESS_TIMEOUT_S))
        path = f"{self._prefix}{IMPORT_PATH}/{urllib.parse.quote(import_id, safe='')}"
        try:
            conn.request("GET", path, headers=self._headers())
            response = conn.getresponse()
            status, body = response.status, response.read()
            retry_after = response.getheader("Retry-After")
        except (OSError, http.client.HTTPException) as exc:
            raise _network_error(exc, self.target) from None
        finally:
            conn.close()
        if status == 404 and _code(_document(body)) == ErrorCode.IMPORT_NOT_FOUND:
            return None
        return _answer(status, body, retry_after)

    def send(self, body: Iterator[bytes], import_id: str, first_line: int) -> dict[str, Any]:
        conn = self._connection()
        try:
            try:
                conn.putrequest("POST", self._prefix + IMPORT_PATH, skip_accept_encoding=True)
                headers = {
                    **self._headers(),
                    "Content-Type": "application/x-ndjson",
                    "Transfer-Encoding": "chunked",
                    "X-Import-Id": import_id,
                    "X-Import-First-Line": str(first_line),
                }
                if self._gzip:
                    headers["Content-Encoding"] = "gzip"
                for name, value in headers.items():
                    conn.putheader(name, value)
                conn.endheaders()
                for chunk in _gzipped(body) if self._gzip else body:
                    if chunk:
                        conn.send(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    if _answered(conn):
                        break  # an error mid-body: stop sending, read it below
                else:
                    conn.send(b"0\r\n\r\n")
            except (OSError, http.client.HTTPException) as exc:
                # The server may have answered before the body's end (an error
                # mid-body, with how far it got) and closed the connection.
                early = _early_answer(conn)
                if early is None:
                    raise _network_error(exc, self.target) from None
                return _answer(*early)
            try:
                response = conn.getresponse()
                return _answer(response.status, response.read(), response.getheader("Retry-After"))
            except (OSError, http.client.HTTPException) as exc:
                raise _network_error(exc, self.target) from None
        finally:
            conn.close()  # mid-body (Ctrl-C too): the server rolls back its batch in flight

    def _connection(self, timeout: float | None = None) -> http.client.HTTPConnection:
        timeout = timeout or self._timeout
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _headers(self) -> dict[str, str]:
        return {"X-Api-Key": self._key, "User-Agent": USER_AGENT, "Accept": "application/json"}


class DirectTransport:
    """The import job in this process, writing to the database itself.

    The server's modules are imported on first use: the HTTP client needs none.
    """

    def __init__(self, conninfo: str, key: str, settings: Settings | None = None) -> None:
        self.target = "database"
        self._conninfo = conninfo
        self._key = key
        self._settings = settings

    def progress(self, import_id: str) -> dict[str, Any] | None:
        from eventbunker.imports.job import import_progress_direct

        return self._run(import_progress_direct(self._conninfo, self._key, import_id))

    def send(self, body: Iterator[bytes], import_id: str, first_line: int) -> dict[str, Any]:
        from eventbunker.imports.job import import_direct

        return self._run(
            import_direct(
                self._conninfo,
                self._key,
                body,
                import_id=import_id,
                first_line=first_line,
                settings=self._settings,
            )
        )

    def _run(self, job: Coroutine[Any, Any, _T]) -> _T:
        from eventbunker.imports.job import ImportFailed

        try:
            return asyncio.run(job)
        except ImportFailed as exc:  # after a start: with what was committed
            raise _refused(exc.refusal, exc.outcome.as_dict()) from None
        except Refusal as exc:
            raise _refused(exc, None) from None
        except (psycopg.OperationalError, OSError) as exc:
            raise Transient(f"database unavailable: {exc}") from None


def _refused(refusal: Refusal, answer: dict[str, Any] | None) -> Exception:
    message = f"{refusal.status} {refusal.code}: {refusal.message}"
    if refusal.status in RETRY_STATUSES:
        return Transient(message, answer=answer)
    return Fatal(f"the import was refused: {message}", answer=answer)


@dataclass
class _Run:
    """What one ``eventbunker import`` did, across its attempts."""

    import_id: str
    started: float = field(default_factory=time.monotonic)
    base: dict[str, Any] | None = None  # the import's record before this run
    resumed_from: int = 1
    attempts: int = 0
    source: Source | None = None  # the current attempt's
    answers: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)

    def take(self, answer: dict[str, Any] | None) -> None:
        if not answer:
            return
        if "accepted" in answer:
            self.answers.append(answer)
        for error in answer.get("errors") or ():
            if isinstance(error, dict) and isinstance(error.get("line"), int):
                self.errors.setdefault((error["line"], str(error.get("message"))), error)


class Importer:
    """Attempts, resumes and retries until every line of the input is committed."""

    def __init__(
        self,
        transport: Transport,
        path: str,
        *,
        fmt: Format = "auto",
        import_id: str | None = None,
        retries: int = 10,
        progress: Progress | None = None,
    ) -> None:
        self._transport = transport
        self._path = path
        self._fmt: Format = fmt
        self._explicit_id = import_id
        self._retries = retries
        self._progress = progress
        self._stdin: Source | None = None

    def run(self) -> tuple[dict[str, Any], int]:
        """The JSON summary and the exit code."""
        run = _Run(self._explicit_id or "")
        status, message = "complete", None
        try:
            run.import_id = self._explicit_id or self._default_id()
            self._attempts(run)
        except Fatal as exc:
            run.take(exc.answer)
            status, message = "failed", str(exc)
        except KeyboardInterrupt:
            status = "interrupted"
        finally:
            if self._progress:
                self._progress.close()
        final = self._final_record(run) if run.import_id else None
        summary = self._summary(run, final, status, message)
        if status == "interrupted":
            again = (
                f"pipe the same input with --import-id {run.import_id}"
                if self._path == STDIN and not self._explicit_id
                else "run the same command again"
            )
            summary["message"] = (
                f"interrupted with {summary['committed_lines']} line(s) committed;"
                f" {again} to resume"
            )
            return summary, EXIT_INTERRUPTED
        if status == "failed":
            return summary, EXIT_FAILED
        return summary, EXIT_OK

    def _default_id(self) -> str:
        if self._path == STDIN:
            # Nothing to derive from: a rerun resumes only with --import-id.
            return "stdin-" + uuid.uuid4().hex[:24]
        try:
            return default_import_id(self._path)
        except OSError as exc:
            raise Fatal(f"cannot read {self._path}: {exc.strerror or exc}") from None

    def _attempts(self, run: _Run) -> None:
        failures = 0  # in a row, without the committed line moving
        committed_before: int | None = None
        while True:
            try:
                record = self._transport.progress(run.import_id)
                committed = int(record["committed_lines"]) if record else 0
                if run.base is None:
                    run.base = record or {}
                    run.resumed_from = committed + 1
                if committed_before is not None and committed > committed_before:
                    failures = 0
                committed_before = committed
                if self._attempt(run, committed):
                    return
            except Transient as exc:
                run.take(exc.answer)
                failures += 1
                if self._stdin is not None and self._stdin.started:
                    again = f"pipe the same input with --import-id {run.import_id} to resume"
                    raise Fatal(f"{exc}; stdin cannot be read twice: {again}") from None
                if failures > self._retries:
                    raise Fatal(f"giving up after {failures} failed attempts: {exc}") from None
                delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (failures - 1))
                delay = max(delay * random.uniform(0.8, 1.2), exc.retry_after or 0.0)
                delay = min(delay, BACKOFF_MAX_S)
                self._note(f"{exc}; retrying in {delay:.1f}s")
                time.sleep(delay)

    def _attempt(self, run: _Run, committed: int) -> bool:
        """One body from line ``committed + 1``; True once the input is all committed."""
        source = run.source = self._open()
        problem: list[SourceError] = []
        body = self._body(source, committed, problem)
        try:
            first = next(body, None)
            if first is None:  # nothing left to send
                self._check(problem, source)
                return True
            run.attempts += 1
            answer = self._transport.send(chain((first,), body), run.import_id, committed + 1)
        finally:
            body.close()  # closes the file
        run.take(answer)
        self._check(problem, source)
        done = int(answer.get("committed_lines", 0))
        if source.exhausted and done >= source.lines:
            return True
        raise Transient(f"the server committed up to line {done} of {source.lines}")

    def _open(self) -> Source:
        if self._path == STDIN:
            if self._stdin is None:
                self._stdin = Source(STDIN, self._fmt)
            return self._stdin
        try:
            return Source(self._path, self._fmt)
        except OSError as exc:
            raise Fatal(f"cannot read {self._path}: {exc.strerror or exc}") from None

    def _body(
        self, source: Source, skip: int, problem: list[SourceError]
    ) -> Generator[bytes, None, None]:
        """The source's chunks, ending cleanly where it turns unreadable.

        The whole lines before a corrupt gzip block or a broken JSON array
        still get imported; the error is raised once the server has them.
        """
        if self._progress:
            self._progress.restart()
        try:
            for chunk in source.chunks(skip):
                yield chunk
                if self._progress:
                    self._progress.update(source.bytes_read, source.lines)
        except SourceError as exc:
            problem.append(exc)
        except OSError as exc:
            problem.append(SourceError(f"read error: {exc.strerror or exc}"))

    def _check(self, problem: list[SourceError], source: Source) -> None:
        if problem:
            where = f"after line {source.lines}"
            raise Fatal(f"{self._path}: {problem[0]} ({where}; the lines before are imported)")

    def _final_record(self, run: _Run) -> dict[str, Any] | None:
        try:
            return self._transport.progress(run.import_id)
        except (Transient, Fatal, KeyboardInterrupt):
            return None

    def _summary(
        self, run: _Run, final: dict[str, Any] | None, status: str, message: str | None
    ) -> dict[str, Any]:
        counts = ("accepted", "rejected", "duplicates")
        if final is not None and run.base is not None:
            # From the import's own record: exact even for attempts cut off
            # before their answer.
            mine = {name: int(final[name]) - int(run.base.get(name, 0)) for name in counts}
            committed = int(final["committed_lines"])
        else:
            mine = {name: sum(int(a.get(name, 0)) for a in run.answers) for name in counts}
            committed = max(
                [run.resumed_from - 1, *(int(a.get("committed_lines", 0)) for a in run.answers)]
            )
        seconds = time.monotonic() - run.started
        processed = mine["accepted"] + mine["rejected"] + mine["duplicates"]
        errors = [run.errors[k] for k in sorted(run.errors)][:MAX_ERRORS]
        if status == "complete" and mine["rejected"]:
            message = f"{mine['rejected']} line(s) rejected: see errors"
        summary: dict[str, Any] = {
            "import_id": run.import_id,
            "file": self._path,
            "target": self._transport.target,
            "status": status,
            "message": message,
            **mine,
            "skipped": run.resumed_from - 1,
            # All the input's lines once complete; else those read so far.
            "lines": run.source.lines if run.source else 0,
            "committed_lines": committed,
            "errors": errors,
            "seconds": round(seconds, 3),
            "events_per_second": round(processed / seconds, 1) if seconds > 0 else 0.0,
            "resumed_from": run.resumed_from,
            "attempts": run.attempts,
        }
        # The whole import, earlier runs included (null when the server is unreachable).
        summary["import"] = (
            {name: final.get(name) for name in (*counts, "committed_lines", "errors")}
            if final
            else None
        )
        return summary

    def _note(self, message: str) -> None:
        if self._progress:
            self._progress.note(message)
        else:
            sys.stderr.write(f"eventbunker import: {message}\n")


def import_file(
    transport: Transport,
    path: str,
    *,
    fmt: Format = "auto",
    import_id: str | None = None,
    retries: int = 10,
    quiet: bool = False,
    progress_interval_s: float = 5.0,
    fail_on_rejected: bool = False,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run an import, print its JSON summary; the process's exit code."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        total = None if path == STDIN else os.path.getsize(path)
    except OSError:
        total = None  # the importer says why
    progress = Progress(err, choose_mode(err, quiet=quiet), total, interval_s=progress_interval_s)
    summary, code = Importer(
        transport, path, fmt=fmt, import_id=import_id, retries=retries, progress=progress
    ).run()
    out.write(orjson.dumps(summary).decode() + "\n")
    out.flush()
    if summary["message"] and (code != EXIT_OK or not quiet):
        err.write(f"eventbunker import: {summary['message']}\n")
    if code == EXIT_OK and fail_on_rejected:
        rejected = (summary.get("import") or summary)["rejected"]
        if rejected:
            return EXIT_REJECTED
    return code


def _gzipped(body: Iterator[bytes]) -> Iterator[bytes]:
    # Level 1: on a fast link compression is the bottleneck, not the bytes.
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    for chunk in body:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


def _answered(conn: http.client.HTTPConnection) -> bool:
    """Whether the server has spoken (or hung up) before the end of the body.

    Not over TLS: records the server may send unasked (TLS 1.3 session
    tickets) make the socket readable without an answer; there a refused body
    shows as a send error instead.
    """
    if conn.sock is None or isinstance(conn.sock, ssl.SSLSocket):
        return False
    readable, _, _ = select.select([conn.sock], [], [], 0)
    return bool(readable)


def _early_answer(conn: http.client.HTTPConnection) -> tuple[int, bytes, str | None] | None:
    try:
        if conn.sock is not None:
            conn.sock.settimeout(EARLY_ANSWER_WAIT_S)
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("Retry-After")
    except (OSError, http.client.HTTPException):
        return None


def _answer(status: int, body: bytes, retry_after: str | None) -> dict[str, Any]:
    """A 200's document; other statuses as Transient or Fatal."""
    document = _document(body)
    if status == 200:
        if not document:
            raise Transient("the server answered 200 without a JSON document")
        return document
    error = document.get("error") if isinstance(document.get("error"), dict) else {}
    assert isinstance(error, dict)
    code = error.get("code") or http.client.responses.get(status, "error")
    text = f"{status} {code}: {error.get('message') or body[:200].decode(errors='replace')}"
    if status in RETRY_STATUSES:
        raise Transient(text, retry_after=_seconds(retry_after), answer=document)
    if status == 404:
        text += f" (does this server have {IMPORT_PATH}?)"
    raise Fatal(f"the import was refused: {text}", answer=document)


def _document(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


def _code(document: dict[str, Any]) -> str | None:
    error = document.get("error")
    return error.get("code") if isinstance(error, dict) else None


def _seconds(retry_after: str | None) -> float | None:
    try:
        return float(retry_after) if retry_after else None
    except ValueError:
        return None  # an HTTP date: the backoff decides


def _network_error(exc: Exception, target: str) -> Exception:
    """Connection trouble is worth a retry; a bad certificate or host name is not."""
    if isinstance(exc, ssl.SSLError):
        return Fatal(f"TLS error with {target}: {exc}")
    if isinstance(exc, ConnectionError | TimeoutError | http.client.HTTPException) or (
        isinstance(exc, OSError) and exc.errno in RETRY_ERRNOS
    ):
        return Transient(f"{target}: {_describe(exc)}")
    return Fatal(f"cannot reach {target}: {_describe(exc)}")


def _describe(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
