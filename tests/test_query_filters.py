"""Every filter operator on every kind of property, exhaustively, over the real server.

One project holds a fixed, varied set of events; each (property, operator,
value) combination selects events by their unique ``properties.id``, and the
ids must be exactly those the plain-Python reading of the contract selects.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

import query_reference as ref
from eventbunker.admin.projects import create_project

BASE = datetime(2024, 3, 1, tzinfo=UTC)
HOSTILE = "x'); DROP TABLE events; --\"%(p0)s{}"
INSTANTS = [BASE + timedelta(hours=23 * i, minutes=17) for i in range(12)]
TEXTS = ["FR", "US", "D", "R", "", "pro", "pr", "ro", "a", "a'b", "é", "'; DROP TABLE events; --"]
NUMBERS = [-1.5, 0, 1, 2.5, 3, 50]
JSON_SCALARS = [None, True, False, -1, 0, 1, 2.5, 1.0, "pro", "free", "Pro", "pr", "", "é", "1"]
JSON_VALUES = [*JSON_SCALARS, ["a", 1], [], {"k": 1}]


def make_events(count: int = 300) -> list[dict[str, Any]]:
    rng = random.Random(20240301)
    events = []
    for i in range(count):
        props: dict[str, Any] = {"id": i}
        for name in ("plan", "n"):
            if rng.random() < 0.8:
                props[name] = rng.choice(JSON_VALUES)
        if rng.random() < 0.7:
            props["tags"] = rng.sample(["a", "b", "pro", 1, 2.5], rng.randint(0, 3))
        if rng.random() < 0.5:
            props[HOSTILE] = {"x": rng.choice(JSON_SCALARS)} if rng.random() < 0.8 else {}
        event: dict[str, Any] = {
            "timestamp": rng.choice(INSTANTS)
            if rng.random() < 0.5
            else BASE + timedelta(seconds=rng.randint(0, 12 * 86400)),
            "event_name": rng.choice(["view", "click", "pro"]),
            "geo_country": rng.choice([None, "FR", "US", "DE", "a'b"]),
            "is_bot": rng.random() < 0.3,
            "properties": props,
        }
        if rng.random() < 0.6:
            event["metric_name"] = "latency"
            event["metric_value"] = rng.choice([*NUMBERS, rng.randint(-10, 100) / 2])
        events.append(event)
    return events


def combinations() -> list[dict[str, Any]]:
    combos: list[tuple[str, str, Any]] = []
    for prop in ("geo_country", "event_name"):
        for op in ("eq", "ne", "lt", "lte", "gt", "gte", "contains", "starts_with"):
            combos += [(prop, op, v) for v in TEXTS]
        combos += [(prop, "in", ["FR", "a'b"]), (prop, "in", ["pro"])]
    for op in ("eq", "ne", "lt", "lte", "gt", "gte"):
        combos += [("metric_value", op, v) for v in NUMBERS]
        combos += [("timestamp", op, t.isoformat()) for t in INSTANTS[::3]]
    combos += [("metric_value", "in", [0, 2.5, 50]), ("is_bot", "eq", True)]
    combos += [("is_bot", "ne", True), ("is_bot", "in", [False])]
    combos += [("timestamp", "in", [INSTANTS[0].astimezone().isoformat()])]
    for prop in ("properties.plan", "properties.n", "properties.tags", f"properties.{HOSTILE}.x"):
        for op in ("eq", "ne"):
            combos += [(prop, op, v) for v in JSON_VALUES]
        for op in ("lt", "lte", "gt", "gte"):
            combos += [(prop, op, v) for v in [*NUMBERS, "pro", "pr", "", "Z"]]
        combos += [(prop, "starts_with", v) for v in ["p", "pr", "ro", "", "é"]]
        combos += [(prop, "contains", v) for v in ["a", "ro", "", 1, 2.5, "pro"]]
        combos += [(prop, "in", [1, "pro", None]), (prop, "in", [["a", 1], False])]
    combos += [("properties.tags.0", op, v) for op in ("eq", "gt") for v in ["a", 1]]
    for prop in ("geo_country", "metric_value", "properties.plan", f"properties.{HOSTILE}"):
        combos += [(prop, "exists", True), (prop, "exists", False)]
    combos += [(f"properties.{HOSTILE}.x", "exists", True)]
    return [{"property": p, "operator": o, "value": v} for p, o, v in combos]


@pytest.fixture(scope="module")
def loaded(database_url: str) -> tuple[str, list[dict[str, Any]]]:
    events = make_events()
    with psycopg.connect(database_url, autocommit=True) as db:
        project = create_project(db, "filters")
        ref.load(db, project["id"], events)
    return project["keys"]["query"], events


def test_every_operator_on_every_kind_matches_python(
    client: httpx.Client, loaded: tuple[str, list[dict[str, Any]]]
) -> None:
    key, events = loaded
    checked = 0
    for flt in combinations():
        body = {
            "analysis": "select_unique",
            "target_property": "properties.id",
            "filters": [flt],
        }
        response = client.post("/v1/query", json=body, headers={"X-Api-Key": key})
        assert response.status_code == 200, (flt, response.text)
        got = sorted(response.json()["result"])
        expected = sorted(e["properties"]["id"] for e in ref.select(events, body))
        assert got == expected, flt
        checked += 1
    assert checked > 500


def test_filters_combine_with_and(
    client: httpx.Client, loaded: tuple[str, list[dict[str, Any]]]
) -> None:
    key, events = loaded
    flts = [
        {"property": "geo_country", "operator": "in", "value": ["FR", "US"]},
        {"property": "properties.n", "operator": "gte", "value": 0},
        {"property": "timestamp", "operator": "lt", "value": INSTANTS[8].isoformat()},
    ]
    body = {"analysis": "count", "event_name": "view", "filters": flts}
    response = client.post("/v1/query", json=body, headers={"X-Api-Key": key})
    assert response.json()["result"] == len(ref.select(events, body)) > 0
