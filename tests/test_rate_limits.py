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
from eventbunker.admin.accounts import create_account
from eventbunker.errors import Refusal
from eventbunker.ingest.auth import ApiKey
from eventbunker.ingest.rate_limits import RateLimit, RateLimits

RATE = 50.0  # events per second
BURST = 100
BATCH = 10


def key(
    key_id: int,
    customer: str | None = None,
    project_id: int = 1,
    rate: float | None = None,
    burst: int | None = None,
) -> ApiKey:
    return ApiKey(
        id=key_id,
        project_id=project_id,
        kind="write",
        customer_identifier=customer,
        rate_limit_events_per_second=rate,
        rate_limit_burst=burst,
    )


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


def test_a_project_limit_replaces_the_servers() -> None:
    """A project's own rate and burst win over the server's; a missing one is
    the server's; a project may be limited on a server that limits none."""
    limited = RateLimits(RateLimit(RATE, BURST), None)
    assert limited.limit_of(key(1)) == RateLimit(RATE, BURST)
    assert limited.limit_of(key(1, rate=5.0)) == RateLimit(5.0, BURST)
    assert limited.limit_of(key(1, burst=7)) == RateLimit(RATE, 7)
    assert limited.limit_of(key(1, rate=5.0, burst=7)) == RateLimit(5.0, 7)
    limited.take(key(2, rate=RATE, burst=3 * BURST), 3 * BURST)  # over the server's burst
    with pytest.raises(Refusal) as refused:
        limited.take(key(3, rate=1.0, burst=5), 6)  # a batch over the burst passes from full...
        limited.admit(key(3, rate=1.0, burst=5))  # ...and leaves the bucket in debt
    assert refused.value.retry_after_s == "2" and "1 events per second (burst 5)" in str(
        refused.value.message
    )
    one_second = RateLimits(RateLimit(RATE, 0), None)  # burst 0: one second's worth
    assert one_second.limit_of(key(1, rate=20.0)) == RateLimit(20.0, 20)
    unlimited = RateLimits(None, None)
    assert unlimited.limit_of(key(1)) is None
    for _ in range(3):
        unlimited.take(key(1), 10 * BURST)
    assert unlimited.limit_of(key(1, rate=2.5)) == RateLimit(2.5, 2.5)
    assert unlimited.limit_of(key(1, rate=2.5, burst=10)) == RateLimit(2.5, 10)
    for closing in (limited, one_second, unlimited):
        closing.close()


def test_project_rate_limits_in_the_admin_api(
    server: Server, db: psycopg.Connection[Any], make_key: Any
) -> None:
    """End to end, on a server without a limit of its own: set, shown, applied
    to the project's write keys and customers by both workers within the key
    refresh, then lifted again; another project and bad values untouched."""
    admin_key = create_account(db, "limits")["admin_key"]
    other_admin = create_account(db, "others")["admin_key"]

    def admin(method: str, path: str, secret: str = admin_key, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {secret}"}
        return httpx.request(method, server.url + path, headers=headers, timeout=10, **kw)

    created = admin("POST", "/v1/projects", json={"name": "limited"}).json()
    project_id, write_key = created["id"], created["keys"]["write"]
    customer_key = make_key(project_id, "write", "acme")["key"]
    other_project = admin("POST", "/v1/projects", json={"name": "free"}).json()
    assert admin("GET", f"/v1/projects/{project_id}").json()["rate_limit"] == {
        "events_per_second": None,
        "burst": None,
    }
    assert [send(server.url, write_key).status_code for _ in range(20)] == [202] * 20

    limit = {"events_per_second": RATE, "burst": BURST}
    answer = admin("PUT", f"/v1/projects/{project_id}/rate_limit", json=limit)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"id": project_id, "rate_limit": limit}
    assert admin("GET", f"/v1/projects/{project_id}").json()["rate_limit"] == limit
    listed = admin("GET", "/v1/projects").json()["projects"]
    assert [p["rate_limit"] for p in listed if p["id"] == project_id] == [limit]

    time.sleep(0.6)  # the key refresh (250 ms) of both workers
    for secret in (write_key, customer_key):
        started = time.monotonic()
        answers = [send(server.url, secret) for _ in range(40)]
        elapsed = time.monotonic() - started
        accepted = sum(r.json()["accepted"] for r in answers if r.status_code == 202)
        assert BURST <= accepted <= BURST + RATE * elapsed + BATCH, (accepted, elapsed)
        refused = [r for r in answers if r.status_code == 429]
        assert refused and all(r.json()["error"]["code"] == "rate_limited" for r in refused)
        assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    other_key = other_project["keys"]["write"]
    assert [send(server.url, other_key).status_code for _ in range(20)] == [202] * 20

    # Refused, and changing nothing: bad values, unknown fields, another account's project.
    for bad in (
        {"events_per_second": 0, "burst": 10},
        {"events_per_second": "fast"},
        {"events_per_second": 10, "burst": 1.5},
        {"events_per_second": 10, "burst": True},
        {"events_per_second": 10, "burst": 2**31},
        {"events_per_second": 10, "bursts": 10},
    ):
        r = admin("PUT", f"/v1/projects/{project_id}/rate_limit", json=bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", (
            bad,
            r.text,
        )
    r = admin("PUT", f"/v1/projects/{project_id}/rate_limit", other_admin, json=limit)
    assert r.status_code == 404
    assert admin("GET", f"/v1/projects/{project_id}").json()["rate_limit"] == limit

    lifted = {"events_per_second": None, "burst": None}
    assert admin("PUT", f"/v1/projects/{project_id}/rate_limit", json=lifted).json() == {
        "id": project_id,
        "rate_limit": lifted,
    }
    time.sleep(0.6)
    assert [send(server.url, write_key).status_code for _ in range(20)] == [202] * 20


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


def test_a_project_limit_lifts_the_servers(
    limited_server: Server, db: psycopg.Connection[Any]
) -> None:
    """A project allowed more than the server's default gets it."""
    admin_key = create_account(db, "generous")["admin_key"]
    headers = {"Authorization": f"Bearer {admin_key}"}
    created = httpx.post(
        limited_server.url + "/v1/projects", json={"name": "big"}, headers=headers
    ).json()
    r = httpx.put(
        limited_server.url + f"/v1/projects/{created['id']}/rate_limit",
        json={"events_per_second": 10 * RATE, "burst": 5 * BURST},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    answers = [send(limited_server.url, created["keys"]["write"]) for _ in range(40)]
    assert [r.status_code for r in answers] == [202] * 40  # 400 events: 4 default bursts


def test_sdk_endpoints_are_limited_too(limited_server: Server, project: Project) -> None:
    body = orjson.dumps({"batch": [{"type": "track", "event": "e", "userId": "u"}] * BATCH})
    headers = {"X-Api-Key": project.write_key, "Content-Type": "application/json"}
    answers = [
        httpx.post(limited_server.url + "/v1/batch", content=body, headers=headers, timeout=10)
        for _ in range(40)
    ]
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) >= BURST // BATCH and 429 in statuses
    assert all(r.headers["retry-after"] for r in answers if r.status_code == 429)
