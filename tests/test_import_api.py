"""``POST /v1/events/import`` over real HTTP into the real TimescaleDB."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import psycopg
import pytest

from conftest import Project, Server, start_server, stop_server, wait_until


def ndjson(events: list[Any], newline: bytes = b"\n") -> bytes:
    return b"".join(orjson.dumps(e) + newline for e in events)


def post_import(
    client: httpx.Client,
    key: str,
    body: bytes | Iterator[bytes],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    all_headers = {"X-Api-Key": key, "Content-Type": "application/x-ndjson", **(headers or {})}
    return client.post("/v1/events/import", content=body, headers=all_headers, timeout=120)


def names(db: psycopg.Connection[Any], project_id: int) -> list[str]:
    rows = db.execute(
        "SELECT event_name FROM events WHERE project_id = %s ORDER BY event_name", (project_id,)
    ).fetchall()
    return [r[0] for r in rows]


def event(n: int, **extra: Any) -> dict[str, Any]:
    return {"event_name": f"e{n:06d}", "timestamp": "2024-02-03T04:05:06Z", "n": n, **extra}


def test_plain_and_gzip_bodies_store_every_line(
    client: httpx.Client, project: Project, db: psycopg.Connection[Any]
) -> None:
    plain = ndjson([event(i) for i in range(3)])
    r = post_import(client, project.write_key, plain)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "accepted": 3,
        "rejected": 0,
        "duplicates": 0,
        "skipped": 0,
        "lines": 3,
        "errors": [],
        "import_id": None,
        "committed_lines": 3,
    }
    # Two gzip members in a row, as `cat a.gz b.gz` makes.
    zipped = gzip.compress(ndjson([event(i) for i in range(3, 5)])) + gzip.compress(
        ndjson([event(5)])
    )
    r = post_import(client, project.write_key, zipped, {"Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert (r.json()["accepted"], r.json()["lines"]) == (3, 3)
    assert names(db, project.id) == [f"e{i:06d}" for i in range(6)]


def test_events_keep_their_timestamps_and_not_the_importers_headers(
    client: httpx.Client, project: Project, db: psycopg.Connection[Any]
) -> None:
    body = ndjson(
        [
            {
                "event_name": "old",
                "timestamp": "2019-03-04T05:06:07Z",
                "sent_at": "2019-03-04T05:06:09Z",
                "plan": "pro",
            },
            {"event_name": "sent_only", "sent_at": "2018-01-01T00:00:00Z"},
            {
                "event_name": "with_ua",
                "timestamp": 1_500_000_000,
                "ip": "81.2.69.142",
                "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36"
                " (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            },
        ]
    )
    r = post_import(
        client, project.write_key, body, {"User-Agent": "curl/8.0", "Referer": "https://x.test/"}
    )
    assert r.status_code == 200, r.text
    rows = db.execute(
        "SELECT event_name, timestamp, ip, user_agent, referrer, ua_browser, properties"
        " FROM events WHERE project_id = %s ORDER BY timestamp",
        (project.id,),
    ).fetchall()
    # An import's sent_at is not the time of this request: it corrects no
    # clock skew, and stands in for a missing timestamp.
    assert [(r[0], r[1].isoformat()) for r in rows] == [
        ("with_ua", "2017-07-14T02:40:00+00:00"),
        ("sent_only", "2018-01-01T00:00:00+00:00"),
        ("old", "2019-03-04T05:06:07+00:00"),
    ]
    # The request's peer address, User-Agent and Referer describe the importer.
    assert rows[2][2:6] == (None, None, None, None)
    assert rows[0][2] == "81.2.69.142"
    assert rows[0][5] == "Chrome"
    assert rows[2][6] == {"plan": "pro"}


def test_crlf_blank_lines_and_a_last_line_without_newline(
    client: httpx.Client, project: Project, db: psycopg.Connection[Any]
) -> None:
    body = b'{"event_name":"a"}\r\n\r\n   \r\n{"event_name":"b"}\r\n\n{"event_name":"c"}'
    r = post_import(client, project.write_key, body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["accepted"], answer["rejected"], answer["lines"]) == (3, 0, 6)
    assert names(db, project.id) == ["a", "b", "c"]


def test_ten_thousand_lines_with_a_few_invalid_ones(
    client: httpx.Client, project: Project, db: psycopg.Connection[Any]
) -> None:
    lines = [orjson.dumps(event(i)) for i in range(10_000)]
    broken = {
        17: b'{"event_name": ""}',
        2_500: b"{not json",
        4_999: b'{"event_name": "m", "metric_name": "latency"}',
        7_777: b"[1, 2]",
        10_000: b'{"event_name": "x", "timestamp": "yesterday"}',
    }
    for line_number, text in broken.items():
        lines[line_number - 1] = text
    r = post_import(client, project.write_key, b"\n".join(lines) + b"\n")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["accepted"], answer["rejected"], answer["lines"]) == (9_995, 5, 10_000)
    assert [e["line"] for e in answer["errors"]] == sorted(broken)
    fields = [e["field"] for e in answer["errors"]]
    assert fields == ["event_name", None, "metric_value", None, "timestamp"]
    assert "JSON object" in answer["errors"][3]["message"]
    assert db.execute(
        "SELECT count(*) FROM events WHERE project_id = %s", (project.id,)
    ).fetchone() == (9_995,)
    billed = db.execute(
        "SELECT sum(events) FROM write_counters WHERE project_id = %s", (project.id,)
    ).fetchone()
    assert billed == (9_995,)
    refused = db.execute(
        "SELECT reason, sum(requests) FROM rejected_counters WHERE project_id = %s"
        " GROUP BY reason ORDER BY reason",
        (project.id,),
    ).fetchall()
    assert refused == [("invalid_event", 4), ("malformed_json", 1)]


def test_a_body_cut_off_mid_line_rejects_only_that_line(
    client: httpx.Client, project: Project, db: psycopg.Connection[Any]
) -> None:
    whole = ndjson([event(i) for i in range(50)])
    cut = whole[: whole.rindex(b'"n":')]  # inside the last event
    r = post_import(client, project.write_key, cut)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["accepted"], answer["rejected"]) == (49, 1)
    assert answer["errors"][0]["line"] == 50
    assert len(names(db, project.id)) == 49


def test_a_cut_off_gzip_body_keeps_the_whole_lines_before_the_cut(
    client: httpx.Client, project: Project, db: psycopg.Connection[Any]
) -> None:
    zipped = gzip.compress(ndjson([event(i) for i in range(2_000)]))
    r = post_import(
        client,
        project.write_key,
        zipped[: len(zipped) // 2],
        {"Content-Encoding": "gzip", "X-Import-Id": "cut-gzip"},
    )
    assert r.status_code == 400, r.text
    answer = r.json()
    assert answer["error"]["code"] == "invalid_gzip"
    stored = len(names(db, project.id))
    assert 0 < stored < 2_000
    assert answer["accepted"] == stored == answer["committed_lines"]
    # Resuming the same import with the whole body stores the rest, once.
    r = post_import(
        client, project.write_key, zipped, {"Content-Encoding": "gzip", "X-Import-Id": "cut-gzip"}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["skipped"], r.json()["accepted"]) == (stored, 2_000 - stored)
    assert names(db, project.id) == [f"e{i:06d}" for i in range(2_000)]


def test_event_ids_make_a_rerun_store_nothing_twice(
    client: httpx.Client, project: Project, db: psycopg.Connection[Any]
) -> None:
    body = ndjson([event(i, event_id=f"id-{i}") for i in range(300)])
    first = post_import(client, project.write_key, body).json()
    assert (first["accepted"], first["duplicates"]) == (300, 0)
    again = post_import(client, project.write_key, body).json()
    assert (again["accepted"], again["duplicates"]) == (0, 300)
    assert len(names(db, project.id)) == 300


def test_a_named_import_resumes_where_it_stopped(
    client: httpx.Client, project: Project, db: psycopg.Connection[Any]
) -> None:
    lines = ndjson([event(i) for i in range(1_000)]).splitlines(keepends=True)
    headers = {"X-Import-Id": "migration-2024"}
    r = post_import(client, project.write_key, b"".join(lines[:400]), headers)
    assert (r.json()["accepted"], r.json()["committed_lines"]) == (400, 400)

    progress = client.get(
        "/v1/events/import/migration-2024", headers={"X-Api-Key": project.write_key}
    )
    assert progress.status_code == 200
    assert {k: progress.json()[k] for k in ("import_id", "committed_lines", "accepted")} == {
        "import_id": "migration-2024",
        "committed_lines": 400,
        "accepted": 400,
    }
    # A gap is refused: lines 401..599 would never be sent.
    gap = post_import(
        client, project.write_key, b"".join(lines[600:]), {**headers, "X-Import-First-Line": "601"}
    )
    assert gap.status_code == 409
    assert gap.json()["error"]["code"] == "import_gap"
    # The answer tells where to resume from: what is committed, not line 600.
    assert gap.json()["committed_lines"] == 400
    # Re-sending from an earlier line skips what is committed.
    r = post_import(
        client, project.write_key, b"".join(lines[300:]), {**headers, "X-Import-First-Line": "301"}
    )
    answer = r.json()
    assert (answer["skipped"], answer["accepted"], answer["committed_lines"]) == (100, 600, 1_000)
    # The whole file again: nothing new.
    answer = post_import(client, project.write_key, b"".join(lines), headers).json()
    assert (answer["skipped"], answer["accepted"]) == (1_000, 0)
    assert names(db, project.id) == [f"e{i:06d}" for i in range(1_000)]
    unknown = client.get("/v1/events/import/nope", headers={"X-Api-Key": project.write_key})
    assert unknown.status_code == 404


def test_an_over_long_line_is_rejected_by_number_and_never_buffered(
    client: httpx.Client, project: Project, db: psycopg.Connection[Any]
) -> None:
    huge = b'{"event_name": "big", "blob": "' + b"x" * (3 << 20) + b'"}'
    body = ndjson([event(1)]) + huge + b"\n" + ndjson([event(3)])
    r = post_import(client, project.write_key, body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["accepted"], answer["rejected"]) == (2, 1)
    assert answer["errors"][0]["line"] == 2
    assert "longer than the limit" in answer["errors"][0]["message"]


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"X-Api-Key": ""}, 401, "missing_key"),
        ({"X-Api-Key": "ebw_nope"}, 401, "unknown_key"),
        ({"Content-Type": "text/csv"}, 415, "unsupported_media_type"),
        ({"Content-Encoding": "br"}, 415, "unsupported_encoding"),
        ({"X-Import-Id": "has space"}, 400, "invalid_import_id"),
        ({"X-Import-Id": "a", "X-Import-First-Line": "x"}, 400, "invalid_first_line"),
        ({"X-Import-First-Line": "5"}, 400, "invalid_first_line"),
        ({"X-Import-Id": "a", "X-Import-First-Line": str(1 << 64)}, 400, "invalid_first_line"),
        ({"X-Import-Id": "a", "X-Import-First-Line": str(1 << 63)}, 400, "invalid_first_line"),
    ],
)
def test_refusals(
    client: httpx.Client, project: Project, headers: dict[str, str], status: int, code: str
) -> None:
    all_headers = {"X-Api-Key": project.write_key, **headers}
    r = post_import(client, project.write_key, ndjson([event(1)]), all_headers)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    if code == "invalid_first_line":  # the answer names the header
        assert [d["field"] for d in r.json()["error"]["details"]] == ["X-Import-First-Line"]


def test_query_and_delete_keys_are_refused(client: httpx.Client, project: Project) -> None:
    for key in (project.query_key, project.delete_key):
        r = post_import(client, key, ndjson([event(1)]))
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "wrong_key_kind"


def _worker_peak_rss_kib(server: Server) -> dict[int, int]:
    """VmHWM (peak resident memory) of each process of the server's tree."""
    peaks: dict[int, int] = {}
    pids = [server.process.pid]
    while pids:
        pid = pids.pop()
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                pids += [int(p) for p in f.read().split()]
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peaks[pid] = int(line.split()[1])
        except FileNotFoundError:
            continue
    return peaks


def test_memory_stays_flat_on_a_large_streamed_body(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    project: Project,
    db: psycopg.Connection[Any],
) -> None:
    """400 MB of NDJSON through one request: the server's peak memory grows by
    a bounded amount (chunks and one batch), not by the body's size."""
    server = start_server(database_url, tmp_path_factory.mktemp("flat"), "--workers", "1")
    try:
        # Warm up: the first import maps the code and fills the caches.
        with httpx.Client(base_url=server.url) as http:
            assert post_import(http, project.write_key, ndjson([event(0)])).status_code == 200
        before = sum(_worker_peak_rss_kib(server).values())
        padding = "p" * 3_000
        line = orjson.dumps({"event_name": "bulk", "pad": padding}) + b"\n"
        lines = 140_000  # ~420 MB
        block = line * 1_000

        def body() -> Iterator[bytes]:
            for _ in range(lines // 1_000):
                yield block

        with httpx.Client(base_url=server.url) as http:
            r = post_import(http, project.write_key, body())
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == lines
        grown_mib = (sum(_worker_peak_rss_kib(server).values()) - before) / 1024
        body_mib = len(line) * lines / (1 << 20)
        assert body_mib > 400
        print(f"peak memory grew {grown_mib:.0f} MiB for {body_mib:.0f} MiB")
        assert grown_mib < 200, f"peak memory grew {grown_mib:.0f} MiB for {body_mib:.0f} MiB"
    finally:
        stop_server(server)
        db.execute("DELETE FROM events WHERE project_id = %s", (project.id,))


def test_a_client_that_goes_away_keeps_the_committed_batches(
    server: Server, project: Project, db: psycopg.Connection[Any]
) -> None:
    """A raw socket sends half a body and closes: the import's progress
    matches the stored rows exactly, and a resume completes it once."""
    url = urlsplit(server.url)
    lines = ndjson([event(i) for i in range(120_000)])
    half = lines[: len(lines) // 2]
    head = (
        f"POST /v1/events/import HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"X-Api-Key: {project.write_key}\r\nX-Import-Id: gone\r\n"
        f"Content-Type: application/x-ndjson\r\nContent-Length: {len(lines)}\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(head + half)
    deadline = time.monotonic() + 10
    progress: dict[str, Any] = {}
    with httpx.Client(base_url=server.url) as http:
        while time.monotonic() < deadline:
            got = http.get("/v1/events/import/gone", headers={"X-Api-Key": project.write_key})
            if got.status_code == 200 and got.json()["committed_lines"] > 0:
                progress = got.json()
                stored = len(names(db, project.id))
                if stored == progress["accepted"] and stored >= 50_000:
                    break
            time.sleep(0.2)
        assert progress, "nothing was committed"
        committed = progress["committed_lines"]
        assert len(names(db, project.id)) == committed
        r = post_import(http, project.write_key, lines, {"X-Import-Id": "gone"})
        assert r.status_code == 200, r.text
        assert (r.json()["skipped"], r.json()["accepted"]) == (committed, 120_000 - committed)
    assert names(db, project.id) == [f"e{i:06d}" for i in range(120_000)]


def test_an_imports_first_errors_are_kept_across_runs(
    client: httpx.Client, project: Project
) -> None:
    lines = ndjson([event(i) for i in range(6)]).splitlines(keepends=True)
    lines[1] = b"{broken\n"
    lines[4] = b'{"event_name": 5}\n'
    headers = {"X-Import-Id": "with-errors"}
    first = post_import(client, project.write_key, b"".join(lines[:3]), headers).json()
    assert [e["line"] for e in first["errors"]] == [2]
    rest = post_import(
        client, project.write_key, b"".join(lines[3:]), {**headers, "X-Import-First-Line": "4"}
    ).json()
    assert [e["line"] for e in rest["errors"]] == [5]
    progress = client.get(
        "/v1/events/import/with-errors", headers={"X-Api-Key": project.write_key}
    ).json()
    assert (progress["accepted"], progress["rejected"]) == (4, 2)
    assert [(e["line"], e["field"]) for e in progress["errors"]] == [(2, None), (5, "event_name")]


def test_event_ids_repeated_within_a_body_are_stored_once(
    client: httpx.Client, project: Project, db: psycopg.Connection[Any]
) -> None:
    """Repeats in one chunk, in later chunks of the same transaction, and ids
    stored before: each id once, by its first occurrence."""
    stored_before = post_import(
        client, project.write_key, ndjson([event(0, event_id="id-0", first=True)])
    )
    assert stored_before.json()["accepted"] == 1
    pad = "p" * 400
    events = [event(i, event_id=f"id-{i % 3_000}", pad=pad) for i in range(9_000)]
    events.insert(1, event(1, event_id="id-1", pad=pad))  # a repeat in the first chunk
    r = post_import(client, project.write_key, ndjson(events))
    answer = r.json()
    # id-0 was stored before; id-1..id-2999 once each (the body is ~4 chunks).
    assert (answer["accepted"], answer["duplicates"]) == (2_999, 9_001 - 2_999)
    rows = db.execute(
        "SELECT event_id, count(*), min((properties->>'n')::int) FROM events"
        " WHERE project_id = %s GROUP BY event_id",
        (project.id,),
    ).fetchall()
    assert len(rows) == 3_000
    assert all(count == 1 for _, count, _ in rows)
    # The first occurrence is the one stored.
    assert all(int(event_id[3:]) == first_n for event_id, _, first_n in rows)


def test_an_empty_body_imports_nothing(client: httpx.Client, project: Project) -> None:
    r = post_import(client, project.write_key, b"")
    assert r.status_code == 200, r.text
    assert (r.json()["accepted"], r.json()["lines"], r.json()["committed_lines"]) == (0, 0, 0)


def test_a_customer_key_sees_only_its_own_imports_progress(
    client: httpx.Client, project: Project, make_key: Any
) -> None:
    customer_key = make_key(project.id, "write", "acme")["key"]
    r = post_import(client, project.write_key, ndjson([event(1)]), {"X-Import-Id": "unscoped"})
    assert r.status_code == 200, r.text
    r = post_import(client, customer_key, ndjson([event(1)]), {"X-Import-Id": "acme-own"})
    assert r.status_code == 200, r.text

    def progress(key: str, import_id: str) -> int:
        return client.get(f"/v1/events/import/{import_id}", headers={"X-Api-Key": key}).status_code

    assert progress(customer_key, "unscoped") == 404
    assert progress(customer_key, "acme-own") == 200
    assert progress(project.write_key, "acme-own") == 200
    assert progress(project.write_key, "unscoped") == 200


def committed(db: psycopg.Connection[Any], project_id: int, import_id: str) -> int:
    """A named import's committed line as stored (0 before its first commit)."""
    row = db.execute(
        "SELECT committed_lines FROM imports WHERE project_id = %s AND import_id = %s",
        (project_id, import_id),
    ).fetchone()
    return int(row[0]) if row else 0


def test_an_import_conflict_answers_the_committed_line(
    server: Server, project: Project, db: psycopg.Connection[Any]
) -> None:
    """Two requests move one named import: the one that loses answers
    import_conflict with the line the winner committed (what GET says), not
    the line it had itself seen, so that a client resumes from the truth."""
    lines = ndjson([event(i) for i in range(40_000)])
    cut = lines.index(b"\n", len(lines) // 2) + 1  # ~2 MiB: past one chunk
    paused = threading.Event()
    resume = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield lines[:cut]
        paused.set()
        resume.wait(30)
        yield lines[cut:]

    headers = {"X-Import-Id": "raced"}
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=server.url, timeout=60) as http:
        slow = threading.Thread(
            target=lambda: answers.append(
                post_import(http, project.write_key, slow_body(), headers)
            )
        )
        slow.start()
        assert paused.wait(30)
        # The slow request commits what it has, in one batch (the rest of its
        # first half waits in its chunker, short of a chunk), after its batch
        # window and the rollups of ~20,000 distinct event names: over 2 s on
        # these machines, so the test waits for the commit, not for a time.
        assert wait_until(lambda: 0 < committed(db, project.id, "raced") < 40_000)
        with httpx.Client(base_url=server.url, timeout=60) as other:
            fast = post_import(other, project.write_key, lines, headers)
        assert fast.status_code == 200, fast.text
        assert fast.json()["committed_lines"] == 40_000
        resume.set()
        slow.join(60)
        progress = http.get("/v1/events/import/raced", headers={"X-Api-Key": project.write_key})
    [lost] = answers
    assert lost.status_code == 409, lost.text
    assert lost.json()["error"]["code"] == "import_conflict"
    assert lost.json()["committed_lines"] == progress.json()["committed_lines"] == 40_000
    [(stored,)] = db.execute(
        "SELECT count(*) FROM events WHERE project_id = %s", (project.id,)
    ).fetchall()
    assert stored == 40_000
