"""Query latency at scale: millions of events over 30+ days, queried over HTTP.

Starts its own TimescaleDB cluster (in a temporary directory, or in
``--data-dir`` to keep and reuse the loaded data), loads generated events
with COPY (a realistic spread: daily traffic cycle, countries, devices, UTM
sources, pages, users, a latency metric), then starts the real server and
times typical analyses through ``POST /v1/query``. Prints each latency as
the median of ``--runs`` runs (after one warm-up run).

    .venv/bin/python benches/query_latency.py [--events 5000000] [--runs 5] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import math
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

DAYS = 35
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


def generate(project_id: int, total: int, end: datetime, seed: int = 1) -> Iterator[bytes]:
    """COPY text chunks of ``total`` events in time order over DAYS days up to ``end``."""
    rng = random.Random(seed)
    start = end - timedelta(days=DAYS)
    span_s = DAYS * 86400
    done = 0
    while done < total:
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
                        orjson.dumps(props).decode(),
                    )
                )
            )
        done += k
        yield ("\n".join(lines) + "\n").encode()


def load(conninfo: str, total: int) -> tuple[int, str, str]:
    """The bench project (id, query key), loading ``total`` events unless already there."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('server_version')").fetchone()
        print(f"PostgreSQL {row[0] if row else '?'}", flush=True)
        existing = conn.execute(
            "SELECT p.id, count(e.*) FROM projects p LEFT JOIN events e ON e.project_id = p.id"
            " WHERE p.name = %s GROUP BY p.id",
            (PROJECT_NAME,),
        ).fetchone()
        if existing is not None and existing[1] >= total:
            project_id = int(existing[0])
            print(f"reusing {existing[1]:,} events of project {project_id}", flush=True)
        else:
            project_id = int(create_project(conn, PROJECT_NAME)["id"])
            copy_sql = "COPY events ({}) FROM STDIN".format(", ".join(f'"{c}"' for c in COLUMNS))
            started = time.perf_counter()
            loaded = 0
            end = datetime.now(UTC)
            with conn.cursor() as cur:
                for chunk in generate(project_id, total, end):
                    with conn.transaction(), cur.copy(copy_sql) as copy:
                        copy.write(chunk)
                    loaded += chunk.count(b"\n")
                    if loaded % 1_000_000 < CHUNK_ROWS:
                        rate = loaded / (time.perf_counter() - started)
                        print(f"  loaded {loaded:,} events ({rate:,.0f}/s)", flush=True)
            elapsed = time.perf_counter() - started
            print(f"loaded {loaded:,} events in {elapsed:.0f} s ({loaded / elapsed:,.0f}/s)")
            started = time.perf_counter()
            conn.execute(rebuild_statement(project_id))
            print(f"rollups built in {time.perf_counter() - started:.0f} s", flush=True)
            started = time.perf_counter()
            conn.execute("VACUUM ANALYZE events")
            print(f"VACUUM ANALYZE in {time.perf_counter() - started:.0f} s", flush=True)
        # A fresh query key: secrets are not stored, so a reused project needs a new one.
        query_key = str(create_key(conn, project_id, "query")["key"])
        size = conn.execute("SELECT pg_size_pretty(hypertable_size('events'))").fetchone()
    return project_id, query_key, str(size[0] if size else "?")


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
    print(f"\n{'query':<42} {'rollups':>9} {'raw':>9}  same answer")
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
            print(f"{label:<42} {rollup_ms} {medians[1]:>7.1f}ms  {answers[0] == answers[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5_000_000)
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
        project_id, key, size = load(cluster.conninfo, args.events)
        print(f"events hypertable: {size}")
        compare_sources(cluster.conninfo, project_id, args.runs)
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
