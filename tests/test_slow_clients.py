"""Slow and stuck clients: a body not whole within --body-timeout-seconds is
answered 408 request_timeout and its connection closed, whether it stopped
short of its Content-Length or trickles in chunks; 2,000 such connections do
not keep a normal request from its answer."""

from __future__ import annotations

import json
import socket
import statistics
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import Project, Server, serving

TIMEOUT_S = 1.0
STUCK = 2000


@pytest.fixture(scope="module")
def impatient_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with serving(
        database_url,
        tmp_path_factory.mktemp("slow"),
        "--workers",
        "2",
        "--body-timeout-seconds",
        str(TIMEOUT_S),
    ) as srv:
        yield srv


def open_request(server: Server, path: str, key: str, *, chunked: bool) -> socket.socket:
    """A POST whose body starts and then stops."""
    url = urlsplit(server.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    length = "Transfer-Encoding: chunked" if chunked else "Content-Length: 1000"
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nX-Api-Key: {key}\r\n"
        f"Content-Type: application/json\r\n{length}\r\n\r\n".encode()
    )
    sock.sendall(b'5\r\n[{"ev\r\n' if chunked else b'[{"event_n')
    return sock


def answer_and_close(sock: socket.socket) -> tuple[bytes, bool]:
    """The status line of the answer, and whether the server then closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    status = data.split(b"\r\n", 1)[0]
    try:
        while sock.recv(65536):
            pass
        closed = True
    except TimeoutError:
        closed = False
    sock.close()
    return status, closed


@pytest.mark.parametrize(
    ("path", "kind"), [("/v1/events", "write"), ("/v1/query", "query"), ("/v1/batch", "write")]
)
@pytest.mark.parametrize("chunked", [False, True])
def test_a_stalled_body_is_answered_408_and_closed(
    impatient_server: Server, project: Project, path: str, kind: str, chunked: bool
) -> None:
    key = project.write_key if kind == "write" else project.query_key
    started = time.monotonic()
    sock = open_request(impatient_server, path, key, chunked=chunked)
    status, closed = answer_and_close(sock)
    waited = time.monotonic() - started
    assert status == b"HTTP/1.1 408 Request Timeout", status
    assert closed
    assert TIMEOUT_S <= waited < TIMEOUT_S + 5


def test_a_trickled_body_is_cut_at_the_bound(impatient_server: Server, project: Project) -> None:
    """One byte every 100 ms: alive, but not whole in time."""
    sock = open_request(impatient_server, "/v1/events", project.write_key, chunked=False)
    sock.settimeout(0.1)
    started = time.monotonic()
    status = b""
    while time.monotonic() - started < TIMEOUT_S + 5:
        try:
            sock.sendall(b" ")
            status = sock.recv(65536)
            if status:
                break
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    sock.close()
    assert status.startswith(b"HTTP/1.1 408"), status


def test_stuck_connections_do_not_hold_up_a_normal_request(
    impatient_server: Server, project: Project
) -> None:
    stuck = [
        open_request(impatient_server, "/v1/events", project.write_key, chunked=False)
        for _ in range(STUCK)
    ]
    try:
        latencies = []
        with httpx.Client(base_url=impatient_server.url, timeout=10) as http:
            for _ in range(20):
                started = time.perf_counter()
                r = http.post(
                    "/v1/events",
                    content=b'{"event_name": "normal"}',
                    headers={"X-Api-Key": project.write_key, "Content-Type": "application/json"},
                )
                latencies.append(time.perf_counter() - started)
                assert r.status_code == 202, r.text
        print(
            f"{STUCK} stuck connections held; a normal request answered in"
            f" median {statistics.median(latencies) * 1000:.1f} ms,"
            f" max {max(latencies) * 1000:.1f} ms"
        )
        # Every stuck one is answered 408 and closed: none is held past the bound.
        for sock in stuck:
            sock.settimeout(TIMEOUT_S + 10)
        answers = [answer_and_close(sock) for sock in stuck]
        assert answers == [(b"HTTP/1.1 408 Request Timeout", True)] * STUCK
    finally:
        for sock in stuck:
            sock.close()


def test_a_stalled_import_is_answered_408_with_what_it_committed(
    impatient_server: Server, project: Project
) -> None:
    """An import may stream for hours, but not stop sending: the whole lines
    before the pause are kept, the answer says how many, the connection closes."""
    url = urlsplit(impatient_server.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    lines = b"".join(b'{"event_name": "imported", "n": %d}\n' % i for i in range(3))
    sock.sendall(
        f"POST /v1/events/import HTTP/1.1\r\nHost: {url.netloc}\r\nX-Api-Key:"
        f" {project.write_key}\r\nX-Import-Id: stalled\r\nContent-Type: application/x-ndjson\r\n"
        f"Content-Length: 100000\r\n\r\n".encode()
        + lines
        + b'{"event_name": "cut'
    )
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), head
    answer = json.loads(body)
    assert answer["error"]["code"] == "request_timeout"
    assert (answer["accepted"], answer["committed_lines"]) == (3, 3)
