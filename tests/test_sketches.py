"""Approximate answers from the rollups' sketches (migration 0016) against the
raw rows: exact where the sketches are (small distinct sets), within the
documented error otherwise (query/planner.py), and only when asked."""

from __future__ import annotations

import bisect
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from hypothesis import given
from hypothesis import strategies as st
from test_rollups import NOW, both_ways, store

from conftest import Project, serving
from eventbunker.admin.projects import create_project
from eventbunker.query import planner
from eventbunker.query.request import parse_query
from query_strategies import BASE, SETTINGS, instants

# Ends on no minute: the raw tail (one-event sketches) takes part.
TIMEFRAME = {
    "start": (BASE - timedelta(days=2)).isoformat(),
    "end": (BASE + timedelta(days=45, seconds=7)).isoformat(),
}
# Values hll_hash_text must hash as our Rust does (COPY escapes included).
AWKWARD_IDS = ["u1", "é", "tab\there", "back\\slash", "new\nline", "日本", "a" * 200]


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "timestamp": draw(instants).isoformat(),
        "event_name": draw(st.sampled_from(["view", "buy"])),
    }
    if draw(st.integers(0, 3)):
        event["distinct_id"] = draw(st.sampled_from(AWKWARD_IDS))
    customer = draw(st.sampled_from([None, "c1", "c2", "c3"]))
    if customer is not None:
        event["customer_identifier"] = customer
    if draw(st.booleans()):
        event["metric_name"] = "latency"
        event["metric_value"] = draw(st.integers(0, 100))
    return event


@st.composite
def distinct_queries(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "analysis": "count_unique",
        "approximate": True,
        "target_property": draw(st.sampled_from(["distinct_id", "customer_identifier"])),
    }
    if draw(st.booleans()):
        body["event_name"] = draw(st.sampled_from(["view", "buy"]))
    if draw(st.booleans()):
        body["timeframe"] = TIMEFRAME
        if draw(st.booleans()):
            body["interval"] = draw(st.sampled_from(["daily", "weekly"]))
    if draw(st.booleans()):
        body["group_by"] = draw(st.sampled_from([["event_name"], ["customer_identifier"]]))
    return body


@SETTINGS
@given(
    stored=st.lists(events(), min_size=1, max_size=50),
    imported=st.lists(events(), max_size=20),
    queries=st.lists(distinct_queries(), min_size=1, max_size=5),
)
def test_small_distinct_counts_from_sketches_are_exact(
    client: httpx.Client,
    db: psycopg.Connection[Any],
    stored: list[dict[str, Any]],
    imported: list[dict[str, Any]],
    queries: list[dict[str, Any]],
) -> None:
    """Below ~160 distinct values a HyperLogLog keeps the hashes themselves:
    the approximate answer is the exact one, through the drainer, the import
    job and the raw tail alike (so Rust hashes as hll_hash_text does)."""
    created = create_project(db, "sketches")
    store(client, db, created["keys"]["write"], created["id"], stored, imported)
    for body in queries:
        from_sketches, raw = both_ways(db, created["id"], body)
        assert from_sketches == raw, body


def test_rust_hashes_distinct_ids_as_hll_hash_text(
    client: httpx.Client, db: psycopg.Connection[Any], project: Project
) -> None:
    batch = [
        {"event_name": "view", "distinct_id": d, "timestamp": BASE.isoformat()} for d in AWKWARD_IDS
    ]
    store(client, db, project.write_key, project.id, batch, [])
    row = db.execute(
        "SELECT (SELECT hll_union_agg(distinct_ids) FROM rollups_minute_all"
        "        WHERE project_id = %(p)s)::text,"
        " (SELECT hll_add_agg(hll_hash_text(distinct_id)) FROM events"
        "  WHERE project_id = %(p)s)::text",
        {"p": project.id},
    ).fetchone()
    assert row is not None and row[0] == row[1]


def lognormal_events(rng: random.Random, n: int, users: int) -> list[dict[str, Any]]:
    return [
        {
            "event_name": "request",
            "timestamp": (BASE + timedelta(seconds=rng.randrange(3 * 86400))).isoformat(),
            "distinct_id": f"user-{rng.randrange(users)}",
            "metric_name": "latency",
            "metric_value": round(rng.lognormvariate(3.5, 0.8), 3),
        }
        for _ in range(n)
    ]


def post_query(client: httpx.Client, key: str, body: dict[str, Any]) -> Any:
    r = client.post("/v1/query", json=body, headers={"X-Api-Key": key})
    assert r.status_code == 200, r.text
    return r.json()["result"]


def test_large_answers_are_within_the_documented_error(
    client: httpx.Client, db: psycopg.Connection[Any], project: Project
) -> None:
    """20,000 events of 15,000 users over 3 days: distinct users within 7 %
    (3 standard errors of 2.3 %), median and percentiles within 1 point of
    rank; the same queries without "approximate" stay exact."""
    rng = random.Random(14)
    batch = lognormal_events(rng, 20_000, 15_000)
    store(client, db, project.write_key, project.id, [], batch)  # the import job
    timeframe = {
        "start": BASE.isoformat(),
        "end": (BASE + timedelta(days=3, minutes=5, seconds=3)).isoformat(),
    }
    users = len({e["distinct_id"] for e in batch})
    exact = {"analysis": "count_unique", "target_property": "distinct_id", "timeframe": timeframe}
    assert post_query(client, project.query_key, exact) == users
    estimate = post_query(client, project.query_key, {**exact, "approximate": True})
    assert planner.rollup_source(parse_query({**exact, "approximate": True}, NOW)) is not None
    assert estimate != users  # an estimate indeed, at this size
    assert abs(estimate - users) <= 0.07 * users, (estimate, users)

    values = sorted(e["metric_value"] for e in batch)
    for analysis, percentile in (("median", None), ("percentile", 95), ("percentile", 99)):
        body: dict[str, Any] = {"analysis": analysis, "metric_name": "latency"}
        body["timeframe"] = timeframe
        if percentile is not None:
            body["percentile"] = percentile
        wanted = (percentile or 50) / 100
        answer = post_query(client, project.query_key, {**body, "approximate": True})
        rank = bisect.bisect_left(values, answer) / len(values)
        assert abs(rank - wanted) <= 0.01, (body, answer, rank)
        exact_answer = post_query(client, project.query_key, body)
        row = db.execute(
            "SELECT percentile_cont(%s) WITHIN GROUP (ORDER BY metric_value) FROM events"
            " WHERE project_id = %s",
            (wanted, project.id),
        ).fetchone()
        assert row is not None and exact_answer == row[0]


def test_approximate_is_a_boolean_and_only_widens_what_rollups_answer(
    client: httpx.Client, project: Project
) -> None:
    r = client.post(
        "/v1/query",
        json={"analysis": "count", "approximate": "yes"},
        headers={"X-Api-Key": project.query_key},
    )
    assert r.status_code == 400
    assert r.json()["error"]["details"][0]["field"] == "approximate"
    for body in (
        {"analysis": "count_unique", "target_property": "distinct_id"},
        {"analysis": "median", "metric_name": "t"},
        {"analysis": "count_unique", "target_property": "properties.user", "approximate": True},
        {"analysis": "sum", "target_property": "properties.n", "approximate": True},
        {"analysis": "median", "target_property": "properties.n", "approximate": True},
        {"analysis": "count_unique", "target_property": "geo_city", "approximate": True},
        {"analysis": "median", "target_property": "geo_latitude", "approximate": True},
        {"analysis": "select_unique", "target_property": "distinct_id", "approximate": True},
    ):
        assert planner.rollup_source(parse_query(body, NOW)) is None, body
    for body in (
        {"analysis": "count_unique", "target_property": "customer_identifier", "approximate": True},
        {"analysis": "percentile", "percentile": 90, "metric_name": "t", "approximate": True},
        {"analysis": "count", "approximate": True},
    ):
        assert planner.rollup_source(parse_query(body, NOW)) is not None, body


@SETTINGS
@given(
    stored=st.lists(events(), min_size=1, max_size=50),
    deletes=st.lists(
        st.fixed_dictionaries(
            {"event_name": st.sampled_from(["view", "buy"])},
            optional={"timeframe": st.just(TIMEFRAME)},
        ),
        min_size=1,
        max_size=2,
    ),
    queries=st.lists(distinct_queries(), min_size=1, max_size=3),
)
def test_deletes_keep_sketches_true(
    client: httpx.Client,
    db: psycopg.Connection[Any],
    stored: list[dict[str, Any]],
    deletes: list[dict[str, Any]],
    queries: list[dict[str, Any]],
) -> None:
    created = create_project(db, "sketches")
    store(client, db, created["keys"]["write"], created["id"], stored, [])
    for delete in deletes:
        r = client.post("/v1/delete", json=delete, headers={"X-Api-Key": created["keys"]["delete"]})
        assert r.status_code == 200, r.text
    for body in queries:
        from_sketches, raw = both_ways(db, created["id"], body)
        assert from_sketches == raw, body


def test_without_rollups_writers_skip_them_and_queries_read_raw_rows(
    database_url: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    created = create_project(db, "no-rollups")
    body = {"analysis": "count", "timeframe": TIMEFRAME}
    with (
        serving(database_url, tmp_path, "--no-rollups") as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        batch = [{"event_name": "view", "timestamp": BASE.isoformat()}] * 3
        store(http, db, created["keys"]["write"], created["id"], batch, batch[:2])
        r = http.post("/v1/query", json=body, headers={"X-Api-Key": created["keys"]["query"]})
        assert r.status_code == 200 and r.json()["result"] == 5, r.text
    row = db.execute(
        "SELECT count(*) FROM rollups_minute_all WHERE project_id = %s", (created["id"],)
    ).fetchone()
    assert row == (0,)
