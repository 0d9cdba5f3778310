"""The Litestar application: one factory, one wiring place.

Granian calls ``create_app`` in every worker process (``factory=True``), so
each worker owns its key cache, spool, drainer and database connections.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from litestar import Litestar, MediaType, Response, get
from litestar.openapi import OpenAPIConfig

from eventbunker.admin.api import admin_router
from eventbunker.admin.store import AdminStore
from eventbunker.body_limit import BodyLimit
from eventbunker.compat.routes import (
    posthog_config_handlers,
    sdk_routes,
    segment_settings_handlers,
)
from eventbunker.config import UNSET_PATH, Settings
from eventbunker.errors import ErrorCode
from eventbunker.imports.endpoint import IMPORT_PATH, PROGRESS_PREFIX, ImportEndpoint
from eventbunker.ingest.auth import KeyCache
from eventbunker.ingest.pipeline import IngestPipeline
from eventbunker.ops.memory import MemoryTrimmer
from eventbunker.ops.metrics import Metrics
from eventbunker.ops.openapi import COMPONENTS, document_raw_routes
from eventbunker.query.endpoint import QueryApi
from eventbunker.refusals import exception_handlers
from eventbunker.routing import RawRoute, RawRouter
from eventbunker.web import template_config, web_handlers

log = logging.getLogger(__name__)

GIL_SWITCH_INTERVAL_S = 0.0005
INGEST_PATH = "/v1/events"


def create_app(settings: Settings | None = None) -> RawRouter:
    settings = settings or Settings.from_env()
    # The spool's fsyncs run in a thread that needs the GIL back to release
    # the waiting requests; the default 5 ms switch interval would add up to
    # 5 ms to every acknowledgement while the event loop is busy.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    if not settings.database_url:
        raise SystemExit(
            "EVENTBUNKER_DATABASE_URL is not set; start the server with `eventbunker serve`"
        )
    conninfo = settings.database_url
    metrics = Metrics(settings.runtime_dir if settings.runtime_dir != UNSET_PATH else None)
    keys = KeyCache(conninfo, refresh_interval_s=settings.auth_refresh_ms / 1000)
    ingest = IngestPipeline(settings, keys, metrics)
    imports = ImportEndpoint(
        keys,
        conninfo,
        ingest.limits,
        ingest.enricher,
        metrics,
        shard=ingest.shard,
        body_idle_timeout_s=settings.body_timeout_seconds,
        rollups=settings.rollups,
    )
    query_api = QueryApi(keys, conninfo, settings)
    admin_store = AdminStore(conninfo)  # admin API and web app
    trimmer = MemoryTrimmer()
    # The web app's events and usage, like queries, may read a streaming replica.
    web_reads = (
        AdminStore(settings.query_database_url, application_name="eventbunker-web-replica")
        if settings.query_database_url
        else admin_store
    )

    @get("/healthz", media_type=MediaType.JSON, summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", media_type=MediaType.JSON, summary="The database is reachable")
    async def readyz() -> Response[dict[str, Any]]:
        """200 when the database answers and ingest takes requests; else 503,
        saying whether ingest still accepts events into the spool or is
        shedding load (its queryable lag past --max-lag-seconds)."""
        state = ingest.state()
        try:
            await keys.ping()
        except (psycopg.Error, OSError):
            state["database"] = "unreachable"
            return Response(
                {"status": "unavailable", **state}, status_code=503, headers={"Retry-After": "1"}
            )
        if state["shedding_load"]:
            return Response(
                {"status": "shedding", **state}, status_code=503, headers={"Retry-After": "1"}
            )
        return Response({"status": "ready", **state})

    @get("/metrics", media_type="text/plain; version=0.0.4", summary="Prometheus metrics")
    async def prometheus_metrics() -> str:
        return metrics.render()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        document_raw_routes(app)
        await metrics.start()
        await trimmer.start()
        await keys.start()
        await ingest.start()
        await query_api.start()
        try:
            yield
        finally:
            await query_api.stop()
            await ingest.stop()
            await keys.stop()
            await trimmer.stop()
            await metrics.stop()

    app = Litestar(
        route_handlers=[
            healthz,
            readyz,
            prometheus_metrics,
            query_api.router,
            admin_router(admin_store),
            imports.progress_router(),
            *web_handlers(admin_store, ingest.enricher, query_api.answer, web_reads),
            *posthog_config_handlers(),
            *segment_settings_handlers(),
        ],
        lifespan=[
            lifespan,
            admin_store.lifespan,
            *([web_reads.lifespan] if web_reads is not admin_store else []),
        ],
        template_config=template_config(),
        exception_handlers=exception_handlers(ErrorCode.INVALID_REQUEST),
        openapi_config=OpenAPIConfig(
            title="EventBunker", version="0.1.0", path="/schema", components=COMPONENTS
        ),
        logging_config=None,
    )
    body_limit = BodyLimit(app, settings.max_body_bytes, settings.body_timeout_seconds)
    # The raw ASGI routes, before Litestar (routing.py says why). An import's
    # progress is Litestar's, listed here for the router's preflight and 405s
    # of the import's write-key paths.
    raw_routes = [
        RawRoute("POST", INGEST_PATH, ingest.endpoint),
        RawRoute("POST", IMPORT_PATH, imports.start),
        RawRoute("GET", PROGRESS_PREFIX, body_limit),
    ]
    raw_routes += sdk_routes(ingest.endpoint, keys)
    return RawRouter(body_limit, raw_routes, settings.body_timeout_seconds)
