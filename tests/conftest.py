"""Fixtures: a real TimescaleDB cluster and the real server on loopback.

The suite starts its own PostgreSQL+TimescaleDB cluster (in a temporary
directory, Unix socket only) and its own ``eventbunker serve`` processes;
nothing is mocked.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from eventbunker.admin.projects import create_key, create_project
from eventbunker.cluster import ManagedCluster
from eventbunker.storage.migrate import migrate

SERVER_START_TIMEOUT_S = 30.0
TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"


def shared_testdata(relative: str) -> Path:
    """A file of the shared test data; a missing one fails the tests (never skips them)."""
    path = TESTDATA / relative
    if not path.exists():
        pytest.fail(
            f"test data missing: {path} (the shared test data belongs beside the repository)",
            pytrace=False,
        )
    return path


def wait_until(predicate: Any, timeout_s: float = 30.0) -> bool:
    """Whether ``predicate()`` came true within ``timeout_s`` (polled every 100 ms)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def metric(text: str, sample: str) -> float:
    """The value of ``sample`` (a name, labels included) in a /metrics text."""
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert found, f"{sample} missing from:\n{text}"
    return float(found[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cluster = ManagedCluster(tmp_path_factory.mktemp("cluster"))
    cluster.start()
    try:
        migrate(cluster.conninfo)
        yield cluster.conninfo
    finally:
        cluster.stop()


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    database_url: str,
    log_dir: Path,
    *extra_args: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Server:
    """``eventbunker serve`` on loopback, on a free port unless ``port`` is
    given (a restarted server keeps its address)."""
    port = port or free_port()
    log_path = log_dir / f"server-{port}-{time.monotonic_ns()}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eventbunker",
            "serve",
            "--database-url",
            database_url,
            "--port",
            str(port),
            "--spool-dir",
            str(log_dir / "spool"),
            *extra_args,
        ],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"server did not start:\n{server.log()}")


@contextmanager
def serving(database_url: str, log_dir: Path, *extra_args: str) -> Iterator[Server]:
    """A server with its own flags for the ``with`` block."""
    server = start_server(database_url, log_dir, *extra_args)
    try:
        yield server
    finally:
        stop_server(server)


@contextmanager
def serving_in_a_thread(listener: socketserver.TCPServer) -> Iterator[str]:
    """``listener`` (bound on loopback) served by a thread for the ``with``
    block, its handlers in threads of their own; yields its ``http://`` URL."""
    if isinstance(listener, socketserver.ThreadingMixIn):
        listener.daemon_threads = True
    thread = threading.Thread(target=listener.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.server_address[1]}"
    finally:
        listener.shutdown()
        listener.server_close()


def stop_server(server: Server) -> None:
    stop_process_group(server.process)


def stop_process_group(process: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    """SIGTERM the process group (a graceful stop), SIGKILL after ``timeout_s``."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(database_url, tmp_path_factory.mktemp("server"), "--workers", "2")
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


@dataclass
class Project:
    id: int
    write_key: str
    query_key: str
    delete_key: str


@pytest.fixture
def project(db: psycopg.Connection[Any]) -> Project:
    created = create_project(db, "test")
    keys = created["keys"]
    return Project(created["id"], keys["write"], keys["query"], keys["delete"])


@pytest.fixture
def make_key(db: psycopg.Connection[Any]) -> Any:
    def make(project_id: int, kind: str = "write", customer: str | None = None) -> dict[str, Any]:
        return create_key(db, project_id, kind, customer)

    return make
