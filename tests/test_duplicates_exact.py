"""``duplicates`` is exact whichever worker a retry reaches, drained or not.

Each retry goes out at once on a new connection (so Granian may hand it to
either of the server's two workers) before the first send can have been
drained: only the shared claim can answer it right.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import psycopg

from conftest import Project, Server
from eventbunker.ingest.idempotency import CLAIM, EARLIER, DuplicateCheck

RETRIES = 20


def _send(server: Server, key: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    with httpx.Client(base_url=server.url, timeout=10) as fresh_connection:
        r = fresh_connection.post("/v1/events", json=events, headers={"X-Api-Key": key})
    assert r.status_code == 202, r.text
    answer: dict[str, Any] = r.json()
    return answer


def test_every_immediate_retry_on_a_new_connection_is_a_duplicate(
    server: Server, project: Project, db: psycopg.Connection[Any]
) -> None:
    ids = [f"retry-{time.monotonic_ns()}-{i}" for i in range(RETRIES)]
    answers = []
    for event_id in ids:
        event = [{"event_name": "retried", "event_id": event_id}]
        answers.append(_send(server, project.write_key, event))
        answers.append(_send(server, project.write_key, event))
    exact = answers[1::2].count({"accepted": 0, "duplicates": 1})
    print(f"immediate retries on a new connection answered duplicates: 1: {exact}/{RETRIES}")
    assert answers[0::2] == [{"accepted": 1, "duplicates": 0}] * RETRIES
    assert answers[1::2] == [{"accepted": 0, "duplicates": 1}] * RETRIES
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stored = db.execute(
            "SELECT count(*) FROM events WHERE project_id = %s AND event_name = 'retried'",
            (project.id,),
        ).fetchone()
        if stored and stored[0] == RETRIES:
            break
        time.sleep(0.05)
    assert stored == (RETRIES,)


def test_repeats_within_a_batch_and_a_mix_of_new_and_old_ids(
    server: Server, project: Project
) -> None:
    base = f"mix-{time.monotonic_ns()}"
    first = [{"event_name": "m", "event_id": f"{base}-a"}] * 2
    assert _send(server, project.write_key, first) == {"accepted": 1, "duplicates": 1}
    mixed = [
        {"event_name": "m", "event_id": f"{base}-a"},
        {"event_name": "m", "event_id": f"{base}-b"},
        {"event_name": "m"},
    ]
    assert _send(server, project.write_key, mixed) == {"accepted": 2, "duplicates": 1}


def test_requests_without_ids_ask_the_database_nothing() -> None:
    """The shared claim costs round trips only to requests that carry ids
    (and not even those whose ids this worker accepted recently)."""
    asked: list[str] = []

    class Counted(DuplicateCheck):
        async def _ask(self, statement: str, params: tuple[object, ...]) -> set[str] | None:
            asked.append(statement)
            return set(params[1]) if statement == CLAIM else set()  # new: claimed now

    check = Counted("host=/nonexistent")

    async def requests() -> list[int]:
        counts = []
        for ids in ([None], [None, None, None], ["a", None]):
            earlier = await check.earlier(1, ids)
            counts.append(await check.count(1, ids, earlier))
            check.remember(1, ids)
            if ids == [None, None, None]:
                assert asked == []
        counts.append(await check.count(1, ["a"], await check.earlier(1, ["a"])))
        return counts

    assert asyncio.run(requests()) == [0, 0, 0, 1]
    assert asked == [EARLIER, CLAIM]  # the request with a new id, only
