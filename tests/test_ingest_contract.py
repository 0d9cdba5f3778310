"""Every rule and error of DESIGN.md's ingest contract, over real HTTP."""

from __future__ import annotations

import gzip
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from conftest import Project, metric

VISIBLE_WITHIN_S = 1.0


def post(
    client: httpx.Client,
    key: str | None,
    body: Any,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        all_headers.setdefault("X-Api-Key", key)
    content = raw if raw is not None else orjson.dumps(body)
    return client.post("/v1/events", content=content, headers=all_headers)


def stored(
    db: psycopg.Connection[Any], project_id: int, columns: str = "*", count: int = 0
) -> list[dict[str, Any]]:
    """The project's rows; with ``count``, once that many are visible (at most 1 s:
    the contract's time from a 202 to queryable)."""
    deadline = time.monotonic() + VISIBLE_WITHIN_S
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    while True:
        rows = cur.execute(
            f"SELECT {columns} FROM events WHERE project_id = %s ORDER BY timestamp, event_name",
            (project_id,),
        ).fetchall()
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.01)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    return dict(error)


# --- accepted events -------------------------------------------------------


def test_single_event_is_stored_with_its_properties(client, db, project: Project) -> None:
    body = {"event_name": "signup", "plan": "pro", "nested": {"a": [1, 2.5, None, True]}}
    response = post(client, project.write_key, body)
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0}
    [row] = stored(db, project.id, count=1)
    assert row["event_name"] == "signup"
    assert row["properties"] == {"plan": "pro", "nested": {"a": [1, 2.5, None, True]}}
    assert row["received_at"] is not None
    assert abs(row["timestamp"] - row["received_at"]) < timedelta(seconds=1)
    assert row["ip"] == "127.0.0.1"
    assert row["user_agent"].startswith("python-httpx")


def test_batch_is_stored_whole(client, db, project: Project) -> None:
    batch = [{"event_name": f"e{i}", "i": i} for i in range(50)]
    response = post(client, project.write_key, batch)
    assert response.status_code == 202
    assert response.json() == {"accepted": 50, "duplicates": 0}
    rows = stored(db, project.id, "properties", count=50)
    assert sorted(r["properties"]["i"] for r in rows) == list(range(50))


def test_batch_with_one_invalid_event_stores_nothing(client, db, project: Project) -> None:
    batch = [{"event_name": "ok"}, {"event_name": ""}, {"event_name": "ok2"}, "not an object"]
    error = assert_error(post(client, project.write_key, batch), 400, "invalid_event")
    by_index = {(d["index"], d["field"]) for d in error["details"]}
    assert (1, "event_name") in by_index
    assert (3, None) in by_index
    assert stored(db, project.id) == []


def test_authorization_bearer_and_text_plain_are_accepted(client, db, project: Project) -> None:
    response = post(
        client,
        None,
        {"event_name": "beacon"},
        headers={"Authorization": f"Bearer {project.write_key}", "Content-Type": "text/plain"},
    )
    assert response.status_code == 202, response.text
    assert len(stored(db, project.id, count=1)) == 1


def test_gzip_body(client, db, project: Project) -> None:
    batch = [{"event_name": "zipped", "n": i} for i in range(20)]
    response = post(
        client,
        project.write_key,
        None,
        raw=gzip.compress(orjson.dumps(batch)),
        headers={"Content-Encoding": "gzip"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 20
    assert len(stored(db, project.id, count=20)) == 20


def test_timestamp_forms(client, db, project: Project) -> None:
    batch = [
        {"event_name": "rfc3339", "timestamp": "2024-03-01T12:00:00.5+02:00"},
        {"event_name": "seconds", "timestamp": 1709294400},
        {"event_name": "millis", "timestamp": 1709294400250},
        {"event_name": "z", "timestamp": "2024-03-01T10:00:00Z"},
    ]
    assert post(client, project.write_key, batch).status_code == 202
    got = {r["event_name"]: r["timestamp"] for r in stored(db, project.id, count=4)}
    assert got["rfc3339"] == datetime(2024, 3, 1, 10, 0, 0, 500000, tzinfo=UTC)
    assert got["seconds"] == datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    assert got["millis"] == datetime(2024, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
    assert got["z"] == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


def test_sent_at_corrects_client_clock_skew(client, db, project: Project) -> None:
    # The client's clock is one hour ahead: its timestamps move back one hour.
    skew = timedelta(hours=1)
    client_now = datetime.now(UTC) + skew
    event = {
        "event_name": "skewed",
        "timestamp": (client_now - timedelta(minutes=5)).isoformat(),
        "sent_at": client_now.isoformat(),
    }
    assert post(client, project.write_key, event).status_code == 202
    [row] = stored(db, project.id, count=1)
    expected = row["received_at"] - timedelta(minutes=5)
    assert abs(row["timestamp"] - expected) < timedelta(seconds=2)
    assert abs(row["sent_at"] - client_now) < timedelta(milliseconds=1)


def test_metric_event(client, db, project: Project) -> None:
    event = {"event_name": "load", "metric_name": "page_load_ms", "metric_value": 123.25}
    assert post(client, project.write_key, event).status_code == 202
    [row] = stored(db, project.id, count=1)
    assert (row["metric_name"], row["metric_value"]) == ("page_load_ms", 123.25)
    assert row["properties"] == {}


def test_customer_identifier_comes_from_the_key(client, db, project: Project, make_key) -> None:
    scoped = make_key(project.id, "write", "acme")
    event = {"event_name": "x", "customer_identifier": "evil"}
    assert post(client, scoped["key"], event).status_code == 202
    assert (
        post(
            client, project.write_key, {"event_name": "y", "customer_identifier": "own"}
        ).status_code
        == 202
    )
    got = {r["event_name"]: r["customer_identifier"] for r in stored(db, project.id, count=2)}
    assert got == {"x": "acme", "y": "own"}


def test_strings_jsonb_cannot_hold_never_fail_a_batch(client, db, project: Project) -> None:
    # \u0000 and a lone surrogate: PostgreSQL refuses both in jsonb and text.
    raw = (
        b'[{"event_name": "nul\\u0000name", "p": "a\\u0000b", "k\\u0000": 1},'
        b' {"event_name": "surrogate", "p": "x\\ud800y"},'
        b' {"event_name": "pair", "p": "\\ud83d\\ude00"}]'
    )
    response = post(client, project.write_key, None, raw=raw)
    assert response.status_code == 202, response.text
    rows = {r["event_name"]: r["properties"] for r in stored(db, project.id, count=3)}
    assert rows["nul\ufffdname"] == {"p": "a\ufffdb", "k\ufffd": 1}
    assert rows["surrogate"] == {"p": "x\ufffdy"}
    assert rows["pair"] == {"p": "\U0001f600"}


def test_event_is_queryable_within_one_second_of_its_202(client, db, project: Project) -> None:
    for i in range(20):
        assert post(client, project.write_key, {"event_name": "fresh", "i": i}).status_code == 202
        acknowledged = time.monotonic()
        while True:
            found = db.execute(
                "SELECT 1 FROM events WHERE project_id = %s AND properties->>'i' = %s",
                (project.id, str(i)),
            ).fetchone()
            if found:
                break
            assert time.monotonic() - acknowledged < 1.0, f"event {i} not visible within 1 s"
            time.sleep(0.01)


def test_projects_are_isolated(client, db, project: Project, make_key) -> None:
    from eventbunker.admin.projects import create_project

    other = create_project(db, "other")
    assert post(client, project.write_key, {"event_name": "mine"}).status_code == 202
    assert post(client, other["keys"]["write"], {"event_name": "theirs"}).status_code == 202
    assert [r["event_name"] for r in stored(db, project.id, count=1)] == ["mine"]
    assert [r["event_name"] for r in stored(db, other["id"], count=1)] == ["theirs"]


def test_counters_equal_stored_rows(client, db, project: Project) -> None:
    sizes = [1, 7, 30, 1, 100]
    for n in sizes:
        batch = [{"event_name": "c", "n": i} for i in range(n)]
        assert post(client, project.write_key, batch).status_code == 202
    assert post(client, project.write_key, [{"event_name": ""}]).status_code == 400
    assert len(stored(db, project.id, "1", count=sum(sizes))) == sum(sizes)
    counted = db.execute(
        "SELECT day, sum(events) FROM write_counters WHERE project_id = %s GROUP BY day",
        (project.id,),
    ).fetchall()
    rows = db.execute(
        "SELECT (received_at AT TIME ZONE 'UTC')::date, count(*) FROM events"
        " WHERE project_id = %s GROUP BY 1",
        (project.id,),
    ).fetchall()
    assert counted == rows
    assert sum(n for _, n in counted) == sum(sizes)


# --- refused requests ------------------------------------------------------


def test_missing_and_unknown_keys(client) -> None:
    assert_error(post(client, None, {"event_name": "x"}), 401, "missing_key")
    assert_error(post(client, "ebw_doesnotexist", {"event_name": "x"}), 401, "unknown_key")


def test_keys_of_other_kinds_are_refused(client, project: Project) -> None:
    assert_error(post(client, project.query_key, {"event_name": "x"}), 403, "wrong_key_kind")
    assert_error(post(client, project.delete_key, {"event_name": "x"}), 403, "wrong_key_kind")


def test_revoked_key_is_refused_within_one_second(client, db, project: Project, make_key) -> None:
    from eventbunker.admin.projects import revoke_key

    key = make_key(project.id)
    # Warm the cache of both workers.
    for _ in range(20):
        assert post(client, key["key"], {"event_name": "before"}).status_code == 202
    revoke_key(db, key["id"])
    time.sleep(1.0)
    for _ in range(20):
        assert_error(post(client, key["key"], {"event_name": "after"}), 403, "revoked_key")


def test_malformed_json(client, project: Project) -> None:
    for raw in (b"{", b'{"event_name": "x"} trailing', b"\xff\xfe", b"", b"[1,]"):
        assert_error(post(client, project.write_key, None, raw=raw), 400, "malformed_json")


def test_invalid_gzip(client, project: Project) -> None:
    response = post(
        client, project.write_key, None, raw=b"not gzip", headers={"Content-Encoding": "gzip"}
    )
    assert_error(response, 400, "invalid_gzip")


def test_body_over_the_limit(client, project: Project) -> None:
    big = [{"event_name": "big", "pad": "x" * 60_000} for _ in range(20)]
    assert_error(post(client, project.write_key, big), 413, "body_too_large")


def test_gzip_bomb_is_limited_after_decompression(client, project: Project) -> None:
    bomb = gzip.compress(orjson.dumps([{"event_name": "b", "pad": " " * 60_000}] * 30))
    assert len(bomb) < 1_048_576
    response = post(client, project.write_key, None, raw=bomb, headers={"Content-Encoding": "gzip"})
    assert_error(response, 413, "body_too_large")


def test_unsupported_media_type(client, project: Project) -> None:
    response = post(
        client, project.write_key, {"event_name": "x"}, headers={"Content-Type": "application/xml"}
    )
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({}, "event_name"),
        ({"event_name": ""}, "event_name"),
        ({"event_name": 5}, "event_name"),
        ({"event_name": "x" * 257}, "event_name"),
        ({"event_name": "x", "timestamp": "2024-03-01T12:00:00"}, "timestamp"),
        ({"event_name": "x", "timestamp": "yesterday"}, "timestamp"),
        ({"event_name": "x", "timestamp": True}, "timestamp"),
        ({"event_name": "x", "metric_name": "m"}, "metric_value"),
        ({"event_name": "x", "metric_value": 1}, "metric_name"),
        ({"event_name": "x", "metric_name": "m", "metric_value": "1"}, "metric_value"),
        ({"event_name": "x", "metric_name": "m", "metric_value": 1e400}, "metric_value"),
        ({"event_name": "x", "event_id": 7}, "event_id"),
        ({"event_name": "x", "ip": "999.1.1.1"}, "ip"),
        ({"event_name": "x", "url": 5}, "url"),
        ({"event_name": "x", "utm_source": ["a"]}, "utm_source"),
    ],
)
def test_invalid_fields_are_named(
    client, db, project: Project, event: dict[str, Any], field: str
) -> None:
    raw = (
        orjson.dumps(event)
        if "metric_value" not in event or event["metric_value"] != 1e400
        else (b'{"event_name": "x", "metric_name": "m", "metric_value": 1e400}')
    )
    error = assert_error(post(client, project.write_key, None, raw=raw), 400, "invalid_event")
    assert {"index": 0, "field": field} in [
        {"index": d["index"], "field": d["field"]} for d in error["details"]
    ], error
    assert stored(db, project.id) == []


def test_event_name_of_256_characters_is_accepted(client, project: Project) -> None:
    assert post(client, project.write_key, {"event_name": "é" * 256}).status_code == 202


def test_empty_batch_is_refused(client, project: Project) -> None:
    assert_error(post(client, project.write_key, []), 400, "invalid_event")


# --- browsers and operations ----------------------------------------------


def test_cors_preflight_and_response_headers(client, project: Project) -> None:
    preflight = client.options(
        "/v1/events",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-api-key",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "x-api-key" in preflight.headers["access-control-allow-headers"]
    response = post(
        client, project.write_key, {"event_name": "x"}, headers={"Origin": "https://shop.example"}
    )
    assert response.headers["access-control-allow-origin"] == "*"


def test_health_ready_and_metrics(client, project: Project) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["database"] == "ok"
    post(client, project.write_key, {"event_name": "counted"})
    post(client, None, {"event_name": "refused"})
    time.sleep(0.7)  # both workers snapshot their numbers twice a second
    text = client.get("/metrics").text
    for name in (
        "eventbunker_events_accepted_total",
        'eventbunker_requests_rejected_total{reason="missing_key"}',
        "eventbunker_flush_batch_events_bucket",
        "eventbunker_flush_seconds_bucket",
        "eventbunker_spool_backlog_bytes",
    ):
        assert name in text
    # The enricher's caches: the accepted event's user agent was parsed once.
    assert metric(text, "eventbunker_user_agent_cache_misses") >= 1
    assert metric(text, "eventbunker_user_agent_cache_entries") >= 1
    assert metric(text, "eventbunker_geoip_cache_hits") == 0  # no GeoIP database
    accepted = next(
        line for line in text.splitlines() if line.startswith("eventbunker_events_accepted_total ")
    )
    assert float(accepted.split()[1]) >= 1


def test_openapi_describes_every_endpoint(client) -> None:
    from openapi_spec_validator import validate

    schema = client.get("/schema/openapi.json").json()
    validate(schema)  # a valid OpenAPI document, raw routes included
    for path in (
        "/v1/events",
        "/v1/events/import",
        "/v1/events/import/{import_id}",
        "/v1/query",
        "/v1/delete",
        "/v1/projects",
        "/v1/projects/{project_id}",
        "/v1/projects/{project_id}/keys",
        "/v1/projects/{project_id}/keys/{key_id}",
        "/v1/usage",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in schema["paths"], path
    ingest = schema["paths"]["/v1/events"]["post"]
    assert {"202", "400", "401", "403", "413", "415", "503"} <= set(ingest["responses"])
    for path in ("/v1/query", "/v1/delete"):
        operation = schema["paths"][path]["post"]
        assert {"200", "400", "401", "403", "503"} <= set(operation["responses"]), path
        assert "Retry-After" in operation["responses"]["503"]["headers"], path
        assert operation["requestBody"]["required"], path
        assert operation["security"], path


def test_unknown_route_uses_the_error_shape(client) -> None:
    assert_error(client.get("/nope"), 404, "not_found")


def test_events_is_a_hypertable(db) -> None:
    names = [
        r[0] for r in db.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")
    ]
    assert "events" in names


def test_refusals_and_latency_are_recorded_per_project(client, db, project: Project) -> None:
    assert post(client, project.write_key, {"event_name": "ok"}).status_code == 202
    assert len(stored(db, project.id, count=1)) == 1
    assert post(client, project.write_key, {"event_name": ""}).status_code == 400
    assert post(client, project.write_key, None, raw=b"{").status_code == 400
    deadline = time.monotonic() + 5
    reasons: dict[str, int] = {}
    while time.monotonic() < deadline and len(reasons) < 2:
        time.sleep(0.2)
        reasons = dict(
            db.execute(
                "SELECT reason, sum(requests)::int FROM rejected_counters"
                " WHERE project_id = %s GROUP BY reason",
                (project.id,),
            ).fetchall()
        )
    assert reasons == {"invalid_event": 1, "malformed_json": 1}
    row = db.execute(
        "SELECT sum(events), sum(latency_ms_sum), max(latency_ms_max) FROM write_counters"
        " WHERE project_id = %s",
        (project.id,),
    ).fetchone()
    assert row is not None
    events, latency_sum, latency_max = row
    assert events == 1
    assert 0 < latency_sum <= latency_max < 1000
