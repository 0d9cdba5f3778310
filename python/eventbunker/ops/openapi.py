"""OpenAPI description of the routes Litestar cannot describe itself.

``POST /v1/events`` is a raw ASGI handler (for speed), so Litestar knows
nothing of its body or answers; ``POST /v1/query`` and ``POST /v1/delete``
read and validate their raw body themselves (``query/request.py``), so
Litestar only sees "a request in, bytes out". This adds (or replaces) their
operations in the generated schema, with the request bodies, answers, errors
and security schemes of the contract. The enums and limits come from the
modules that enforce them, so the schema cannot drift from the validation.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Litestar
from litestar.enums import ParamType
from litestar.openapi.spec import (
    Components,
    Example,
    OpenAPIHeader,
    OpenAPIResponse,
    Operation,
    Parameter,
    PathItem,
    Reference,
    RequestBody,
    Schema,
    SecurityRequirement,
    SecurityScheme,
)
from litestar.openapi.spec import (
    OpenAPIMediaType as MediaType,
)
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType

from eventbunker.errors import ErrorCode
from eventbunker.query.filters import MAX_IN_VALUES, OPERATORS
from eventbunker.query.properties import COLUMNS, MAX_PATH_DEPTH, PROPERTIES_PREFIX, Kind
from eventbunker.query.request import (
    ANALYSES,
    LIMITED_ANALYSES,
    MAX_FILTERS,
    MAX_GROUP_BY,
    MAX_LIMIT,
    MAX_NAME_LENGTH,
    NUMERIC_ANALYSES,
    TARGETED_ANALYSES,
)
from eventbunker.query.timeframes import INTERVALS, MAX_UNITS, UNITS

_STRING = Schema(type=OpenAPIType.STRING)
_NUMBER = Schema(type=OpenAPIType.NUMBER)

EVENT_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["event_name"],
    properties={
        "event_name": Schema(type=OpenAPIType.STRING, min_length=1, max_length=256),
        "timestamp": Schema(
            one_of=[Schema(type=OpenAPIType.STRING, format="date-time"), _NUMBER],  # type: ignore[arg-type]
            description="RFC 3339 with offset, or epoch seconds or milliseconds",
        ),
        "sent_at": Schema(
            one_of=[Schema(type=OpenAPIType.STRING, format="date-time"), _NUMBER],  # type: ignore[arg-type]
            description="client send time, to correct the client's clock skew",
        ),
        "metric_name": _STRING,
        "metric_value": _NUMBER,
        "event_id": Schema(type=OpenAPIType.STRING, max_length=256, description="idempotency key"),
        "ip": _STRING,
        "user_agent": _STRING,
        "url": _STRING,
        "referrer": _STRING,
        "utm_source": _STRING,
        "utm_medium": _STRING,
        "utm_campaign": _STRING,
        "utm_term": _STRING,
        "utm_content": _STRING,
    },
    additional_properties=True,
    description="Fields not listed here are stored as-is in `properties`.",
)

ERROR_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    properties={
        "error": Schema(
            type=OpenAPIType.OBJECT,
            properties={
                "code": Schema(type=OpenAPIType.STRING, enum=[code.value for code in ErrorCode]),
                "message": _STRING,
                "details": Schema(
                    type=OpenAPIType.ARRAY,
                    items=Schema(
                        type=OpenAPIType.OBJECT,
                        properties={
                            "index": Schema(type=[OpenAPIType.INTEGER, OpenAPIType.NULL]),
                            "field": Schema(type=[OpenAPIType.STRING, OpenAPIType.NULL]),
                            "message": _STRING,
                        },
                    ),
                ),
            },
        )
    },
)


_TIMESTAMP = Schema(
    type=OpenAPIType.STRING,
    format=OpenAPIFormat.DATE_TIME,
    description="RFC 3339 with an offset",
)
_RETRY_AFTER: dict[str, OpenAPIHeader | Reference] = {
    "Retry-After": OpenAPIHeader(
        schema=Schema(type=OpenAPIType.INTEGER, minimum=0),
        description="seconds to wait before retrying",
    )
}


def _json(schema: Schema | Reference) -> dict[str, MediaType]:
    return {"application/json": MediaType(schema=schema)}


def _ref(name: str) -> Reference:
    return Reference(ref=f"#/components/schemas/{name}")


def _register(app: Litestar, schemas: dict[str, Schema]) -> None:
    """Add named schemas (and the error shape) to ``components.schemas``."""
    openapi = app.openapi_schema
    if openapi.components is None:
        openapi.components = Components()
    components = openapi.components
    components.schemas = {**(components.schemas or {}), "Error": ERROR_SCHEMA, **schemas}


def _error(description: str) -> OpenAPIResponse:
    return OpenAPIResponse(description=description, content=_json(_ref("Error")))


def _unavailable(description: str) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=description, headers=_RETRY_AFTER, content=_json(_ref("Error"))
    )


def _key_security(app: Litestar, kind: str) -> list[SecurityRequirement]:
    """Security schemes for a project key of ``kind``, in ``X-Api-Key`` or as a bearer token."""
    openapi = app.openapi_schema
    if openapi.components is None:
        openapi.components = Components()
    header, bearer = f"{kind}Key", f"{kind}KeyBearer"
    openapi.components.security_schemes = {
        **(openapi.components.security_schemes or {}),
        header: SecurityScheme(
            type="apiKey",
            name="X-Api-Key",
            security_scheme_in="header",
            description=f"a project {kind} key",
        ),
        bearer: SecurityScheme(
            type="http",
            scheme="bearer",
            description=f"a project {kind} key, as `Authorization: Bearer KEY`",
        ),
    }
    return [{header: []}, {bearer: []}]


def _set_operation(app: Litestar, path: str, operation: Operation, method: str = "post") -> None:
    """``operation`` as the one ``method`` of ``path``, replacing what Litestar generated."""
    openapi = app.openapi_schema
    paths = dict(openapi.paths or {})
    item = paths.get(path) or PathItem()
    setattr(item, method, operation)
    paths[path] = item
    openapi.paths = paths


def document_ingest(app: Litestar) -> None:
    _register(app, {})
    event_or_batch = Schema(
        one_of=[EVENT_SCHEMA, Schema(type=OpenAPIType.ARRAY, items=EVENT_SCHEMA, min_items=1)]
    )
    operation = Operation(
        operation_id="IngestEvents",
        summary="Send one event or a batch (all or nothing)",
        description=(
            "The 202 is sent once the events are durable. Bodies may be gzip "
            "(Content-Encoding: gzip) and sent as application/json or text/plain."
        ),
        security=_key_security(app, "write"),
        request_body=RequestBody(
            required=True,
            content={
                "application/json": MediaType(schema=event_or_batch),
                "text/plain": MediaType(schema=event_or_batch),
            },
        ),
        responses={
            "202": OpenAPIResponse(
                description="Stored",
                content=_json(
                    Schema(
                        type=OpenAPIType.OBJECT,
                        properties={
                            "accepted": Schema(type=OpenAPIType.INTEGER),
                            "duplicates": Schema(type=OpenAPIType.INTEGER),
                        },
                    )
                ),
            ),
            "400": _error("Malformed JSON or invalid events; details name index and field"),
            "401": _error("Missing or unknown key"),
            "403": _error("Key of another kind, or revoked"),
            "413": _error("Body over the limit"),
            "415": _error("Content type or encoding not accepted"),
            "429": _unavailable("rate_limited: over the key's rate limit; see Retry-After"),
            "503": _unavailable("Overloaded or storage unavailable; see Retry-After"),
        },
    )
    _set_operation(app, "/v1/events", operation)
    _document_import(app)


_INTEGER = Schema(type=OpenAPIType.INTEGER)
IMPORT_PROGRESS_FIELDS: dict[str, Schema | Reference] = {
    "accepted": Schema(type=OpenAPIType.INTEGER, description="lines stored"),
    "rejected": Schema(type=OpenAPIType.INTEGER, description="invalid lines (not stored)"),
    "duplicates": Schema(type=OpenAPIType.INTEGER, description="lines whose event_id was stored"),
    "skipped": Schema(
        type=OpenAPIType.INTEGER, description="lines an earlier run of the import committed"
    ),
    "lines": Schema(type=OpenAPIType.INTEGER, description="lines of this body, blank ones too"),
    "errors": Schema(
        type=OpenAPIType.ARRAY,
        description="the first problems (at most 100)",
        items=Schema(
            type=OpenAPIType.OBJECT,
            properties={
                "line": _INTEGER,
                "field": Schema(type=[OpenAPIType.STRING, OpenAPIType.NULL]),
                "message": _STRING,
            },
        ),
    ),
    "import_id": Schema(type=[OpenAPIType.STRING, OpenAPIType.NULL]),
    "committed_lines": Schema(
        type=OpenAPIType.INTEGER,
        description="the import's last committed line: resume from the next one",
    ),
}


def _document_import(app: Litestar) -> None:
    ndjson = MediaType(
        schema=Schema(type=OpenAPIType.STRING, description="one JSON event object per line")
    )
    import_id = Schema(type=OpenAPIType.STRING, pattern=r"^[A-Za-z0-9._:-]{1,128}$")
    outcome = Schema(type=OpenAPIType.OBJECT, properties=IMPORT_PROGRESS_FIELDS)
    partial = Schema(
        all_of=[_ref("Error"), outcome],
        description="the error, and what was committed before it",
    )
    operation = Operation(
        operation_id="ImportEvents",
        summary="Bulk import NDJSON, streamed; each line stands alone",
        description=(
            "For migrations: the body is streamed (any size), optionally gzip. Events keep their"
            " own timestamps; the request's address and headers are not applied to them."
            " Invalid lines are counted and reported by line number; the others are stored."
            " Rows are committed in batches. With X-Import-Id the import can be resumed:"
            " re-send from any line up to committed_lines + 1 and committed lines are skipped."
        ),
        security=_key_security(app, "write"),
        parameters=[
            Parameter(
                name="X-Import-Id",
                param_in=ParamType.HEADER,
                schema=import_id,
                description="names a resumable import",
            ),
            Parameter(
                name="X-Import-First-Line",
                param_in=ParamType.HEADER,
                schema=Schema(type=OpenAPIType.INTEGER, minimum=1),
                description="the import's line number of the body's first line (default 1)",
            ),
        ],
        request_body=RequestBody(
            required=True,
            content={"application/x-ndjson": ndjson, "text/plain": ndjson},
        ),
        responses={
            "200": OpenAPIResponse(description="Every line processed", content=_json(outcome)),
            "400": OpenAPIResponse(
                description="Invalid headers, corrupt or cut-off gzip", content=_json(partial)
            ),
            "401": _error("Missing or unknown key"),
            "403": _error("Key of another kind, or revoked"),
            "409": _error("import_gap (send from committed_lines + 1) or import_conflict"),
            "415": _error("Content type or encoding not accepted"),
            "503": OpenAPIResponse(
                description="Storage unavailable: resume from committed_lines + 1",
                headers=_RETRY_AFTER,
                content=_json(partial),
            ),
        },
    )
    _set_operation(app, "/v1/events/import", operation)
    progress = Operation(
        operation_id="ImportProgress",
        summary="How far a named import has committed",
        security=_key_security(app, "write"),
        parameters=[
            Parameter(name="import_id", param_in=ParamType.PATH, required=True, schema=import_id)
        ],
        responses={
            "200": OpenAPIResponse(
                description="Committed so far",
                content=_json(
                    Schema(
                        type=OpenAPIType.OBJECT,
                        properties={
                            "import_id": _STRING,
                            "committed_lines": _INTEGER,
                            "accepted": _INTEGER,
                            "rejected": _INTEGER,
                            "duplicates": _INTEGER,
                            "created_at": _TIMESTAMP,
                            "updated_at": _TIMESTAMP,
                        },
                    )
                ),
            ),
            "401": _error("Missing or unknown key"),
            "403": _error("Key of another kind, or revoked"),
            "404": _error("No such import in the key's project"),
        },
    )
    _set_operation(app, "/v1/events/import/{import_id}", progress, "get")


# --- Query and delete ---------------------------------------------------------

_NAME = Schema(type=OpenAPIType.STRING, min_length=1, max_length=MAX_NAME_LENGTH)
_RELATIVE_TIMEFRAME = rf"^(today|yesterday|(this|previous)_[0-9]{{1,9}}_({'|'.join(UNITS)})s?)$"
_PROPERTY_PATH = rf"^{re.escape(PROPERTIES_PREFIX)}[^.]+(\.[^.]+){{0,{MAX_PATH_DEPTH - 1}}}$"
_COLUMN_TYPES = {
    Kind.TEXT: Schema(type=[OpenAPIType.STRING, OpenAPIType.NULL]),
    Kind.NUMBER: Schema(type=[OpenAPIType.NUMBER, OpenAPIType.NULL]),
    Kind.BOOL: Schema(type=[OpenAPIType.BOOLEAN, OpenAPIType.NULL]),
    Kind.TIME: Schema(type=[OpenAPIType.STRING, OpenAPIType.NULL], format=OpenAPIFormat.DATE_TIME),
}
_ANY = Schema(description="any JSON value")

QUERY_SCHEMAS: dict[str, Schema] = {
    "Property": Schema(
        type=OpenAPIType.STRING,
        any_of=[
            Schema(enum=sorted(COLUMNS), description="a stored column"),
            Schema(
                pattern=_PROPERTY_PATH,
                description="a path into the event's own fields: `properties.a.b`"
                " (a number indexes an array: `properties.items.0`)",
            ),
        ],
        examples=["geo_country", "metric_value", "properties.plan"],
    ),
    "Timeframe": Schema(
        one_of=[
            Schema(
                type=OpenAPIType.STRING,
                pattern=_RELATIVE_TIMEFRAME,
                description=(
                    "relative, in the query's timezone: `this_N_<unit>` (the current unit so far"
                    " and the N-1 before it), `previous_N_<unit>` (the N complete units before"
                    f" the current one), `today`, `yesterday`; N from 1 to {MAX_UNITS}"
                ),
                examples=["this_7_days", "previous_24_hours", "today"],
            ),
            Schema(
                type=OpenAPIType.OBJECT,
                required=["start", "end"],
                properties={
                    "start": Schema(
                        type=OpenAPIType.STRING,
                        format=OpenAPIFormat.DATE_TIME,
                        description="included; RFC 3339 with an offset",
                    ),
                    "end": Schema(
                        type=OpenAPIType.STRING,
                        format=OpenAPIFormat.DATE_TIME,
                        description="excluded; RFC 3339 with an offset; after start",
                    ),
                },
                additional_properties=False,
                description="absolute: [start, end)",
            ),
        ]
    ),
    "Filter": Schema(
        type=OpenAPIType.OBJECT,
        required=["property", "operator", "value"],
        properties={
            "property": _ref("Property"),
            "operator": Schema(type=OpenAPIType.STRING, enum=list(OPERATORS)),
            "value": Schema(
                description=(
                    "a value of the property's type; `in`: a non-empty list (at most"
                    f" {MAX_IN_VALUES}); `exists`: true or false; `contains`, `starts_with`:"
                    " a string (`contains` on a JSON array: an element)"
                )
            ),
        },
        additional_properties=False,
    ),
}


def _selection_fields() -> dict[str, Schema | Reference]:
    return {
        "event_name": _NAME,
        "metric_name": _NAME,
        "timeframe": _ref("Timeframe"),
        "timezone": Schema(
            type=OpenAPIType.STRING,
            default="UTC",
            description="IANA time zone of relative timeframes and interval buckets",
            examples=["Europe/Paris"],
        ),
        "filters": Schema(
            type=OpenAPIType.ARRAY,
            items=_ref("Filter"),
            max_items=MAX_FILTERS,
            description="all must hold",
        ),
    }


QUERY_SCHEMAS["QueryRequest"] = Schema(
    type=OpenAPIType.OBJECT,
    required=["analysis"],
    properties={
        "analysis": Schema(type=OpenAPIType.STRING, enum=list(ANALYSES)),
        **_selection_fields(),
        "target_property": Schema(
            all_of=[_ref("Property")],
            description=(
                f"required by {', '.join(sorted(TARGETED_ANALYSES))}; the numeric ones"
                f" ({', '.join(sorted(NUMERIC_ANALYSES))}) default to metric_value when a"
                " metric_name is given"
            ),
        ),
        "percentile": Schema(
            type=OpenAPIType.NUMBER,
            minimum=0,
            maximum=100,
            description="required by (and only for) percentile",
        ),
        "interval": Schema(
            type=OpenAPIType.STRING,
            enum=list(INTERVALS),
            description="a time series of buckets over the timeframe (which is then required)",
        ),
        "group_by": Schema(
            one_of=[
                _ref("Property"),
                Schema(
                    type=OpenAPIType.ARRAY,
                    items=_ref("Property"),
                    min_items=1,
                    max_items=MAX_GROUP_BY,
                    unique_items=True,
                ),
            ],
        ),
        "limit": Schema(
            type=OpenAPIType.INTEGER,
            minimum=1,
            maximum=MAX_LIMIT,
            description=f"only for {' and '.join(sorted(LIMITED_ANALYSES))}",
        ),
    },
    additional_properties=False,
)

_GROUP = Schema(
    type=OpenAPIType.OBJECT,
    required=["result"],
    properties={"result": _ANY},
    additional_properties=True,
    description="the group's values, keyed by the group_by property names, and its result",
)
_SCALAR_RESULT = Schema(
    type=[OpenAPIType.NUMBER, OpenAPIType.NULL],
    description="a number; null when there are no values (avg, min, max, median, percentile)",
)

QUERY_SCHEMAS["QueryAnswer"] = Schema(
    type=OpenAPIType.OBJECT,
    required=["result"],
    properties={
        "result": Schema(
            any_of=[
                _SCALAR_RESULT,
                Schema(
                    type=OpenAPIType.ARRAY,
                    items=_ANY,
                    description="select_unique: the distinct values",
                ),
                Schema(
                    type=OpenAPIType.ARRAY,
                    items=_GROUP,
                    description="with group_by",
                ),
                Schema(
                    type=OpenAPIType.ARRAY,
                    items=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["timeframe", "value"],
                        properties={
                            "timeframe": Schema(
                                type=OpenAPIType.OBJECT,
                                required=["start", "end"],
                                properties={"start": _TIMESTAMP, "end": _TIMESTAMP},
                            ),
                            "value": Schema(
                                any_of=[
                                    _SCALAR_RESULT,
                                    Schema(type=OpenAPIType.ARRAY, items=_ANY),
                                    Schema(type=OpenAPIType.ARRAY, items=_GROUP),
                                ],
                                description="the bucket's result (a list of groups with group_by)",
                            ),
                        },
                    ),
                    description="with interval: every bucket, empty ones included",
                ),
                Schema(
                    type=OpenAPIType.ARRAY,
                    items=Schema(
                        type=OpenAPIType.OBJECT,
                        properties={
                            **{name: _COLUMN_TYPES[kind] for name, kind in COLUMNS.items()},
                            "properties": Schema(type=OpenAPIType.OBJECT),
                        },
                    ),
                    description="extraction: the latest events first",
                ),
            ]
        )
    },
)

QUERY_SCHEMAS["DeleteRequest"] = Schema(
    type=OpenAPIType.OBJECT,
    properties={
        **_selection_fields(),
        "all": Schema(
            type=OpenAPIType.BOOLEAN,
            default=False,
            description="required (true) to delete every event of the project",
        ),
    },
    additional_properties=False,
    description='An empty selection is refused unless "all" is true.',
)

QUERY_SCHEMAS["DeleteAnswer"] = Schema(
    type=OpenAPIType.OBJECT,
    required=["deleted"],
    properties={"deleted": Schema(type=OpenAPIType.INTEGER, minimum=0)},
)

_QUERY_EXAMPLES: dict[str, Any] = {
    "daily_count": {
        "analysis": "count",
        "event_name": "signup",
        "timeframe": "this_7_days",
        "interval": "daily",
        "timezone": "Europe/Paris",
    },
    "p95_hourly": {
        "analysis": "percentile",
        "metric_name": "page_load_ms",
        "percentile": 95,
        "timeframe": "previous_24_hours",
        "interval": "hourly",
    },
    "grouped": {
        "analysis": "count_unique",
        "event_name": "pageview",
        "target_property": "properties.user_id",
        "timeframe": {"start": "2024-05-01T00:00:00Z", "end": "2024-06-01T00:00:00Z"},
        "group_by": ["geo_country"],
        "filters": [{"property": "ua_device_type", "operator": "eq", "value": "mobile"}],
    },
}


def _errors(kind: str) -> dict[str, OpenAPIResponse]:
    return {
        "400": _error("Malformed JSON, or an invalid request; details name the field"),
        "401": _error(f"Missing or unknown key (send a {kind} key)"),
        "403": _error(
            f"Key of another kind than {kind}, revoked, or a browser request"
            " (Origin or Sec-Fetch-Mode: cors): call this API from a server"
        ),
        "500": _error("The statement failed; see the server log"),
        "503": _unavailable(
            "Overloaded, storage unavailable, or the statement timed out; see Retry-After"
        ),
    }


def document_query(app: Litestar) -> None:
    _register(app, QUERY_SCHEMAS)
    _set_operation(
        app,
        "/v1/query",
        Operation(
            operation_id="RunQuery",
            summary="Run an analysis (query key)",
            description=(
                "Properties are stored column names, `metric_value`, `timestamp` or"
                " `properties.a.b` paths. A key with a customer_identifier sees only that"
                " customer's events."
            ),
            security=_key_security(app, "query"),
            request_body=RequestBody(
                required=True,
                content={
                    "application/json": MediaType(
                        schema=_ref("QueryRequest"),
                        examples={
                            name: Example(value=value) for name, value in _QUERY_EXAMPLES.items()
                        },
                    )
                },
            ),
            responses={
                "200": OpenAPIResponse(
                    description=(
                        "A number; with interval a list of {timeframe, value}; with group_by a"
                        " list of the group values and result; for extraction the events"
                    ),
                    content=_json(_ref("QueryAnswer")),
                ),
                **_errors("query"),
            },
        ),
    )
    _set_operation(
        app,
        "/v1/delete",
        Operation(
            operation_id="DeleteEvents",
            summary="Delete events (delete key)",
            description=(
                "Deletes the events the selection matches (event_name, metric_name,"
                ' timeframe, filters); an empty selection is refused unless "all": true.'
            ),
            security=_key_security(app, "delete"),
            request_body=RequestBody(
                required=True,
                content={
                    "application/json": MediaType(
                        schema=_ref("DeleteRequest"),
                        examples={
                            "old_signups": Example(
                                value={"event_name": "signup", "timeframe": "previous_90_days"}
                            ),
                            "everything": Example(value={"all": True}),
                        },
                    )
                },
            ),
            responses={
                "200": OpenAPIResponse(
                    description="The number of events deleted",
                    content=_json(_ref("DeleteAnswer")),
                ),
                **_errors("delete"),
            },
        ),
    )


def _object(required: list[str], **properties: Schema | Reference) -> Schema:
    """An object with these members (and perhaps more)."""
    return Schema(type=OpenAPIType.OBJECT, required=required, properties=properties)


_NULLABLE_INTEGER = Schema(type=[OpenAPIType.INTEGER, OpenAPIType.NULL])
_PROJECT = _object(
    ["id", "name", "created_at", "retention_days"],
    id=_INTEGER,
    name=_STRING,
    created_at=_TIMESTAMP,
    retention_days=_NULLABLE_INTEGER,
)
_KEY = _object(["id", "kind", "project_id"], id=_INTEGER, kind=_STRING, project_id=_INTEGER)
_ADMIN_ANSWERS: dict[tuple[str, str], tuple[str, Schema]] = {
    ("get", "/v1/projects"): (
        "200",
        _object(["projects"], projects=Schema(type=OpenAPIType.ARRAY, items=_PROJECT)),
    ),
    ("post", "/v1/projects"): (
        "201",
        _object(["id", "name", "keys"], id=_INTEGER, name=_STRING, keys=_object([])),
    ),
    ("get", "/v1/projects/{project_id}"): ("200", _PROJECT),
    ("patch", "/v1/projects/{project_id}"): ("200", _PROJECT),
    ("delete", "/v1/projects/{project_id}"): (
        "200",
        _object(["id", "deleted"], id=_INTEGER, deleted=Schema(type=OpenAPIType.BOOLEAN)),
    ),
    ("put", "/v1/projects/{project_id}/retention"): (
        "200",
        _object(["id", "retention_days"], id=_INTEGER, retention_days=_NULLABLE_INTEGER),
    ),
    ("get", "/v1/projects/{project_id}/keys"): (
        "200",
        _object(["keys"], keys=Schema(type=OpenAPIType.ARRAY, items=_KEY)),
    ),
    ("post", "/v1/projects/{project_id}/keys"): ("201", _object(["id", "key", "kind"])),
    ("delete", "/v1/projects/{project_id}/keys/{key_id}"): (
        "200",
        _object(["id", "revoked"], id=_INTEGER, revoked=Schema(type=OpenAPIType.BOOLEAN)),
    ),
    ("get", "/v1/usage"): (
        "200",
        _object(
            ["start", "end", "projects"],
            start=_STRING,
            end=_STRING,
            projects=Schema(type=OpenAPIType.ARRAY, items=_object([])),
        ),
    ),
}


def document_admin(app: Litestar) -> None:
    """The admin API's answers: Litestar sees its handlers return bytes."""
    paths = app.openapi_schema.paths or {}
    for (method, path), (status, answer) in _ADMIN_ANSWERS.items():
        operation = getattr(paths[path], method)
        operation.responses = {
            status: OpenAPIResponse(description="Done", content=_json(answer)),
            "400": _error("An invalid request; the message says what"),
            "401": _error("Missing or unknown admin key"),
            "403": _error("A revoked admin key, or a project key"),
            "404": _error("No such project or key in this account"),
            "413": _error("Body over the limit"),
            "503": _unavailable("Storage unavailable; see Retry-After"),
        }
