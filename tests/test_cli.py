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


def printed_commands(text: str, program: str) -> list[str]:
    """The commands starting with ``program`` in ``text``, with their continuation lines."""
    pattern = rf"^  ({re.escape(program)}\b(?:[^\n]*\\\n)*[^\n]*)$"
    return re.findall(pattern, text, flags=re.MULTILINE)


def shell(command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as a user pastes it (a shell, in the repository)."""
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=60, cwd=root
    )


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
        while "eventbunker import" not in log_path.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        printed = log_path.read_text()
        send, count = printed_commands(printed, "curl")
        (import_command,) = printed_commands(printed, ".venv/bin/eventbunker import")

        # The first curl, as printed, once the server listens.
        while (sent := shell(send)).returncode != 0:  # curl: connection refused
            assert time.monotonic() < deadline, sent.stderr
            time.sleep(0.2)
        assert sent.stdout.startswith("HTTP/1.1 202"), sent.stdout
        # The printed query counts that event, within a second.
        counted = time.monotonic() + 1.0
        while (answer := orjson.loads(shell(count).stdout)) != {"result": 1}:
            assert time.monotonic() < counted, answer
            time.sleep(0.05)

        # The printed web app URL and admin key sign in, and show the project.
        web = re.search(r"Web app: (\S+)/login\n  sign in with the admin key (\S+)", printed)
        assert web, printed
        with httpx.Client(base_url=web[1], timeout=10) as http:
            login = http.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
            assert token, login.text
            signed_in = http.post("/login", data={"admin_key": web[2], "csrf_token": token[1]})
            assert signed_in.status_code == 303, signed_in.text
            assert "default" in http.get("/").text

        # The printed import command works as printed (with a file of ours).
        export = tmp_path / "events.ndjson.gz"
        export.write_bytes(gzip.compress(b'{"event_name": "old", "timestamp": 1500000000}\n' * 3))
        imported = shell(import_command.replace("events.ndjson.gz", str(export)) + " --quiet")
        summary = orjson.loads(imported.stdout)
        assert (summary["accepted"], summary["rejected"]) == (3, 0), imported.stderr

        # An admin command beside the running server uses its cluster.
        project = as_json(eventbunker("project", "create", "second", "--data-dir", str(data_dir)))
        assert project["id"] >= 2
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0, log_path.read_text()
    # The server stopped its cluster on the way out.
    assert not (data_dir / "pg" / "postmaster.pid").exists()


def test_project_retention_command(database_url: str, db: psycopg.Connection[Any]) -> None:
    project = as_json(eventbunker("project", "create", "shop", "--database-url", database_url))
    pid = str(project["id"])
    set_to = as_json(eventbunker("project", "retention", pid, "90", "--database-url", database_url))
    assert set_to == {"id": project["id"], "retention_days": 90}
    forever = as_json(
        eventbunker("project", "retention", pid, "forever", "--database-url", database_url)
    )
    assert forever["retention_days"] is None
    row = db.execute("SELECT retention_days FROM projects WHERE id = %s", (project["id"],))
    assert row.fetchone() == (None,)


def test_project_rate_limit_command(database_url: str, db: psycopg.Connection[Any]) -> None:
    project = as_json(eventbunker("project", "create", "api", "--database-url", database_url))
    pid = str(project["id"])
    flags = ("--database-url", database_url)
    set_to = as_json(eventbunker("project", "rate-limit", pid, "250", "1000", *flags))
    assert set_to == {"id": project["id"], "rate_limit": {"events_per_second": 250, "burst": 1000}}
    rate_only = as_json(eventbunker("project", "rate-limit", pid, "2.5", "default", *flags))
    assert rate_only["rate_limit"] == {"events_per_second": 2.5, "burst": None}
    row = db.execute(
        "SELECT rate_limit_events_per_second, rate_limit_burst FROM projects WHERE id = %s",
        (project["id"],),
    )
    assert row.fetchone() == (2.5, None)
