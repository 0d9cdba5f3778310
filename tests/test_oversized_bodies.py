"""A body over the limit is answered 413, and the answer reaches the client.

Sent with Python's own ``http.client`` (what ``urllib`` uses), which writes
the whole body before reading: if the server closed the connection with
unread bytes, the kernel would reset it and the client would see a broken
pipe instead of the 413. Every endpoint that takes a body: ingest, an SDK's,
the framework's (query, delete, admin API, web form) and the import, whose
limit is per line (a 3 MiB line is a rejected line in a 200). A request
refused before its body is read (a bad key, a wrong content type or method,
an import's gap) has its answer delivered the same way.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from conftest import Project, Server
from eventbunker.admin.accounts import create_account

SENDS = 20
BLOB = b"x" * (3 << 20)
BODY = b'[{"event_name": "big", "blob": "' + BLOB + b'"}]'


def _request(
    server: Server,
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    chunked: bool,
    method: str = "POST",
) -> tuple[int, Any]:
    """The status and JSON answer of one request on a new connection."""
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
    sent: bytes | Iterator[bytes] = body
    if chunked:
        sent = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    try:
        conn.request(method, path, body=sent, headers=headers, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _send(
    server: Server, key: str, *, chunked: bool, path: str = "/v1/events", body: bytes = BODY
) -> tuple[int, Any]:
    headers = {"X-Api-Key": key, "Content-Type": "application/json"}
    status, answer = _request(server, path, body, headers, chunked=chunked)
    return status, _code(answer)


def _code(answer: Any) -> Any:
    """The error code in our shape or an SDK's (PostHog's ``code``, Amplitude's
    numeric ``code`` beside its ``error`` text, Mixpanel's bare ``0``)."""
    if not isinstance(answer, dict):
        return answer
    inner = answer.get("error", answer)
    return inner.get("code") if isinstance(inner, dict) else answer.get("code")


def test_413_reaches_the_client_every_time(server: Server, project: Project) -> None:
    for chunked in (False, True):
        answers = [_send(server, project.write_key, chunked=chunked) for _ in range(SENDS)]
        _report("POST /v1/events", chunked, answers, (413, "body_too_large"))
        assert answers == [(413, "body_too_large")] * SENDS, chunked


def _report(
    what: str, chunked: bool, answers: list[tuple[int, Any]], want: tuple[int, Any]
) -> None:
    """One line per endpoint and framing: how many sends got the answer (-s shows it)."""
    framing = "chunked" if chunked else "Content-Length"
    print(f"{what} ({framing}): {answers.count(want)}/{len(answers)} answered {want[0]} {want[1]}")


@pytest.mark.parametrize(
    ("path", "kind", "code"),
    [
        ("/v1/batch", "write", "body_too_large"),  # Segment's SDK endpoint
        # PostHog's, Mixpanel's, Amplitude's (the key is in the body), in their shapes
        ("/capture/", "none", "body_too_large"),
        ("/track", "none", 0),
        ("/2/httpapi", "none", 413),
        ("/v1/query", "query", "body_too_large"),
        ("/v1/delete", "delete", "body_too_large"),
        ("/v1/projects", "admin", "body_too_large"),
        ("/login", "none", "body_too_large"),
    ],
)
def test_413_reaches_the_client_on_every_endpoint(
    server: Server,
    project: Project,
    db: psycopg.Connection[Any],
    path: str,
    kind: str,
    code: Any,
) -> None:
    keys = {
        "write": project.write_key,
        "query": project.query_key,
        "delete": project.delete_key,
        "admin": create_account(db, f"big-{path}")["admin_key"] if kind == "admin" else "",
        "none": "",
    }
    body = b'{"batch": [{"x": "' + BLOB + b'"}]}'
    for chunked in (False, True):
        answers = [
            _send(server, keys[kind], chunked=chunked, path=path, body=body) for _ in range(SENDS)
        ]
        _report(f"POST {path}", chunked, answers, (413, code))
        assert answers == [(413, code)] * SENDS, (path, chunked)


def test_an_import_line_over_the_limit_is_answered_every_time(
    server: Server, project: Project
) -> None:
    body = b'{"event_name": "big", "blob": "' + BLOB + b'"}\n{"event_name": "small"}\n'
    for chunked in (False, True):
        answers = []
        for _ in range(SENDS):
            headers = {"X-Api-Key": project.write_key, "Content-Type": "application/x-ndjson"}
            status, answer = _request(server, "/v1/events/import", body, headers, chunked=chunked)
            [error] = answer["errors"]
            assert "longer than the limit" in error["message"]
            answers.append((status, answer["accepted"], error["line"]))
        assert answers == [(200, 1, 1)] * SENDS, chunked


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "code"),
    [
        ("POST", "/v1/events", {"X-Api-Key": "ebw_unknown"}, 401, "unknown_key"),
        ("POST", "/v1/events", {"Content-Type": "text/csv"}, 415, "unsupported_media_type"),
        ("POST", "/v1/events", {"Content-Encoding": "br"}, 415, "unsupported_encoding"),
        ("PUT", "/v1/events", {}, 405, "method_not_allowed"),
        ("POST", "/v1/events/import", {"X-Api-Key": "ebw_unknown"}, 401, "unknown_key"),
        ("POST", "/v1/events/import", {"Content-Type": "text/csv"}, 415, "unsupported_media_type"),
        # A named import that never started, sent from line 5: refused before a byte is read.
        ("POST", "/v1/events/import", {"X-Import-First-Line": "5"}, 409, "import_gap"),
    ],
)
def test_a_refusal_before_the_body_is_read_reaches_the_client(
    server: Server,
    project: Project,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    sent = {"X-Api-Key": project.write_key, "Content-Type": "application/json", **headers}
    if code == "import_gap":
        sent["X-Import-Id"] = f"gap-{project.id}"
    for chunked in (False, True):
        answers = []
        for _ in range(SENDS):
            got, answer = _request(server, path, BODY, sent, chunked=chunked, method=method)
            answers.append((got, answer["error"]["code"]))
        _report(f"{method} {path} {headers}", chunked, answers, (status, code))
        assert answers == [(status, code)] * SENDS, chunked
