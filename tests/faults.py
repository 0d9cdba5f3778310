"""Load and fault helpers for the durability tests: loopback only, bounded."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg


@dataclass
class Target:
    """Where the load goes; changes when the server restarts on a new port."""

    url: str = ""


@dataclass
class Load:
    """Threads POSTing batches of uniquely numbered events, recording what was acknowledged."""

    target: Target
    key: str
    batch: int = 50
    threads: int = 4
    with_ids: bool = False
    acked: set[int] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    connection_errors: int = 0
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    @property
    def sent_503(self) -> int:
        return self.statuses[503]

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                with self._lock:
                    seqs = [next(self._seq) for _ in range(self.batch)]
                events: list[dict[str, Any]] = [{"event_name": "load", "seq": s} for s in seqs]
                if self.with_ids:
                    for event in events:
                        event["event_id"] = f"id-{event['seq']}"
                try:
                    response = http.post(
                        self.target.url + "/v1/events",
                        json=events,
                        headers={"X-Api-Key": self.key},
                    )
                except httpx.HTTPError:
                    with self._lock:
                        self.connection_errors += 1
                    time.sleep(0.05)
                    continue
                with self._lock:
                    self.statuses[response.status_code] += 1
                    if response.status_code == 202:
                        self.acked.update(seqs)
                if response.status_code == 503:
                    time.sleep(float(response.headers.get("retry-after", "1")) / 10)


class ConnectionCutter:
    """A thread that terminates the server's database connections of one
    ``application_name`` every ``interval_s``, whatever they are doing."""

    def __init__(self, conninfo: str, application_name: str, interval_s: float) -> None:
        self.cuts = 0
        self._conninfo = conninfo
        self._application_name = application_name
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self._conninfo, autocommit=True) as conn:
            while not self._stop.is_set():
                rows = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = %s",
                    (self._application_name,),
                ).fetchall()
                self.cuts += sum(1 for (ok,) in rows if ok)
                time.sleep(self._interval_s)


@dataclass
class Outcome:
    acknowledged: int
    stored: int
    lost: int
    duplicated: int

    def line(self) -> str:
        return (
            f"acknowledged {self.acknowledged}, stored {self.stored}, "
            f"lost {self.lost}, duplicated {self.duplicated}"
        )


def stored_seqs(db: psycopg.Connection[Any], project_id: int) -> Counter[int]:
    rows = db.execute(
        "SELECT (properties->>'seq')::bigint, count(*) FROM events"
        " WHERE project_id = %s GROUP BY 1",
        (project_id,),
    ).fetchall()
    return Counter({int(seq): int(n) for seq, n in rows})


def outcome(db: psycopg.Connection[Any], project_id: int, acked: set[int]) -> Outcome:
    stored = stored_seqs(db, project_id)
    return Outcome(
        acknowledged=len(acked),
        stored=sum(stored.values()),
        lost=len(acked - set(stored)),
        duplicated=sum(n - 1 for n in stored.values() if n > 1),
    )


def wait_until_stored(
    db: psycopg.Connection[Any], project_id: int, acked: set[int], timeout_s: float
) -> float:
    """Seconds until every acknowledged event is stored (or the timeout)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if not acked - set(stored_seqs(db, project_id)):
            break
        time.sleep(0.1)
    return time.monotonic() - started
