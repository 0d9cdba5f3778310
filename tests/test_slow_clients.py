"""Slow and stuck clients: a body not whole within --body-timeout-seconds is
answered 408 request_timeout and its connection closed, whether it stopped
short of its Content-Length or trickles in chunks; a connection without a
request under way (never sending a byte, or idle after an answer) or with its
headers unfinished is closed after --keep-alive-timeout-seconds; thousands of
such connections do not keep a normal request from its answer."""

from __future__ import annotations

import json
import resource
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
# The stuck-connections test: its own server, whose bounds leave time to open them all.
STUCK_TIMEOUT_S = 10.0


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


@pytest.fixture(scope="module")
def stuck_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(
        database_url,
        tmp_path_factory.mktemp("stuck"),
        "--workers",
        "2",
        "--body-timeout-seconds",
        str(STUCK_TIMEOUT_S),
        "--keep-alive-timeout-seconds",
        str(STUCK_TIMEOUT_S),
    ) as srv:
        yield srv


def bare_connection(server: Server) -> socket.socket:
    """Connected, and never a byte sent."""
    url = urlsplit(server.url)
    return socket.create_connection((url.hostname, url.port), timeout=10)


def normal_latencies(server: Server, project: Project, count: int = 40) -> list[float]:
    latencies = []
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for _ in range(count):
            started = time.perf_counter()
            r = http.post(
                "/v1/events",
                content=b'{"event_name": "normal"}',
                headers={"X-Api-Key": project.write_key, "Content-Type": "application/json"},
            )
            latencies.append(time.perf_counter() - started)
            assert r.status_code == 202, r.text
    return latencies


def test_stuck_connections_do_not_hold_up_a_normal_request(
    stuck_server: Server, project: Project
) -> None:
    """2,000 bare connections that never send and 2,000 requests whose body
    never ends: a normal request is answered as fast as without them (each
    within a second: none waits for a stuck one to be cut), then the bodies
    are answered 408 and the bare ones closed, each within its bound."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * STUCK + 200
    if soft < needed:
        assert hard >= needed, f"this test needs {needed} file descriptors (ulimit -Hn {hard})"
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    alone = normal_latencies(stuck_server, project)
    opened_at = time.monotonic()
    bare = [bare_connection(stuck_server) for _ in range(STUCK)]
    bodies = [
        open_request(stuck_server, "/v1/events", project.write_key, chunked=False)
        for _ in range(STUCK)
    ]
    try:
        time.sleep(1.0)  # the workers take in the new connections' requests
        latencies = normal_latencies(stuck_server, project)
        assert time.monotonic() - opened_at < STUCK_TIMEOUT_S, "too slow to open: bounds passed"
        print(
            f"{len(bare)} bare and {len(bodies)} unfinished-body connections held; a normal"
            f" request answered in median {statistics.median(latencies) * 1000:.1f} ms, max"
            f" {max(latencies) * 1000:.1f} ms (alone: median"
            f" {statistics.median(alone) * 1000:.1f} ms, max {max(alone) * 1000:.1f} ms)"
        )
        assert max(latencies) < 1.0, latencies
        # Every stuck one is cut: the bodies answered 408, the bare ones closed.
        deadline = opened_at + STUCK_TIMEOUT_S + 15
        for sock in bare + bodies:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
        assert [answer_and_close(sock) for sock in bodies] == [
            (b"HTTP/1.1 408 Request Timeout", True)
        ] * STUCK
        assert [answer_and_close(sock) for sock in bare] == [(b"", True)] * STUCK
        cut_after = time.monotonic() - opened_at
        print(f"all {2 * STUCK} cut {cut_after:.1f} s after the first was opened")
        assert cut_after < deadline - opened_at
    finally:
        for sock in bare + bodies:
            sock.close()


def closed_at(sock: socket.socket, deadline: float) -> float:
    """When the server closed the connection (failing if still open at ``deadline``)."""
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        pytest.fail("still open past the keep-alive bound")
    except ConnectionResetError:
        pass
    return time.monotonic()


def test_idle_connections_are_closed_after_the_keep_alive_timeout(
    stuck_server: Server,
) -> None:
    """A kept-alive connection idle after its answer, one that never sends a
    byte, and one whose headers never end: each closed after the bound."""
    kept_alive = bare_connection(stuck_server)
    kept_alive.sendall(
        f"GET /healthz HTTP/1.1\r\nHost: {urlsplit(stuck_server.url).netloc}\r\n\r\n".encode()
    )
    assert kept_alive.recv(65536).startswith(b"HTTP/1.1 200")
    idle_since = {kept_alive: time.monotonic()}
    idle_since[bare_connection(stuck_server)] = time.monotonic()
    half_headers = bare_connection(stuck_server)
    half_headers.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
    idle_since[half_headers] = time.monotonic()
    deadline = time.monotonic() + STUCK_TIMEOUT_S + 10
    for sock, since in idle_since.items():
        with sock:
            assert closed_at(sock, deadline) - since >= STUCK_TIMEOUT_S - 0.5


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
