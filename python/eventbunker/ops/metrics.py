"""Prometheus metrics of all workers of one server, kept by ``prometheus_client``.

Each Granian worker is its own process, so ``prometheus_client`` runs in its
multiprocess mode: each worker's values live in memory-mapped files of one
directory per run (``<runtime_dir>/metrics``, emptied by ``serve`` before the
workers start and named to them by ``PROMETHEUS_MULTIPROC_DIR``), and
``/metrics``, answered by whichever worker gets the request, aggregates the
files. Counters of workers that died stay in the sums, as Prometheus expects
of counters; gauges only count live workers.

The request paths do not call ``prometheus_client``: they count in this
worker's plain integers, published to it twice a second and before each
``/metrics`` answer (gauges are read then too). A multiprocess counter's
``labels(...).inc()`` takes a lock and writes the mapped file: 5.0 µs, against
0.26 µs for a ``defaultdict`` increment (timeit, 2-core machine, 2026-12-02) —
too much for every refused request of a flood. Histograms are observed once
per drainer batch, directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from prometheus_client import Gauge

# What serve() sets, before the workers start, for prometheus_client to find.
DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
PUBLISH_INTERVAL_S = 0.5

BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

GaugeMode = Literal["livesum", "livemax", "livemin"]

# name -> (how workers' values combine, help). Each part registers how to read
# its gauge in Metrics.gauges; a gauge nobody registered is not exported.
GAUGES: dict[str, tuple[GaugeMode, str]] = {
    "eventbunker_spool_pending_bytes": ("livesum", "Request bytes waiting for the spool's fsync."),
    "eventbunker_spool_backlog_bytes": (
        "livesum",
        "Spooled bytes not yet copied into TimescaleDB.",
    ),
    "eventbunker_database_up": (
        "livemin",
        "1 when every worker's last write to TimescaleDB succeeded.",
    ),
    "eventbunker_queryable_lag_seconds": (
        "livemax",
        "Age of the oldest acknowledged event not yet in TimescaleDB (max over workers;"
        " per worker: eventbunker_worker_queryable_lag_seconds).",
    ),
    "eventbunker_ingest_shedding": (
        "livesum",
        "Workers refusing new ingest requests (503 overloaded): lag past --max-lag-seconds.",
    ),
    "eventbunker_stream_pending_messages": (
        "livemax",
        "Messages in the ingest stream not yet written to TimescaleDB (scale-out mode).",
    ),
    # The Rust enricher's caches (Enricher.cache_stats), summed over workers.
    "eventbunker_user_agent_cache_hits": ("livesum", "User agents answered from the cache."),
    "eventbunker_user_agent_cache_misses": ("livesum", "User agents parsed (not cached)."),
    "eventbunker_user_agent_cache_entries": ("livesum", "User agents held in the cache."),
    "eventbunker_geoip_cache_hits": ("livesum", "IP addresses answered from the GeoIP cache."),
    "eventbunker_geoip_cache_misses": ("livesum", "IP addresses looked up in the .mmdb file."),
    "eventbunker_geoip_cache_entries": ("livesum", "IP addresses held in the GeoIP cache."),
}
# GAUGES name -> (Enricher.cache_stats() key, statistic)
CACHE_GAUGES = {
    f"eventbunker_{prefix}_cache_{stat}": (cache, stat)
    for prefix, cache in (("user_agent", "user_agents"), ("geoip", "geo"))
    for stat in ("hits", "misses", "entries")
}
# Also exported per worker, as eventbunker_worker_<rest of the name>{worker="pid"}.
PER_WORKER_GAUGES = frozenset({"eventbunker_queryable_lag_seconds"})

_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db")


def prepare_directory(runtime_dir: Path) -> Path:
    """This run's empty metrics directory, named for the workers to come.

    Called once per run by ``serve`` before the workers start: files left by
    an earlier run would add its counts to this one's.
    """
    path = runtime_dir / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[DIRECTORY_VARIABLE] = str(path)
    return path


class Metrics:
    """This worker's numbers, and the server's ``/metrics`` text.

    ``runtime_dir`` None: this process's numbers only (no shared directory).
    """

    def __init__(self, runtime_dir: Path | None) -> None:
        self._dir = runtime_dir / "metrics" if runtime_dir else None
        if self._dir is not None and os.environ.get(DIRECTORY_VARIABLE) != str(self._dir):
            raise RuntimeError(
                f"{DIRECTORY_VARIABLE} must name {self._dir} before the worker starts"
                " (eventbunker serve sets it)"
            )
        # Imported here: prometheus_client picks its multiprocess mode at import.
        from prometheus_client import CollectorRegistry, Counter, Histogram

        # Multiprocess: values go to the mapped files, which render() collects;
        # else to this registry.
        self._registry = CollectorRegistry() if self._dir is None else None
        self.accepted = 0
        self.rejected: defaultdict[str, int] = defaultdict(int)
        self.flush_failures = 0
        # name -> how to read it now (registered by the parts that own the value)
        self.gauges: dict[str, Callable[[], float]] = {}
        self.batch_sizes = Histogram(
            "eventbunker_flush_batch_events",
            "Events stored per drainer batch (one COPY).",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self._registry,
        )
        self.flush_seconds = Histogram(
            "eventbunker_flush_seconds",
            "Duration of a drainer batch (COPY + commit).",
            buckets=LATENCY_BUCKETS_S,
            registry=self._registry,
        )
        self._accepted = Counter(
            "eventbunker_events_accepted",
            "Events acknowledged (stored) by ingest.",
            registry=self._registry,
        )
        self._rejected = Counter(
            "eventbunker_requests_rejected",
            "Ingest requests refused, by reason.",
            ["reason"],
            registry=self._registry,
        )
        self._flush_failures = Counter(
            "eventbunker_flush_failures", "Drainer batches that failed.", registry=self._registry
        )
        # Made on first publish: only the registered gauges are exported.
        self._gauges: dict[str, list[Gauge]] = {}
        # What has been published of the counters so far.
        self._published_accepted = 0
        self._published_rejected: defaultdict[str, int] = defaultdict(int)
        self._published_failures = 0
        self._task: asyncio.Task[None] | None = None

    def watch_caches(self, cache_stats: Callable[[], dict[str, dict[str, int]]]) -> None:
        """Export ``cache_stats()`` (``Enricher.cache_stats``) as the cache gauges."""

        def reader(cache: str, stat: str) -> Callable[[], float]:
            return lambda: float(cache_stats()[cache][stat])

        for name, (cache, stat) in CACHE_GAUGES.items():
            self.gauges[name] = reader(cache, stat)

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1

    def publish(self) -> None:
        """Hand this worker's counts since the last call, and its gauges, to
        prometheus_client."""
        if self.accepted > self._published_accepted:
            self._accepted.inc(self.accepted - self._published_accepted)
            self._published_accepted = self.accepted
        for reason, count in list(self.rejected.items()):
            if count > self._published_rejected[reason]:
                self._rejected.labels(reason=reason).inc(count - self._published_rejected[reason])
                self._published_rejected[reason] = count
        if self.flush_failures > self._published_failures:
            self._flush_failures.inc(self.flush_failures - self._published_failures)
            self._published_failures = self.flush_failures
        for name, read in self.gauges.items():
            value = read()
            for gauge in self._gauges.get(name) or self._make_gauges(name):
                gauge.set(value)

    def _make_gauges(self, name: str) -> list[Gauge]:
        """The gauge ``name`` of GAUGES (and its per-worker twin)."""
        from prometheus_client import Gauge

        mode, help_text = GAUGES[name]
        made = [Gauge(name, help_text, multiprocess_mode=mode, registry=self._registry)]
        if name in PER_WORKER_GAUGES:
            per_worker = Gauge(
                name.replace("eventbunker_", "eventbunker_worker_", 1),
                help_text,
                ["worker"],
                multiprocess_mode="livemax",
                registry=self._registry,
            )
            made.append(per_worker.labels(worker=str(os.getpid())))
        self._gauges[name] = made
        return made

    async def start(self) -> None:
        self._task = asyncio.create_task(self._publish_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.publish()
        if self._dir is not None:
            from prometheus_client import multiprocess

            # Its gauges go with it; its counters stay in the sums.
            multiprocess.mark_process_dead(os.getpid(), str(self._dir))  # type: ignore[no-untyped-call]

    async def _publish_loop(self) -> None:
        while True:
            await asyncio.sleep(PUBLISH_INTERVAL_S)
            self.publish()

    def render(self) -> str:
        """Prometheus text of all workers (this one's numbers as of now)."""
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        self.publish()
        if self._registry is not None:
            return generate_latest(self._registry).decode()
        assert self._dir is not None
        _forget_dead_workers(self._dir)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self._dir))  # type: ignore[no-untyped-call]
        return generate_latest(registry).decode()


def _forget_dead_workers(directory: Path) -> None:
    """Drop the gauges of workers that ended without saying so (killed)."""
    from prometheus_client import multiprocess

    for path in directory.glob("gauge_live*.db"):
        found = _LIVE_GAUGE_FILE.fullmatch(path.name)
        if found is None:
            continue
        pid = int(found[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, another user's
