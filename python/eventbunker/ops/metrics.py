"""Prometheus metrics shared by all workers of one server.

Each Granian worker is its own process, so each keeps its numbers in memory
and snapshots them to ``<runtime_dir>/metrics/<pid>.json`` twice a second;
``/metrics`` (answered by whichever worker gets the request) sums the
snapshots. Counters of workers that died stay in the sum, as Prometheus
expects of counters; gauges only count snapshots fresher than a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

SNAPSHOT_INTERVAL_S = 0.5
GAUGE_STALE_AFTER_S = 5.0

BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

_HELP = {
    "eventbunker_events_accepted_total": ("counter", "Events acknowledged (stored) by ingest."),
    "eventbunker_requests_rejected_total": ("counter", "Ingest requests refused, by reason."),
    "eventbunker_flush_batch_events": ("histogram", "Events stored per drainer batch (one COPY)."),
    "eventbunker_flush_seconds": ("histogram", "Duration of a drainer batch (COPY + commit)."),
    "eventbunker_flush_failures_total": (
        "counter",
        "Drainer batches that failed.",
    ),
    "eventbunker_spool_pending_bytes": ("gauge", "Request bytes waiting for the spool's fsync."),
    "eventbunker_spool_backlog_bytes": ("gauge", "Spooled bytes not yet copied into TimescaleDB."),
    "eventbunker_database_up": ("gauge", "1 when the last write to TimescaleDB succeeded."),
    "eventbunker_queryable_lag_seconds": (
        "gauge",
        "Age of the oldest acknowledged event not yet in TimescaleDB (max over workers;"
        " per worker: eventbunker_worker_queryable_lag_seconds).",
    ),
    "eventbunker_ingest_shedding": (
        "gauge",
        "Workers refusing new ingest requests (503 overloaded): lag past --max-lag-seconds.",
    ),
}
# Gauges whose server-wide value is the worst worker's, not the sum; each is
# also exported per worker as eventbunker_worker_<rest of the name>{worker="pid"}.
MAX_GAUGES = frozenset({"eventbunker_queryable_lag_seconds"})


class Histogram:
    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1


class Metrics:
    """This worker's numbers."""

    def __init__(self, runtime_dir: Path | None) -> None:
        self.accepted = 0
        self.rejected: defaultdict[str, int] = defaultdict(int)
        self.flush_failures = 0
        # name -> how to read it now (registered by the parts that own the value)
        self.gauges: dict[str, Callable[[], float]] = {}
        self.batch_sizes = Histogram(BATCH_SIZE_BUCKETS)
        self.flush_seconds = Histogram(LATENCY_BUCKETS_S)
        self._dir = runtime_dir / "metrics" if runtime_dir else None
        self._task: asyncio.Task[None] | None = None

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "at": time.time(),
            "pid": os.getpid(),
            "counters": {
                "eventbunker_events_accepted_total": {"": self.accepted},
                "eventbunker_requests_rejected_total": {
                    f'reason="{reason}"': n for reason, n in self.rejected.items()
                },
                "eventbunker_flush_failures_total": {"": self.flush_failures},
            },
            "gauges": {name: read() for name, read in self.gauges.items()},
            "histograms": {
                "eventbunker_flush_batch_events": _histogram_state(self.batch_sizes),
                "eventbunker_flush_seconds": _histogram_state(self.flush_seconds),
            },
        }

    async def start(self) -> None:
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._task = asyncio.create_task(self._snapshot_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.write_snapshot()

    def write_snapshot(self) -> None:
        if self._dir is None:
            return
        path = self._dir / f"{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self.snapshot()))
        tmp.replace(path)  # readers never see half a file

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)
            self.write_snapshot()

    def render(self) -> str:
        """Prometheus text of all workers' latest snapshots (this one's live)."""
        self.write_snapshot()
        snapshots = [self.snapshot()]
        if self._dir is not None:
            snapshots = [s for s in (_read(p) for p in self._dir.glob("*.json")) if s]
        return render_snapshots(snapshots)


def _histogram_state(h: Histogram) -> dict[str, Any]:
    return {"buckets": list(h.buckets), "counts": h.counts, "sum": h.sum, "count": h.count}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data


def render_snapshots(snapshots: list[dict[str, Any]]) -> str:
    now = time.time()
    counters: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    gauges: defaultdict[str, float] = defaultdict(float)
    per_worker: defaultdict[str, dict[int, float]] = defaultdict(dict)
    histograms: dict[str, dict[str, Any]] = {}
    for snap in snapshots:
        for name, series in snap["counters"].items():
            for labels, value in series.items():
                counters[name][labels] += value
        if now - snap["at"] <= GAUGE_STALE_AFTER_S:
            for name, value in snap["gauges"].items():
                if name in MAX_GAUGES:
                    gauges[name] = max(gauges[name], value)
                    per_worker[name][int(snap.get("pid", 0))] = value
                else:
                    gauges[name] += value
        for name, state in snap["histograms"].items():
            merged = histograms.setdefault(
                name,
                {"buckets": state["buckets"], "counts": [0] * len(state["counts"]), "sum": 0.0},
            )
            merged["counts"] = [
                a + b for a, b in zip(merged["counts"], state["counts"], strict=True)
            ]
            merged["sum"] += state["sum"]

    lines: list[str] = []
    for name, (kind, help_text) in _HELP.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        if kind == "counter":
            for labels, value in sorted(counters.get(name, {"": 0.0}).items()):
                lines.append(f"{name}{{{labels}}} {value:g}" if labels else f"{name} {value:g}")
        elif kind == "gauge":
            lines.append(f"{name} {gauges.get(name, 0.0):g}")
            if name in MAX_GAUGES:
                worker_name = name.replace("eventbunker_", "eventbunker_worker_", 1)
                lines += [f"# HELP {worker_name} {help_text}", f"# TYPE {worker_name} gauge"]
                for pid, value in sorted(per_worker[name].items()):
                    lines.append(f'{worker_name}{{worker="{pid}"}} {value:g}')
        elif name in histograms:
            state = histograms[name]
            cumulative = 0
            for bound, count in zip(state["buckets"], state["counts"], strict=False):
                cumulative += count
                lines.append(f'{name}_bucket{{le="{bound:g}"}} {cumulative}')
            total = sum(state["counts"])
            lines.append(f'{name}_bucket{{le="+Inf"}} {total}')
            lines.append(f"{name}_sum {state['sum']:g}")
            lines.append(f"{name}_count {total}")
    return "\n".join(lines) + "\n"
