"""Imports under faults: cut database connections and a killed server. A
named import resumed from its committed line stores every line once."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from conftest import Project, start_server, stop_server
from faults import ConnectionCutter

LINES = 200_000


def numbered_lines(count: int) -> list[bytes]:
    return [
        orjson.dumps(
            # Every other event has an id: claims are cut too.
            {"event_name": "migrated", "timestamp": 1_600_000_000 + n, "n": n}
            | ({"event_id": f"id-{n}"} if n % 2 else {})
        )
        + b"\n"
        for n in range(1, count + 1)
    ]


def send_from(
    http: httpx.Client,
    key: str,
    lines: list[bytes],
    import_id: str,
    first_line: int,
    *,
    lines_per_second: int = 0,
) -> httpx.Response:
    """POST the lines from ``first_line``; paced when ``lines_per_second`` is set."""
    body: bytes | Iterator[bytes] = b"".join(lines[first_line - 1 :])
    if lines_per_second:
        body = paced(lines[first_line - 1 :], lines_per_second)
    return http.post(
        "/v1/events/import",
        content=body,
        headers={
            "X-Api-Key": key,
            "X-Import-Id": import_id,
            "X-Import-First-Line": str(first_line),
        },
        timeout=120,
    )


def paced(lines: list[bytes], lines_per_second: int) -> Iterator[bytes]:
    block = lines_per_second // 20
    for start in range(0, len(lines), block):
        yield b"".join(lines[start : start + block])
        time.sleep(0.05)


def stored_once(db: psycopg.Connection[Any], project_id: int) -> tuple[int, int, int]:
    row = db.execute(
        "SELECT count(*), count(DISTINCT properties->>'n'), max((properties->>'n')::int)"
        " FROM events WHERE project_id = %s",
        (project_id,),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2] or 0)


def test_cut_connections_then_resume_store_every_line_once(
    client: httpx.Client, project: Project, db: psycopg.Connection[Any], database_url: str
) -> None:
    lines = numbered_lines(LINES)
    cutter = ConnectionCutter(database_url, "eventbunker-import", interval_s=0.3)
    cutter.start()
    attempts, refused, first_line = 0, 0, 1
    try:
        while attempts < 200:
            attempts += 1
            r = send_from(client, project.write_key, lines, "cut", first_line)
            if r.status_code == 200:
                break
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"]
            refused += 1
            first_line = r.json()["committed_lines"] + 1
            # What the answer says is committed is exactly what is stored.
            assert stored_once(db, project.id)[0] == first_line - 1
            if refused >= 5:
                cutter.stop()  # enough cuts seen: let it finish
    finally:
        cutter.stop()
    print(
        f"\n[import cuts] {cutter.cuts} connections cut, {refused} answers 503, {attempts} attempts"
    )
    assert r.status_code == 200, r.text
    assert refused >= 3
    assert stored_once(db, project.id) == (LINES, LINES, LINES)
    billed = db.execute(
        "SELECT sum(events) FROM write_counters WHERE project_id = %s", (project.id,)
    ).fetchone()
    assert billed == (LINES,)


def test_a_killed_server_then_resume_store_every_line_once(
    database_url: str, tmp_path: Path, project: Project, db: psycopg.Connection[Any]
) -> None:
    lines = numbered_lines(LINES)
    server = start_server(database_url, tmp_path, "--workers", "1")
    result: dict[str, Any] = {}

    def send() -> None:
        with httpx.Client(base_url=server.url) as http:
            try:
                # Paced below the import's speed: the kill lands mid-import.
                result["response"] = send_from(
                    http, project.write_key, lines, "killed", 1, lines_per_second=100_000
                )
            except httpx.HTTPError as exc:
                result["error"] = exc

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    deadline = time.monotonic() + 30
    first_commit = "SELECT EXISTS (SELECT FROM events WHERE project_id = %s)"
    while time.monotonic() < deadline and db.execute(first_commit, (project.id,)).fetchone() == (
        False,
    ):
        time.sleep(0.05)
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()
    sender.join(timeout=30)
    assert "error" in result, "the import finished before the kill: nothing was tested"
    stored_at_kill = stored_once(db, project.id)[0]
    assert 0 < stored_at_kill < LINES

    server = start_server(database_url, tmp_path, "--workers", "1")
    try:
        with httpx.Client(base_url=server.url) as http:
            progress = http.get(
                "/v1/events/import/killed", headers={"X-Api-Key": project.write_key}
            ).json()
            assert progress["committed_lines"] == stored_at_kill
            r = send_from(http, project.write_key, lines, "killed", progress["committed_lines"] + 1)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == LINES - stored_at_kill
    finally:
        stop_server(server)
    print(f"\n[import kill -9] {stored_at_kill} committed before the kill, rest on resume")
    assert stored_once(db, project.id) == (LINES, LINES, LINES)
