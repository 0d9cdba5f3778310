"""Scale-out per-node costs: an ingest node in NATS mode vs the single-node
spool mode on the same load (same run, alternating rounds), and a writer's
stored events/s vs ``psql \\copy`` of the same rows.

Everything on loopback on this machine: our TimescaleDB cluster, a 3-node
JetStream cluster of our own (tests/nats_cluster.py), wrk. CPU is counted
per process tree (benches/pg_meter.py), so the figures give events/s per
core of each kind of node, the inputs of docs/scale-out.md's capacity table.

    .venv/bin/python benches/scaleout_throughput.py [--duration 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from eventbunker.admin.projects import create_project
from eventbunker.cluster import ManagedCluster
from eventbunker.scaleout.stream import backlog, connect
from eventbunker.storage.migrate import migrate
from ingest_load import EVENT, USER_AGENT, WRK_SCRIPT
from nats_cluster import NatsCluster, loopback_cluster, wait_for_jetstream
from pg_meter import (
    Meter,
    _proc_stats,
    count_rows,
    export_rows,
    postmaster_pid,
    reset,
    run_baseline,
    tree_cpu,
)
from processes import free_port, serve_command, stop, wait_until_up
from wrk import run_wrk

STREAM = "eventbunker-events"


def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )


def writer_command(conninfo: str, nats: NatsCluster) -> list[str]:
    return [sys.executable, "-m", "eventbunker", "writer", "--database-url", conninfo,
            "--nats", nats.urls]  # fmt: skip


def stream_messages(nats: NatsCluster) -> int:
    async def count() -> int:
        nc = await connect(nats.urls, "bench")
        try:
            return (await backlog(nc, STREAM)).messages
        finally:
            await nc.close()

    return asyncio.run(count())


def nats_cpu(nats: NatsCluster) -> float:
    stats = _proc_stats()
    return sum(tree_cpu(n.process.pid, stats) for n in nats.nodes if n.process)


def ingest_round(
    mode: str, conninfo: str, nats: NatsCluster, script: Path, args: Any, tmp: Path, pg_pid: int
) -> dict[str, Any]:
    port = free_port()
    command = serve_command(conninfo, port, args.workers, tmp / "spool", None)
    writer = None
    if mode == "nats":
        command += ["--nats", nats.urls]
        writer = start(writer_command(conninfo, nats), tmp / "writer.log")
    server = start(command, tmp / f"{mode}-{port}.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url + "/healthz", server)
        run_wrk(url + "/v1/events", script, 2, args.connections)  # warm-up
        meter = Meter(server.pid, pg_pid)
        nats_before = nats_cpu(nats)
        with meter.measure() as m:
            result = run_wrk(url + "/v1/events", script, args.duration, args.connections)
        m["nats_cpu_s"] = nats_cpu(nats) - nats_before
        if writer is not None:
            m["writer_cpu_s"] = tree_cpu(writer.pid, _proc_stats())
    finally:
        stop(server)
        if writer is not None:
            deadline = time.monotonic() + 60
            while stream_messages(nats) and time.monotonic() < deadline:
                time.sleep(0.1)  # drained before the next round
            stop(writer)
    events_s = result.requests_per_s - result.non_2xx / args.duration
    return {
        "mode": mode,
        "events_s": events_s,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "non_2xx": result.non_2xx,
        "ingest_cpu_share": m["server_cpu_s"] / m["wall_s"],
        "events_s_per_ingest_core": events_s / max(1e-9, m["server_cpu_s"] / m["wall_s"]),
        "nats_cpu_us_per_event": 1e6 * m["nats_cpu_s"] / max(1, events_s * m["wall_s"]),
        "postgres_cpu_share": m["postgres_cpu_s"] / m["wall_s"],
    }


def writer_round(
    cluster: ManagedCluster, nats: NatsCluster, project: dict[str, Any], args: Any, tmp: Path
) -> dict[str, Any]:
    """Fill the stream with no writer running, then time one writer draining it."""
    conninfo = cluster.conninfo
    reset(conninfo)
    port = free_port()
    # No writer runs while the stream fills: a lag bound far away keeps it from refusing.
    server = start(
        [
            *serve_command(conninfo, port, args.workers, tmp / "spool", None),
            *("--nats", nats.urls, "--max-lag-seconds", "3600"),
        ],
        tmp / "fill.log",
    )
    batch = Path(tmp) / "batch.lua"
    body = orjson.dumps([{**EVENT, "n": i} for i in range(100)]).decode()
    # A level-1 long bracket: the JSON array's own "]" must not end the Lua string.
    batch.write_text(
        WRK_SCRIPT.replace("[[{body}]]", "[=[{body}]=]").format(
            body=body, key=project["keys"]["write"], user_agent=USER_AGENT
        )
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url + "/healthz", server)
        run_wrk(url + "/v1/events", batch, args.fill_seconds, 16)
    finally:
        stop(server)
    messages = stream_messages(nats)  # each of one or more 100-event requests
    writer = start(writer_command(conninfo, nats), tmp / "writer.log")
    meter = Meter(writer.pid, postmaster_pid(cluster))
    print(f"stream filled: {messages} messages", flush=True)
    deadline = time.monotonic() + 300
    try:
        while count_rows(conninfo, project["id"]) == 0:  # the writer's start-up aside
            _before(deadline, tmp / "writer.log")
            time.sleep(0.02)
        first = count_rows(conninfo, project["id"])
        with meter.measure() as m:
            # A message leaves the work queue once its rows are committed.
            while stream_messages(nats):
                _before(deadline, tmp / "writer.log")
                time.sleep(0.05)
    finally:
        stop(writer)
    stored = count_rows(conninfo, project["id"])
    rows = Path(tmp) / "rows.copy"
    export_rows(cluster, project["id"], rows)
    reset(conninfo)
    copy = run_baseline(cluster, rows, Meter(None, postmaster_pid(cluster)))
    rows.unlink()
    return {
        "messages": messages,
        "stored": stored,
        "writer_events_s": (stored - first) / m["wall_s"],
        "writer_cpu_share": m["server_cpu_s"] / m["wall_s"],
        "writer_postgres_cpu_share": m["postgres_cpu_s"] / m["wall_s"],
        "copy_events_s": stored / copy["wall_s"],
        "copy_postgres_cpu_share": copy["postgres_cpu_s"] / copy["wall_s"],
    }


def _before(deadline: float, log: Path) -> None:
    if time.monotonic() > deadline:
        raise SystemExit("the writer did not drain the stream:\n" + log.read_text()[-3000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=8, help="seconds per ingest round")
    parser.add_argument("--rounds", type=int, default=2, help="0: the writer round only")
    parser.add_argument("--workers", type=int, default=1, help="workers of the ingest node")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--fill-seconds", type=int, default=6, help="seconds of 100-event batches for the writer"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eb-scaleout-bench-") as name:
        tmp = Path(name)
        cluster = ManagedCluster(tmp / "cluster")
        cluster.start()
        nats = loopback_cluster(tmp / "nats")
        nats.start()
        try:
            asyncio.run(wait_for_jetstream(nats.urls))
            migrate(cluster.conninfo)
            with psycopg.connect(cluster.conninfo) as conn:
                project = create_project(conn, "bench")
            script = tmp / "post.lua"
            script.write_text(
                WRK_SCRIPT.format(
                    body=orjson.dumps(EVENT).decode(),
                    key=project["keys"]["write"],
                    user_agent=USER_AGENT,
                )
            )
            pg_pid = postmaster_pid(cluster)
            ingest = []
            for _ in range(args.rounds):
                for mode in ("spool", "nats"):
                    ingest.append(
                        ingest_round(mode, cluster.conninfo, nats, script, args, tmp, pg_pid)
                    )
                    print(orjson.dumps(ingest[-1]).decode(), flush=True)
            writer = writer_round(cluster, nats, project, args, tmp)
        finally:
            nats.stop()
            cluster.stop()
    print(f"\nsingle-event POSTs, {args.workers} ingest worker(s), {args.connections} connections")
    for r in ingest:
        print(
            f"{r['mode']:<6} {r['events_s']:>8.0f} events/s  p50 {r['p50_ms']:.1f} ms"
            f"  p99 {r['p99_ms']:.1f} ms  ingest CPU {r['ingest_cpu_share']:.0%}"
            f" -> {r['events_s_per_ingest_core']:.0f} events/s per ingest core;"
            f" NATS {r['nats_cpu_us_per_event']:.0f} us/event;"
            f" postgres {r['postgres_cpu_share']:.0%}"
        )
    if ingest:
        best = {m: max(r["events_s"] for r in ingest if r["mode"] == m) for m in ("spool", "nats")}
        print(f"ratio NATS / single-node mode (best rounds): {best['nats'] / best['spool']:.2f}")
    print(
        f"\nwriter: {writer['stored']} events ({writer['messages']} messages) at"
        f" {writer['writer_events_s']:.0f} events/s (writer CPU {writer['writer_cpu_share']:.0%},"
        f" postgres {writer['writer_postgres_cpu_share']:.0%}); \\copy of the same rows:"
        f" {writer['copy_events_s']:.0f} events/s (postgres"
        f" {writer['copy_postgres_cpu_share']:.0%}); ratio"
        f" {writer['writer_events_s'] / writer['copy_events_s']:.2f}"
    )
    print(orjson.dumps({"ingest": ingest, "writer": writer}).decode())


if __name__ == "__main__":
    main()
