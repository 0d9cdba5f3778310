"""Measuring a write path against PostgreSQL's own COPY: CPU by process tree,
what the writing backend waits on, and the ``psql \\copy`` baseline of the same rows.

Shared by the benchmarks that compare our write paths with the physical ceiling
(``import_copy.py``, ``sustained_batches.py``).
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import psycopg

from eventbunker._native import EVENT_COLUMNS
from eventbunker.cluster import ManagedCluster, find_pg_bin_dir

COLUMNS_SQL = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
# What a write path fills besides ``events`` (emptied between runs).
SIDE_TABLES = ("event_ids", "write_counters", "rejected_counters")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stats() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, CPU seconds of the process plus its reaped children)."""
    stats = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rindex(b")") + 2 :].split()
        # after "pid (comm) ": state ppid ... utime(12) stime(13) cutime(14) cstime(15)
        ticks = sum(int(x) for x in fields[11:15])
        stats[int(name)] = (int(fields[1]), ticks / CLOCK_TICKS)
    return stats


def tree_cpu(root: int, stats: dict[int, tuple[int, float]]) -> float:
    """CPU seconds of ``root`` and its live descendants (dead ones count in cutime)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo.extend(children.get(pid, ()))
    return total


def machine_busy_s() -> float:
    """CPU seconds all cores spent outside idle/iowait since boot."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


class Periodic:
    """A thread running ``_run`` (which waits on ``self._stop`` between samples)
    while the context is open."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        raise NotImplementedError


class WaitSampler(Periodic):
    """What the writing backend does, sampled from pg_stat_activity.

    The backend of the import (application_name ``eventbunker-import``) or of
    psql: "CPU" is running (no wait event); "Client:ClientRead" waits for its
    client (the server, or psql) to send more rows; "idle in transaction"
    waits for the next statement; "IO:WALSync", "LWLock:WALWrite"... are
    commits and WAL flushes; "none" means no such backend at that moment.
    """

    QUERY = (
        "SELECT CASE WHEN state <> 'active' THEN state"
        " ELSE coalesce(wait_event_type || ':' || wait_event, 'CPU') END"
        " FROM pg_stat_activity WHERE backend_type = 'client backend'"
        " AND application_name IN ('eventbunker-import', 'eventbunker-drainer', 'psql')"
        " AND state <> 'idle'"
    )

    def __init__(self, conninfo: str, interval_s: float) -> None:
        super().__init__(interval_s)
        self.conninfo = conninfo
        self.counts: dict[str, int] = {}
        self.samples = 0

    def _run(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self._stop.wait(self.interval_s):
                self.samples += 1
                states = [str(row[0]) for row in conn.execute(self.QUERY)] or ["none"]
                for state in states:
                    self.counts[state] = self.counts.get(state, 0) + 1

    def shares(self) -> dict[str, float]:
        """Share of the samples in each state, most frequent first."""
        total = max(self.samples, 1)
        ranked = sorted(self.counts.items(), key=lambda kv: -kv[1])
        return {state: round(n / total, 3) for state, n in ranked}


class Meter:
    """CPU and wall time of one measured run, split by process tree."""

    def __init__(
        self,
        server_pid: int | None,
        postmaster_pid: int,
        conninfo: str | None = None,
        sample_interval_s: float = 0.0,
    ) -> None:
        self.server_pid = server_pid
        self.postmaster_pid = postmaster_pid
        self.conninfo = conninfo
        self.sample_interval_s = sample_interval_s

    def _sample(self) -> tuple[float, float, float, float, float]:
        stats = _proc_stats()
        server = tree_cpu(self.server_pid, stats) if self.server_pid else 0.0
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        client = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
        return (
            time.perf_counter(),
            client,
            server,
            tree_cpu(self.postmaster_pid, stats),
            machine_busy_s(),
        )

    @contextlib.contextmanager
    def measure(self) -> Iterator[dict[str, Any]]:
        result: dict[str, Any] = {}
        with contextlib.ExitStack() as stack:
            sampler = None
            if self.conninfo and self.sample_interval_s > 0:
                sampler = stack.enter_context(WaitSampler(self.conninfo, self.sample_interval_s))
            before = self._sample()
            yield result
            after = self._sample()
        keys = ("wall_s", "client_cpu_s", "server_cpu_s", "postgres_cpu_s", "machine_cpu_s")
        result.update({k: b - a for k, a, b in zip(keys, before, after, strict=True)})
        if sampler is not None:
            result["backend_states"] = sampler.shares()


# --------------------------------------------------------------------------- database


def postmaster_pid(cluster: ManagedCluster) -> int:
    return int((cluster.pg_dir / "postmaster.pid").read_text().split()[0])


def psql_command(cluster: ManagedCluster, command: str) -> list[str]:
    return [
        str(find_pg_bin_dir() / "psql"),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        cluster.conninfo,
        "-c",
        command,
    ]


def psql_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def reset(conninfo: str) -> None:
    """Empty what an import writes, and checkpoint, so every run starts equal."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        tables = ["events", *SIDE_TABLES]
        # The import's own bookkeeping (resume progress), whatever its table name.
        tables += [
            str(row[0])
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename LIKE 'import%'"
            )
        ]
        present = [
            t for t in tables if conn.execute("SELECT to_regclass(%s)", (t,)).fetchone() != (None,)
        ]
        conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in present))
        conn.execute("CHECKPOINT")


def count_rows(conninfo: str, project_id: int) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT count(*) FROM events WHERE project_id = %s", (project_id,)
        ).fetchone()
    return int(row[0]) if row else 0


def export_rows(cluster: ManagedCluster, project_id: int, path: Path) -> None:
    """The rows our import stored, in storage order, as COPY text."""
    started = time.perf_counter()
    query = f"SELECT {COLUMNS_SQL} FROM events WHERE project_id = {int(project_id)}"
    subprocess.run(
        psql_command(cluster, f"\\copy ({query}) TO '{path}'"),
        env=psql_env(),
        check=True,
        stdin=subprocess.DEVNULL,
    )
    size = path.stat().st_size
    print(
        f"exported the stored rows for the baseline: {path} ({size / 1e6:,.0f} MB) in"
        f" {time.perf_counter() - started:.0f} s",
        flush=True,
    )


# --------------------------------------------------------------------------- the two paths


def run_baseline(cluster: ManagedCluster, rows: Path, meter: Meter) -> dict[str, Any]:
    with meter.measure() as m:
        proc = subprocess.run(
            psql_command(cluster, f"\\copy events ({COLUMNS_SQL}) FROM '{rows}'"),
            env=psql_env(),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
    if proc.returncode != 0:
        raise SystemExit(f"baseline COPY failed: {proc.stderr.strip()}")
    return {**m}
