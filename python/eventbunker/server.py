"""``eventbunker serve``: database, migrations, then Granian workers."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import psycopg
from granian import Granian
from granian.constants import Interfaces

from eventbunker.admin.projects import create_key, create_project
from eventbunker.config import UNSET_PATH, Settings
from eventbunker.database import open_database
from eventbunker.ingest.enrichment import check_and_log

log = logging.getLogger("eventbunker")


def serve(settings: Settings, *, quickstart: bool = False) -> None:
    check_and_log(settings)  # a bad GeoIP database or proxy list stops us here
    with (
        open_database(settings, own_cluster=True) as conninfo,
        tempfile.TemporaryDirectory(prefix="eventbunker-run-") as temporary_dir,
    ):
        runtime_dir = settings.runtime_dir if settings.runtime_dir != UNSET_PATH else temporary_dir
        if quickstart:
            print_first_event_hint(conninfo, settings)
        worker_settings = replace(settings, database_url=conninfo, runtime_dir=Path(runtime_dir))
        # Workers are separate processes: they read their settings from here.
        os.environ.update(worker_settings.to_env())
        workers = settings.effective_workers
        log.info("serving on http://%s:%d with %d workers", settings.host, settings.port, workers)
        Granian(
            "eventbunker.app:create_app",
            factory=True,
            interface=Interfaces.ASGI,
            address=settings.host,
            port=settings.port,
            workers=workers,
            backlog=2048,
            log_access=False,
            websockets=False,
        ).serve()


def print_first_event_hint(conninfo: str, settings: Settings) -> None:
    """Mint a write key (on the first project, created if needed) and show a curl."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT id FROM projects ORDER BY id LIMIT 1").fetchone()
        if row is None:
            project = create_project(conn, "default")
            project_id, key = project["id"], project["keys"]["write"]
        else:
            project_id = int(row[0])
            key = create_key(conn, project_id, "write")["key"]
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    print(
        f"\nProject {project_id}, new write key: {key}\n"
        "Send a first event:\n\n"
        f"  curl -i http://{host}:{settings.port}/v1/events \\\n"
        f"    -H 'X-Api-Key: {key}' -H 'Content-Type: application/json' \\\n"
        """    -d '{"event_name": "signup", "plan": "pro"}'\n\n"""
        "Import an NDJSON export (resumable, with progress):\n\n"
        f"  .venv/bin/eventbunker import events.ndjson.gz --url http://{host}:{settings.port}"
        f" --key {key}\n",
        flush=True,
    )
