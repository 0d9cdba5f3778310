"""Load benchmark: single-event POSTs at saturation, ours vs the framework ceiling.

Both servers run on Granian with the same worker count, one after the other,
in the same run on the same machine; wrk drives them from the same 2 cores
with 64 connections on loopback. Ours answers 202 only once each event is
committed in TimescaleDB; the baseline (benches/baseline_app.py) parses the
JSON and answers 202. Prints events/s, p50/p99 latency and the ratio, and
checks that every 202 of ours is a stored row; and where the CPU went: CPU
microseconds per request of the server's processes, PostgreSQL's and wrk's.
``--profile`` also samples our workers with py-spy in the last round.

    .venv/bin/python benches/ingest_load.py [--duration 10] [--rounds 2] [--profile]
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

from cpu import CpuMeter, Profile, postmaster_pid
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
    parser.add_argument(
        "--profile", action="store_true", help="py-spy our workers in the last round"
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
            cpu: dict[str, list[dict[str, float]]] = {"baseline": [], "eventbunker": []}
            profile = None
            for round_ in range(args.rounds):
                for name in results:
                    last = args.profile and name == "eventbunker" and round_ == args.rounds - 1
                    result, used, profile_ = measure(
                        name, cluster, script, args, Path(tmp), profile=last
                    )
                    results[name].append(result)
                    cpu[name].append(used)
                    profile = profile_ or profile
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
            line = f"{r.requests_per_s:>10.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.non_2xx:>8}"
            print(f"{name:<12} {i:>5} {line}")
    best = {name: max(r.requests_per_s for r in runs) for name, runs in results.items()}
    ratio = best["eventbunker"] / best["baseline"]
    print(
        f"\nbest events/s: eventbunker {best['eventbunker']:.0f}, baseline {best['baseline']:.0f}"
    )
    print(f"ratio eventbunker / bare Litestar: {ratio:.2f}")
    print("\nCPU microseconds per request (all rounds):")
    print(f"{'server':<12} {'ours':>8} {'postgres':>9} {'wrk':>8} {'total':>8}")
    for name, runs in results.items():
        requests = sum(r.requests for r in runs)
        used = {k: sum(c.get(k, 0.0) for c in cpu[name]) * 1e6 / requests for k in cpu[name][0]}
        total = sum(used.values())
        print(
            f"{name:<12} {used['server']:>8.1f} {used.get('postgres', 0.0):>9.1f}"
            f" {used['wrk']:>8.1f} {total:>8.1f}"
        )
    if profile is not None:
        print()
        print(profile)
    # wrk stops mid-request at its deadline, so a few acknowledged requests may
    # not be counted by wrk; stored rows must be at least what wrk saw as 202.
    print(f"202s counted by wrk: {acknowledged}; rows stored: {stored}")
    if stored < acknowledged:
        raise SystemExit("FAIL: fewer rows stored than 202s received")


def measure(
    name: str,
    cluster: ManagedCluster,
    script: Path,
    args: argparse.Namespace,
    tmp: Path,
    *,
    profile: bool = False,
) -> tuple[LoadResult, dict[str, float], str | None]:
    conninfo = cluster.conninfo
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
        roots = {"server": process.pid}
        if name != "baseline":
            roots["postgres"] = postmaster_pid(cluster.pg_dir)
        meter = CpuMeter(roots)
        spy = Profile(process.pid, args.duration, tmp) if profile else None
        meter.start()
        result = run_wrk(url + "/v1/events", script, args.duration, args.connections)
        used = meter.stop()
        return result, used, spy.report() if spy is not None else None
    finally:
        stop(process)


if __name__ == "__main__":
    main()
