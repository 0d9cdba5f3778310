"""Property names of queries: stored columns (whitelisted) or ``properties.a.b`` paths.

A name resolves to a :class:`Property` that knows its kind and how to become
an SQL expression. Column names come from the whitelist below and reach SQL
as identifiers; the elements of a JSON path reach it only as a bound
``text[]`` parameter, so no name a client sends is ever SQL text.

``properties.a.b`` follows the keys ``a`` then ``b`` of the event's own
fields (a number indexes an array: ``properties.items.0``); a key that
itself contains a dot cannot be addressed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from psycopg import sql


class Kind(enum.Enum):
    TEXT = "text"
    NUMBER = "number"
    BOOL = "boolean"
    TIME = "timestamp"
    JSON = "json"


# Every stored column a query may name, with its kind (see 0001_core.sql).
COLUMNS: dict[str, Kind] = {
    "timestamp": Kind.TIME,
    "received_at": Kind.TIME,
    "sent_at": Kind.TIME,
    "event_name": Kind.TEXT,
    "event_id": Kind.TEXT,
    "customer_identifier": Kind.TEXT,
    "metric_name": Kind.TEXT,
    "metric_value": Kind.NUMBER,
    "ip": Kind.TEXT,
    "user_agent": Kind.TEXT,
    "url": Kind.TEXT,
    "referrer": Kind.TEXT,
    "geo_country": Kind.TEXT,
    "geo_region": Kind.TEXT,
    "geo_city": Kind.TEXT,
    "geo_latitude": Kind.NUMBER,
    "geo_longitude": Kind.NUMBER,
    "geo_timezone": Kind.TEXT,
    "ua_browser": Kind.TEXT,
    "ua_browser_version": Kind.TEXT,
    "ua_os": Kind.TEXT,
    "ua_os_version": Kind.TEXT,
    "ua_device_type": Kind.TEXT,
    "ua_device_brand": Kind.TEXT,
    "ua_device_model": Kind.TEXT,
    "is_bot": Kind.BOOL,
    "utm_source": Kind.TEXT,
    "utm_medium": Kind.TEXT,
    "utm_campaign": Kind.TEXT,
    "utm_term": Kind.TEXT,
    "utm_content": Kind.TEXT,
    "referrer_host": Kind.TEXT,
    "url_host": Kind.TEXT,
    "url_path": Kind.TEXT,
    "distinct_id": Kind.TEXT,
}

PROPERTIES_PREFIX = "properties."
MAX_PATH_DEPTH = 16

# Byte order, whatever the database's default collation: the same order as
# Python's string comparison.
C_COLLATION = sql.SQL(' COLLATE "C"')


class Params:
    """Named query parameters: every client value reaches SQL through here."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any, cast: str | None = None) -> sql.Composable:
        """A placeholder for ``value``, cast to ``cast`` (one of our type names)."""
        name = f"p{len(self.values)}"
        self.values[name] = value
        placeholder = sql.Placeholder(name)
        if cast is None:
            return placeholder
        return sql.SQL("{}::{}").format(placeholder, sql.SQL(cast))


@dataclass(frozen=True, slots=True)
class Property:
    """A resolved property name: a whitelisted column or a JSON path in ``properties``."""

    name: str
    kind: Kind
    column: str | None = None
    path: tuple[str, ...] = ()

    def raw(self, params: Params) -> sql.Composable:
        """The stored value: the column, or the ``jsonb`` at the path (SQL NULL if absent)."""
        if self.column is not None:
            return sql.Identifier(self.column)
        return sql.SQL("({} #> {})").format(
            sql.Identifier("properties"), params.add(list(self.path), "text[]")
        )

    def value(self, params: Params) -> sql.Composable:
        """The value for grouping and distinct counts: a JSON ``null`` counts as absent."""
        raw = self.raw(params)
        if self.kind is Kind.JSON:
            return sql.SQL("NULLIF({}, 'null'::jsonb)").format(raw)
        return raw

    def number(self, params: Params) -> sql.Composable:
        """The value as ``double precision``; a JSON value that is not a number is NULL."""
        if self.kind is Kind.NUMBER:
            return self.raw(params)
        assert self.kind is Kind.JSON
        # CASE (unlike AND) guarantees the cast only sees JSON numbers.
        raw = self.raw(params)
        return sql.SQL(
            "(CASE WHEN jsonb_typeof({raw}) = 'number' THEN ({raw})::double precision END)"
        ).format(raw=raw)

    def text(self, params: Params) -> sql.Composable:
        """The value as ``text``; a JSON value that is not a string is NULL."""
        if self.kind is Kind.TEXT:
            return self.raw(params)
        assert self.kind is Kind.JSON
        raw = self.raw(params)
        return sql.SQL(
            "(CASE WHEN jsonb_typeof({raw}) = 'string' THEN {raw} #>> '{{}}' END)"
        ).format(raw=raw)


class UnknownProperty(ValueError):
    pass


def resolve(name: object) -> Property:
    """The property ``name`` addresses; raise :class:`UnknownProperty` saying why not."""
    if not isinstance(name, str):
        raise UnknownProperty("must be a string")
    kind = COLUMNS.get(name)
    if kind is not None:
        return Property(name, kind, column=name)
    if name.startswith(PROPERTIES_PREFIX):
        path = tuple(name[len(PROPERTIES_PREFIX) :].split("."))
        if any(not element for element in path):
            raise UnknownProperty(f"{name!r}: a path element is empty")
        if len(path) > MAX_PATH_DEPTH:
            raise UnknownProperty(f"{name!r}: paths are at most {MAX_PATH_DEPTH} elements deep")
        return Property(name, Kind.JSON, path=path)
    raise UnknownProperty(
        f"unknown property {name!r}: use a stored column ({', '.join(sorted(COLUMNS))})"
        f" or a path into the event's own fields such as 'properties.{name}'"
    )
