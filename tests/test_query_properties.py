"""Property-based: every analysis, filter operator, group_by and interval, over
the real server, against the same computation in plain Python.

Each example loads freshly generated events into a new project (COPY), then
asks the server several generated queries with the project's query key, or
with a key scoped to one customer.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

import query_reference as ref
from eventbunker.admin.projects import create_key, create_project
from query_strategies import (
    GROUPS,
    SETTINGS,
    SPAN,
    customers,
    event_lists,
    filters,
    queries,
    timeframes,
)

# --- running ------------------------------------------------------------------


class Loaded:
    def __init__(
        self, db: psycopg.Connection[Any], evts: list[dict[str, Any]], customer: str | None
    ):
        project = create_project(db, "prop")
        # A unique id per event, to read back exactly which events a filter selects.
        evts = [{**e, "properties": {**e["properties"], "id": i}} for i, e in enumerate(evts)]
        ref.load(db, project["id"], evts)
        self.key = (
            create_key(db, project["id"], "query", customer)["key"]
            if customer
            else project["keys"]["query"]
        )
        self.events = [e for e in evts if customer is None or e["customer_identifier"] == customer]

    def ask(self, client: httpx.Client, body: dict[str, Any]) -> Any:
        response = client.post("/v1/query", json=body, headers={"X-Api-Key": self.key})
        assert response.status_code == 200, (body, response.text)
        return response.json()["result"]


@SETTINGS
@given(evts=event_lists, customer=customers, bodies=st.lists(queries(), min_size=3, max_size=8))
def test_analyses_and_filters_match_python(
    client: httpx.Client,
    db: psycopg.Connection[Any],
    evts: list[dict[str, Any]],
    customer: str | None,
    bodies: list[dict[str, Any]],
) -> None:
    loaded = Loaded(db, evts, customer)
    for body in bodies:
        got = loaded.ask(client, body)
        expected = ref.analyse(ref.select(loaded.events, body), body)
        assert ref.same_result(body["analysis"], got, expected), (body, got, expected)


@settings(SETTINGS, max_examples=60)
@given(
    evts=event_lists,
    customer=customers,
    conditions=st.lists(st.lists(filters(), min_size=1, max_size=2), min_size=10, max_size=20),
)
def test_filters_select_exactly_the_python_events(
    client: httpx.Client,
    db: psycopg.Connection[Any],
    evts: list[dict[str, Any]],
    customer: str | None,
    conditions: list[list[dict[str, Any]]],
) -> None:
    loaded = Loaded(db, evts, customer)
    for flts in conditions:
        body = {"analysis": "select_unique", "target_property": "properties.id", "filters": flts}
        got = loaded.ask(client, body)
        expected = [e["properties"]["id"] for e in ref.select(loaded.events, body)]
        assert sorted(got) == sorted(expected), (flts, got, expected)


@SETTINGS
@given(
    evts=event_lists,
    customer=customers,
    bodies=st.lists(
        st.tuples(
            queries(), st.lists(st.sampled_from(GROUPS), min_size=1, max_size=3, unique=True)
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_group_by_matches_python(
    client: httpx.Client,
    db: psycopg.Connection[Any],
    evts: list[dict[str, Any]],
    customer: str | None,
    bodies: list[tuple[dict[str, Any], list[str]]],
) -> None:
    loaded = Loaded(db, evts, customer)
    for query, group_by in bodies:
        body = {**query, "group_by": group_by}
        got = loaded.ask(client, body)
        expected = ref.grouped(ref.select(loaded.events, body), body)
        assert isinstance(got, list)
        assert all(set(item) == {*group_by, "result"} for item in got)
        got_groups = {
            tuple(ref.canon(item[name]) for name in group_by): item["result"] for item in got
        }
        assert got_groups.keys() == expected.keys(), (body, got, expected)
        for key, value in expected.items():
            assert ref.same_result(body["analysis"], got_groups[key], value), (body, key, got)


INTERVALS = {
    "minutely": ("minute", timedelta(hours=3)),
    "hourly": ("hour", timedelta(days=4)),
    "daily": ("day", SPAN),
    "weekly": ("week", SPAN),
    "monthly": ("month", SPAN),
}


@st.composite
def series_queries(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(queries())
    interval = draw(st.sampled_from(sorted(INTERVALS)))
    body["interval"] = interval
    body["timeframe"] = draw(timeframes(max_length=INTERVALS[interval][1]))
    body["timezone"] = draw(
        st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"])
    )
    if draw(st.integers(0, 3)) == 0:
        body["group_by"] = [draw(st.sampled_from(GROUPS))]
    return body


def is_unit_start(instant: datetime, unit: str) -> bool:
    if (instant.second, instant.microsecond) != (0, 0):
        return False
    if unit == "minute":
        return True
    if unit == "hour":
        return instant.minute == 0
    midnight = (instant.hour, instant.minute) == (0, 0)
    return (
        midnight
        and {
            "day": True,
            "week": instant.weekday() == 0,
            "month": instant.day == 1,
        }[unit]
    )


@SETTINGS
@given(
    evts=event_lists, customer=customers, bodies=st.lists(series_queries(), min_size=1, max_size=3)
)
def test_intervals_match_python(
    client: httpx.Client,
    db: psycopg.Connection[Any],
    evts: list[dict[str, Any]],
    customer: str | None,
    bodies: list[dict[str, Any]],
) -> None:
    loaded = Loaded(db, evts, customer)
    for body in bodies:
        got = loaded.ask(client, body)
        unit = INTERVALS[body["interval"]][0]
        zone = ZoneInfo(body["timezone"])
        starts = [datetime.fromisoformat(b["timeframe"]["start"]) for b in got]
        ends = [datetime.fromisoformat(b["timeframe"]["end"]) for b in got]
        # The buckets tile the timeframe, each (but a clipped first) on a unit start.
        assert starts[0] == datetime.fromisoformat(body["timeframe"]["start"])
        assert ends[-1] == datetime.fromisoformat(body["timeframe"]["end"])
        assert starts[1:] == ends[:-1]
        for start in starts[1:]:
            assert start.utcoffset() == start.astimezone(zone).utcoffset()
            assert is_unit_start(start.astimezone(zone), unit), (body, start)
        selected = ref.select(loaded.events, {**body, "timeframe": None})
        for bucket, start, end in zip(got, starts, ends, strict=True):
            inside = [e for e in selected if start <= e["timestamp"] < end]
            if "group_by" in body:
                expected = ref.grouped(inside, body)
                got_groups = {
                    tuple(ref.canon(item[n]) for n in body["group_by"]): item["result"]
                    for item in bucket["value"]
                }
                assert got_groups.keys() == expected.keys(), (body, bucket)
                for key, value in expected.items():
                    assert ref.same_result(body["analysis"], got_groups[key], value)
            else:
                expected = ref.analyse(inside, body)
                if not inside and body["analysis"] in ("count", "count_unique", "sum"):
                    expected = 0
                assert ref.same_result(body["analysis"], bucket["value"], expected), (
                    body,
                    bucket,
                    expected,
                )
