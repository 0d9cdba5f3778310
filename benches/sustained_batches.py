"""Sustained SDK-sized batches: acknowledged vs stored during the load, lag, and COPY (issue 11).

One run, on one managed TimescaleDB cluster, alternating per round:

- ours: ``eventbunker serve`` (2 workers, GeoIP test database) under wrk,
  32 connections posting 100-event batches (~22 KB: User-Agent header, a url
  with UTM tags, a referrer and an ip per event) for ``--duration`` seconds.
  Every 100 ms a sampler reads the server's queryable lag (``/metrics``:
  the age of the oldest acknowledged event not yet in ``events``, max over
  workers) and the billed counters (events committed so far). After the load:
  the time to drain, and ``count(*)`` checked against wrk's 202s.
- baseline: ``psql \\copy`` of exactly the rows ours stored into the same
  (emptied) table: the physical ceiling of this machine for these rows.

Then, at half the saturated rate (wrk paced by a Lua delay), a probe sends one
event every 20 ms and polls ``events`` until it is there: the time from its
``202`` to queryable, p50/p99.

With ``--rollups-cost``, each round also runs ours with ``--no-rollups``
(before or after the run with them, in turns, same load; the events then
also carry a ``distinct_id`` and some a metric, for the sketches): the ingest cost of keeping the
live rollups, as stored ev/s with / without (issue 14: at least 0.85).

    .venv/bin/python benches/sustained_batches.py [--duration 60] [--rounds 1] [--rollups-cost]
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import psycopg

from eventbunker.admin.projects import create_project
from eventbunker.cluster import ManagedCluster
from eventbunker.storage.migrate import migrate
from pg_meter import Meter, Periodic, export_rows, postmaster_pid, reset, run_baseline
from processes import free_port, serve_command, stop, wait_until_up
from wrk import LoadResult, run_wrk

ROOT = Path(__file__).resolve().parent.parent
GEOIP_DB = ROOT.parent / "shared/testdata/geoip/GeoIP2-City-Test.mmdb"
BODIES = 16  # distinct batch bodies, rotated by the wrk script
SAMPLE_EVERY_S = 0.1
PROBE_EVERY_S = 0.02
MUST = {"stored_vs_copy": 0.7, "lag_p99_s": 1.0, "probe_p99_ms": 250.0, "rollups_cost": 0.85}

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.0.0 Mobile Safari/537.36",
]
IPS = ["81.2.69.142", "81.2.69.160", "2001:480:10::1", "216.160.83.56", "89.160.20.112"]
NAMES = ["page_view", "page_view", "page_view", "add_to_cart", "search", "signup"]


ID_MARK = "@@"  # replaced per request by the wrk script: unique event ids


def batch_body(
    rng: random.Random, size: int, event_ids: bool = False, people: bool = False
) -> bytes:
    """With ``people``, each event also names its person (``distinct_id``, of
    5,000) and one in five carries a metric: work for the rollups' sketches."""
    events = []
    for n in range(size):
        sketched: dict[str, object] = {}
        if people:
            sketched["distinct_id"] = f"user-{rng.randrange(5_000)}"
            if n % 5 == 0:
                sketched |= {"metric_name": "load_ms", "metric_value": rng.randint(5, 900)}
        path = rng.choice(["/", "/products/42", "/cart", "/blog/launch", "/pricing"])
        events.append(
            {
                "event_name": rng.choice(NAMES),
                "url": f"https://shop.example{path}?utm_source=newsletter&utm_medium=email"
                f"&utm_campaign=spring-{rng.randint(1, 9)}",
                "referrer": rng.choice(["https://www.google.com/", "https://news.example/a"]),
                "ip": rng.choice(IPS),
                "plan": rng.choice(["free", "pro", "enterprise"]),
                "cart_value": round(rng.uniform(1, 300), 2),
                "session_id": f"{rng.getrandbits(64):016x}",
                **({"event_id": f"{ID_MARK}-{n}"} if event_ids else {}),
                **sketched,
            }
        )
    return orjson.dumps(events)


def wrk_script(bodies: list[bytes], key: str, delay_ms: float) -> str:
    """Rotate the bodies (and a User-Agent each); pace with ``delay_ms`` when > 0."""
    items = ",\n".join(
        f"  {{[=[{body.decode()}]=], [=[{USER_AGENTS[i % len(USER_AGENTS)]}]=]}}"
        for i, body in enumerate(bodies)
    )
    pacing = f"function delay() return {delay_ms:.3f} end\n" if delay_ms > 0 else ""
    return f"""
local bodies = {{
{items}
}}
local n = 0
local sent = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function request()
  n = n % #bodies + 1
  sent = sent + 1
  local body = bodies[n][1]
  if body:find("{ID_MARK}", 1, true) then
    body = body:gsub("{ID_MARK}", (tid or 0) .. "-" .. sent)
  end
  return wrk.format("POST", "/v1/events", {{
    ["Content-Type"] = "application/json",
    ["X-Api-Key"] = "{key}",
    ["User-Agent"] = bodies[n][2],
  }}, body)
end
{pacing}"""


class Sampler(Periodic):
    """Every 100 ms: the server's lag gauge and the events committed so far."""

    def __init__(self, url: str, conninfo: str, project_id: int) -> None:
        super().__init__(SAMPLE_EVERY_S)
        self.url, self.conninfo, self.project_id = url, conninfo, project_id
        self.lags: list[float] = []
        self.stored: list[tuple[float, int]] = []

    def _run(self) -> None:
        with (
            httpx.Client(timeout=2) as http,
            psycopg.connect(self.conninfo, autocommit=True) as conn,
        ):
            while not self._stop.wait(self.interval_s):
                self.lags.append(server_lag(http, self.url))
                self.stored.append((time.monotonic(), committed(conn, self.project_id)))


def server_lag(http: httpx.Client, url: str) -> float:
    text = http.get(url + "/metrics").text
    found = re.search(r"^eventbunker_queryable_lag_seconds (\S+)$", text, re.MULTILINE)
    if found is None:
        raise SystemExit("the server exposes no eventbunker_queryable_lag_seconds")
    return float(found[1])


def committed(conn: psycopg.Connection[tuple[int]], project_id: int) -> int:
    """Events committed for the project: the billed counters grow in the same transaction."""
    row = conn.execute(
        "SELECT coalesce(sum(events), 0)::bigint FROM write_counters WHERE project_id = %s",
        (project_id,),
    ).fetchone()
    return int(row[0]) if row else 0


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@dataclass
class Ours:
    acknowledged: int
    refused: int
    ack_per_s: float
    stored_per_s: float  # during the load
    lag_p50: float
    lag_p99: float
    lag_max: float
    drain_after_s: float
    stored_total: int
    server_cpu_s: float
    postgres_cpu_s: float


@dataclass
class Round:
    ours: Ours
    copy_per_s: float
    copy_postgres_cpu_s: float
    without_rollups: Ours | None = None
    extra: dict[str, float] = field(default_factory=dict)


def run_ours(
    args: argparse.Namespace,
    cluster: ManagedCluster,
    tmp: Path,
    project: dict[str, object],
    rollups: bool = True,
) -> Ours:
    project_id = int(project["id"])  # type: ignore[call-overload]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp / f"server-{port}.log").open("wb")
    geoip = args.geoip_db if args.geoip_db.exists() else None
    command = serve_command(cluster.conninfo, port, args.workers, tmp / "spool", geoip)
    process = subprocess.Popen(
        command + ([] if rollups else ["--no-rollups"]),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until_up(url + "/healthz", process)
        script = tmp / "batches.lua"
        script.write_text(wrk_script(args.bodies, str(project["keys"]["write"]), 0))  # type: ignore[index]
        run_wrk(url + "/v1/events", script, 2, args.connections)  # warm-up
        wait_drained(url)
        reset(cluster.conninfo)
        meter = Meter(process.pid, postmaster_pid(cluster))
        with meter.measure() as cpu, Sampler(url, cluster.conninfo, project_id) as sampler:
            load = run_wrk(url + "/v1/events", script, args.duration, args.connections)
            end_of_load = time.monotonic()
        drain_started = time.monotonic()
        wait_drained(url)
        drain_after_s = time.monotonic() - drain_started
        with psycopg.connect(cluster.conninfo) as conn:
            row = conn.execute(
                "SELECT count(*) FROM events WHERE project_id = %s", (project_id,)
            ).fetchone()
            stored_total = int(row[0]) if row else 0
    finally:
        stop(process)
    if load.non_2xx == load.requests:
        raise SystemExit(f"every request was refused; the server's log: {log.name}")
    acknowledged = (load.requests - load.non_2xx) * args.batch
    during = [n for t, n in sampler.stored if t <= end_of_load]
    stored_during = during[-1] if during else 0
    # wrk stops mid-request at its deadline: a request it no longer counts may
    # have been acknowledged, never the other way round.
    if not acknowledged <= stored_total <= acknowledged + args.connections * args.batch:
        raise SystemExit(f"FAIL: acknowledged {acknowledged:,} but stored {stored_total:,}")
    return Ours(
        acknowledged=acknowledged,
        refused=load.non_2xx,
        ack_per_s=acknowledged / load.seconds,
        stored_per_s=stored_during / load.seconds,
        lag_p50=quantile(sampler.lags, 0.5),
        lag_p99=quantile(sampler.lags, 0.99),
        lag_max=max(sampler.lags, default=0.0),
        drain_after_s=drain_after_s,
        stored_total=stored_total,
        server_cpu_s=cpu["server_cpu_s"],
        postgres_cpu_s=cpu["postgres_cpu_s"],
    )


def wait_drained(url: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2) as http:
        while time.monotonic() < deadline:
            metrics = http.get(url + "/metrics").text
            backlog = re.search(r"^eventbunker_spool_backlog_bytes (\S+)$", metrics, re.M)
            pending = re.search(r"^eventbunker_spool_pending_bytes (\S+)$", metrics, re.M)
            if backlog and pending and float(backlog[1]) == 0 and float(pending[1]) == 0:
                return
            time.sleep(0.05)
    raise SystemExit("the spool did not drain")


def run_copy(cluster: ManagedCluster, tmp: Path, project_id: int) -> tuple[float, float]:
    rows = tmp / "rows.copy"
    export_rows(cluster, project_id, rows)
    count = sum(1 for _ in rows.open("rb"))
    reset(cluster.conninfo)
    measured = run_baseline(cluster, rows, Meter(None, postmaster_pid(cluster)))
    rows.unlink()
    return count / measured["wall_s"], measured["postgres_cpu_s"] / count * 1e6


def probe_latency(
    args: argparse.Namespace, cluster: ManagedCluster, tmp: Path, rate_per_s: float
) -> tuple[float, float, float, int]:
    """202 → queryable under a paced load at ``rate_per_s`` events/s: p50, p99 (ms), the
    achieved load rate and the number of probes."""
    with psycopg.connect(cluster.conninfo) as conn:
        load_project = create_project(conn, "paced-load")
        probe_project = create_project(conn, "probe")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    geoip = args.geoip_db if args.geoip_db.exists() else None
    process = subprocess.Popen(
        serve_command(cluster.conninfo, port, args.workers, tmp / "spool", geoip),
        cwd=ROOT,
        stdout=(tmp / f"server-{port}.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    latencies: list[float] = []
    try:
        wait_until_up(url + "/healthz", process)
        requests_per_s = rate_per_s / args.batch
        delay_ms = args.connections / requests_per_s * 1000
        script = tmp / "paced.lua"
        script.write_text(wrk_script(args.bodies, str(load_project["keys"]["write"]), delay_ms))
        result: list[LoadResult] = []
        load = threading.Thread(
            target=lambda: result.append(
                run_wrk(url + "/v1/events", script, args.probe_duration, args.connections)
            )
        )
        load.start()
        time.sleep(1)
        key = str(probe_project["keys"]["write"])
        deadline = time.monotonic() + args.probe_duration - 2
        with (
            httpx.Client(base_url=url, timeout=5) as http,
            psycopg.connect(cluster.conninfo, autocommit=True) as conn,
        ):
            n = 0
            while time.monotonic() < deadline:
                n += 1
                name = f"probe-{n}"
                answer = http.post(
                    "/v1/events", json={"event_name": name}, headers={"X-Api-Key": key}
                )
                acknowledged = time.perf_counter()
                if answer.status_code != 202:
                    continue
                while not conn.execute(
                    "SELECT 1 FROM events WHERE project_id = %s AND event_name = %s",
                    (probe_project["id"], name),
                ).fetchone():
                    pass
                latencies.append((time.perf_counter() - acknowledged) * 1000)
                time.sleep(PROBE_EVERY_S)
        load.join()
    finally:
        stop(process)
    achieved = (result[0].requests - result[0].non_2xx) * args.batch / result[0].seconds
    return quantile(latencies, 0.5), quantile(latencies, 0.99), achieved, len(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=60, help="seconds of sustained load")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of each")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--probe-duration", type=float, default=20)
    parser.add_argument("--geoip-db", type=Path, default=GEOIP_DB)
    parser.add_argument(
        "--event-ids", action="store_true", help="a unique event_id on every event (SDKs send one)"
    )
    parser.add_argument(
        "--rollups-cost",
        action="store_true",
        help="each round also without live rollups (--no-rollups): their ingest cost",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (or scripts/setup.sh)")
    rng = random.Random(11)
    args.bodies = [
        batch_body(rng, args.batch, args.event_ids, args.rollups_cost) for _ in range(BODIES)
    ]
    size = statistics.mean(len(b) for b in args.bodies)
    print(
        f"batches of {args.batch} events ({size / 1000:.1f} KB), {args.connections} connections,"
        f" {args.duration:.0f} s, {args.workers} workers, GeoIP: {args.geoip_db.exists()},"
        f" event ids: {'unique per event' if args.event_ids else 'none'}",
        flush=True,
    )
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="eb-sustained-") as tmp_name:
        tmp = Path(tmp_name)
        cluster = ManagedCluster(tmp / "cluster")
        cluster.start()
        try:
            migrate(cluster.conninfo)
            with psycopg.connect(cluster.conninfo) as conn:
                project = create_project(conn, "sustained")
            for i in range(args.rounds):
                # With and without rollups in turns, first one then the other
                # (the table grows: neither always runs on the bigger one).
                without = None
                if args.rollups_cost and i % 2:
                    without = run_ours(args, cluster, tmp, project, rollups=False)
                ours = run_ours(args, cluster, tmp, project)
                if args.rollups_cost and not i % 2:
                    without = run_ours(args, cluster, tmp, project, rollups=False)
                copy_per_s, copy_us = run_copy(cluster, tmp, int(project["id"]))
                rounds.append(Round(ours, copy_per_s, copy_us, without))
                print_round(i + 1, rounds[-1], args)
            best = max(r.ours.ack_per_s for r in rounds)
            p50, p99, achieved, probes = probe_latency(args, cluster, tmp, best / 2)
        finally:
            cluster.stop()
    report(rounds, (p50, p99, achieved, probes))


def print_round(number: int, r: Round, args: argparse.Namespace) -> None:
    o = r.ours
    print(
        f"round {number}: acknowledged {o.ack_per_s:,.0f} ev/s ({o.acknowledged:,} events,"
        f" {o.refused} refused requests), stored during the load {o.stored_per_s:,.0f} ev/s,"
        f" \\copy {r.copy_per_s:,.0f} rows/s; lag p50 {o.lag_p50:.2f} s p99 {o.lag_p99:.2f} s"
        f" max {o.lag_max:.2f} s; drained {o.drain_after_s:.1f} s after the load;"
        f" CPU µs/event: server {o.server_cpu_s / max(o.stored_total, 1) * 1e6:.1f},"
        f" PostgreSQL {o.postgres_cpu_s / max(o.stored_total, 1) * 1e6:.1f}"
        f" (\\copy: {r.copy_postgres_cpu_s:.1f})",
        flush=True,
    )
    if r.without_rollups is not None:
        w = r.without_rollups
        print(
            f"round {number} without rollups: acknowledged {w.ack_per_s:,.0f} ev/s, stored during"
            f" the load {w.stored_per_s:,.0f} ev/s; lag p99 {w.lag_p99:.2f} s; CPU µs/event:"
            f" server {w.server_cpu_s / max(w.stored_total, 1) * 1e6:.1f},"
            f" PostgreSQL {w.postgres_cpu_s / max(w.stored_total, 1) * 1e6:.1f}",
            flush=True,
        )


def report(rounds: list[Round], probe: tuple[float, float, float, int]) -> None:
    print()
    print(
        f"{'round':>5} {'ack ev/s':>10} {'stored ev/s':>12} {'copy rows/s':>12} {'ratio':>6}"
        f" {'lag p50':>8} {'lag p99':>8} {'lag max':>8} {'503s':>6}"
    )
    for i, r in enumerate(rounds, 1):
        o = r.ours
        print(
            f"{i:>5} {o.ack_per_s:>10,.0f} {o.stored_per_s:>12,.0f} {r.copy_per_s:>12,.0f}"
            f" {o.stored_per_s / r.copy_per_s:>6.2f} {o.lag_p50:>8.2f} {o.lag_p99:>8.2f}"
            f" {o.lag_max:>8.2f} {o.refused:>6}"
        )
    ratio = statistics.median(r.ours.stored_per_s / r.copy_per_s for r in rounds)
    costs = [
        r.ours.stored_per_s / r.without_rollups.stored_per_s
        for r in rounds
        if r.without_rollups is not None
    ]
    extra = {}
    if costs:
        extra["rollups_cost"] = round(statistics.median(costs), 3)
        print(
            "\nstored ev/s with live rollups / without (per round: "
            + ", ".join(f"{c:.2f}" for c in costs)
            + f"), median: {extra['rollups_cost']:.2f}"
        )
    p50, p99, achieved, probes = probe
    print(f"\nstored during the load / \\copy (median of rounds): {ratio:.2f}")
    print(
        f"202 → queryable at {achieved:,.0f} ev/s (half the saturated rate), {probes} probes:"
        f" p50 {p50:.0f} ms, p99 {p99:.0f} ms"
    )
    print(
        orjson.dumps(
            {
                "bench": "sustained_batches",
                "stored_vs_copy": round(ratio, 3),
                "lag_p99_s": max(r.ours.lag_p99 for r in rounds),
                "lag_max_s": max(r.ours.lag_max for r in rounds),
                "probe_p50_ms": round(p50, 1),
                "probe_p99_ms": round(p99, 1),
                **extra,
                "must": MUST,
            }
        ).decode()
    )


if __name__ == "__main__":
    main()
