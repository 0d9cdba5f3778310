"""Clock sanity over real HTTP: an event timed more than the bound (24 h by
default) after its receipt, once corrected for clock skew, is stored at its
receipt with the time it was sent with in ``properties.future_timestamp``;
``--max-future-seconds`` sets the bound."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from test_import_api import ndjson, post_import
from test_ingest_contract import post, stored

from conftest import Project, Server, serving


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_far_future_events_are_stored_at_receipt(
    client: httpx.Client, db: psycopg.Connection[Any], project: Project
) -> None:
    now = datetime.now(UTC)
    soon = rfc3339(now + timedelta(hours=23))
    ahead = rfc3339(now + timedelta(hours=25))
    batch = [
        {"event_name": "a_year_9999", "timestamp": "9999-12-31T23:59:59Z", "plan": "pro"},
        {"event_name": "b_epoch_ms_2100", "timestamp": 4102444800000},
        {"event_name": "c_25h_ahead", "timestamp": ahead},
        {"event_name": "d_23h_ahead", "timestamp": soon},
        # A client clock 3 days ahead, sending what its clock calls now:
        # corrected to about now, nothing is in the future.
        {
            "event_name": "e_skewed_clock",
            "timestamp": rfc3339(now + timedelta(days=3)),
            "sent_at": rfc3339(now + timedelta(days=3, seconds=1)),
        },
    ]
    response = post(client, project.write_key, batch)
    assert response.status_code == 202, response.text
    rows = stored(db, project.id, "event_name, timestamp, received_at, properties", count=5)
    by_name = {r["event_name"]: r for r in rows}
    assert len(by_name) == 5
    for name, sent in [
        ("a_year_9999", "9999-12-31T23:59:59Z"),
        ("b_epoch_ms_2100", 4102444800000),
        ("c_25h_ahead", ahead),
    ]:
        row = by_name[name]
        assert row["timestamp"] == row["received_at"], name
        assert row["properties"]["future_timestamp"] == sent, name
    assert by_name["a_year_9999"]["properties"]["plan"] == "pro"
    assert by_name["d_23h_ahead"]["timestamp"] == datetime.fromisoformat(soon)
    assert "future_timestamp" not in by_name["d_23h_ahead"]["properties"]
    skewed = by_name["e_skewed_clock"]
    assert abs(skewed["timestamp"] - skewed["received_at"]) < timedelta(seconds=5)
    assert "future_timestamp" not in skewed["properties"]
    # "Latest" is not polluted: nothing of this project is stored ahead of now.
    [(latest,)] = db.execute(
        "SELECT max(timestamp) FROM events WHERE project_id = %s", (project.id,)
    ).fetchall()
    assert latest < now + timedelta(hours=24)


def test_imported_future_events_are_stored_at_receipt(
    client: httpx.Client, db: psycopg.Connection[Any], project: Project
) -> None:
    body = ndjson(
        [
            {"event_name": "future", "timestamp": "3000-01-01T00:00:00Z"},
            {"event_name": "past", "timestamp": "2024-02-03T04:05:06Z"},
        ]
    )
    response = post_import(client, project.write_key, body)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2
    rows = stored(db, project.id, "event_name, timestamp, received_at, properties", count=2)
    future, past = sorted(rows, key=lambda r: r["event_name"])
    assert future["timestamp"] == future["received_at"]
    assert future["properties"] == {"future_timestamp": "3000-01-01T00:00:00Z"}
    assert past["timestamp"] == datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)


def test_too_old_events_still_answer_400(client: httpx.Client, project: Project) -> None:
    response = post(client, project.write_key, {"event_name": "e", "timestamp": -1})
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "timestamp"


@pytest.fixture(scope="module")
def one_minute_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with serving(
        database_url,
        tmp_path_factory.mktemp("future60"),
        "--workers",
        "1",
        "--max-future-seconds",
        "60",
    ) as srv:
        yield srv


def test_the_bound_is_a_setting(
    one_minute_server: Server, db: psycopg.Connection[Any], project: Project
) -> None:
    now = datetime.now(UTC)
    in_bound = rfc3339(now + timedelta(seconds=30))
    past_bound = rfc3339(now + timedelta(minutes=5))
    with httpx.Client(base_url=one_minute_server.url, timeout=10) as client:
        batch = [
            {"event_name": "in_bound", "timestamp": in_bound},
            {"event_name": "past_bound", "timestamp": past_bound},
        ]
        response = post(client, project.write_key, batch)
    assert response.status_code == 202, response.text
    rows = stored(db, project.id, "event_name, timestamp, received_at, properties", count=2)
    by_name = {r["event_name"]: r for r in rows}
    assert by_name["in_bound"]["timestamp"] == datetime.fromisoformat(in_bound)
    assert by_name["past_bound"]["timestamp"] == by_name["past_bound"]["received_at"]
    assert by_name["past_bound"]["properties"] == {"future_timestamp": past_bound}
