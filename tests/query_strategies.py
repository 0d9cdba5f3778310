"""Hypothesis strategies for generated events and query bodies (shared by the query
and delete tests): values are drawn from small pools so that filters, groups and
comparisons meet equal values often."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from eventbunker.query.request import ANALYSES

BASE = datetime(2024, 3, 1, tzinfo=UTC)  # 40 days across both DST changes of 2024
SPAN = timedelta(days=40)
# A property name that would break any query built as text.
HOSTILE = "we'ird\"; DROP TABLE events; --%s%(p0)s{}\\"

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- events -------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.5, 2.5, -1.5, 1.0]),
    st.sampled_from(["pro", "free", "Pro", "pr", "", "é", "a'b", "1"]),
)
properties = st.fixed_dictionaries(
    {},
    optional={
        "plan": json_scalars,
        "n": json_scalars,
        "tags": st.lists(st.sampled_from(["a", "b", "pro", 1]), max_size=3),
        HOSTILE: st.fixed_dictionaries({}, optional={"x": json_scalars}),
    },
)
number_values = st.sampled_from([-1.5, 0, 1, 2.5, 3, 50, 99.5])
# Half the instants come from a small pool, so that comparisons meet equal values.
POPULAR = [BASE + timedelta(hours=23 * i, minutes=17) for i in range(40)]
instants = st.one_of(
    st.sampled_from(POPULAR),
    st.datetimes(
        min_value=BASE.replace(tzinfo=None),
        max_value=(BASE + SPAN).replace(tzinfo=None),
        timezones=st.just(UTC),
    ),
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "timestamp": draw(instants),
        "event_name": draw(st.sampled_from(["view", "click", "buy"])),
        "geo_country": draw(st.sampled_from([None, "FR", "US", "DE"])),
        "customer_identifier": draw(st.sampled_from([None, "c1", "c2"])),
        "is_bot": draw(st.booleans()),
        "properties": draw(properties),
    }
    if draw(st.booleans()):
        event["metric_name"] = draw(st.sampled_from(["latency", "size"]))
        event["metric_value"] = draw(
            st.one_of(number_values, st.integers(-20, 200).map(lambda i: i / 2))
        )
    return event


event_lists = st.lists(events(), min_size=10, max_size=80)

# --- queries ------------------------------------------------------------------

text_values = st.sampled_from(
    ["FR", "US", "D", "R", "", "pro", "pr", "ro", "a", "a'b", "'; DROP TABLE events; --"]
)
json_values = st.one_of(json_scalars, st.lists(st.sampled_from(["a", "b", 1]), max_size=2))


@st.composite
def filters(draw: st.DrawFn) -> dict[str, Any]:
    prop = draw(
        st.sampled_from(
            [
                "geo_country",
                "event_name",
                "metric_value",
                "timestamp",
                "is_bot",
                "properties.plan",
                "properties.plan",
                "properties.n",
                "properties.n",
                "properties.tags",
                "properties.tags",
                "properties.tags.0",
                f"properties.{HOSTILE}.x",
            ]
        )
    )
    if prop in ("geo_country", "event_name"):
        op = draw(
            st.sampled_from(["eq", "ne", "lt", "gte", "in", "exists", "contains", "starts_with"])
        )
        values = text_values
    elif prop == "metric_value":
        op = draw(st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte", "in", "exists"]))
        values = number_values
    elif prop == "timestamp":
        op = draw(st.sampled_from(["lt", "lte", "gt", "gte", "eq", "ne"]))
        values = instants.map(lambda t: t.astimezone(ZoneInfo("Asia/Kolkata")).isoformat())
    elif prop == "is_bot":
        op = draw(st.sampled_from(["eq", "ne", "in"]))
        values = st.booleans()
    else:
        op = draw(
            st.sampled_from(
                ["eq", "ne", "lt", "lte", "gt", "gte", "in", "exists", "contains", "starts_with"]
            )
        )
        if op in ("lt", "lte", "gt", "gte"):
            values = st.one_of(number_values, text_values)
        elif op == "starts_with":
            values = text_values
        elif op == "contains":
            values = st.one_of(text_values, st.sampled_from([1, "a", "pro"]))
        else:
            values = json_values
    if op == "exists":
        value: Any = draw(st.booleans())
    elif op == "in":
        value = draw(st.lists(values, min_size=1, max_size=3))
    else:
        value = draw(values)
    return {"property": prop, "operator": op, "value": value}


@st.composite
def timeframes(draw: st.DrawFn, max_length: timedelta = SPAN) -> dict[str, str]:
    start = draw(instants) - timedelta(days=2)
    length = draw(st.timedeltas(timedelta(minutes=1), max_length))
    zone = ZoneInfo(draw(st.sampled_from(["UTC", "Europe/Paris", "America/New_York"])))
    return {"start": start.astimezone(zone).isoformat(), "end": (start + length).isoformat()}


COUNT_UNIQUE_TARGETS = [
    "geo_country",
    "metric_value",
    "timestamp",
    "is_bot",
    "properties.plan",
    "properties.n",
    "properties.tags",
    f"properties.{HOSTILE}.x",
]
NUMERIC_TARGETS = ["metric_value", "properties.n", "properties.plan", f"properties.{HOSTILE}.x"]
GROUPS = [
    "geo_country",
    "event_name",
    "is_bot",
    "customer_identifier",
    "properties.plan",
    "properties.tags",
    f"properties.{HOSTILE}.x",
]


@st.composite
def queries(draw: st.DrawFn) -> dict[str, Any]:
    analysis = draw(st.sampled_from([a for a in ANALYSES if a != "extraction"]))
    body: dict[str, Any] = {"analysis": analysis}
    if analysis in ("count_unique", "select_unique"):
        targets = [
            t
            for t in COUNT_UNIQUE_TARGETS
            if not (analysis == "select_unique" and t == "timestamp")
        ]
        body["target_property"] = draw(st.sampled_from(targets))
    elif analysis != "count":
        if draw(st.booleans()):
            body["metric_name"] = draw(st.sampled_from(["latency", "size"]))
        else:
            body["target_property"] = draw(st.sampled_from(NUMERIC_TARGETS))
    if analysis == "percentile":
        body["percentile"] = draw(st.sampled_from([0, 5, 50, 95, 99.9, 100]))
    if draw(st.integers(0, 2)) == 0:
        body["event_name"] = draw(
            st.sampled_from(["view", "click", "buy", "'); DROP TABLE events; --"])
        )
    if draw(st.booleans()):
        body["timeframe"] = draw(timeframes())
    body["filters"] = draw(st.lists(filters(), max_size=2))
    return body


customers = st.sampled_from([None, None, "c1"])
