"""``POST /v1/delete`` over real HTTP: selection, refusal of an empty selection,
customer scoping, isolation, and write counters that deletes never reduce."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from hypothesis import given
from hypothesis import strategies as st

import query_reference as ref
from conftest import Project
from eventbunker.admin.projects import create_key, create_project
from query_strategies import SETTINGS, customers, event_lists, filters, timeframes

NOW = datetime.now(UTC)


def delete(client: httpx.Client, key: str | None, body: Any) -> httpx.Response:
    headers = {"X-Api-Key": key} if key is not None else {}
    return client.post("/v1/delete", json=body, headers=headers)


def deleted(client: httpx.Client, key: str, body: Any) -> int:
    response = delete(client, key, body)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"deleted"}
    return int(response.json()["deleted"])


def names(db: psycopg.Connection[Any], project_id: int) -> list[str]:
    rows = db.execute(
        "SELECT event_name FROM events WHERE project_id = %s ORDER BY event_name", (project_id,)
    ).fetchall()
    return [r[0] for r in rows]


def event(name: str, when: datetime = NOW, **fields: Any) -> dict[str, Any]:
    return {"timestamp": when, "event_name": name, **fields}


def test_delete_needs_a_delete_key(client: httpx.Client, project: Project) -> None:
    body = {"all": True}
    for key, status, code in [
        (None, 401, "missing_key"),
        ("nope", 401, "unknown_key"),
        (project.write_key, 403, "wrong_key_kind"),
        (project.query_key, 403, "wrong_key_kind"),
    ]:
        response = delete(client, key, body)
        assert response.status_code == status
        assert response.json()["error"]["code"] == code


def test_empty_selection_is_refused_unless_all(
    client: httpx.Client, db: psycopg.Connection[Any], project: Project
) -> None:
    other = create_project(db, "bystander")
    ref.load(db, other["id"], [event("keep")])
    ref.load(db, project.id, [event("a"), event("b")])
    for body in ({}, {"all": False}, {"filters": []}, {"timezone": "UTC"}):
        response = delete(client, project.delete_key, body)
        assert response.status_code == 400, body
        error = response.json()["error"]
        assert error["code"] == "invalid_query"
        assert error["details"][0]["field"] == "all"
    assert names(db, project.id) == ["a", "b"]
    assert deleted(client, project.delete_key, {"all": True}) == 2
    assert names(db, project.id) == []
    assert names(db, other["id"]) == ["keep"]


def test_delete_by_event_name_timeframe_and_filters(
    client: httpx.Client, db: psycopg.Connection[Any], project: Project
) -> None:
    hostile = "'); DROP TABLE events; --"
    ref.load(
        db,
        project.id,
        [
            event("old", NOW - timedelta(days=10)),
            event("old", NOW - timedelta(days=3)),
            event("click", properties={hostile: "x"}),
            event("click", properties={hostile: "y"}),
            event("view", geo_country="FR"),
            event("view", geo_country="US"),
            event(hostile),
        ],
    )
    key = project.delete_key
    assert deleted(client, key, {"event_name": hostile}) == 1
    assert deleted(client, key, {"timeframe": "previous_5_days"}) == 1
    timeframe = {
        "start": (NOW - timedelta(days=30)).isoformat(),
        "end": (NOW - timedelta(days=5)).isoformat(),
    }
    assert deleted(client, key, {"event_name": "old", "timeframe": timeframe}) == 1
    hostile_filter = {"property": f"properties.{hostile}", "operator": "eq", "value": "x"}
    assert deleted(client, key, {"filters": [hostile_filter]}) == 1
    country = {"property": "geo_country", "operator": "ne", "value": "FR"}
    assert deleted(client, key, {"event_name": "view", "filters": [country]}) == 1
    assert deleted(client, key, {"event_name": "nothing"}) == 0
    assert names(db, project.id) == ["click", "view"]


def test_invalid_deletes_name_the_field(client: httpx.Client, project: Project) -> None:
    for body, field in [
        ({"analysis": "count", "all": True}, "analysis"),
        ({"all": "yes"}, "all"),
        ({"timeframe": "last_week"}, "timeframe"),
        ({"event_name": "a", "timezone": "Nowhere/Land"}, "timezone"),
        (
            {"filters": [{"property": "metric_value", "operator": "lt", "value": "1"}]},
            "filters[0].value",
        ),
    ]:
        response = delete(client, project.delete_key, body)
        assert response.status_code == 400, body
        assert response.json()["error"]["details"][0]["field"] == field


def test_customer_scoped_delete_key_deletes_only_its_customer(
    client: httpx.Client, db: psycopg.Connection[Any], project: Project
) -> None:
    ref.load(
        db,
        project.id,
        [event(c or "none", customer_identifier=c) for c in ("c1", "c1", "c2", None)],
    )
    scoped = create_key(db, project.id, "delete", "c1")["key"]
    sneaky = {"property": "customer_identifier", "operator": "eq", "value": "c2"}
    assert deleted(client, scoped, {"filters": [sneaky]}) == 0
    assert deleted(client, scoped, {"all": True}) == 2
    assert names(db, project.id) == ["c2", "none"]


def test_deletes_do_not_reduce_write_counters(
    client: httpx.Client, db: psycopg.Connection[Any], project: Project
) -> None:
    batch = [{"event_name": "counted", "i": i} for i in range(5)]
    posted = client.post("/v1/events", json=batch, headers={"X-Api-Key": project.write_key})
    assert posted.status_code == 202, posted.text

    def counted() -> int:
        row = db.execute(
            "SELECT coalesce(sum(events), 0) FROM write_counters WHERE project_id = %s",
            (project.id,),
        ).fetchone()
        assert row is not None
        return int(row[0])

    # A 202 may mean "in the spool": wait (at most the 1 s of the contract)
    # until the events are in the table and counted.
    deadline = time.monotonic() + 1.0
    while (counted() < 5 or names(db, project.id) != ["counted"] * 5) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.02)
    assert counted() == 5
    assert deleted(client, project.delete_key, {"event_name": "counted"}) == 5
    assert counted() == 5
    query = {"analysis": "count", "event_name": "counted"}
    answer = client.post("/v1/query", json=query, headers={"X-Api-Key": project.query_key})
    assert answer.json() == {"result": 0}


@SETTINGS
@given(
    evts=event_lists,
    customer=customers,
    event_name=st.one_of(st.none(), st.sampled_from(["view", "click"])),
    timeframe=st.one_of(st.none(), timeframes()),
    flts=st.lists(filters(), max_size=2),
)
def test_delete_removes_exactly_the_selected_events(
    client: httpx.Client,
    db: psycopg.Connection[Any],
    evts: list[dict[str, Any]],
    customer: str | None,
    event_name: str | None,
    timeframe: dict[str, str] | None,
    flts: list[dict[str, Any]],
) -> None:
    project = create_project(db, "deletes")
    evts = [{**e, "properties": {**e["properties"], "id": i}} for i, e in enumerate(evts)]
    ref.load(db, project["id"], evts)
    key = (
        create_key(db, project["id"], "delete", customer)["key"]
        if customer
        else (project["keys"]["delete"])
    )
    body: dict[str, Any] = {"filters": flts, "all": True}
    if event_name is not None:
        body["event_name"] = event_name
    if timeframe is not None:
        body["timeframe"] = timeframe
    visible = [e for e in evts if customer is None or e["customer_identifier"] == customer]
    doomed = {e["properties"]["id"] for e in ref.select(visible, body)}
    assert deleted(client, key, body) == len(doomed)
    left = db.execute(
        "SELECT (properties->>'id')::int FROM events WHERE project_id = %s", (project["id"],)
    ).fetchall()
    assert sorted(r[0] for r in left) == sorted(
        e["properties"]["id"] for e in evts if e["properties"]["id"] not in doomed
    )
