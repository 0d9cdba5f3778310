"""Validation of ``/v1/query`` and ``/v1/delete`` bodies into typed requests.

Every refusal names the field (``filters[2].value``, with the list position
in ``index``) so that clients can point at their mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from eventbunker.query import filters as filters_mod
from eventbunker.query import properties, timeframes
from eventbunker.query.filters import Filter, InvalidFilter
from eventbunker.query.properties import Kind, Property, UnknownProperty
from eventbunker.query.timeframes import InvalidTimeframe, Timeframe

ANALYSES = (
    "count",
    "count_unique",
    "sum",
    "avg",
    "min",
    "max",
    "median",
    "percentile",
    "select_unique",
    "extraction",
)
NUMERIC_ANALYSES = frozenset({"sum", "avg", "min", "max", "median", "percentile"})
TARGETED_ANALYSES = NUMERIC_ANALYSES | {"count_unique", "select_unique"}
LIMITED_ANALYSES = frozenset({"extraction", "select_unique"})

MAX_LIMIT = 10_000
DEFAULT_LIMITS = {"extraction": 100, "select_unique": MAX_LIMIT}
MAX_GROUP_BY = 10
MAX_FILTERS = 100
MAX_NAME_LENGTH = 256

SELECTION_FIELDS = ("event_name", "metric_name", "timeframe", "timezone", "filters")
QUERY_FIELDS = frozenset(
    {
        *SELECTION_FIELDS,
        "analysis",
        "target_property",
        "percentile",
        "interval",
        "group_by",
        "limit",
        "approximate",
    }
)
DELETE_FIELDS = frozenset({*SELECTION_FIELDS, "all"})


class InvalidRequest(ValueError):
    def __init__(self, field: str, message: str, index: int | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.index = index

    def details(self) -> list[dict[str, Any]]:
        return [{"index": self.index, "field": self.field, "message": self.message}]


@dataclass(frozen=True, slots=True)
class Selection:
    """Which events: shared by queries and deletes."""

    event_name: str | None
    metric_name: str | None
    timeframe: Timeframe | None
    timezone: ZoneInfo
    filters: tuple[Filter, ...]

    @property
    def is_empty(self) -> bool:
        return (
            self.event_name is None
            and self.metric_name is None
            and self.timeframe is None
            and not self.filters
        )


@dataclass(frozen=True, slots=True)
class Query:
    analysis: str
    selection: Selection
    target: Property | None
    percentile: float | None
    interval: str | None  # a unit of timeframes.UNITS
    group_by: tuple[Property, ...]
    limit: int | None
    # count_unique, median and percentile may be answered from sketches.
    approximate: bool = False


@dataclass(frozen=True, slots=True)
class Delete:
    selection: Selection
    all: bool


def parse_query(body: object, now: datetime) -> Query:
    fields = _object(body, QUERY_FIELDS)
    analysis = fields.get("analysis")
    if analysis is None:
        raise InvalidRequest("analysis", f"required: one of {', '.join(ANALYSES)}")
    if analysis not in ANALYSES:
        raise InvalidRequest(
            "analysis", f"unknown analysis {analysis!r}: use one of {', '.join(ANALYSES)}"
        )
    assert isinstance(analysis, str)
    selection = _selection(fields, now)
    target = _target(analysis, fields, selection)
    percentile = _percentile(analysis, fields)
    interval = _interval(analysis, fields, selection)
    group_by = _group_by(analysis, fields)
    limit = _limit(analysis, fields)
    approximate = fields.get("approximate", False)
    if not isinstance(approximate, bool):
        raise InvalidRequest("approximate", "must be true or false")
    return Query(analysis, selection, target, percentile, interval, group_by, limit, approximate)


def parse_delete(body: object, now: datetime) -> Delete:
    fields = _object(body, DELETE_FIELDS)
    everything = fields.get("all", False)
    if not isinstance(everything, bool):
        raise InvalidRequest("all", "must be true or false")
    selection = _selection(fields, now)
    if selection.is_empty and not everything:
        raise InvalidRequest(
            "all",
            "this would delete every event of the project: select events with event_name,"
            ' metric_name, timeframe or filters, or send "all": true',
        )
    return Delete(selection, everything)


def _object(body: object, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("body", "must be a JSON object")
    for name in body:
        if name not in allowed:
            raise InvalidRequest(name, f"unknown field; known fields: {', '.join(sorted(allowed))}")
    return body


def _name(fields: dict[str, Any], field: str) -> str | None:
    value = fields.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
        raise InvalidRequest(field, f"must be a non-empty string of at most {MAX_NAME_LENGTH}")
    return value


def _selection(fields: dict[str, Any], now: datetime) -> Selection:
    event_name = _name(fields, "event_name")
    metric_name = _name(fields, "metric_name")
    try:
        tz = timeframes.zone("UTC" if fields.get("timezone") is None else fields["timezone"])
    except InvalidTimeframe as exc:
        raise InvalidRequest("timezone", str(exc)) from None
    timeframe = None
    if fields.get("timeframe") is not None:
        try:
            timeframe = timeframes.resolve(fields["timeframe"], tz, now)
        except InvalidTimeframe as exc:
            raise InvalidRequest("timeframe", str(exc)) from None
    return Selection(event_name, metric_name, timeframe, tz, _filters(fields.get("filters")))


def _filters(value: object) -> tuple[Filter, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest("filters", "must be a list of {property, operator, value}")
    if len(value) > MAX_FILTERS:
        raise InvalidRequest("filters", f"at most {MAX_FILTERS} filters")
    parsed = []
    for index, item in enumerate(value):
        where = f"filters[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequest(where, "must be an object {property, operator, value}", index)
        extra = set(item) - {"property", "operator", "value"}
        if extra:
            raise InvalidRequest(f"{where}.{sorted(extra)[0]}", "unknown field", index)
        for required in ("property", "operator", "value"):
            if required not in item:
                raise InvalidRequest(f"{where}.{required}", "required", index)
        try:
            prop = properties.resolve(item["property"])
        except UnknownProperty as exc:
            raise InvalidRequest(f"{where}.property", str(exc), index) from None
        try:
            parsed.append(filters_mod.validate(prop, item["operator"], item["value"]))
        except InvalidFilter as exc:
            raise InvalidRequest(f"{where}.{exc.field}", exc.message, index) from None
    return tuple(parsed)


def _target(analysis: str, fields: dict[str, Any], selection: Selection) -> Property | None:
    name = fields.get("target_property")
    if analysis not in TARGETED_ANALYSES:
        if name is not None:
            raise InvalidRequest("target_property", f"{analysis} takes no target_property")
        return None
    if name is None:
        if analysis in NUMERIC_ANALYSES and selection.metric_name is not None:
            return properties.resolve("metric_value")
        hint = " (or a metric_name, to use metric_value)" if analysis in NUMERIC_ANALYSES else ""
        raise InvalidRequest("target_property", f"{analysis} needs a target_property{hint}")
    try:
        target = properties.resolve(name)
    except UnknownProperty as exc:
        raise InvalidRequest("target_property", str(exc)) from None
    if analysis in NUMERIC_ANALYSES and target.kind not in (Kind.NUMBER, Kind.JSON):
        raise InvalidRequest(
            "target_property",
            f"{analysis} needs a numeric property; {name!r} is {target.kind.value}",
        )
    return target


def _percentile(analysis: str, fields: dict[str, Any]) -> float | None:
    value = fields.get("percentile")
    if analysis != "percentile":
        if value is not None:
            raise InvalidRequest("percentile", f"{analysis} takes no percentile")
        return None
    if value is None:
        raise InvalidRequest("percentile", "required: a number from 0 to 100")
    if not filters_mod.is_number(value) or not 0 <= value <= 100:
        raise InvalidRequest("percentile", "must be a number from 0 to 100")
    return float(value)


def _interval(analysis: str, fields: dict[str, Any], selection: Selection) -> str | None:
    value = fields.get("interval")
    if value is None:
        return None
    if value not in timeframes.INTERVALS:
        raise InvalidRequest(
            "interval", f"unknown interval {value!r}: use one of {', '.join(timeframes.INTERVALS)}"
        )
    if analysis == "extraction":
        raise InvalidRequest("interval", "extraction takes no interval")
    if selection.timeframe is None:
        raise InvalidRequest("timeframe", "an interval needs a timeframe")
    return timeframes.INTERVALS[value]


def _group_by(analysis: str, fields: dict[str, Any]) -> tuple[Property, ...]:
    value = fields.get("group_by")
    if value is None:
        return ()
    if analysis == "extraction":
        raise InvalidRequest("group_by", "extraction takes no group_by")
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise InvalidRequest("group_by", "must be a property name or a non-empty list of them")
    if len(names) > MAX_GROUP_BY:
        raise InvalidRequest("group_by", f"at most {MAX_GROUP_BY} properties")
    resolved: list[Property] = []
    for index, name in enumerate(names):
        try:
            prop = properties.resolve(name)
        except UnknownProperty as exc:
            raise InvalidRequest(f"group_by[{index}]", str(exc), index) from None
        if any(p.name == prop.name for p in resolved):
            raise InvalidRequest(f"group_by[{index}]", f"{name!r} is already grouped on", index)
        resolved.append(prop)
    return tuple(resolved)


def _limit(analysis: str, fields: dict[str, Any]) -> int | None:
    value = fields.get("limit")
    if analysis not in LIMITED_ANALYSES:
        if value is not None:
            raise InvalidRequest("limit", "only extraction and select_unique take a limit")
        return None
    if value is None:
        return DEFAULT_LIMITS[analysis]
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LIMIT:
        raise InvalidRequest("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return value
