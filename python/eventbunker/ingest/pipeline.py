"""One worker's ingest data path, wired: endpoint → spool → drainer → TimescaleDB.

With ``--nats`` (scale-out mode) the durable sink is a JetStream stream
instead (scaleout/), and ``eventbunker writer`` processes do the drainer's work.
"""

from __future__ import annotations

import hashlib
import os
import secrets

from eventbunker import _native
from eventbunker.config import UNSET_PATH, Settings
from eventbunker.ingest.auth import KeyCache
from eventbunker.ingest.backpressure import Backpressure
from eventbunker.ingest.drainer import Drainer
from eventbunker.ingest.endpoint import IngestEndpoint
from eventbunker.ingest.enrichment import build_enricher
from eventbunker.ingest.idempotency import DuplicateCheck
from eventbunker.ingest.rate_limits import RateLimit, RateLimits
from eventbunker.ingest.rejections import RejectionCounter
from eventbunker.ingest.spool import Spool
from eventbunker.ingest.writer import EventWriter
from eventbunker.ops.metrics import Metrics
from eventbunker.scaleout.sink import JetStreamSink

# Counter rows are sharded by worker so that concurrent commits of several
# workers rarely wait on the same row lock; a day's count sums its shards.
COUNTER_SHARDS = 16


def limits_of(settings: Settings) -> _native.Limits:
    return _native.Limits(
        max_body_bytes=settings.max_body_bytes,
        max_batch_events=settings.max_batch_events,
        max_depth=settings.max_json_depth,
        max_string_bytes=settings.max_string_bytes,
        max_future_seconds=settings.max_future_seconds,
    )


def rate_limits_of(settings: Settings) -> RateLimits:
    """The server's default limit (if any); projects may have their own even without one."""
    rate = settings.rate_limit_events_per_second
    default = RateLimit(rate, settings.rate_limit_burst) if rate > 0 else None
    runtime_dir = settings.runtime_dir if settings.runtime_dir != UNSET_PATH else None
    return RateLimits(default, runtime_dir)


class IngestPipeline:
    def __init__(self, settings: Settings, keys: KeyCache, metrics: Metrics) -> None:
        conninfo = settings.database_url
        self._keys = keys
        shard = os.getpid() % COUNTER_SHARDS
        # Spools are kept per database: a spool is only ever replayed into the
        # database its events were meant for.
        database_tag = hashlib.sha256(conninfo.encode()).hexdigest()[:12]
        self.sink: Spool | JetStreamSink
        self.spool: Spool | None = None
        self.drainer: Drainer | None = None
        if settings.nats_url:
            self.stream: JetStreamSink | None = JetStreamSink(
                settings.nats_url,
                settings.nats_stream,
                settings.nats_replicas,
                name=f"eventbunker-ingest-{os.getpid()}",
            )
            self.sink = self.stream
        else:
            self.stream = None
            self.sink = self.spool = Spool(
                settings.spool_dir.resolve() / database_tag,
                f"{os.getpid()}-{secrets.token_hex(4)}",
                segment_bytes=settings.spool_segment_bytes,
                max_bytes=settings.spool_max_bytes,
                max_pending_bytes=settings.spool_max_pending_bytes,
            )
            self.drainer = Drainer(
                self.spool,
                EventWriter(conninfo, shard=shard, rollups=settings.rollups),
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
            self._storing,
            self.stream.drained_changed if self.stream else self._spool().drained_changed,
            settings.max_lag_seconds,
        )
        self.endpoint = IngestEndpoint(
            keys,
            self.sink,
            self.duplicates,
            self.rejections,
            metrics,
            self.limits,
            max_body_bytes=settings.max_body_bytes,
            backpressure=self.backpressure,
            enricher=self.enricher,
            rate_limits=rate_limits_of(settings),
            body_timeout_s=settings.body_timeout_seconds,
        )

        if self.stream is not None:
            stream = self.stream
            metrics.gauges["eventbunker_stream_pending_messages"] = lambda: float(
                stream.backlog.messages
            )
        else:
            spool, drainer = self._spool(), self._drainer()
            metrics.gauges["eventbunker_spool_pending_bytes"] = lambda: spool.pending_bytes
            metrics.gauges["eventbunker_spool_backlog_bytes"] = lambda: drainer.backlog_bytes
            metrics.gauges["eventbunker_database_up"] = lambda: float(drainer.database_ok)
        metrics.gauges["eventbunker_queryable_lag_seconds"] = self.lag_seconds
        metrics.gauges["eventbunker_ingest_shedding"] = lambda: float(self.backpressure.shedding())
        metrics.watch_caches(self.enricher.cache_stats)

    def lag_seconds(self) -> float:
        """Age of this worker's oldest acknowledged event not yet in the database
        (scale-out mode: the stream's, over all ingest nodes)."""
        if self.stream is not None:
            return self.stream.lag_seconds()
        return max(self._spool().lag_seconds(), self._drainer().replay_lag_seconds())

    def _storing(self) -> bool:
        """The database can be written (else an outage: backpressure holds off).

        Scale-out mode: the writers store, or the database answers this node.
        Writers stalled or none running are no outage: the lag bound applies.
        """
        if self.stream is not None:
            return self.stream.writers_working() or self._keys.database_ok
        return self._drainer().database_ok

    def _spool(self) -> Spool:
        assert self.spool is not None, "single-node mode"
        return self.spool

    def _drainer(self) -> Drainer:
        assert self.drainer is not None, "single-node mode"
        return self.drainer

    def state(self) -> dict[str, object]:
        """For /readyz: is the database written to, and can requests be made durable."""
        if self.stream is not None:
            return {
                **self.stream.state(),
                "queryable_lag_seconds": round(self.lag_seconds(), 3),
                "shedding_load": self.backpressure.shedding(),
            }
        return {
            "database": "ok" if self._drainer().database_ok else "unreachable",
            "spool_backlog_bytes": self._drainer().backlog_bytes,
            "spool_accepting": self._spool().accepting,
            "queryable_lag_seconds": round(self.lag_seconds(), 3),
            "shedding_load": self.backpressure.shedding(),
        }

    async def start(self) -> None:
        if self.stream is not None:
            await self.stream.start()
        else:
            self._spool().open()
            await self._spool().start()
            await self._drainer().start()
        await self.rejections.start()

    async def stop(self) -> None:
        """Finish the requests in flight, drain the spool into the database."""
        await self.sink.stop()
        if self.drainer is not None:
            await self.drainer.stop()
        await self.rejections.stop()
        await self.duplicates.close()
