"""The admin commands and the embedded-cluster mode, as a user runs them."""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from conftest import free_port


def eventbunker(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(
        [sys.executable, "-m", "eventbunker", *args], capture_output=True, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stderr.decode()
    return result


def as_json(result: subprocess.CompletedProcess[bytes]) -> Any:
    lines = result.stdout.decode().strip().splitlines()
    assert len(lines) == 1, "admin commands print exactly one JSON object"
    return orjson.loads(lines[0])


def test_project_and_key_commands(database_url: str, db: psycopg.Connection[Any]) -> None:
    project = as_json(eventbunker("project", "create", "shop", "--database-url", database_url))
    assert set(project) == {"id", "name", "keys"}
    assert project["name"] == "shop"
    keys = project["keys"]
    assert keys["write"].startswith("ebw_")
    assert keys["query"].startswith("ebq_")
    assert keys["delete"].startswith("ebd_")

    key = as_json(
        eventbunker(
            "key",
            "create",
            "--project",
            str(project["id"]),
            "--kind",
            "write",
            "--customer-identifier",
            "acme",
            "--database-url",
            database_url,
        )
    )
    assert set(key) == {"id", "key", "kind", "project_id", "customer_identifier"}
    assert (key["kind"], key["project_id"], key["customer_identifier"]) == (
        "write",
        project["id"],
        "acme",
    )

    # Only hashes are stored.
    stored = db.execute(
        "SELECT key_hash, prefix FROM api_keys WHERE id = %s", (key["id"],)
    ).fetchone()
    assert stored is not None
    assert key["key"].encode() not in bytes(stored[0])
    assert len(bytes(stored[0])) == 32
    secrets = [r[0] for r in db.execute("SELECT prefix FROM api_keys")]
    assert all(len(p) < len(key["key"]) for p in secrets)

    revoked = as_json(eventbunker("key", "revoke", str(key["id"]), "--database-url", database_url))
    assert revoked == {"id": key["id"], "revoked": True}


def test_admin_errors_are_clear(database_url: str) -> None:
    result = eventbunker(
        "key",
        "create",
        "--project",
        "999999",
        "--kind",
        "write",
        "--database-url",
        database_url,
        check=False,
    )
    assert result.returncode == 1
    assert b"no project with id 999999" in result.stderr
    assert result.stdout == b""
    result = eventbunker("key", "revoke", "999999", "--database-url", database_url, check=False)
    assert result.returncode == 1
    assert b"no key with id 999999" in result.stderr


def test_serve_runs_and_stops_its_own_cluster(tmp_path: Path) -> None:
    """The README's run path: a fresh data dir, a printed curl that works."""
    data_dir = tmp_path / "data"
    port = free_port()
    log_path = tmp_path / "serve.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eventbunker",
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--workers",
            "1",
            "--quickstart",
        ],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        key = None
        while time.monotonic() < deadline and key is None:
            assert process.poll() is None, log_path.read_text()
            match = re.search(r"X-Api-Key: (ebw_[A-Za-z0-9_-]+)", log_path.read_text())
            key = match[1] if match else None
            time.sleep(0.2)
        assert key, log_path.read_text()
        response = None
        while time.monotonic() < deadline:
            try:
                response = httpx.post(
                    f"http://127.0.0.1:{port}/v1/events",
                    headers={"X-Api-Key": key, "Content-Type": "application/json"},
                    content=b'{"event_name": "signup", "plan": "pro"}',
                )
                break
            except httpx.ConnectError:
                time.sleep(0.2)
        assert response is not None and response.status_code == 202, log_path.read_text()

        # The printed import command works as printed (with a file of ours).
        printed = re.search(r"eventbunker (import .+)", log_path.read_text())
        assert printed, log_path.read_text()
        export = tmp_path / "events.ndjson.gz"
        export.write_bytes(gzip.compress(b'{"event_name": "old", "timestamp": 1500000000}\n' * 3))
        command = printed[1].replace("events.ndjson.gz", str(export)).split()
        summary = as_json(eventbunker(*command, "--quiet"))
        assert (summary["accepted"], summary["rejected"]) == (3, 0)

        # An admin command beside the running server uses its cluster.
        project = as_json(eventbunker("project", "create", "second", "--data-dir", str(data_dir)))
        assert project["id"] >= 2
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0, log_path.read_text()
    # The server stopped its cluster on the way out.
    assert not (data_dir / "pg" / "postmaster.pid").exists()
