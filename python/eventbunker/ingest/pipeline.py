"""One worker's ingest data path, wired: endpoint → spool → drainer → TimescaleDB."""

from __future__ import annotations

import hashlib
import os
import secrets

from eventbunker import _native
from eventbunker.config import Settings
from eventbunker.ingest.auth import KeyCache
from eventbunker.ingest.backpressure import Backpressure
from eventbunker.ingest.drainer import Drainer
from eventbunker.ingest.endpoint import IngestEndpoint
from eventbunker.ingest.enrichment import build_enricher
from eventbunker.ingest.idempotency import DuplicateCheck
from eventbunker.ingest.rejections import RejectionCounter
from eventbunker.ingest.spool import Spool
from eventbunker.ingest.writer import EventWriter
from eventbunker.ops.metrics import Metrics

# Counter rows are sharded by worker so that concurrent commits of several
# workers rarely wait on the same row lock; a day's count sums its shards.
COUNTER_SHARDS = 16


def limits_of(settings: Settings) -> _native.Limits:
    return _native.Limits(
        max_body_bytes=settings.max_body_bytes,
        max_batch_events=settings.max_batch_events,
        max_depth=settings.max_json_depth,
        max_string_bytes=settings.max_string_bytes,
    )


class IngestPipeline:
    def __init__(self, settings: Settings, keys: KeyCache, metrics: Metrics) -> None:
        conninfo = settings.database_url
        shard = os.getpid() % COUNTER_SHARDS
        # Spools are kept per database: a spool is only ever replayed into the
        # database its events were meant for.
        database_tag = hashlib.sha256(conninfo.encode()).hexdigest()[:12]
        self.spool = Spool(
            settings.spool_dir.resolve() / database_tag,
            f"{os.getpid()}-{secrets.token_hex(4)}",
            segment_bytes=settings.spool_segment_bytes,
            max_bytes=settings.spool_max_bytes,
            max_pending_bytes=settings.spool_max_pending_bytes,
        )
        self.drainer = Drainer(
            self.spool,
            EventWriter(conninfo, shard=shard),
            metrics,
            interval_s=settings.drain_interval_ms / 1000,
            idempotency_window_s=settings.idempotency_window_hours * 3600,
        )
        self.duplicates = DuplicateCheck(conninfo)
        self.limits = limits_of(settings)
        self.enricher = build_enricher(settings)
        self.shard = shard
        self.rejections = RejectionCounter(conninfo, shard=shard)
        self.backpressure = Backpressure(
            self.lag_seconds,
            lambda: self.drainer.database_ok,
            self.spool.drained_changed,
            settings.max_lag_seconds,
        )
        self.endpoint = IngestEndpoint(
            keys,
            self.spool,
            self.duplicates,
            self.rejections,
            metrics,
            self.limits,
            max_body_bytes=settings.max_body_bytes,
            backpressure=self.backpressure,
            enricher=self.enricher,
        )

        metrics.gauges["eventbunker_spool_pending_bytes"] = lambda: self.spool.pending_bytes
        metrics.gauges["eventbunker_spool_backlog_bytes"] = lambda: self.drainer.backlog_bytes
        metrics.gauges["eventbunker_database_up"] = lambda: float(self.drainer.database_ok)
        metrics.gauges["eventbunker_queryable_lag_seconds"] = self.lag_seconds
        metrics.gauges["eventbunker_ingest_shedding"] = lambda: float(self.backpressure.shedding())

    def lag_seconds(self) -> float:
        """Age of this worker's oldest acknowledged event not yet in the database."""
        return max(self.spool.lag_seconds(), self.drainer.replay_lag_seconds())

    def state(self) -> dict[str, object]:
        """For /readyz: is the database written to, and can requests be made durable."""
        return {
            "database": "ok" if self.drainer.database_ok else "unreachable",
            "spool_backlog_bytes": self.drainer.backlog_bytes,
            "spool_accepting": self.spool.accepting,
            "queryable_lag_seconds": round(self.lag_seconds(), 3),
            "shedding_load": self.backpressure.shedding(),
        }

    async def start(self) -> None:
        self.spool.open()
        await self.spool.start()
        await self.drainer.start()
        await self.rejections.start()

    async def stop(self) -> None:
        """Finish the requests in flight, drain the spool into the database."""
        await self.spool.stop()
        await self.drainer.stop()
        await self.rejections.stop()
        await self.duplicates.close()
