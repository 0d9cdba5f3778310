"""Retention: exactly the events before the project's cut-off (a UTC midnight)
go, other projects keep theirs, rollups follow, billed counts stay."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

import query_reference as ref
from conftest import Project
from eventbunker.admin.accounts import create_account
from eventbunker.admin.projects import create_project
from eventbunker.storage.retention import enforce_retention


def enforce(database_url: str, max_days: int = 50) -> int:
    async def run() -> int:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await enforce_retention(conn, max_days)

    return asyncio.run(run())


def rollup_total(db: psycopg.Connection[Any], project_id: int, level: str) -> int:
    row = db.execute(
        f"SELECT coalesce(sum(events), 0) FROM rollups_{level} WHERE project_id = %s",
        (project_id,),
    ).fetchone()
    return int(row[0]) if row else 0


def test_retention_deletes_exactly_what_is_out_of_it(
    database_url: str, db: psycopg.Connection[Any], project: Project
) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    cutoff = today - timedelta(days=10)
    offsets = [
        timedelta(days=-25),
        timedelta(days=-1),
        timedelta(microseconds=-1),
        timedelta(0),
        timedelta(microseconds=1),
        timedelta(days=3),
    ]
    events = [{"timestamp": cutoff + o, "event_name": "view"} for o in offsets]
    keeper = create_project(db, "keeps everything")["id"]
    ref.load(db, project.id, events)
    ref.load(db, keeper, events)
    db.execute(
        "INSERT INTO write_counters (project_id, day, shard, events) VALUES (%s, %s, 0, 6)",
        (project.id, today.date()),
    )
    db.execute("UPDATE projects SET retention_days = 10 WHERE id = %s", (project.id,))

    assert enforce(database_url) == 3
    left = [
        r[0]
        for r in db.execute(
            'SELECT "timestamp" FROM events WHERE project_id = %s ORDER BY 1', (project.id,)
        ).fetchall()
    ]
    assert left == [cutoff + o for o in offsets[3:]]
    for level in ("hour", "day", "minute_all", "hour_all", "day_all"):
        assert rollup_total(db, project.id, level) == 3
        assert rollup_total(db, keeper, level) == 6
    row = db.execute(
        "SELECT sum(events) FROM write_counters WHERE project_id = %s", (project.id,)
    ).fetchone()
    assert row is not None and row[0] == 6
    assert enforce(database_url) == 0  # nothing more to do


def test_retention_is_set_through_the_admin_api(
    client: httpx.Client, db: psycopg.Connection[Any]
) -> None:
    account = create_account(db, "retained")
    headers = {"Authorization": f"Bearer {account['admin_key']}"}
    created = client.post("/v1/projects", json={"name": "shop"}, headers=headers)
    assert created.status_code in (200, 201), created.text
    pid = created.json()["id"]
    r = client.put(f"/v1/projects/{pid}/retention", json={"retention_days": 30}, headers=headers)
    assert r.status_code == 200 and r.json()["retention_days"] == 30, r.text
    row = db.execute("SELECT retention_days FROM projects WHERE id = %s", (pid,)).fetchone()
    assert row == (30,)
    assert client.get(f"/v1/projects/{pid}", headers=headers).json()["retention_days"] == 30
    listed = client.get("/v1/projects", headers=headers).json()["projects"]
    assert [p["retention_days"] for p in listed if p["id"] == pid] == [30]
    for bad in (0, -1, "30", True, 1.5):
        r = client.put(
            f"/v1/projects/{pid}/retention", json={"retention_days": bad}, headers=headers
        )
        assert r.status_code == 400, (bad, r.text)
    r = client.put(f"/v1/projects/{pid}/retention", json={"retention_days": None}, headers=headers)
    assert r.status_code == 200 and r.json()["retention_days"] is None
    assert client.get(f"/v1/projects/{pid}", headers=headers).json()["retention_days"] is None
