"""Bytes per stored event, before and after compaction (issue 14).

Loads the realistic NDJSON events of ``benches/import_copy.py`` (browser page
views with user agents, URLs, UTM tags and referrers, backend purchases with
nested orders, API metrics; GeoIP test database as enrichment) through the
real bulk import (``eventbunker import FILE --database-url``: the Rust
per-line path and the import job's COPY) into its own TimescaleDB cluster,
then measures the events hypertable twice:

1. ``before``: as imported, which is what every chunk costs while it takes
   events, and what every chunk cost before storage/compaction.py;
2. ``after``: once every settled chunk is compacted (its indexes rebuilt full,
   as the writers do in the background a day after a chunk's time range
   ended; the events are historical, so every chunk has settled).

Each: bytes per event of the heap, TOAST and each index (summed over the
chunks, from ``chunks_detailed_size`` and ``hypertable_index_size``, after
``VACUUM ANALYZE``) over ``count(*)``; the import's and the compaction's
wall time; then one JSON line. ``--large-properties N`` adds N events with
~6 KB of properties (a cart of 60 items), to see TOAST at work.

    .venv/bin/python benches/bytes_per_event.py [--events 1000000] [--large-properties 0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg
from import_copy import GEOIP_DB, ndjson_file

from eventbunker.admin.projects import create_project
from eventbunker.cluster import ManagedCluster
from eventbunker.storage.compaction import compact_closed_chunks
from eventbunker.storage.migrate import migrate


def with_large_properties(source: Path, count: int, seed: int) -> Path:
    """``source`` plus ``count`` purchases carrying ~6 KB of properties each."""
    if count == 0:
        return source
    path = source.with_name(f"{source.stem}-large{count}.ndjson")
    if path.exists():
        return path
    rng = random.Random(seed)
    with source.open("rb") as src, path.open("wb") as out:
        out.write(src.read())
        for i in range(count):
            items = [
                {
                    "sku": f"SKU-{rng.randint(1, 2000)}",
                    "name": rng.choice(("T-shirt", "Mug", "Poster", "Sticker pack")),
                    "qty": rng.randint(1, 3),
                    "price": round(rng.uniform(3, 80), 2),
                    "variant": {"size": rng.choice("SMLX"), "color": rng.choice(("red", "blue"))},
                }
                for _ in range(60)
            ]
            event = {
                "event_name": "purchase",
                "timestamp": f"2025-04-{1 + i % 28:02d}T12:00:00Z",
                "ip": "81.2.69.160",
                "user_id": f"u{rng.randint(1, 200_000)}",
                "order": {"currency": "EUR", "items": items},
            }
            out.write(orjson.dumps(event) + b"\n")
    return path


def import_events(conninfo: str, key: str, path: Path, geoip: Path | None) -> float:
    """The bulk import's wall time, through the real CLI writing to the database."""
    env = dict(os.environ)
    if geoip is not None:
        env["EVENTBUNKER_GEOIP_DB"] = str(geoip)
    started = time.perf_counter()
    command = [sys.executable, "-m", "eventbunker", "import", str(path)]
    command += ["--database-url", conninfo, "--key", key, "--quiet"]
    done = subprocess.run(command, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"import failed: {done.stderr.decode()[-2000:]}")
    summary = orjson.loads(done.stdout.splitlines()[-1])
    if summary.get("rejected"):
        raise SystemExit(f"import rejected lines: {summary}")
    return elapsed


def measure(conninfo: str) -> dict[str, Any]:
    """Bytes of the events hypertable, per part and per event."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE events")
        rows = conn.execute("SELECT count(*) FROM events").fetchone()
        events = int(rows[0]) if rows else 0
        sizes = conn.execute(
            "SELECT coalesce(sum(table_bytes), 0), coalesce(sum(toast_bytes), 0),"
            " coalesce(sum(index_bytes), 0), coalesce(sum(total_bytes), 0)"
            " FROM chunks_detailed_size('events')"
        ).fetchone()
        assert sizes is not None
        heap, toast, index, total = (int(v) for v in sizes)
        present = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'events'"
            ).fetchall()
        }
        per_index = {}
        for name in sorted(present):
            size = conn.execute("SELECT hypertable_index_size(%s)", (name,)).fetchone()
            per_index[name] = int(size[0]) if size and size[0] is not None else 0
        compression = conn.execute(
            "SELECT attname, attcompression FROM pg_attribute"
            " WHERE attrelid = 'events'::regclass AND attcompression <> ''"
        ).fetchall()
    return {
        "events": events,
        "heap": heap,
        "toast": toast,
        "indexes": index,
        "total": total,
        "per_index": per_index,
        "compression": {name: method for name, method in compression},
    }


def show(label: str, m: dict[str, Any], import_s: float | None) -> None:
    n = max(m["events"], 1)
    took = f", import {import_s:.1f} s ({m['events'] / import_s:,.0f} events/s)" if import_s else ""
    print(f"{label}: {m['events']:,} events, {m['total'] / 1e6:,.1f} MB{took}")
    print(f"  total     {m['total'] / n:7.1f} bytes per event")
    print(f"  heap      {m['heap'] / n:7.1f}")
    print(f"  toast     {m['toast'] / n:7.1f}")
    print(f"  indexes   {m['indexes'] / n:7.1f}")
    for name, size in m["per_index"].items():
        print(f"    {name:28} {size / n:7.1f}")
    if m["compression"]:
        print(f"  column compression: {m['compression']}")
    sys.stdout.flush()


def fingerprint(conninfo: str) -> list[tuple[Any, ...]]:
    """Per event name: the count, the time range and the metric's sum, read
    through the indexes (as queries read them)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        return conn.execute(
            'SELECT event_name, count(*), min("timestamp"), max("timestamp"), sum(metric_value)'
            " FROM events GROUP BY 1 ORDER BY 1"
        ).fetchall()


def compact(conninfo: str) -> float:
    """Every closed chunk compacted, as the drainer does it in the background; seconds."""

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            while await compact_closed_chunks(conn, max_chunks=100):
                pass

    started = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--large-properties", type=int, default=0, metavar="N")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "eventbunker-import-bench",
        help="where the generated NDJSON is kept (shared with benches/import_copy.py)",
    )
    parser.add_argument("--work-dir", type=Path, help="parent of the temporary cluster")
    args = parser.parse_args()
    source = ndjson_file(args.cache_dir, args.events, args.seed, event_ids=False)
    path = with_large_properties(source, args.large_properties, args.seed)
    geoip = GEOIP_DB if GEOIP_DB.exists() else None
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="eb-bytes-", dir=args.work_dir) as tmp:
        cluster = ManagedCluster(Path(tmp) / "cluster")
        cluster.start()
        try:
            conninfo = cluster.conninfo
            migrate(conninfo)
            with psycopg.connect(conninfo) as conn:
                key = str(create_project(conn, "bytes-per-event")["keys"]["write"])
            import_s = import_events(conninfo, key, path, geoip)
            results["before"] = measure(conninfo)
            show("before (as imported)", results["before"], import_s)
            answers = fingerprint(conninfo)
            compact_s = compact(conninfo)
            results["after"] = measure(conninfo)
            show(f"after (every chunk compacted, in {compact_s:.1f} s)", results["after"], None)
            if fingerprint(conninfo) != answers:
                raise SystemExit("FAIL: the events read differently after compaction")
        finally:
            cluster.stop()
    before, after = results["before"], results["after"]
    if before["events"] != after["events"]:
        raise SystemExit(f"FAIL: {before['events']:,} events before, {after['events']:,} after")
    ratio = (after["total"] / after["events"]) / (before["total"] / before["events"])
    print(f"after / before, bytes per event: {ratio:.3f}")
    summary = {
        label: {
            "events": m["events"],
            "bytes_per_event": round(m["total"] / max(m["events"], 1), 1),
            **{part: round(m[part] / max(m["events"], 1), 1) for part in ("heap", "toast")},
            "indexes": {k: round(v / max(m["events"], 1), 1) for k, v in m["per_index"].items()},
        }
        for label, m in results.items()
    }
    print(orjson.dumps({"ratio": round(ratio, 3), **summary}).decode())


if __name__ == "__main__":
    main()
