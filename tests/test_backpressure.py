"""Bounded queryable lag: past --max-lag-seconds, while the database answers,
ingest sheds load (503 overloaded + Retry-After) instead of growing a backlog;
/metrics and /readyz say so; the backlog drains and ingest resumes by itself.

The drain is stalled by holding a SHARE lock on ``events`` (reads go on,
inserts wait): the database is reachable, the drainer just cannot commit.
Load on loopback, bounded in count and time."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from conftest import Server, metric, start_server, stop_server
from eventbunker.admin.projects import create_project
from faults import Load, Target, outcome, wait_until_stored

MAX_LAG_S = 1.0


@pytest.fixture
def lagging_server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    server = start_server(
        database_url, tmp_path, "--workers", "1", "--max-lag-seconds", str(MAX_LAG_S)
    )
    try:
        yield server
    finally:
        stop_server(server)


def test_lag_past_the_bound_sheds_load_then_recovers(
    lagging_server: Server, db: psycopg.Connection[Any], database_url: str
) -> None:
    project = create_project(db, "backpressure")
    key = project["keys"]["write"]
    url = lagging_server.url
    load = Load(Target(url), key, batch=20, threads=4)
    with psycopg.connect(database_url) as locker:
        locker.execute("LOCK TABLE events IN SHARE MODE")  # held until the rollback
        load.start()
        try:
            deadline = time.monotonic() + 20
            while load.sent_503 == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert load.sent_503 > 0, "no request was refused while the drain was stalled"
            refused = httpx.post(
                url + "/v1/events", json={"event_name": "late"}, headers={"X-Api-Key": key}
            )
            ready = httpx.get(url + "/readyz")
            metrics = httpx.get(url + "/metrics").text
        finally:
            locker.rollback()
    try:
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "overloaded"
        assert int(refused.headers["retry-after"]) >= 1
        assert ready.status_code == 503
        assert ready.json()["status"] == "shedding"
        assert ready.json()["shedding_load"] is True
        assert ready.json()["queryable_lag_seconds"] > MAX_LAG_S
        assert metric(metrics, "eventbunker_queryable_lag_seconds") > MAX_LAG_S
        assert metric(metrics, "eventbunker_ingest_shedding") == 1
        assert re.search(
            r'^eventbunker_worker_queryable_lag_seconds\{worker="\d+"\} \S+$',
            metrics,
            re.MULTILINE,
        )
        # The drain resumed: the backlog goes, requests are taken again.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if httpx.get(url + "/readyz").status_code == 200:
                break
            time.sleep(0.1)
        assert httpx.get(url + "/readyz").json()["shedding_load"] is False
        time.sleep(1)
        assert load.statuses[202] > 0
    finally:
        load.stop()
    wait_until_stored(db, project["id"], load.acked, timeout_s=30)
    result = outcome(db, project["id"], load.acked)
    assert result.lost == 0 and result.duplicated == 0, result.line()
    after = httpx.post(url + "/v1/events", json={"event_name": "on"}, headers={"X-Api-Key": key})
    assert after.status_code == 202
    lag = metric(httpx.get(url + "/metrics").text, "eventbunker_queryable_lag_seconds")
    assert lag < MAX_LAG_S
