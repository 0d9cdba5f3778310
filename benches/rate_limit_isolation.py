"""A quiet key's latency while a hot key hammers the server (issue 15: one hot
key never slows another key's requests).

One cluster, two ``eventbunker serve``: one with a rate limit (the hot key is
over it within a second, and then answered 429), one without. Per round,
alternating: the quiet key alone; the quiet key while wrk sends the hot key's
10-event batches at saturation to the limited server; the same to the
unlimited one. The quiet key sends one event every 50 ms (20 events/s, under
its limit) and must never be refused; its p50/p99 is the figure.

    .venv/bin/python benches/rate_limit_isolation.py [--duration 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import psycopg

from eventbunker.admin.projects import create_key, create_project
from eventbunker.cluster import ManagedCluster
from eventbunker.storage.migrate import migrate
from processes import free_port, serve_command, stop, wait_until_up

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [=[{body}]=]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Api-Key"] = "{key}"
"""
QUIET_INTERVAL_S = 0.05


def quiet_latencies(url: str, key: str, duration: float) -> list[float]:
    """One event every 50 ms for ``duration`` s; seconds per answer (all 202)."""
    latencies = []
    headers = {"X-Api-Key": key, "Content-Type": "application/json"}
    with httpx.Client(base_url=url, timeout=10) as http:
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            started = time.perf_counter()
            r = http.post("/v1/events", content=b'{"event_name": "quiet"}', headers=headers)
            latencies.append(time.perf_counter() - started)
            if r.status_code != 202:
                raise SystemExit(f"the quiet key was answered {r.status_code}: {r.text}")
            time.sleep(QUIET_INTERVAL_S)
    return latencies


def measure(url: str, quiet: str, hot_script: Path | None, args: argparse.Namespace) -> str:
    wrk = None
    if hot_script is not None:
        wrk = subprocess.Popen(
            [
                "wrk",
                "-t1",
                f"-c{args.connections}",
                f"-d{args.duration + 2}s",
                "-s",
                str(hot_script),
                url + "/v1/events",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1)  # the hot key is at saturation (and over its limit)
    latencies = quiet_latencies(url, quiet, args.duration)
    hot = ""
    if wrk is not None:
        out, _ = wrk.communicate(timeout=args.duration + 60)
        rps = next(line for line in out.splitlines() if line.startswith("Requests/sec"))
        non_2xx = [line.split(":")[1].strip() for line in out.splitlines() if "Non-2xx" in line]
        hot = f"; hot key {rps.split()[1]} req/s, {non_2xx[0] if non_2xx else 0} refused"
    q = statistics.quantiles(latencies, n=100)
    return (
        f"quiet p50 {statistics.median(latencies) * 1000:6.2f} ms"
        f"  p99 {q[98] * 1000:6.2f} ms  ({len(latencies)} requests){hot}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32, help="the hot key's")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s per key (limited)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (or scripts/setup.sh)")
    with tempfile.TemporaryDirectory(prefix="eb-bench-rl-") as tmp_name:
        tmp = Path(tmp_name)
        cluster = ManagedCluster(tmp / "cluster")
        cluster.start()
        processes = []
        try:
            migrate(cluster.conninfo)
            with psycopg.connect(cluster.conninfo) as conn:
                project = create_project(conn, "bench")
                quiet = create_key(conn, project["id"], "write")["key"]
            hot = project["keys"]["write"]
            script = tmp / "hot.lua"
            body = orjson.dumps([{"event_name": "hot", "n": i} for i in range(10)]).decode()
            script.write_text(WRK_SCRIPT.format(body=body, key=hot))
            urls = {}
            for name, extra in [
                ("limited", ["--rate-limit-events-per-second", str(args.rate)]),
                ("unlimited", []),
            ]:
                port = free_port()
                command = serve_command(cluster.conninfo, port, args.workers, tmp / name, None)
                process = subprocess.Popen(
                    [*command, *extra],
                    stdout=(tmp / f"{name}.log").open("wb"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                processes.append(process)
                urls[name] = f"http://127.0.0.1:{port}"
                wait_until_up(urls[name] + "/healthz", process)
            print(f"hot key: wrk -c{args.connections}, 10-event batches; limit {args.rate:g}/s")
            for round_no in range(1, args.rounds + 1):
                print(f"round {round_no}:")
                for label, url, hot_script in [
                    ("quiet alone (limited server)   ", urls["limited"], None),
                    ("hot key over its limit         ", urls["limited"], script),
                    ("hot key, no limit              ", urls["unlimited"], script),
                ]:
                    print(f"  {label} {measure(url, quiet, hot_script, args)}")
        finally:
            for process in processes:
                stop(process)
            cluster.stop()


if __name__ == "__main__":
    main()
