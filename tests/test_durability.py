"""Acknowledged means stored: crashes, database outages, cut connections, a
full disk and damaged spool files. Every test prints its figures; every load
is on loopback, bounded in count and time."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from conftest import Server, start_server, stop_server
from eventbunker import _native
from eventbunker.admin.projects import create_project
from eventbunker.cluster import ManagedCluster
from eventbunker.ingest.drainer import read_batch
from eventbunker.ingest.spool import Position, segment_path
from eventbunker.storage.migrate import migrate
from faults import ConnectionCutter, Load, Target, outcome, wait_until_stored


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedCluster]:
    """A cluster of its own: these tests stop and start it."""
    managed = ManagedCluster(tmp_path_factory.mktemp("fault-cluster"))
    managed.start()
    migrate(managed.conninfo)
    try:
        yield managed
    finally:
        managed.stop()


@pytest.fixture
def fdb(cluster: ManagedCluster) -> Iterator[psycopg.Connection[Any]]:
    cluster.start()  # a test may have left it stopped
    with psycopg.connect(cluster.conninfo, autocommit=True) as conn:
        yield conn


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Any:
    def say(name: str, text: str) -> None:
        with capsys.disabled():
            print(f"\n[{name}] {text}")

    return say


KILLS = 8
CUTS = 10


def kill_tree(server: Server) -> None:
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()


def test_kill_9_every_2_seconds_loses_and_duplicates_nothing(
    cluster: ManagedCluster, fdb: psycopg.Connection[Any], tmp_path: Path, report: Any
) -> None:
    project = create_project(fdb, "kill-9")
    target = Target()
    load = Load(target, project["keys"]["write"], batch=100, threads=4)
    server = start_server(cluster.conninfo, tmp_path, "--workers", "2")
    target.url = server.url
    load.start()
    kills = 0
    deadline = time.monotonic() + 120
    try:
        while (len(load.acked) < 50_000 or kills < KILLS) and time.monotonic() < deadline:
            time.sleep(2)
            kill_tree(server)
            kills += 1
            server = start_server(cluster.conninfo, tmp_path, "--workers", "2")
            target.url = server.url
    finally:
        load.stop()
    # The last start replays what the last kill left in the spools.
    drain_s = wait_until_stored(fdb, project["id"], load.acked, timeout_s=30)
    stop_server(server)
    result = outcome(fdb, project["id"], load.acked)
    report(
        "kill -9", f"{kills} kills; {result.line()}; drained {drain_s:.1f}s after the last start"
    )
    assert len(load.acked) >= 50_000
    assert kills >= KILLS
    assert result.lost == 0
    assert result.duplicated == 0


def test_database_outage_spools_then_drains(
    cluster: ManagedCluster, fdb: psycopg.Connection[Any], tmp_path: Path, report: Any
) -> None:
    project = create_project(fdb, "outage")
    target = Target()
    # A small spool limit, so that the outage also shows the 503s.
    server = start_server(
        cluster.conninfo, tmp_path, "--workers", "2", "--spool-max-bytes", str(3 << 20)
    )
    target.url = server.url
    load = Load(target, project["keys"]["write"], batch=20, threads=2)
    try:
        load.start()
        time.sleep(2)
        fdb.close()
        cluster.stop()
        outage_started = time.monotonic()
        ready_during = httpx.get(server.url + "/readyz").json()
        acked_before = len(load.acked)
        time.sleep(20)
        acked_during = len(load.acked) - acked_before
        refused_during = load.sent_503
        cluster.start()
        outage_s = time.monotonic() - outage_started
        time.sleep(3)
        load.stop()
        with psycopg.connect(cluster.conninfo, autocommit=True) as db:
            drain_s = wait_until_stored(db, project["id"], load.acked, timeout_s=60)
            result = outcome(db, project["id"], load.acked)
        ready_after = httpx.get(server.url + "/readyz").status_code
    finally:
        load.stop()
        stop_server(server)
    report(
        "database outage",
        f"outage {outage_s:.0f}s: {acked_during} events acknowledged from the spool,"
        f" {refused_during} requests refused with 503 (spool full); {result.line()};"
        f" backlog drained {drain_s:.1f}s after the database returned",
    )
    assert ready_during["database"] == "unreachable"
    assert acked_during > 0
    assert refused_during > 0
    assert ready_after == 200
    assert result.lost == 0
    assert result.duplicated == 0


def test_connections_cut_during_copy_and_commit(
    cluster: ManagedCluster, fdb: psycopg.Connection[Any], tmp_path: Path, report: Any
) -> None:
    project = create_project(fdb, "terminate")
    target = Target()
    server = start_server(cluster.conninfo, tmp_path, "--workers", "2")
    target.url = server.url
    load = Load(target, project["keys"]["write"], batch=50, threads=4)
    # The drainers' connections, whatever they are doing (COPY, COMMIT).
    cutter = ConnectionCutter(cluster.conninfo, "eventbunker-drainer", interval_s=0.03)
    try:
        load.start()
        cutter.start()
        # At least 10 s and 10 cuts (a loaded machine drains less often).
        started = time.monotonic()
        while time.monotonic() - started < 40 and (
            time.monotonic() - started < 10 or cutter.cuts < CUTS
        ):
            time.sleep(0.5)
    finally:
        cutter.stop()
        load.stop()
    drain_s = wait_until_stored(fdb, project["id"], load.acked, timeout_s=30)
    stop_server(server)
    result = outcome(fdb, project["id"], load.acked)
    report(
        "pg_terminate_backend",
        f"{cutter.cuts} connections cut; {result.line()}; drained {drain_s:.1f}s",
    )
    assert cutter.cuts >= CUTS
    assert result.acknowledged > 0
    assert result.lost == 0
    assert result.duplicated == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_spool_disk_refuses_then_recovers(
    cluster: ManagedCluster, fdb: psycopg.Connection[Any], tmp_path: Path, report: Any
) -> None:
    project = create_project(fdb, "disk-full")
    spool_dir = tmp_path / "small-disk"
    spool_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(spool_dir)], check=True)
    target = Target()
    server: Server | None = None
    load = Load(target, project["keys"]["write"], batch=50, threads=2)
    try:
        server = start_server(
            cluster.conninfo,
            tmp_path,
            "--workers",
            "1",
            "--spool-dir",
            str(spool_dir),
            env={"EVENTBUNKER_SPOOL_SEGMENT_BYTES": str(256 << 10)},
        )
        target.url = server.url
        fdb.close()
        cluster.stop()  # nothing drains: the small disk fills up
        load.start()
        deadline = time.monotonic() + 30
        while load.sent_503 == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        refused = load.sent_503
        acked_while_full = len(load.acked)
        cluster.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            before = len(load.acked)
            time.sleep(1)
            if len(load.acked) > before and load.statuses[503] == refused:
                break
        recovered = len(load.acked) > acked_while_full
        load.stop()
        with psycopg.connect(cluster.conninfo, autocommit=True) as db:
            drain_s = wait_until_stored(db, project["id"], load.acked, timeout_s=30)
            result = outcome(db, project["id"], load.acked)
    finally:
        load.stop()
        if server is not None:
            stop_server(server)
        subprocess.run(["umount", "-l", str(spool_dir)], check=False)
    report(
        "spool disk full",
        f"{refused} requests refused with 503 on a 2 MiB disk; recovered: {recovered};"
        f" {result.line()}; drained {drain_s:.1f}s",
    )
    assert refused > 0
    assert recovered
    assert result.lost == 0
    assert result.duplicated == 0


def _write_orphan_spool(
    directory: Path, project_id: int, events: int, *, first_layout: bool = False
) -> list[int]:
    """A dead worker's spool: one record per event, as the server writes them
    (``first_layout``: as the first version did, rows without distinct_id)."""
    directory.mkdir(parents=True)
    ends = []
    with segment_path(directory, 1).open("wb") as f:
        for seq in range(events):
            prepared = _native.prepare_events(
                f'{{"event_name": "spooled", "seq": {seq}}}'.encode(),
                gzip=False,
                project_id=project_id,
                customer_identifier=None,
                received_at_us=time.time_ns() // 1000,
                peer_ip=None,
                user_agent=None,
                referer=None,
                limits=_native.Limits(),
            )
            f.write(_first_layout(prepared.record) if first_layout else prepared.record)
            ends.append(f.tell())
    return ends


def _replay_orphan(
    cluster: ManagedCluster, tmp_path: Path, spool_root: Path, orphan: Path
) -> Server:
    """A one-worker server over ``spool_root``, stopped once it replayed and
    removed the ``orphan`` spool (or after 15 s); returns it for its log."""
    server = start_server(
        cluster.conninfo, tmp_path, "--workers", "1", "--spool-dir", str(spool_root)
    )
    try:
        deadline = time.monotonic() + 15
        while orphan.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop_server(server)
    return server


def _first_layout(record: bytes) -> bytes:
    """``record`` as the first spool layout framed it: 36-column rows (no
    trailing ``distinct_id``), the same frame and checksum."""
    payload = record[10:]
    ids_length = int.from_bytes(payload[20:24], "little")
    rows_at = 24 + ids_length
    rows = payload[rows_at:]
    assert rows.endswith(b"\t\\N\n") and rows.count(b"\n") == 1
    payload = payload[:rows_at] + rows[: -len(b"\t\\N\n")] + b"\n"
    return (
        b"EB"
        + len(payload).to_bytes(4, "little")
        + zlib.crc32(payload).to_bytes(4, "little")
        + payload
    )


def test_a_spool_left_by_the_first_version_is_stored_after_an_upgrade(
    cluster: ManagedCluster, fdb: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Rows spooled before distinct_id existed are stored, with no distinct_id."""
    project = create_project(fdb, "first-layout")
    spool_root = tmp_path / "spool"
    tag = hashlib.sha256(cluster.conninfo.encode()).hexdigest()[:12]
    orphan = spool_root / tag / "old-worker"
    _write_orphan_spool(orphan, project["id"], 20, first_layout=True)
    _replay_orphan(cluster, tmp_path, spool_root, orphan)
    got = fdb.execute(
        "SELECT (properties->>'seq')::int, distinct_id FROM events WHERE project_id = %s",
        (project["id"],),
    ).fetchall()
    assert sorted(got) == [(seq, None) for seq in range(20)]
    assert not orphan.exists(), "a replayed spool is removed"


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped"])
def test_damaged_spool_keeps_every_complete_record_before_the_damage(
    cluster: ManagedCluster, fdb: psycopg.Connection[Any], tmp_path: Path, report: Any, damage: str
) -> None:
    project = create_project(fdb, f"damaged-{damage}")
    spool_root = tmp_path / "spool"
    tag = hashlib.sha256(cluster.conninfo.encode()).hexdigest()[:12]
    orphan = spool_root / tag / "dead-worker"
    ends = _write_orphan_spool(orphan, project["id"], 100)
    segment = segment_path(orphan, 1)
    data = bytearray(segment.read_bytes())
    keep = 60  # records 0..59 are intact; the damage is in record 60
    if damage == "truncated":
        data = data[: ends[keep] - 7]  # mid-record 60: a torn tail
        expected = set(range(keep))
    else:
        data[ends[keep] - 3] ^= 0x10  # one bit inside record 60
        expected = set(range(keep))
    segment.write_bytes(bytes(data))

    batch, _ = read_batch(orphan, Position(1, 0), None, 1 << 20)
    assert batch is not None
    assert batch.records == keep

    server = _replay_orphan(cluster, tmp_path, spool_root, orphan)
    got = fdb.execute(
        "SELECT (properties->>'seq')::int FROM events WHERE project_id = %s", (project["id"],)
    ).fetchall()
    seqs = [r[0] for r in got]
    report(f"{damage} segment", f"100 records, damage in record {keep}: {len(seqs)} replayed")
    assert sorted(seqs) == sorted(expected)
    assert not orphan.exists(), "a replayed spool is removed"
    assert "damaged" in server.log()


def test_event_id_retries_are_stored_once(
    cluster: ManagedCluster, fdb: psycopg.Connection[Any], tmp_path: Path
) -> None:
    project = create_project(fdb, "idempotency")
    key = {"X-Api-Key": project["keys"]["write"]}
    server = start_server(cluster.conninfo, tmp_path, "--workers", "2")
    try:
        with httpx.Client(base_url=server.url) as http:
            batch = [{"event_name": "buy", "event_id": f"order-{i}"} for i in range(5)]
            first = http.post("/v1/events", json=batch, headers=key).json()
            assert first == {"accepted": 5, "duplicates": 0}
            # A retry of the whole batch, and one with a duplicate inside it.
            for _ in range(4):
                again = http.post("/v1/events", json=batch, headers=key).json()
                assert again == {"accepted": 0, "duplicates": 5}
            mixed = [{"event_name": "buy", "event_id": "order-9"}] * 2 + [{"event_name": "x"}]
            assert http.post("/v1/events", json=mixed, headers=key).json() == {
                "accepted": 2,
                "duplicates": 1,
            }
    finally:
        stop_server(server)
    # After a restart (no memory of recent ids) the stored ids still count.
    server = start_server(cluster.conninfo, tmp_path, "--workers", "1")
    try:
        response = httpx.post(server.url + "/v1/events", json=batch[:1], headers=key).json()
        assert response == {"accepted": 0, "duplicates": 1}
    finally:
        stop_server(server)
    rows = fdb.execute(
        "SELECT event_id, count(*) FROM events WHERE project_id = %s"
        " GROUP BY 1 ORDER BY 1 NULLS FIRST",
        (project["id"],),
    ).fetchall()
    assert rows == [(None, 1), *((f"order-{i}", 1) for i in range(5)), ("order-9", 1)]
    billed = fdb.execute(
        "SELECT sum(events) FROM write_counters WHERE project_id = %s", (project["id"],)
    ).fetchone()
    assert billed == (7,)


def test_sigterm_drains_the_spool_before_exit(
    cluster: ManagedCluster, fdb: psycopg.Connection[Any], tmp_path: Path
) -> None:
    project = create_project(fdb, "sigterm")
    target = Target()
    spool_root = tmp_path / "spool"
    server = start_server(
        cluster.conninfo, tmp_path, "--workers", "2", "--spool-dir", str(spool_root)
    )
    target.url = server.url
    load = Load(target, project["keys"]["write"], batch=50, threads=4)
    load.start()
    time.sleep(3)
    os.killpg(server.process.pid, signal.SIGTERM)
    load.stop()
    assert server.process.wait(timeout=60) == 0
    result = outcome(fdb, project["id"], load.acked)
    assert result.acknowledged > 0
    assert result.lost == 0 and result.duplicated == 0
    assert not list(spool_root.glob("*/*/*.seg")), "the spool was drained and removed"
