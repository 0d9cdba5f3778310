"""Queries and the web app on a real PostgreSQL streaming replica (``--query-database-url``).

The primary is this module's own (a base backup of the suite's, which may hold
much data by then, would not be bounded in time); the replica is made from it
with PostgreSQL's own tools (``pg_basebackup -R``, ``pg_ctl``), as the README
shows. The real server ingests into the primary. Proof that reads come from the
replica: with its WAL replay paused, events already on the primary stay out of
``/v1/query`` and the web app until replay resumes; with the replica stopped,
both answer 503 while ingest goes on into the primary.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from test_web import sign_in

from conftest import free_port, start_server, stop_server, wait_until
from eventbunker.admin.accounts import create_account, create_project_in_account
from eventbunker.cluster import ManagedCluster, find_pg_bin_dir
from eventbunker.storage.migrate import migrate

WAIT_S = 20.0


@dataclass
class Replica:
    pg_dir: Path
    socket_dir: Path
    port: int
    owner: tuple[int, int]  # the PostgreSQL account (uid, gid): it refuses to run as root

    @property
    def conninfo(self) -> str:
        return make_conninfo(
            "", host=str(self.socket_dir), port=self.port, user="eventbunker", dbname="eventbunker"
        )

    def run(self, *args: str) -> None:
        done = subprocess.run(
            [str(find_pg_bin_dir() / args[0]), *args[1:]],
            user=self.owner[0],
            group=self.owner[1],
            cwd="/",
            env={"PATH": os.environ["PATH"], "LC_ALL": "C"},
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"

    def start(self) -> None:
        log = self.pg_dir / "server.log"  # where the PostgreSQL account may write
        self.run("pg_ctl", "start", "-D", str(self.pg_dir), "-l", str(log), "-w", "-t", "60")

    def stop(self) -> None:
        self.run("pg_ctl", "stop", "-D", str(self.pg_dir), "-m", "fast", "-w", "-t", "60")

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            return conn.execute(statement).fetchall()


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedCluster]:
    cluster = ManagedCluster(tmp_path_factory.mktemp("primary"), port=free_port())
    cluster.start()
    try:
        migrate(cluster.conninfo)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def replica(primary: ManagedCluster) -> Iterator[Replica]:
    """A hot standby streaming from ``primary``: pg_basebackup -R, its own socket, pg_ctl."""
    stat = primary.pg_dir.stat()
    owner = (stat.st_uid, stat.st_gid)
    # Beside the primary's, where the PostgreSQL account can already reach.
    replica = Replica(
        primary.data_dir / "replica", primary.data_dir / "replica-run", free_port(), owner
    )
    for directory in (replica.pg_dir, replica.socket_dir):
        directory.mkdir(mode=0o700)
        os.chown(directory, *owner)
    replica.run(
        "pg_basebackup", "-h", str(primary.socket_dir), "-p", str(primary.port),
        "-U", "eventbunker", "-D", str(replica.pg_dir), "-R", "-X", "stream", "-c", "fast",
    )  # fmt: skip
    # The copied configuration names the primary's socket: the replica gets its own
    # (postgresql.auto.conf, where -R wrote primary_conninfo, is read last).
    with (replica.pg_dir / "postgresql.auto.conf").open("a") as conf:
        conf.write(f"port = {replica.port}\nunix_socket_directories = '{replica.socket_dir}'\n")
    replica.start()
    try:
        assert replica.sql("SELECT pg_is_in_recovery()") == [(True,)]
        yield replica
    finally:
        if (replica.pg_dir / "postmaster.pid").exists():
            replica.stop()


wait_for = functools.partial(wait_until, timeout_s=WAIT_S)


def test_queries_and_the_web_app_read_the_replica(
    primary: ManagedCluster, replica: Replica, tmp_path: Path
) -> None:
    with psycopg.connect(primary.conninfo, autocommit=True) as db:
        account = create_account(db, "replica")
        project = create_project_in_account(db, account["id"], "replica")
    keys = project["keys"]
    server = start_server(
        primary.conninfo, tmp_path, "--workers", "1", "--query-database-url", replica.conninfo
    )
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:

            def send(name: str) -> None:
                answer = http.post(
                    "/v1/events", json={"event_name": name}, headers={"X-Api-Key": keys["write"]}
                )
                assert answer.status_code == 202, answer.text

            def count(name: str) -> httpx.Response:
                return http.post(
                    "/v1/query",
                    json={"analysis": "count", "event_name": name},
                    headers={"X-Api-Key": keys["query"]},
                )

            def counted(name: str) -> int:
                answer = count(name)
                assert answer.status_code == 200, answer.text
                return int(answer.json()["result"])

            def live() -> httpx.Response:
                return http.get(f"/projects/{project['id']}/live")

            def shown(name: str) -> bool:
                answer = live()
                assert answer.status_code == 200, answer.text
                return any(e["event_name"] == name for e in answer.json()["events"])

            def on_primary(name: str) -> int:
                with psycopg.connect(primary.conninfo, autocommit=True) as db:
                    row = db.execute(
                        "SELECT count(*) FROM events WHERE project_id = %s AND event_name = %s",
                        (project["id"], name),
                    ).fetchone()
                return int(row[0]) if row else 0

            assert sign_in(http, account["admin_key"]).status_code == 303
            send("first")
            assert wait_for(lambda: counted("first") == 1)
            assert wait_for(lambda: shown("first"))
            activity = replica.sql("SELECT application_name FROM pg_stat_activity")
            readers = {name for (name,) in activity}
            assert {"eventbunker", "eventbunker-web-replica"} <= readers, readers

            # Replay paused: what the primary stores next is not on the replica.
            replica.sql("SELECT pg_wal_replay_pause()")
            assert wait_for(
                lambda: replica.sql("SELECT pg_get_wal_replay_pause_state()") == [("paused",)]
            )
            send("while-paused")
            assert wait_for(lambda: on_primary("while-paused") == 1)
            assert counted("while-paused") == 0
            assert not shown("while-paused")
            assert live().json()["billed_today"] == 1  # the primary counts 2 by now

            replica.sql("SELECT pg_wal_replay_resume()")
            assert wait_for(lambda: counted("while-paused") == 1)
            assert wait_for(lambda: shown("while-paused"))
            assert live().json()["billed_today"] == 2

            # Replica down: reads fail, ingest (the primary) goes on.
            replica.stop()
            refused = count("first")
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "storage_unavailable"
            assert live().status_code == 503
            send("replica-down")
            assert wait_for(lambda: on_primary("replica-down") == 1)
            replica.start()
            assert wait_for(lambda: count("replica-down").status_code == 200)
            assert wait_for(lambda: counted("replica-down") == 1)
    finally:
        stop_server(server)
