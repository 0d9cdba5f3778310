"""Rate limits: token buckets per write key (per customer for customer-scoped
keys), shared by a node's workers; over the limit, 429 rate_limited with
Retry-After, counted in /metrics and in the project's refusals."""

from __future__ import annotations

import multiprocessing
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from conftest import Project, Server, serving
from eventbunker.errors import Refusal
from eventbunker.ingest.auth import ApiKey
from eventbunker.ingest.rate_limits import RateLimit, RateLimits

RATE = 50.0  # events per second
BURST = 100
BATCH = 10


def key(key_id: int, customer: str | None = None, project_id: int = 1) -> ApiKey:
    return ApiKey(id=key_id, project_id=project_id, kind="write", customer_identifier=customer)


def _take_all(runtime_dir: str, tries: int, results: Any) -> None:
    limits = RateLimits(RateLimit(1.0, BURST), Path(runtime_dir))
    taken = 0
    for _ in range(tries):
        try:
            limits.take(key(7), 1)
            taken += 1
        except Refusal:
            pass
    results.put(taken)


def test_processes_share_one_bucket(tmp_path: Path) -> None:
    """Four processes take from one key's bucket (1 event/s, burst 100) as
    fast as they can: together they get the burst (and at most a few refills),
    not four bursts."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=_take_all, args=(str(tmp_path), 400, results)) for _ in range(4)
    ]
    started = time.monotonic()
    for p in processes:
        p.start()
    taken = [results.get(timeout=60) for _ in processes]
    for p in processes:
        p.join(60)
    elapsed = time.monotonic() - started
    assert BURST <= sum(taken) <= BURST + elapsed * 1.0 + 1, taken


def test_bucket_refills_keys_and_customers_are_apart() -> None:
    limits = RateLimits(RateLimit(RATE, BURST), None)
    limits.take(key(1), BURST)
    with pytest.raises(Refusal) as refused:
        limits.take(key(1), BATCH)
    assert refused.value.status == 429 and refused.value.code == "rate_limited"
    assert refused.value.retry_after and refused.value.retry_after_s == "1"  # 10 events at 50/s
    with pytest.raises(Refusal):
        limits.admit(key(1))
    limits.take(key(2), BURST)  # another key: its own bucket
    # Two keys of one customer share its bucket; another customer has its own.
    limits.take(key(3, "acme"), BURST)
    with pytest.raises(Refusal):
        limits.take(key(4, "acme"), 1)
    limits.take(key(5, "other"), 1)
    limits.take(key(6, "acme", project_id=2), 1)  # the same name in another project
    time.sleep(BATCH / RATE + 0.05)
    limits.take(key(1), BATCH)  # refilled
    # A batch over the burst passes from a full bucket, into debt.
    limits.take(key(8), 3 * BURST)
    with pytest.raises(Refusal) as refused:
        limits.admit(key(8))
    assert int(refused.value.retry_after_s) == 5  # 201 events short at 50/s
    limits.close()


@pytest.fixture(scope="module")
def limited_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(
        database_url,
        tmp_path_factory.mktemp("ratelimit"),
        "--workers",
        "2",
        "--rate-limit-events-per-second",
        str(RATE),
        "--rate-limit-burst",
        str(BURST),
    ) as srv:
        yield srv


def send(url: str, key: str, n: int = BATCH) -> httpx.Response:
    body = orjson.dumps([{"event_name": "limited"}] * n)
    # A new connection each time: requests reach both workers.
    return httpx.post(
        url + "/v1/events",
        content=body,
        headers={"X-Api-Key": key, "Content-Type": "application/json"},
        timeout=10,
    )


def test_a_hot_key_is_limited_and_a_quiet_one_is_not(
    limited_server: Server, project: Project, make_key: Any, db: psycopg.Connection[Any]
) -> None:
    url = limited_server.url
    quiet = make_key(project.id)["key"]
    started = time.monotonic()
    answers = [send(url, project.write_key) for _ in range(40)]
    elapsed = time.monotonic() - started
    accepted = sum(r.json()["accepted"] for r in answers if r.status_code == 202)
    limited = [r for r in answers if r.status_code == 429]
    assert {r.status_code for r in answers} == {202, 429}
    # One bucket for both workers: the burst and what refilled, not a burst each.
    assert BURST <= accepted <= BURST + RATE * elapsed + BATCH, (accepted, elapsed)
    for r in limited:
        assert r.json()["error"]["code"] == "rate_limited"
        assert int(r.headers["retry-after"]) >= 1
    [(stored,)] = db.execute(
        "SELECT count(*) FROM events WHERE project_id = %s", (project.id,)
    ).fetchall()
    assert stored <= accepted  # nothing refused was stored (some may still drain)

    # The hot key keeps sending over its limit; the quiet key is never refused.
    stop = threading.Event()
    hot_answers: list[int] = []

    def hot() -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            body = orjson.dumps([{"event_name": "hot"}] * BATCH)
            headers = {"X-Api-Key": project.write_key, "Content-Type": "application/json"}
            while not stop.is_set():
                hot_answers.append(
                    http.post("/v1/events", content=body, headers=headers).status_code
                )

    threads = [threading.Thread(target=hot) for _ in range(4)]
    for t in threads:
        t.start()
    latencies = []
    quiet_answers = []
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            headers = {"X-Api-Key": quiet, "Content-Type": "application/json"}
            for _ in range(40):  # 40 events in ~2 s: under its 50/s
                t0 = time.perf_counter()
                r = http.post("/v1/events", content=b'{"event_name": "quiet"}', headers=headers)
                latencies.append(time.perf_counter() - t0)
                quiet_answers.append(r.status_code)
                time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert quiet_answers == [202] * 40
    assert hot_answers.count(429) > 0
    p99 = statistics.quantiles(latencies, n=100)[98]
    print(
        f"quiet key p99 {p99 * 1000:.1f} ms (median {statistics.median(latencies) * 1000:.1f} ms)"
        f" while a hot key was refused {hot_answers.count(429)} of {len(hot_answers)} times"
    )

    # Counted: /metrics and the project's refusals (the usage page's).
    time.sleep(1.5)  # metrics snapshots (0.5 s) and refusal counters (1 s)
    assert (
        'eventbunker_requests_rejected_total{reason="rate_limited"}'
        in httpx.get(url + "/metrics").text
    )
    [(refused,)] = db.execute(
        "SELECT coalesce(sum(requests), 0)::int FROM rejected_counters"
        " WHERE project_id = %s AND reason = 'rate_limited'",
        (project.id,),
    ).fetchall()
    assert refused == len(limited) + hot_answers.count(429)


def test_sdk_endpoints_are_limited_too(limited_server: Server, project: Project) -> None:
    body = orjson.dumps({"batch": [{"type": "track", "event": "e", "userId": "u"}] * BATCH})
    headers = {"X-Api-Key": project.write_key, "Content-Type": "application/json"}
    answers = [
        httpx.post(limited_server.url + "/v1/batch", content=body, headers=headers, timeout=10)
        for _ in range(20)
    ]
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) >= BURST // BATCH and 429 in statuses
    assert all(r.headers["retry-after"] for r in answers if r.status_code == 429)
