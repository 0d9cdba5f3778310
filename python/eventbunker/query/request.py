"""``/v1/query`` and ``/v1/delete`` bodies: their types, then their meaning.

The msgspec Structs say each field's type and limits; Litestar validates a
body against them (and documents them) before the handler runs. What a type
cannot say (``avg`` needs a ``target_property``, a property must exist, a
timeframe must end after it starts) is checked here while the body is turned
into a typed ``Query`` or ``Delete``. Every refusal names the field
(``filters[2].value``, with the list position in ``index``) so that clients
can point at their mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar, get_args
from zoneinfo import ZoneInfo

import msgspec
from msgspec import Meta

from eventbunker.query import filters as filters_mod
from eventbunker.query import properties, timeframes
from eventbunker.query.filters import Filter, InvalidFilter, Operator
from eventbunker.query.properties import Kind, Property, UnknownProperty
from eventbunker.query.timeframes import Interval, InvalidTimeframe, Timeframe

Analysis = Literal[
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
]
ANALYSES: tuple[Analysis, ...] = get_args(Analysis)
NUMERIC_ANALYSES = frozenset({"sum", "avg", "min", "max", "median", "percentile"})
TARGETED_ANALYSES = NUMERIC_ANALYSES | {"count_unique", "select_unique"}
LIMITED_ANALYSES = frozenset({"extraction", "select_unique"})

MAX_LIMIT = 10_000
DEFAULT_LIMITS = {"extraction": 100, "select_unique": MAX_LIMIT}
MAX_GROUP_BY = 10
MAX_FILTERS = 100
MAX_NAME_LENGTH = 256

Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_LENGTH)]
PropertyName = Annotated[
    str,
    Meta(
        description="a stored column (`geo_country`, `metric_value`, `timestamp`...) or a path"
        " into the event's own fields, `properties.a.b` (a number indexes an array)",
        examples=["geo_country", "metric_value", "properties.plan"],
    ),
]
TimeframeValue = Annotated[
    str | dict[str, str],
    Meta(
        description="relative, in the query's timezone: `this_N_<unit>`, `previous_N_<unit>`,"
        " `today`, `yesterday` (units: minute, hour, day, week, month, year); or absolute:"
        " `{start, end}`, RFC 3339 instants with an offset, start included, end excluded",
        examples=["this_7_days", {"start": "2024-05-01T00:00:00Z", "end": "2024-06-01T00:00:00Z"}],
    ),
]


class FilterBody(msgspec.Struct, forbid_unknown_fields=True):
    """One condition; ``value`` of the property's type (``in``: a list, ``exists``: a bool)."""

    property: PropertyName
    operator: Operator
    value: Any


class QueryBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/query``."""

    analysis: Analysis
    event_name: Name | None = None
    metric_name: Name | None = None
    timeframe: TimeframeValue | None = None
    timezone: Annotated[str, Meta(description="IANA time zone", examples=["Europe/Paris"])] = "UTC"
    filters: Annotated[list[FilterBody], Meta(max_length=MAX_FILTERS)] | None = None
    target_property: PropertyName | None = None
    percentile: Annotated[float, Meta(ge=0, le=100)] | None = None
    interval: Interval | None = None
    group_by: (
        PropertyName | Annotated[list[PropertyName], Meta(min_length=1, max_length=MAX_GROUP_BY)]
    ) | None = None
    limit: Annotated[int, Meta(ge=1, le=MAX_LIMIT)] | None = None
    approximate: Annotated[
        bool,
        Meta(
            description="count_unique of distinct_id or customer_identifier, median and"
            " percentile of metric_value may be answered from the rollups' sketches"
        ),
    ] = False


class DeleteBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/delete``: an empty selection is refused unless ``all`` is true."""

    event_name: Name | None = None
    metric_name: Name | None = None
    timeframe: TimeframeValue | None = None
    timezone: str = "UTC"
    filters: Annotated[list[FilterBody], Meta(max_length=MAX_FILTERS)] | None = None
    all: bool = False


class QueryAnswer(msgspec.Struct):
    """A number (null when there are no values); with ``interval`` a list of
    ``{timeframe: {start, end}, value}``; with ``group_by`` a list of the group
    values and ``result``; ``select_unique`` the values; ``extraction`` the events."""

    result: float | list[Any] | None


class DeleteAnswer(msgspec.Struct):
    deleted: int


_Body = TypeVar("_Body", QueryBody, DeleteBody)


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


def parse_query(body: QueryBody | dict[str, Any], now: datetime) -> Query:
    """The query a body asks for (a dict is first checked against ``QueryBody``)."""
    fields = body if isinstance(body, QueryBody) else _typed(body, QueryBody)
    analysis = fields.analysis
    selection = _selection(fields, now)
    target = _target(analysis, fields.target_property, selection)
    percentile = _percentile(analysis, fields.percentile)
    interval = _interval(analysis, fields.interval, selection)
    group_by = _group_by(analysis, fields.group_by)
    limit = _limit(analysis, fields.limit)
    return Query(
        analysis, selection, target, percentile, interval, group_by, limit, fields.approximate
    )


def parse_delete(body: DeleteBody | dict[str, Any], now: datetime) -> Delete:
    fields = body if isinstance(body, DeleteBody) else _typed(body, DeleteBody)
    selection = _selection(fields, now)
    if selection.is_empty and not fields.all:
        raise InvalidRequest(
            "all",
            "this would delete every event of the project: select events with event_name,"
            ' metric_name, timeframe or filters, or send "all": true',
        )
    return Delete(selection, fields.all)


def _typed(body: dict[str, Any], struct: type[_Body]) -> _Body:
    """A body that did not come through Litestar (benches, tests), checked as Litestar does."""
    try:
        return msgspec.convert(body, struct, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidRequest("body", str(exc)) from None


def _selection(fields: QueryBody | DeleteBody, now: datetime) -> Selection:
    try:
        tz = timeframes.zone(fields.timezone)
    except InvalidTimeframe as exc:
        raise InvalidRequest("timezone", str(exc)) from None
    timeframe = None
    if fields.timeframe is not None:
        try:
            timeframe = timeframes.resolve(fields.timeframe, tz, now)
        except InvalidTimeframe as exc:
            raise InvalidRequest("timeframe", str(exc)) from None
    return Selection(
        fields.event_name, fields.metric_name, timeframe, tz, _filters(fields.filters or [])
    )


def _filters(items: list[FilterBody]) -> tuple[Filter, ...]:
    parsed = []
    for index, item in enumerate(items):
        where = f"filters[{index}]"
        try:
            prop = properties.resolve(item.property)
        except UnknownProperty as exc:
            raise InvalidRequest(f"{where}.property", str(exc), index) from None
        try:
            parsed.append(filters_mod.validate(prop, item.operator, item.value))
        except InvalidFilter as exc:
            raise InvalidRequest(f"{where}.{exc.field}", exc.message, index) from None
    return tuple(parsed)


def _target(analysis: str, name: str | None, selection: Selection) -> Property | None:
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


def _percentile(analysis: str, value: float | None) -> float | None:
    if analysis != "percentile":
        if value is not None:
            raise InvalidRequest("percentile", f"{analysis} takes no percentile")
        return None
    if value is None:
        raise InvalidRequest("percentile", "required: a number from 0 to 100")
    return float(value)


def _interval(analysis: str, value: Interval | None, selection: Selection) -> str | None:
    if value is None:
        return None
    if analysis == "extraction":
        raise InvalidRequest("interval", "extraction takes no interval")
    if selection.timeframe is None:
        raise InvalidRequest("timeframe", "an interval needs a timeframe")
    return timeframes.INTERVALS[value]


def _group_by(analysis: str, value: str | list[str] | None) -> tuple[Property, ...]:
    if value is None:
        return ()
    if analysis == "extraction":
        raise InvalidRequest("group_by", "extraction takes no group_by")
    names = [value] if isinstance(value, str) else value
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


def _limit(analysis: str, value: int | None) -> int | None:
    if analysis not in LIMITED_ANALYSES:
        if value is not None:
            raise InvalidRequest("limit", "only extraction and select_unique take a limit")
        return None
    if value is None:
        return DEFAULT_LIMITS[analysis]
    return value
