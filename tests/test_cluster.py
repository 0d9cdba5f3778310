"""The managed PostgreSQL + TimescaleDB cluster (eventbunker.cluster), for real."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from eventbunker.cluster import ClusterError, ManagedCluster, find_pg_bin_dir

# A port no other test cluster uses: each cluster has its own socket directory
# anyway, the port only names the socket.
PORT = 5499


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedCluster]:
    managed = ManagedCluster(tmp_path_factory.mktemp("managed"), port=PORT)
    assert not managed.is_running()
    assert managed.start() is True
    try:
        yield managed
    finally:
        managed.stop()


def test_find_pg_bin_dir() -> None:
    bin_dir = find_pg_bin_dir()
    assert (bin_dir / "pg_ctl").exists()
    assert (bin_dir / "postgres").exists()


def test_find_pg_bin_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EVENTBUNKER_PG_BIN", str(tmp_path))
    with pytest.raises(ClusterError, match="EVENTBUNKER_PG_BIN"):
        find_pg_bin_dir()


def test_layout_and_conninfo(cluster: ManagedCluster) -> None:
    assert cluster.is_running()
    assert (cluster.data_dir / "pg" / "PG_VERSION").is_file()
    assert (cluster.data_dir / "postgresql.log").is_file()
    assert cluster.socket_dir == cluster.data_dir / "run"
    assert (cluster.socket_dir / f".s.PGSQL.{PORT}").exists()
    assert f"host={cluster.socket_dir}" in cluster.conninfo
    assert "dbname=eventbunker" in cluster.conninfo
    assert "user=eventbunker" in cluster.conninfo


def test_timescaledb(cluster: ManagedCluster) -> None:
    with psycopg.connect(cluster.conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        assert row is not None and row[0]
        settings: dict[str, str] = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                (
                    [
                        "listen_addresses",
                        "fsync",
                        "synchronous_commit",
                        "timescaledb.license",
                        "timescaledb.telemetry_level",
                        "shared_preload_libraries",
                    ],
                ),
            ).fetchall()
        )
        assert settings == {
            "listen_addresses": "",
            "fsync": "on",
            "synchronous_commit": "on",
            "timescaledb.license": "apache",
            "timescaledb.telemetry_level": "off",
            "shared_preload_libraries": "timescaledb",
        }
        conn.execute("CREATE TABLE t (time timestamptz NOT NULL, v int)")
        conn.execute("SELECT create_hypertable('t', by_range('time'))")
        conn.execute("INSERT INTO t VALUES ('2024-03-01 23:30+00', 1), ('2024-03-02 00:30+00', 2)")
        rows = conn.execute(
            "SELECT time_bucket('1 day', time, 'Europe/Paris') AS day, sum(v)"
            " FROM t GROUP BY day ORDER BY day"
        ).fetchall()
        # 23:30 and 00:30 UTC are both on March 2nd in Paris (UTC+1).
        assert [r[1] for r in rows] == [3]
        conn.execute("DROP TABLE t")


def test_start_when_running_returns_false(cluster: ManagedCluster) -> None:
    other = ManagedCluster(cluster.data_dir, port=PORT)
    assert other.start() is False
    assert other.conninfo == cluster.conninfo
    # As a context manager it does not stop a server it did not start.
    with ManagedCluster(cluster.data_dir, port=PORT):
        pass
    assert cluster.is_running()


def test_stop_and_restart(cluster: ManagedCluster) -> None:
    cluster.stop()
    assert not cluster.is_running()
    assert not (cluster.socket_dir / f".s.PGSQL.{PORT}").exists()
    cluster.stop()  # stopping a stopped cluster is fine
    assert cluster.start() is True
    with psycopg.connect(cluster.conninfo) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_concurrent_first_start(tmp_path: Path) -> None:
    """Two processes starting the same fresh data dir: one initdb, one start."""
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from eventbunker.cluster import ManagedCluster
        print(ManagedCluster(Path(sys.argv[1]), port=int(sys.argv[2])).start())
        """
    )
    data_dir = tmp_path / "shared"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(data_dir), str(PORT)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    try:
        for p, (_, err) in zip(procs, outputs, strict=True):
            assert p.returncode == 0, err
        assert sorted(out.strip() for out, _ in outputs) == ["False", "True"]
    finally:
        ManagedCluster(data_dir, port=PORT).stop()


def test_context_manager_and_long_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with ManagedCluster(deep, port=PORT, dbname="other db") as managed:
        # The socket path would be too long under the data dir: /tmp fallback.
        assert not managed.socket_dir.is_relative_to(deep)
        with psycopg.connect(managed.conninfo) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("other db",)
    assert not managed.is_running()
