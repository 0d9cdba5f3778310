"""The query API's contract over real HTTP: keys, browsers, errors, time limit,
isolation, customer scoping, hostile names, relative timeframes, visibility."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

import query_reference as ref
from conftest import Project, start_server, stop_server
from eventbunker.admin.projects import create_key, create_project, revoke_key

NOW = datetime.now(UTC)


def ask(client: httpx.Client, key: str | None, body: Any, **headers: str) -> httpx.Response:
    all_headers = dict(headers)
    if key is not None:
        all_headers["X-Api-Key"] = key
    return client.post("/v1/query", json=body, headers=all_headers)


def result(client: httpx.Client, key: str, body: dict[str, Any]) -> Any:
    response = ask(client, key, body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["result"]


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    return dict(error)


def event(name: str = "view", when: datetime = NOW, **fields: Any) -> dict[str, Any]:
    return {"timestamp": when, "event_name": name, **fields}


# --- keys and browsers -------------------------------------------------------


def test_query_needs_a_query_key(client: httpx.Client, project: Project, make_key: Any) -> None:
    body = {"analysis": "count"}
    assert_error(ask(client, None, body), 401, "missing_key")
    assert_error(ask(client, "eb_nope_123", body), 401, "unknown_key")
    assert_error(ask(client, project.write_key, body), 403, "wrong_key_kind")
    assert_error(ask(client, project.delete_key, body), 403, "wrong_key_kind")
    assert result(client, project.query_key, body) == 0
    bearer = client.post(
        "/v1/query", json=body, headers={"Authorization": f"Bearer {project.query_key}"}
    )
    assert bearer.status_code == 200 and bearer.json() == {"result": 0}


def test_revoked_query_key_is_refused_within_a_second(
    client: httpx.Client, db: psycopg.Connection[Any], project: Project
) -> None:
    key = create_key(db, project.id, "query")
    assert result(client, key["key"], {"analysis": "count"}) == 0
    revoke_key(db, key["id"])
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        response = ask(client, key["key"], {"analysis": "count"})
        if response.status_code == 403:
            break
        time.sleep(0.05)
    assert_error(response, 403, "revoked_key")


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://example.com"}, {"Origin": "null"}, {"Sec-Fetch-Mode": "cors"}],
)
def test_browsers_are_refused_and_get_no_cors_headers(
    client: httpx.Client, project: Project, headers: dict[str, str]
) -> None:
    for path in ("/v1/query", "/v1/delete"):
        key = project.query_key if path == "/v1/query" else project.delete_key
        response = client.post(
            path, json={"analysis": "count", "all": True}, headers={"X-Api-Key": key, **headers}
        )
        assert_error(response, 403, "browser_refused")
        assert not any(h.startswith("access-control-") for h in response.headers)
        preflight = client.options(
            path,
            headers={
                "Origin": "https://example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key",
            },
        )
        assert "access-control-allow-origin" not in preflight.headers


# --- errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "analysis"),
        ({"analysis": "histogram"}, "analysis"),
        ({"analysis": "sum"}, "target_property"),
        ({"analysis": "count_unique", "metric_name": "m"}, "target_property"),
        ({"analysis": "sum", "target_property": "geo_country"}, "target_property"),
        ({"analysis": "avg", "target_property": "plan"}, "target_property"),
        ({"analysis": "count", "target_property": "metric_value"}, "target_property"),
        ({"analysis": "percentile", "target_property": "metric_value"}, "percentile"),
        (
            {"analysis": "percentile", "target_property": "metric_value", "percentile": 101},
            "percentile",
        ),
        ({"analysis": "median", "metric_name": "m", "percentile": 50}, "percentile"),
        ({"analysis": "count", "timeframe": "last_week"}, "timeframe"),
        ({"analysis": "count", "timeframe": "this_0_days"}, "timeframe"),
        ({"analysis": "count", "timeframe": {"start": "2024-01-01"}}, "timeframe"),
        (
            {
                "analysis": "count",
                "timeframe": {"start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z"},
            },
            "timeframe",
        ),
        ({"analysis": "count", "timeframe": "today", "interval": "fortnightly"}, "interval"),
        ({"analysis": "count", "interval": "daily"}, "timeframe"),
        ({"analysis": "count", "timeframe": "this_2_years", "interval": "minutely"}, "interval"),
        ({"analysis": "extraction", "timeframe": "today", "interval": "daily"}, "interval"),
        ({"analysis": "count", "timezone": "Mars/Olympus"}, "timezone"),
        ({"analysis": "count", "timezone": "../../etc/passwd"}, "timezone"),
        ({"analysis": "count", "group_by": "plan"}, "group_by[0]"),
        ({"analysis": "count", "group_by": ["geo_country", "geo_country"]}, "group_by[1]"),
        ({"analysis": "count", "group_by": []}, "group_by"),
        ({"analysis": "extraction", "group_by": ["geo_country"]}, "group_by"),
        ({"analysis": "extraction", "limit": 0}, "limit"),
        ({"analysis": "extraction", "limit": 10001}, "limit"),
        ({"analysis": "extraction", "limit": True}, "limit"),
        ({"analysis": "count", "limit": 5}, "limit"),
        ({"analysis": "count", "event_name": ""}, "event_name"),
        ({"analysis": "count", "event_name": 5}, "event_name"),
        ({"analysis": "count", "filter": []}, "filter"),
        ({"analysis": "count", "filters": {"property": "x"}}, "filters"),
        ({"analysis": "count", "filters": ["x"]}, "filters[0]"),
        (
            {"analysis": "count", "filters": [{"property": "geo_country", "operator": "eq"}]},
            "filters[0].value",
        ),
        (
            {"analysis": "count", "filters": [{"property": "p", "operator": "eq", "value": 1}]},
            "filters[0].property",
        ),
        (
            {
                "analysis": "count",
                "filters": [{"property": "properties..a", "operator": "eq", "value": 1}],
            },
            "filters[0].property",
        ),
    ],
)
def test_invalid_queries_name_the_field(
    client: httpx.Client, project: Project, body: dict[str, Any], field: str
) -> None:
    error = assert_error(ask(client, project.query_key, body), 400, "invalid_query")
    [detail] = error["details"]
    assert detail["field"] == field, error
    assert detail["message"]


def _filter(prop: str, operator: str, value: Any) -> dict[str, Any]:
    return {
        "analysis": "count",
        "filters": [{"property": prop, "operator": operator, "value": value}],
    }


@pytest.mark.parametrize(
    ("prop", "operator", "value", "field"),
    [
        ("metric_value", "eq", "12", "value"),
        ("metric_value", "gt", None, "value"),
        ("metric_value", "contains", "1", "operator"),
        ("metric_value", "in", [1, "2"], "value"),
        ("metric_value", "in", [], "value"),
        ("geo_country", "eq", 1, "value"),
        ("geo_country", "lt", True, "value"),
        ("geo_country", "starts_with", ["F"], "value"),
        ("geo_country", "exists", "yes", "value"),
        ("is_bot", "lt", True, "operator"),
        ("is_bot", "eq", "true", "value"),
        ("timestamp", "gt", "yesterday", "value"),
        ("timestamp", "gt", 1700000000, "value"),
        ("timestamp", "starts_with", "2024", "operator"),
        ("properties.plan", "lt", True, "value"),
        ("properties.plan", "lt", None, "value"),
        ("properties.plan", "gte", ["a"], "value"),
        ("properties.plan", "starts_with", 1, "value"),
        ("properties.plan", "contains", None, "value"),
        ("properties.plan", "in", "pro", "value"),
        ("properties.plan", "like", "pro", "operator"),
    ],
)
def test_operator_that_does_not_fit_the_value(
    client: httpx.Client, project: Project, prop: str, operator: str, value: Any, field: str
) -> None:
    error = assert_error(
        ask(client, project.query_key, _filter(prop, operator, value)), 400, "invalid_query"
    )
    assert error["details"] == [
        {"index": 0, "field": f"filters[0].{field}", "message": error["details"][0]["message"]}
    ]


def test_malformed_json(client: httpx.Client, project: Project) -> None:
    response = client.post(
        "/v1/query", content=b'{"analysis": ', headers={"X-Api-Key": project.query_key}
    )
    assert_error(response, 400, "malformed_json")
    response = client.post("/v1/query", json=[1], headers={"X-Api-Key": project.query_key})
    assert assert_error(response, 400, "invalid_query")["details"][0]["field"] == "body"


@pytest.fixture(scope="module")
def impatient_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = start_server(
        database_url,
        tmp_path_factory.mktemp("impatient"),
        "--workers",
        "1",
        env={"EVENTBUNKER_QUERY_TIMEOUT_MS": "1"},
    )
    try:
        yield server.url
    finally:
        stop_server(server)


def test_slow_query_answers_503_with_retry_after(
    impatient_server: str, db: psycopg.Connection[Any], project: Project
) -> None:
    db.execute(
        "INSERT INTO events (timestamp, received_at, project_id, event_name, properties)"
        " SELECT now() - i * interval '1 second', now(), %s, 'bulk', jsonb_build_object('n', i)"
        " FROM generate_series(1, 100000) AS i",
        (project.id,),
    )
    body = {"analysis": "percentile", "percentile": 95, "target_property": "properties.n"}
    with httpx.Client(base_url=impatient_server, timeout=10) as client:
        response = ask(client, project.query_key, body)
    error = assert_error(response, 503, "query_timeout")
    assert "1 ms" in error["message"]
    assert response.headers["retry-after"] == "1"


# --- answers -----------------------------------------------------------------


def test_event_is_queryable_within_one_second_of_its_202(
    client: httpx.Client, project: Project
) -> None:
    posted = client.post(
        "/v1/events",
        json={"event_name": "signup", "plan": "pro", "metric_name": "t", "metric_value": 3},
        headers={"X-Api-Key": project.write_key},
    )
    assert posted.status_code == 202
    accepted_at = time.monotonic()
    body = {"analysis": "count", "event_name": "signup", "timeframe": "this_1_hours"}
    while (count := result(client, project.query_key, body)) == 0:
        assert time.monotonic() - accepted_at < 1.0
        time.sleep(0.01)
    assert time.monotonic() - accepted_at < 1.0
    assert count == 1
    sums = {
        "analysis": "sum",
        "metric_name": "t",
        "filters": [{"property": "properties.plan", "operator": "eq", "value": "pro"}],
    }
    assert result(client, project.query_key, sums) == 3


def test_isolation_between_projects_and_customers(
    client: httpx.Client, db: psycopg.Connection[Any], project: Project
) -> None:
    other = create_project(db, "other")
    ref.load(db, other["id"], [event(customer_identifier="c1") for _ in range(5)])
    ref.load(
        db,
        project.id,
        [event(customer_identifier=c) for c in ("c1", "c1", "c2", None, "c3")],
    )
    assert result(client, project.query_key, {"analysis": "count"}) == 5
    assert result(client, other["keys"]["query"], {"analysis": "count"}) == 5
    scoped = create_key(db, project.id, "query", "c1")["key"]
    sneaky_filters = [
        [],
        [{"property": "customer_identifier", "operator": "eq", "value": "c2"}],
        [{"property": "customer_identifier", "operator": "ne", "value": "c1"}],
        [{"property": "customer_identifier", "operator": "exists", "value": False}],
        [{"property": "customer_identifier", "operator": "in", "value": ["c1", "c2", "c3"]}],
    ]
    expected = [2, 0, 0, 0, 2]
    for flts, count in zip(sneaky_filters, expected, strict=True):
        assert result(client, scoped, {"analysis": "count", "filters": flts}) == count
    grouped = result(client, scoped, {"analysis": "count", "group_by": ["customer_identifier"]})
    assert grouped == [{"customer_identifier": "c1", "result": 2}]
    extracted = result(client, scoped, {"analysis": "extraction"})
    assert [e["customer_identifier"] for e in extracted] == ["c1", "c1"]
    unique = result(
        client, scoped, {"analysis": "select_unique", "target_property": "customer_identifier"}
    )
    assert unique == ["c1"]


HOSTILE_NAMES = [
    "'); DROP TABLE events; --",
    'a"b',
    "semi;colon",
    "back\\slash",
    "%s",
    "%(p0)s",
    "{}",
    "$1",
    "ünï cødé ☃",
    "--",
    "/* x */",
    "\t\n",
]


def test_hostile_property_names_are_only_data(
    client: httpx.Client, db: psycopg.Connection[Any], project: Project
) -> None:
    events = [
        event(
            "'); DROP TABLE events; --", properties={name: {"v": i // len(HOSTILE_NAMES)}, "id": i}
        )
        for i, name in enumerate(HOSTILE_NAMES * 3)
    ]
    ref.load(db, project.id, events)
    for name in HOSTILE_NAMES:
        path = f"properties.{name}.v"
        body = {
            "analysis": "count",
            "event_name": "'); DROP TABLE events; --",
            "filters": [{"property": path, "operator": "gte", "value": 1}],
        }
        assert result(client, project.query_key, body) == 2, name
        grouped = result(client, project.query_key, {"analysis": "count", "group_by": [path]})
        assert {(g[path], g["result"]) for g in grouped} == {
            (0, 1),
            (1, 1),
            (2, 1),
            (None, len(events) - 3),
        }
        unique = {"analysis": "count_unique", "target_property": path}
        assert result(client, project.query_key, unique) == 3
        value_filter = [{"property": "properties.id", "operator": "in", "value": [name, 0]}]
        assert (
            result(client, project.query_key, {"analysis": "count", "filters": value_filter}) == 1
        )
    assert db.execute(
        "SELECT count(*) FROM events WHERE project_id = %s", (project.id,)
    ).fetchone() == (len(events),)


def test_extraction_returns_events_newest_first(
    client: httpx.Client, db: psycopg.Connection[Any], project: Project
) -> None:
    events = [
        event(
            "buy",
            NOW - timedelta(minutes=i),
            metric_name="price",
            metric_value=i,
            geo_country="FR",
            properties={"i": i, "nested": {"a": [1, None]}},
        )
        for i in range(10)
    ]
    ref.load(db, project.id, events)
    body = {
        "analysis": "extraction",
        "limit": 3,
        "timezone": "Asia/Kolkata",
        "filters": [{"property": "metric_value", "operator": "gte", "value": 2}],
    }
    extracted = result(client, project.query_key, body)
    assert [e["properties"]["i"] for e in extracted] == [2, 3, 4]
    first = extracted[0]
    assert first["event_name"] == "buy" and first["geo_country"] == "FR"
    assert first["metric_name"] == "price" and first["metric_value"] == 2
    assert first["properties"] == {"i": 2, "nested": {"a": [1, None]}}
    assert first["timestamp"].endswith("+05:30")
    assert datetime.fromisoformat(first["timestamp"]) == events[2]["timestamp"]
    assert "project_id" not in first
    assert len(result(client, project.query_key, {"analysis": "extraction"})) == 10


# --- relative timeframes ------------------------------------------------------

RELATIVE = [
    "this_1_minutes",
    "this_5_minutes",
    "previous_3_minutes",
    "this_2_hours",
    "previous_24_hours",
    "today",
    "yesterday",
    "this_7_days",
    "previous_7_days",
    "this_1_weeks",
    "previous_2_weeks",
    "this_1_months",
    "previous_3_months",
    "this_2_years",
]
OFFSETS = [
    timedelta(seconds=s)
    for s in (20, 90, 200, 3000, 7300, 30000, 80000, 130000, 300000, 600000, 900000)
] + [timedelta(days=d) for d in (20, 35, 50, 80, 100, 200, 400, 800)]


def keen_bounds(name: str, tz: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """Keen IO's definition, written out independently of the server's code."""
    name = {"today": "this_1_days", "yesterday": "previous_1_days"}.get(name, name)
    which, count_text, unit = name.split("_")
    count = int(count_text)
    local = now.astimezone(tz)
    if unit == "minutes":
        current = local.replace(second=0, microsecond=0).astimezone(UTC)
        step = timedelta(minutes=1)
    elif unit == "hours":
        current = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        step = timedelta(hours=1)
    else:
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        if unit == "weeks":
            midnight = (midnight - timedelta(days=midnight.weekday())).replace(tzinfo=tz)
        if unit == "months":
            midnight = midnight.replace(day=1)
        if unit == "years":
            midnight = midnight.replace(month=1, day=1)

        def back(n: int) -> datetime:
            if unit == "days":
                return (midnight - timedelta(days=n)).replace(tzinfo=tz)
            if unit == "weeks":
                return (midnight - timedelta(weeks=n)).replace(tzinfo=tz)
            months = n * (12 if unit == "years" else 1)
            year, month = divmod(midnight.year * 12 + midnight.month - 1 - months, 12)
            return midnight.replace(year=year, month=month + 1)

        if which == "this":
            return back(count - 1), now
        return back(count), back(0)
    if which == "this":
        return current - step * (count - 1), now
    return current - step * count, current


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_relative_timeframes_match_keen(
    client: httpx.Client, db: psycopg.Connection[Any], project: Project, zone: str
) -> None:
    now = datetime.now(UTC)
    times = [now - offset for offset in OFFSETS] + [now + timedelta(hours=1)]
    ref.load(db, project.id, [event(when=t) for t in times])
    tz = ZoneInfo(zone)
    for name in RELATIVE:
        for _attempt in range(3):
            before = keen_bounds(name, tz, datetime.now(UTC))
            got = result(
                client,
                project.query_key,
                {"analysis": "count", "timeframe": name, "timezone": zone},
            )
            after = keen_bounds(name, tz, datetime.now(UTC))
            counts = {sum(1 for t in times if b[0] <= t < b[1]) for b in (before, after)}
            if len(counts) == 1:  # no unit boundary passed during the request
                assert got == counts.pop(), (name, zone)
                break
        else:
            pytest.fail(f"{name}: a boundary passed on every attempt")


def test_interval_over_a_relative_timeframe(
    client: httpx.Client, db: psycopg.Connection[Any], project: Project
) -> None:
    now = datetime.now(UTC)
    ref.load(db, project.id, [event(when=now - timedelta(days=d, minutes=1)) for d in range(10)])
    series = result(
        client,
        project.query_key,
        {
            "analysis": "count",
            "timeframe": "previous_7_days",
            "interval": "daily",
            "timezone": "Europe/Paris",
        },
    )
    assert len(series) == 7
    assert [s["value"] for s in series] == [1] * 7
    for bucket in series:
        start = datetime.fromisoformat(bucket["timeframe"]["start"])
        assert start.astimezone(ZoneInfo("Europe/Paris")).time().isoformat() == "00:00:00"
