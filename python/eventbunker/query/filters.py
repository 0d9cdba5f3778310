"""Filters: ``{"property", "operator", "value"}``, validated against the property's kind.

Comparisons are typed. A column compares with values of its own kind; a
path into ``properties`` compares with whatever JSON the client sends:

- ``eq`` / ``in``: JSON equality (``1`` equals ``1.0``, ``"1"`` does not, nor
  does ``true``), objects and arrays compared whole;
- ``ne``: the complement of ``eq``; it also matches events without the property;
- ``lt|lte|gt|gte`` with a number: only JSON numbers match, compared as
  numbers; with a string: only JSON strings match, compared by code point;
- ``exists``: the property is present (even as JSON ``null``), or absent with ``false``;
- ``contains``: a string holding the given substring, or an array holding the
  given element;
- ``starts_with``: a string starting with the given prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from psycopg import sql
from psycopg.types.json import Jsonb

from eventbunker.query.properties import C_COLLATION, Kind, Params, Property
from eventbunker.query.timeframes import InvalidTimeframe, parse_instant

Operator = Literal["eq", "ne", "lt", "lte", "gt", "gte", "in", "exists", "contains", "starts_with"]
OPERATORS: tuple[Operator, ...] = get_args(Operator)
ORDERING = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
MAX_IN_VALUES = 10_000

# The SQL type of a column kind's values, and of arrays of them.
_CASTS = {
    Kind.TEXT: "text",
    Kind.NUMBER: "double precision",
    Kind.BOOL: "boolean",
    Kind.TIME: "timestamptz",
}


class InvalidFilter(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Filter:
    property: Property
    operator: str
    value: Any  # already converted: datetime for TIME columns, etc.


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate(prop: Property, operator: object, value: object) -> Filter:
    """The filter, with ``value`` checked (and converted) for ``prop`` and ``operator``."""
    if operator not in OPERATORS:
        raise InvalidFilter("operator", f"unknown operator {operator!r}: use one of {OPERATORS}")
    assert isinstance(operator, str)
    if operator == "exists":
        if not isinstance(value, bool):
            raise InvalidFilter("value", "exists takes true or false")
        return Filter(prop, operator, value)
    if operator == "in":
        if not isinstance(value, list) or not value:
            raise InvalidFilter("value", "in takes a non-empty list of values")
        if len(value) > MAX_IN_VALUES:
            raise InvalidFilter("value", f"in takes at most {MAX_IN_VALUES} values")
        return Filter(prop, operator, [_scalar(prop, operator, v) for v in value])
    if operator in ("contains", "starts_with"):
        if prop.kind not in (Kind.TEXT, Kind.JSON):
            raise InvalidFilter(
                "operator", f"{operator} needs a text property; {prop.name!r} is {prop.kind.value}"
            )
        if operator == "starts_with" or prop.kind is Kind.TEXT:
            if not isinstance(value, str):
                raise InvalidFilter("value", f"{operator} on {prop.name!r} takes a string")
        elif value is None:
            raise InvalidFilter("value", "contains takes a string or an array element")
        return Filter(prop, operator, value)
    if operator in ORDERING:
        if prop.kind is Kind.BOOL:
            raise InvalidFilter("operator", f"{operator} does not apply to a boolean")
        if prop.kind is Kind.JSON and not (is_number(value) or isinstance(value, str)):
            raise InvalidFilter("value", f"{operator} takes a number or a string")
    return Filter(prop, operator, _scalar(prop, operator, value))


def _scalar(prop: Property, operator: str, value: object) -> Any:
    kind = prop.kind
    if kind is Kind.JSON:
        return value
    if value is None:
        raise InvalidFilter(
            "value", f"{prop.name!r} is never compared with null: use exists false instead"
        )
    if kind is Kind.TEXT and isinstance(value, str):
        return value
    if kind is Kind.NUMBER and is_number(value):
        return float(value)  # type: ignore[arg-type]
    if kind is Kind.BOOL and isinstance(value, bool):
        return value
    if kind is Kind.TIME:
        try:
            return parse_instant(value)
        except InvalidTimeframe as exc:
            raise InvalidFilter("value", f"{prop.name!r} compares with timestamps: {exc}") from None
    wanted = {Kind.TEXT: "a string", Kind.NUMBER: "a number", Kind.BOOL: "true or false"}[kind]
    raise InvalidFilter("value", f"{operator} on {prop.name!r} takes {wanted}")


def to_sql(f: Filter, params: Params) -> sql.Composable:
    """The filter as an SQL condition (true, false or NULL; NULL excludes)."""
    prop, op, value = f.property, f.operator, f.value
    if op == "exists":
        test = "IS NOT NULL" if value else "IS NULL"
        return sql.SQL("({} {})").format(prop.raw(params), sql.SQL(test))
    if op == "ne":
        return sql.SQL("({} IS NOT TRUE)").format(to_sql(Filter(prop, "eq", value), params))
    if prop.kind is Kind.JSON:
        return _json_condition(prop, op, value, params)
    cast = _CASTS[prop.kind]
    column = prop.raw(params)
    collate = C_COLLATION if prop.kind is Kind.TEXT else sql.SQL("")
    if op == "eq":
        return sql.SQL("({} = {})").format(column, params.add(value, cast))
    if op == "in":
        return sql.SQL("({} = ANY({}))").format(column, params.add(value, cast + "[]"))
    if op in ORDERING:
        return sql.SQL("({}{} {} {})").format(
            column, collate, sql.SQL(ORDERING[op]), params.add(value, cast)
        )
    if op == "contains":
        return sql.SQL("(strpos({}, {}) > 0)").format(column, params.add(value, "text"))
    assert op == "starts_with"
    return sql.SQL("starts_with({}, {})").format(column, params.add(value, "text"))


def _json_condition(prop: Property, op: str, value: Any, params: Params) -> sql.Composable:
    if op == "eq":
        return sql.SQL("({} = {})").format(prop.raw(params), params.add(Jsonb(value), "jsonb"))
    if op == "in":
        values = [Jsonb(v) for v in value]
        return sql.SQL("({} = ANY({}))").format(prop.raw(params), params.add(values, "jsonb[]"))
    if op in ORDERING:
        comparison = sql.SQL(ORDERING[op])
        if isinstance(value, str):
            return sql.SQL("({}{} {} {})").format(
                prop.text(params), C_COLLATION, comparison, params.add(value, "text")
            )
        return sql.SQL("({} {} {})").format(
            prop.number(params), comparison, params.add(float(value), "double precision")
        )
    if op == "starts_with":
        return sql.SQL("(starts_with({}, {}) IS TRUE)").format(
            prop.text(params), params.add(value, "text")
        )
    assert op == "contains"
    raw = prop.raw(params)
    in_array = sql.SQL("(jsonb_typeof({raw}) = 'array' AND {raw} @> {element})").format(
        raw=raw, element=params.add(Jsonb([value]), "jsonb")
    )
    if not isinstance(value, str):
        return in_array
    substring = sql.SQL("(strpos({}, {}) > 0)").format(prop.text(params), params.add(value, "text"))
    return sql.SQL("({} IS TRUE OR {} IS TRUE)").format(substring, in_array)
