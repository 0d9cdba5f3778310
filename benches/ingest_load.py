"""Load benchmark: single-event POSTs at saturation, ours vs the framework ceiling.

Both servers run on Granian with the same worker count, one after the other,
in the same run on the same machine; wrk drives them from the same 2 cores
with 64 connections on loopback. Ours answers 202 only once each event is
committed in TimescaleDB; the baseline (benches/baseline_app.py) parses the
JSON and answers 202. Prints events/s, p50/p99 latency and the ratio, and
checks that every 202 of ours is a stored row.

    .venv/bin/python benches/ingest_load.py [--duration 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import psycopg

from eventbunker.admin.projects import create_project
from eventbunker.cluster import ManagedCluster
from eventbunker.storage.migrate import migrate
from processes import free_port, serve_command, stop, wait_until_up
from wrk import LoadResult, run_wrk

ROOT = Path(__file__).resolve().parent.parent

EVENT = {
    "event_name": "page_view",
    "url": "https://shop.example/products/42?utm_source=newsletter&utm_medium=email",
    "referrer": "https://www.google.com/",
    "ip": "81.2.69.142",  # resolves in the MaxMind test database
    "plan": "pro",
    "cart_value": 42.5,
    "items": 3,
    "session_id": "8c5f6d0a-3b1e-4f7a-9d2c-1e5b7a9c0d4f",
}

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Api-Key"] = "{key}"
wrk.headers["User-Agent"] = "{user_agent}"
"""
USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.1 Safari/605.1.15"
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--geoip-db",
        type=Path,
        default=ROOT.parent / "shared/testdata/geoip/GeoIP2-City-Test.mmdb",
        help="MaxMind .mmdb for our server's GeoIP enrichment (skipped if missing)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (or make setup)")

    body = orjson.dumps(EVENT).decode()
    print(f"event body: {len(body)} bytes; {args.workers} workers; {args.connections} connections")
    geoip = args.geoip_db if args.geoip_db.exists() else "none"
    print(f"enrichment: user agent, URL/UTM, referrer; GeoIP database: {geoip}")
    with tempfile.TemporaryDirectory(prefix="eb-bench-") as tmp:
        cluster = ManagedCluster(Path(tmp) / "cluster")
        cluster.start()
        try:
            migrate(cluster.conninfo)
            with psycopg.connect(cluster.conninfo) as conn:
                project = create_project(conn, "bench")
            script = Path(tmp) / "post.lua"
            script.write_text(
                WRK_SCRIPT.format(body=body, key=project["keys"]["write"], user_agent=USER_AGENT)
            )
            results: dict[str, list[LoadResult]] = {"baseline": [], "eventbunker": []}
            for _ in range(args.rounds):
                for name in results:
                    results[name].append(measure(name, cluster.conninfo, script, args, Path(tmp)))
            with psycopg.connect(cluster.conninfo) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM events WHERE project_id = %s", (project["id"],)
                ).fetchone()
                stored = int(row[0]) if row else 0
        finally:
            cluster.stop()

    acknowledged = sum(r.requests - r.non_2xx for r in results["eventbunker"])
    print()
    print(
        f"{'server':<12} {'round':>5} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}"
    )
    for name, runs in results.items():
        for i, r in enumerate(runs, 1):
            row = f"{r.requests_per_s:>10.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.non_2xx:>8}"
            print(f"{name:<12} {i:>5} {row}")
    best = {name: max(r.requests_per_s for r in runs) for name, runs in results.items()}
    ratio = best["eventbunker"] / best["baseline"]
    print(
        f"\nbest events/s: eventbunker {best['eventbunker']:.0f}, baseline {best['baseline']:.0f}"
    )
    print(f"ratio eventbunker / bare Litestar: {ratio:.2f}")
    # wrk stops mid-request at its deadline, so a few acknowledged requests may
    # not be counted by wrk; stored rows must be at least what wrk saw as 202.
    print(f"202s counted by wrk: {acknowledged}; rows stored: {stored}")
    if stored < acknowledged:
        raise SystemExit("FAIL: fewer rows stored than 202s received")


def measure(
    name: str, conninfo: str, script: Path, args: argparse.Namespace, tmp: Path
) -> LoadResult:
    port = free_port()
    if name == "baseline":
        command = [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--factory",
            "--workers",
            str(args.workers),
            "--port",
            str(port),
            "--no-ws",
            "--log-level",
            "warning",
            "baseline_app:create_app",
        ]
        cwd = ROOT / "benches"
    else:
        geoip = args.geoip_db if args.geoip_db.exists() else None
        command = serve_command(conninfo, port, args.workers, tmp / "spool", geoip)
        cwd = ROOT
    log = (tmp / f"{name}-{port}.log").open("wb")
    process = subprocess.Popen(
        command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url + "/", process)
        run_wrk(url + "/v1/events", script, 2, args.connections)  # warm-up
        return run_wrk(url + "/v1/events", script, args.duration, args.connections)
    finally:
        stop(process)


if __name__ == "__main__":
    main()
