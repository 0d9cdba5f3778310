"""The query language computed in plain Python, to check the server against.

Events are dicts with the stored column names and ``properties``. Nothing
here imports the server's query code: it is a second, independent reading
of the contract.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from eventbunker.storage import rollups

MISSING = object()

TIME_COLUMNS = {"timestamp", "received_at", "sent_at"}
LOADED_COLUMNS = (
    "timestamp",
    "received_at",
    "project_id",
    "event_name",
    "customer_identifier",
    "metric_name",
    "metric_value",
    "geo_country",
    "ua_device_type",
    "is_bot",
    "properties",
)


def load(db: psycopg.Connection[Any], project_id: int, events: Sequence[dict[str, Any]]) -> None:
    """COPY ``events`` into ``project_id`` (and bring its rollups up to date, as
    every writer does)."""
    columns = ", ".join(f'"{c}"' for c in LOADED_COLUMNS)
    with db.cursor() as cur, cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
        for event in events:
            copy.write_row(
                [
                    event["timestamp"],
                    event["timestamp"],
                    project_id,
                    event["event_name"],
                    event.get("customer_identifier"),
                    event.get("metric_name"),
                    event.get("metric_value"),
                    event.get("geo_country"),
                    event.get("ua_device_type"),
                    event.get("is_bot", False),
                    Jsonb(event.get("properties", {})),
                ]
            )
    db.execute(rollups.rebuild_statement(project_id))


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def lookup(event: dict[str, Any], prop: str) -> Any:
    """The property's value, or MISSING (JSON null is a present value here)."""
    if prop.startswith("properties."):
        value: Any = event.get("properties", {})
        for element in prop.split(".")[1:]:
            if isinstance(value, dict) and element in value:
                value = value[element]
            elif isinstance(value, list) and element.isdigit() and int(element) < len(value):
                value = value[int(element)]
            else:
                return MISSING
        return value
    value = event.get(prop)
    if prop == "is_bot" and value is None:
        return False
    return MISSING if value is None else value


def json_eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) or is_number(b):
        return is_number(a) and is_number(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_eq(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_eq(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def canon(value: Any) -> Any:
    """A hashable form where two values are equal exactly when JSON-equal."""
    if value is None or value is MISSING:
        return None
    if isinstance(value, bool):
        return ("b", value)
    if is_number(value):
        return ("n", float(value))
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, datetime):
        return ("t", value.timestamp())
    if isinstance(value, list):
        return ("l", tuple(canon(v) for v in value))
    return ("o", tuple(sorted((k, canon(v)) for k, v in value.items())))


def _as_time(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _compare(stored: Any, op: str, value: Any) -> bool:
    if op == "lt":
        return bool(stored < value)
    if op == "lte":
        return bool(stored <= value)
    if op == "gt":
        return bool(stored > value)
    return bool(stored >= value)


def matches(event: dict[str, Any], flt: dict[str, Any]) -> bool:
    prop, op, value = flt["property"], flt["operator"], flt["value"]
    stored = lookup(event, prop)
    is_json = prop.startswith("properties.")
    if prop in TIME_COLUMNS:
        value = [_as_time(v) for v in value] if op == "in" else _as_time(value)
    if op == "exists":
        return (stored is not MISSING) == value
    if op == "ne":
        return not matches(event, {**flt, "operator": "eq"})
    if stored is MISSING:
        return False
    if op == "eq":
        return json_eq(stored, value) if is_json else bool(stored == value)
    if op == "in":
        return any(json_eq(stored, v) if is_json else stored == v for v in value)
    if op in ("lt", "lte", "gt", "gte"):
        if is_number(value):
            return is_number(stored) and _compare(float(stored), op, float(value))
        if isinstance(value, str):
            return isinstance(stored, str) and _compare(stored, op, value)
        return _compare(stored, op, value)  # timestamps
    if op == "starts_with":
        return isinstance(stored, str) and stored.startswith(value)
    assert op == "contains"
    if isinstance(stored, str):
        return isinstance(value, str) and value in stored
    return isinstance(stored, list) and any(json_eq(item, value) for item in stored)


def select(events: Iterable[dict[str, Any]], body: dict[str, Any]) -> list[dict[str, Any]]:
    """The events a query or delete body selects (timeframe: absolute only)."""
    chosen = []
    timeframe = body.get("timeframe")
    for event in events:
        if "event_name" in body and event["event_name"] != body["event_name"]:
            continue
        if "metric_name" in body and event.get("metric_name") != body["metric_name"]:
            continue
        if timeframe is not None:
            start, end = (datetime.fromisoformat(timeframe[k]) for k in ("start", "end"))
            if not start <= event["timestamp"] < end:
                continue
        if all(matches(event, f) for f in body.get("filters", [])):
            chosen.append(event)
    return chosen


def percentile_cont(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def analyse(events: Sequence[dict[str, Any]], body: dict[str, Any]) -> Any:
    """One analysis over already selected events (no interval, no group_by)."""
    analysis = body["analysis"]
    if analysis == "count":
        return len(events)
    target = body.get("target_property", "metric_value")
    values = [lookup(e, target) for e in events]
    present = [v for v in values if v is not MISSING and v is not None]
    if analysis == "count_unique":
        return len({canon(v) for v in present})
    if analysis == "select_unique":
        return {canon(v) for v in present}
    numbers = [float(v) for v in present if is_number(v)]
    if analysis == "sum":
        return math.fsum(numbers)
    if not numbers:
        return None
    if analysis == "avg":
        return math.fsum(numbers) / len(numbers)
    if analysis == "min":
        return min(numbers)
    if analysis == "max":
        return max(numbers)
    if analysis == "median":
        return percentile_cont(numbers, 0.5)
    assert analysis == "percentile"
    return percentile_cont(numbers, body["percentile"] / 100)


def grouped(events: Sequence[dict[str, Any]], body: dict[str, Any]) -> dict[tuple[Any, ...], Any]:
    """{canonical group values: result} for a body with group_by."""
    names = body["group_by"]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for event in events:
        key = tuple(canon(lookup(event, name)) for name in names)
        groups.setdefault(key, []).append(event)
    return {key: analyse(members, body) for key, members in groups.items()}


def same_result(analysis: str, got: Any, expected: Any) -> bool:
    """Whether the server's ``got`` is the reference ``expected``."""
    if analysis == "select_unique":
        return (
            isinstance(got, list)
            and len(got) == len(expected)
            and {canon(v) for v in got} == expected
        )
    if expected is None or got is None:
        return got is expected
    if isinstance(expected, float):
        return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9)
    return bool(got == expected)
