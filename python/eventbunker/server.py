"""``eventbunker serve``: database, migrations, then Granian workers."""

from __future__ import annotations

import logging
import os
import resource
import tempfile
from dataclasses import replace
from pathlib import Path

import psycopg
from granian import Granian
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings

from eventbunker.admin.accounts import create_admin_key
from eventbunker.admin.projects import create_key, create_project
from eventbunker.config import UNSET_PATH, Settings
from eventbunker.database import open_database
from eventbunker.ingest.enrichment import check_and_log
from eventbunker.ops.memory import worker_environment
from eventbunker.ops.metrics import prepare_directory

log = logging.getLogger("eventbunker")


def serve(settings: Settings, *, quickstart: bool = False) -> None:
    check_and_log(settings)  # a bad GeoIP database or proxy list stops us here
    keep_alive_ms = keep_alive_timeout_ms(settings)
    max_connections = connections_per_worker(settings)
    with (
        open_database(settings, own_cluster=True) as conninfo,
        tempfile.TemporaryDirectory(prefix="eventbunker-run-") as temporary_dir,
    ):
        runtime_dir = settings.runtime_dir if settings.runtime_dir != UNSET_PATH else temporary_dir
        if quickstart:
            print_first_event_hint(conninfo, settings)
        worker_settings = replace(settings, database_url=conninfo, runtime_dir=Path(runtime_dir))
        prepare_directory(worker_settings.runtime_dir)
        # Workers are separate processes: they read their settings from here.
        os.environ.update(worker_settings.to_env())
        os.environ.update(worker_environment(dict(os.environ)))
        workers = settings.effective_workers
        log.info("serving on http://%s:%d with %d workers", settings.host, settings.port, workers)
        Granian(
            "eventbunker.app:create_app",
            factory=True,
            interface=Interfaces.ASGI,
            address=settings.host,
            port=settings.port,
            workers=workers,
            # HTTP/1 only: with "auto", a connection that never sends its first
            # bytes waits for them (to tell HTTP/2 apart) with no timeout at all.
            http=HTTPModes.http1,
            http1_settings=HTTP1Settings(header_read_timeout=keep_alive_ms),
            backlog=2048,
            # Granian counts connections against this, not requests: stuck
            # connections below it cannot keep a new one from being accepted.
            backpressure=max_connections,
            log_access=False,
            websockets=False,
        ).serve()


# Granian refuses a header read timeout above a minute.
MAX_KEEP_ALIVE_TIMEOUT_MS = 60_000


def keep_alive_timeout_ms(settings: Settings) -> int:
    """Granian's (hyper's) HTTP/1 header read timeout: its timer runs whenever
    a connection waits for a request's head, so it closes idle kept-alive
    connections, connections that never send a byte, and header trickles."""
    timeout_ms = round(settings.keep_alive_timeout_seconds * 1000)
    if not 1 <= timeout_ms <= MAX_KEEP_ALIVE_TIMEOUT_MS:
        raise SystemExit(
            "eventbunker serve: --keep-alive-timeout-seconds must be from 0.001 to"
            f" {MAX_KEEP_ALIVE_TIMEOUT_MS // 1000}, not {settings.keep_alive_timeout_seconds:g}"
        )
    return timeout_ms


# File descriptors a worker keeps beside its connections (spool, database, runtime files).
RESERVED_FILES = 512


def connections_per_worker(settings: Settings) -> int:
    """``--max-connections``, within the open-files limit (raised to its hard
    limit first: the workers inherit it)."""
    if settings.max_connections < 1:
        raise SystemExit("eventbunker serve: --max-connections must be at least 1")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = settings.max_connections + RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < wanted:
        allowed = max(1, soft - RESERVED_FILES)
        log.warning(
            "open-files limit %d: %d connections per worker, not %d",
            soft,
            allowed,
            settings.max_connections,
        )
        return allowed
    return settings.max_connections


def print_first_event_hint(conninfo: str, settings: Settings) -> None:
    """Everything a newcomer needs, each tested as printed (tests/test_cli.py).

    Secrets are stored hashed, so each start mints new keys: an admin key for
    the web app, a write key and a query key on the first project (created,
    with its account, if there is none).
    """
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT id FROM projects ORDER BY id LIMIT 1").fetchone()
        if row is None:
            project = create_project(conn, "default")
            project_id, write_key = project["id"], project["keys"]["write"]
            query_key = project["keys"]["query"]
        else:
            project_id = int(row[0])
            write_key = create_key(conn, project_id, "write")["key"]
            query_key = create_key(conn, project_id, "query")["key"]
        owner = conn.execute("SELECT account_id FROM projects WHERE id = %s", (project_id,))
        account_id = int(owner.fetchone()[0])  # type: ignore[index]
        admin_key = create_admin_key(conn, account_id)["admin_key"]
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{host}:{settings.port}"
    print(
        f"\nWeb app: {url}/login\n"
        f"  sign in with the admin key {admin_key}\n"
        f"\nProject {project_id}, write key {write_key}\n"
        "Send a first event:\n\n"
        f"  curl -i {url}/v1/events \\\n"
        f"    -H 'X-Api-Key: {write_key}' -H 'Content-Type: application/json' \\\n"
        """    -d '{"event_name": "signup", "plan": "pro"}'\n"""
        f"\nQuery key {query_key}\n"
        "Count that event (queryable within a second of its 202):\n\n"
        f"  curl {url}/v1/query \\\n"
        f"    -H 'X-Api-Key: {query_key}' -H 'Content-Type: application/json' \\\n"
        """    -d '{"analysis": "count", "event_name": "signup"}'\n"""
        "\nImport an NDJSON export (resumable, with progress):\n\n"
        f"  .venv/bin/eventbunker import events.ndjson.gz --url {url} --key {write_key}\n",
        flush=True,
    )
