"""Segment's ``/v1/batch`` against our own ``/v1/events`` on the same
100-event load (issue 12: within 10 %).

The same 100 events, written once in our shape (a JSON array) and once as
analytics-python sends them (``{"batch": [...], "sentAt"}``, each message
with its ``context``: ip, userAgent, page url/referrer, library; the write
key as Basic auth). Neither carries an id, so that both stay on the path of
new events (a fixed id would make every request after the first all
duplicates). Two figures, in one run, alternating rounds:

1. end to end: wrk at saturation against one ``eventbunker serve`` (each
   202/200 means the events are in the spool, fsynced), acknowledged
   events/s, p50/p99; every acknowledged event must be stored;
2. the Rust preparation alone (``_native.prepare_events`` in this process,
   same enricher settings): µs per 100-event body, which is where the
   mapping of Segment's payload runs.

    .venv/bin/python benches/segment_batch.py [--duration 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import base64
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg

from eventbunker import _native
from eventbunker.admin.projects import create_project
from eventbunker.cluster import ManagedCluster
from eventbunker.storage.migrate import migrate
from ingest_load import USER_AGENT
from processes import free_port, serve_command, stop, wait_until_up
from wrk import LoadResult, run_wrk

ROOT = Path(__file__).resolve().parent.parent
EVENTS = 100

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [=[{body}]=]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["{auth_header}"] = "{auth_value}"
wrk.headers["User-Agent"] = "{user_agent}"
"""


def load() -> list[dict[str, Any]]:
    """100 events: one user's page views and purchases."""
    return [
        {
            "name": "Product Viewed" if i % 3 else "Order Completed",
            "user": f"user-{i % 7}",
            "time": f"2026-12-01T10:{i // 60:02d}:{i % 60:02d}Z",
            "properties": {"product_id": 1000 + i, "price": 19.5 + i, "plan": "pro"},
            "url": f"https://shop.example/products/{i}?utm_source=newsletter&utm_medium=email",
            "referrer": "https://www.google.com/",
        }
        for i in range(EVENTS)
    ]


def ours(events: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(
        [
            {
                "event_name": e["name"],
                "distinct_id": e["user"],
                "timestamp": e["time"],
                "sent_at": "2026-12-01T10:02:00Z",
                "ip": "81.2.69.142",
                "user_agent": USER_AGENT,
                "url": e["url"],
                "referrer": e["referrer"],
                **e["properties"],
            }
            for e in events
        ]
    )


def segment(events: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(
        {
            "batch": [
                {
                    "type": "track",
                    "event": e["name"],
                    "userId": e["user"],
                    "timestamp": e["time"],
                    "properties": e["properties"],
                    "context": {
                        "ip": "81.2.69.142",
                        "userAgent": USER_AGENT,
                        "page": {"url": e["url"], "referrer": e["referrer"]},
                        "library": {"name": "analytics-python", "version": "2.4.0"},
                    },
                    "integrations": {},
                }
                for e in events
            ],
            "sentAt": "2026-12-01T10:02:00Z",
        }
    )


def prepare_us(body: bytes, fmt: str | None, enricher: _native.Enricher, repeat: int) -> float:
    limits = _native.Limits()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            _native.prepare_events(
                body,
                gzip=False,
                project_id=1,
                customer_identifier=None,
                received_at_us=time.time_ns() // 1000,
                peer_ip="127.0.0.1",
                user_agent="wrk",
                referer=None,
                limits=limits,
                enricher=enricher,
                format=fmt,
            )
        best = min(best, (time.perf_counter() - start) / repeat * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--geoip-db",
        type=Path,
        default=ROOT.parent / "shared/testdata/geoip/GeoIP2-City-Test.mmdb",
        help="MaxMind .mmdb for GeoIP enrichment (skipped if missing)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (or scripts/setup.sh)")
    geoip = args.geoip_db if args.geoip_db.exists() else None
    events = load()
    bodies = {"ours /v1/events": ours(events), "segment /v1/batch": segment(events)}
    for name, body in bodies.items():
        print(f"{name}: {len(body)} bytes for {EVENTS} events")

    enricher = _native.Enricher(geoip_db=geoip)
    print("\nRust preparation of one body (best of 5 x 2000):")
    prep = {
        name: prepare_us(body, None if name.startswith("ours") else "segment", enricher, 2000)
        for name, body in bodies.items()
    }
    for name, us in prep.items():
        print(f"  {name:<18} {us:8.1f} µs")
    print(f"  ratio segment / ours: {prep['segment /v1/batch'] / prep['ours /v1/events']:.2f}")

    with tempfile.TemporaryDirectory(prefix="eb-bench-seg-") as tmp_name:
        tmp = Path(tmp_name)
        cluster = ManagedCluster(tmp / "cluster")
        cluster.start()
        try:
            migrate(cluster.conninfo)
            with psycopg.connect(cluster.conninfo) as conn:
                project = create_project(conn, "bench")
            key = project["keys"]["write"]
            basic = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
            scripts = {}
            for name, body in bodies.items():
                auth = ("X-Api-Key", key) if name.startswith("ours") else ("Authorization", basic)
                script = tmp / f"{name.split()[0]}.lua"
                script.write_text(
                    WRK_SCRIPT.format(
                        body=body.decode(),
                        auth_header=auth[0],
                        auth_value=auth[1],
                        user_agent=USER_AGENT,
                    )
                )
                scripts[name] = script
            paths = {"ours /v1/events": "/v1/events", "segment /v1/batch": "/v1/batch"}
            port = free_port()
            command = serve_command(cluster.conninfo, port, args.workers, tmp / "spool", geoip)
            log = (tmp / "server.log").open("wb")
            process = subprocess.Popen(
                command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            results: dict[str, list[LoadResult]] = {name: [] for name in bodies}
            try:
                url = f"http://127.0.0.1:{port}"
                wait_until_up(url + "/healthz", process)
                for name in bodies:  # warm-up
                    run_wrk(url + paths[name], scripts[name], 2, args.connections)
                for _ in range(args.rounds):
                    for name in bodies:
                        results[name].append(
                            run_wrk(
                                url + paths[name], scripts[name], args.duration, args.connections
                            )
                        )
            finally:
                stop(process)
            with psycopg.connect(cluster.conninfo) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM events WHERE project_id = %s", (project["id"],)
                ).fetchone()
                stored = int(row[0]) if row else 0
        finally:
            cluster.stop()

    print(
        f"\nend to end, {args.workers} workers, {args.connections} connections,"
        " wrk on the same cores:"
    )
    print(
        f"  {'path':<18} {'round':>5} {'acked ev/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}"
    )

    def acked(r: LoadResult) -> float:
        """Events/s acknowledged (2xx): 503s of the lag bound answer fast and
        would inflate the request rate."""
        return (r.requests - r.non_2xx) * EVENTS / args.duration

    for name, runs in results.items():
        for i, r in enumerate(runs, 1):
            print(
                f"  {name:<18} {i:>5} {acked(r):>10.0f} {r.p50_ms:>8.2f}"
                f" {r.p99_ms:>8.2f} {r.non_2xx:>8}"
            )
    for label, pick in (("best", max), ("median", statistics.median)):
        value = {name: pick(acked(r) for r in runs) for name, runs in results.items()}
        ratio = value["segment /v1/batch"] / value["ours /v1/events"]
        print(
            f"  {label} acknowledged events/s: ours {value['ours /v1/events']:.0f},"
            f" segment {value['segment /v1/batch']:.0f}; ratio segment / ours: {ratio:.2f}"
        )
    acknowledged = EVENTS * sum(r.requests - r.non_2xx for runs in results.values() for r in runs)
    print(f"  events acknowledged (measured rounds): {acknowledged}; rows stored (all): {stored}")
    if stored < acknowledged:
        raise SystemExit("FAIL: fewer rows stored than events acknowledged")


if __name__ == "__main__":
    main()
