"""Query latency at scale: millions of events over 30+ days, queried over HTTP.

Starts its own TimescaleDB cluster (in a temporary directory, or in
``--data-dir`` to keep and reuse the loaded data), loads generated events
with COPY (a realistic spread: daily traffic cycle, countries, devices, UTM
sources, pages, users, a latency metric) into ``--projects`` projects (the
first holds ``--big-share`` of them, the others share the rest), rebuilds
their rollups (storage.rollups.rebuild_statement), then times each query
of the big project two ways in the database, from the rollups and forced
raw (answers compared), and through ``POST /v1/query`` on the real server.
Each latency is the median of ``--runs`` runs (after one warm-up run).

    .venv/bin/python benches/query_latency.py [--events 5000000] [--days 35] [--runs 5]
        [--projects 1] [--data-dir DIR] [--no-http]

Issue 14's run: ``--events 20000000 --days 90 --projects 10``.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from eventbunker.admin.projects import create_key, create_project
from eventbunker.cluster import ManagedCluster
from eventbunker.query import planner
from eventbunker.query.builder import Scope
from eventbunker.query.request import parse_query
from eventbunker.storage.migrate import migrate
from eventbunker.storage.rollups import rebuild_statement
from processes import free_port, stop, wait_until_up

CHUNK_ROWS = 100_000
PROJECT_NAME = "query-latency-bench"

COLUMNS = (
    "timestamp",
    "received_at",
    "project_id",
    "event_name",
    "metric_name",
    "metric_value",
    "geo_country",
    "geo_city",
    "ua_browser",
    "ua_os",
    "ua_device_type",
    "is_bot",
    "utm_source",
    "url_host",
    "url_path",
    "distinct_id",
    "customer_identifier",
    "properties",
)

EVENT_NAMES = {
    "page_view": 55,
    "click": 20,
    "api_request": 15,
    "add_to_cart": 5,
    "purchase": 3,
    "signup": 2,
}
COUNTRIES = {
    "US": 30, "DE": 10, "GB": 8, "FR": 7, "IN": 7, "BR": 6, "JP": 5, "CA": 4, "ES": 3,
    "IT": 3, "NL": 2, "SE": 1, "PL": 1, "MX": 1, "AU": 1, "KR": 1, "TR": 1, "AR": 1,
    "ZA": 1, "NG": 1, "EG": 1, "ID": 1, "VN": 1, "CH": 1, "BE": 1, r"\N": 3,
}  # fmt: skip
CITIES = {"US": ["New York", "San Francisco", "Austin"], "DE": ["Berlin", "Munich"]}
DEVICES = {"desktop": 55, "mobile": 38, "tablet": 5, "bot": 2}
BROWSERS = {"Chrome": 62, "Safari": 20, "Firefox": 8, "Edge": 7, "Samsung Internet": 3}
SYSTEMS = {"Windows": 40, "Mac OS X": 18, "iOS": 20, "Android": 19, "Linux": 3}
UTM_SOURCES = {r"\N": 60, "google": 20, "newsletter": 8, "twitter": 6, "facebook": 6}
PLANS = {"free": 70, "pro": 25, "enterprise": 5}
PATHS = (
    ["/", "/pricing", "/signup", "/login", "/cart", "/checkout"]
    + [f"/docs/page-{i}" for i in range(60)]
    + [f"/product/{i}" for i in range(2000)]
)
ENDPOINTS = ["/api/search", "/api/cart", "/api/checkout", "/api/products", "/api/user"]
USERS = 200_000


def weighted(table: dict[str, int], k: int, rng: random.Random) -> list[str]:
    return rng.choices(list(table), weights=list(table.values()), k=k)


def generate(
    project_id: int, total: int, end: datetime, days: int, seed: int = 1
) -> Iterator[bytes]:
    """COPY text chunks of ``total`` events in time order over ``days`` days up to
    ``end``, made by a pool of processes (one per core) while the caller COPYs."""
    jobs = [(project_id, total, end, days, seed, done) for done in range(0, total, CHUNK_ROWS)]
    with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1) as pool:
        yield from pool.imap(_chunk, jobs)


def _chunk(job: tuple[int, int, datetime, int, int, int]) -> bytes:
    """The chunk of ``generate`` that starts at event ``done``."""
    project_id, total, end, days, seed, done = job
    rng = random.Random(seed * 1_000_003 + done)
    start = end - timedelta(days=days)
    span_s = days * 86400
    k = min(CHUNK_ROWS, total - done)
    names = weighted(EVENT_NAMES, k, rng)
    countries = weighted(COUNTRIES, k, rng)
    devices = weighted(DEVICES, k, rng)
    browsers = weighted(BROWSERS, k, rng)
    systems = weighted(SYSTEMS, k, rng)
    sources = weighted(UTM_SOURCES, k, rng)
    plans = weighted(PLANS, k, rng)
    paths = rng.choices(PATHS, k=k)
    lines = []
    for i in range(k):
        # Even spread plus a daily cycle (busier afternoons, UTC).
        position = (done + i) / total
        seconds = position * span_s
        seconds += 3600 * 3 * math.sin(2 * math.pi * seconds / 86400)
        ts = (start + timedelta(seconds=seconds)).isoformat()
        name = names[i]
        country = countries[i]
        city = rng.choice(CITIES[country]) if country in CITIES else r"\N"
        user = f"u{int(USERS * rng.random() ** 3)}"  # a few heavy users, a long tail
        device = devices[i]
        if name == "api_request":
            metric_name = "api_latency_ms"
            metric_value = f"{rng.lognormvariate(3.5, 0.6):.2f}"
            props: dict[str, Any] = {"endpoint": rng.choice(ENDPOINTS), "user_id": user}
        else:
            metric_name = metric_value = r"\N"
            props = {"user_id": user, "plan": plans[i], "path": paths[i]}
            if name == "purchase":
                props["amount"] = round(rng.lognormvariate(3.8, 0.8), 2)
                props["items"] = rng.randint(1, 6)
        lines.append(
            "\t".join(
                (
                    ts,
                    ts,
                    str(project_id),
                    name,
                    metric_name,
                    metric_value,
                    country,
                    city,
                    browsers[i],
                    systems[i],
                    device,
                    "t" if device == "bot" else "f",
                    sources[i],
                    "shop.example",
                    paths[i],
                    user,
                    r"\N",  # no customer: written with a project-wide key
                    orjson.dumps(props).decode(),
                )
            )
        )
    return ("\n".join(lines) + "\n").encode()


def shares(total: int, projects: int, big_share: float) -> list[int]:
    """Events per project: the first gets ``big_share``, the others the rest evenly."""
    if projects == 1:
        return [total]
    big = int(total * big_share)
    small = (total - big) // (projects - 1)
    return [total - small * (projects - 1)] + [small] * (projects - 1)


def load(
    conninfo: str, total: int, days: int, projects: int, big_share: float
) -> tuple[int, str, str]:
    """The big bench project (id, query key), loading ``total`` events into
    ``projects`` projects over ``days`` days unless already there."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('server_version')").fetchone()
        print(f"PostgreSQL {row[0] if row else '?'}", flush=True)
        existing = conn.execute(
            "SELECT p.id, count(e.*) FROM projects p LEFT JOIN events e ON e.project_id = p.id"
            " WHERE p.name = %s GROUP BY p.id",
            (PROJECT_NAME,),
        ).fetchone()
        counts = shares(total, projects, big_share)
        if existing is not None and existing[1] >= counts[0]:
            project_id = int(existing[0])
            print(f"reusing {existing[1]:,} events of project {project_id}", flush=True)
        else:
            names = [PROJECT_NAME] + [f"{PROJECT_NAME}-{i}" for i in range(1, projects)]
            ids = [int(create_project(conn, name)["id"]) for name in names]
            project_id = ids[0]
            copy_sql = "COPY events ({}) FROM STDIN".format(", ".join(f'"{c}"' for c in COLUMNS))
            started = time.perf_counter()
            loaded = 0
            end = datetime.now(UTC)
            with conn.cursor() as cur:
                for seed, (pid, count) in enumerate(zip(ids, counts, strict=True), 1):
                    for chunk in generate(pid, count, end, days, seed):
                        with conn.transaction(), cur.copy(copy_sql) as copy:
                            copy.write(chunk)
                        loaded += chunk.count(b"\n")
                        if loaded % 1_000_000 < CHUNK_ROWS:
                            rate = loaded / (time.perf_counter() - started)
                            print(f"  loaded {loaded:,} events ({rate:,.0f}/s)", flush=True)
            elapsed = time.perf_counter() - started
            print(
                f"loaded {loaded:,} events into {projects} projects ({counts[0]:,} in the big"
                f" one) over {days} days in {elapsed:.0f} s ({loaded / elapsed:,.0f}/s)"
            )
            started = time.perf_counter()
            for pid in ids:
                conn.execute(rebuild_statement(pid))
            print(f"rollups built in {time.perf_counter() - started:.0f} s", flush=True)
            started = time.perf_counter()
            conn.execute("VACUUM ANALYZE events")
            print(f"VACUUM ANALYZE in {time.perf_counter() - started:.0f} s", flush=True)
        # A fresh query key: secrets are not stored, so a reused project needs a new one.
        query_key = str(create_key(conn, project_id, "query")["key"])
        size = conn.execute(
            "SELECT pg_size_pretty(hypertable_size('events')), pg_size_pretty(sum("
            "pg_total_relation_size(format('rollups_%s', t)))) FROM unnest(ARRAY["
            "'hour', 'day', 'minute_all', 'hour_all', 'day_all']) t"
        ).fetchone()
    return project_id, query_key, f"{size[0]}, rollups {size[1]}" if size else "?"


def start_server(
    conninfo: str, workers: int, log_path: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "eventbunker", "serve", "--database-url", conninfo,
         "--port", str(port), "--workers", str(workers)],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "EVENTBUNKER_QUERY_TIMEOUT_MS": "120000"},
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/healthz", process)
    return process, url


QUERIES: list[tuple[str, dict[str, Any]]] = [
    (
        "count per hour, 7 days",
        {"analysis": "count", "timeframe": "this_7_days", "interval": "hourly"},
    ),
    (
        "avg of a metric per hour, 7 days",
        {
            "analysis": "avg",
            "metric_name": "api_latency_ms",
            "timeframe": "this_7_days",
            "interval": "hourly",
        },
    ),
    (
        "purchases by utm_source, 30 days",
        {
            "analysis": "count",
            "event_name": "purchase",
            "timeframe": "this_30_days",
            "group_by": ["utm_source"],
        },
    ),
    (
        "count, 30 days by day",
        {"analysis": "count", "timeframe": "this_30_days", "interval": "daily"},
    ),
    (
        "count by geo_country, 30 days",
        {"analysis": "count", "timeframe": "this_30_days", "group_by": ["geo_country"]},
    ),
    (
        "p95 of a metric per hour, 7 days",
        {
            "analysis": "percentile",
            "percentile": 95,
            "metric_name": "api_latency_ms",
            "timeframe": "this_7_days",
            "interval": "hourly",
        },
    ),
    (
        "count_unique properties.user_id, 7 days",
        {
            "analysis": "count_unique",
            "target_property": "properties.user_id",
            "timeframe": "this_7_days",
        },
    ),
    (
        "extraction of 100 events with a filter",
        {
            "analysis": "extraction",
            "limit": 100,
            "event_name": "purchase",
            "filters": [{"property": "geo_country", "operator": "eq", "value": "FR"}],
        },
    ),
    (
        "count of one event, 30 days by day",
        {
            "analysis": "count",
            "event_name": "signup",
            "timeframe": "this_30_days",
            "interval": "daily",
        },
    ),
    # The dashboard set of issue 14 (with the per-day, per-hour, p95 and
    # by-country queries above).
    (
        "p95 of a metric per hour, 7 days, approx.",
        {
            "analysis": "percentile",
            "percentile": 95,
            "metric_name": "api_latency_ms",
            "timeframe": "this_7_days",
            "interval": "hourly",
            "approximate": True,
        },
    ),
    (
        "distinct users, 7 days",
        {"analysis": "count_unique", "target_property": "distinct_id", "timeframe": "this_7_days"},
    ),
    (
        "distinct users, 7 days, approx.",
        {
            "analysis": "count_unique",
            "target_property": "distinct_id",
            "timeframe": "this_7_days",
            "approximate": True,
        },
    ),
    (
        "funnel: add_to_cart, purchase, 30 days",
        {
            "analysis": "count",
            "timeframe": "this_30_days",
            "filters": [
                {"property": "event_name", "operator": "in", "value": ["add_to_cart", "purchase"]}
            ],
            "group_by": ["event_name"],
        },
    ),
    (
        "sum properties.amount by plan, 30 days",
        {
            "analysis": "sum",
            "event_name": "purchase",
            "target_property": "properties.amount",
            "group_by": ["properties.plan"],
            "timeframe": "this_30_days",
        },
    ),
]


def time_queries(url: str, key: str, runs: int) -> None:
    print(f"\n{'query':<42} {'median':>9} {'min':>9} {'max':>9}  answer")
    with httpx.Client(base_url=url, timeout=300, headers={"X-Api-Key": key}) as client:
        for label, body in QUERIES:
            timings = []
            answer: Any = None
            for _ in range(runs + 1):  # the first run warms the caches
                started = time.perf_counter()
                response = client.post("/v1/query", json=body)
                timings.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise SystemExit(f"{label}: {response.status_code} {response.text}")
                answer = response.json()["result"]
            timings = timings[1:]
            summary = f"{len(answer)} rows" if isinstance(answer, list) else f"{answer:,.6g}"
            print(
                f"{label:<42} {statistics.median(timings) * 1000:>7.0f}ms"
                f" {min(timings) * 1000:>7.0f}ms {max(timings) * 1000:>7.0f}ms  {summary}",
                flush=True,
            )


def compare_sources(conninfo: str, project_id: int, runs: int) -> None:
    """Each query from the rollups and forced raw, as SQL in the database (no
    HTTP), median of ``runs`` after a warm-up; answers checked equal."""
    print(f"\n{'query':<42} {'rollups':>9} {'raw':>9}  answers")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET jit = off; SET work_mem = '64MB'")
        for label, body in QUERIES:
            query = parse_query(body, datetime.now(UTC))
            medians, answers = [], []
            for rollups in (True, False):
                plan = planner.plan(query, Scope(project_id, None), rollups=rollups)
                timings = []
                for _ in range(runs + 1):
                    started = time.perf_counter()
                    rows = conn.execute(plan.statement, plan.params).fetchall()
                    timings.append(time.perf_counter() - started)
                medians.append(statistics.median(timings[1:]) * 1000)
                answers.append(plan.shape(rows))
            covered = planner.rollup_source(query) is not None
            rollup_ms = f"{medians[0]:>7.1f}ms" if covered else f"{'raw':>9}"
            if query.approximate and covered:
                same = f"approx.: {approximation_error(answers[0], answers[1])}"
            elif answers[0] == answers[1]:
                same = "identical"
            else:
                # Float sums in another order (query/planner.py): the last bits.
                same = "to 1e-12" if agree(answers[0], answers[1]) else "DIFFERENT"
            print(f"{label:<42} {rollup_ms} {medians[1]:>7.1f}ms  {same}", flush=True)


def agree(a: Any, b: Any) -> bool:
    """Equal answers, floats to a relative 1e-12."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(agree(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(agree(a[k], b[k]) for k in a)
    return bool(a == b)


def approximation_error(estimate: Any, exact: Any) -> str:
    """The largest relative error of an approximate answer (a number or a series)."""
    if not isinstance(exact, list):
        estimate, exact = [{"value": estimate}], [{"value": exact}]
    errors = [
        abs(e["value"] - x["value"]) / abs(x["value"])
        for e, x in zip(estimate, exact, strict=True)
        if x["value"] and e["value"] is not None
    ]
    return f"max {max(errors, default=0.0):.2%} over {len(errors)} values"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=35, help="the time span of the events")
    parser.add_argument("--projects", type=int, default=1)
    parser.add_argument(
        "--big-share", type=float, default=0.82, help="the first project's share of the events"
    )
    parser.add_argument("--no-http", action="store_true", help="time in the database only")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--data-dir", type=Path, help="keep the cluster here (and reuse its data next time)"
    )
    args = parser.parse_args()
    temporary = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="eventbunker-qbench-")) if temporary else args.data_dir
    cluster = ManagedCluster(data_dir)
    cluster.start()
    try:
        migrate(cluster.conninfo)
        project_id, key, size = load(
            cluster.conninfo, args.events, args.days, args.projects, args.big_share
        )
        print(f"events hypertable: {size}")
        compare_sources(cluster.conninfo, project_id, args.runs)
        if args.no_http:
            return
        with tempfile.TemporaryDirectory() as logs:
            process, url = start_server(cluster.conninfo, args.workers, Path(logs) / "server.log")
            try:
                time_queries(url, key, args.runs)
            finally:
                stop(process)
    finally:
        cluster.stop()
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
