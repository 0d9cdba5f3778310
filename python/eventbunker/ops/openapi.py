"""The OpenAPI pieces: the error shape, the key security schemes and the
raw routes' operations.

Litestar documents its own handlers from their msgspec Structs; they take
their error answers (``error_answers``), security (``key_security``) and
``RetryAfterDocumented`` from here, so every operation describes its errors in
their real shape. The raw ASGI routes (``routing.py``: ingest and the
streamed import) are invisible to Litestar: ``document_raw_routes`` adds their
operations to the generated schema, referring to the same error schema and
security schemes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import msgspec
from litestar import Litestar
from litestar.enums import ParamType
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    Components,
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
from litestar.openapi.spec.enums import OpenAPIType

from eventbunker.admin.keys import KEY_KINDS
from eventbunker.errors import ErrorCode

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

_RETRY_AFTER: dict[str, OpenAPIHeader | Reference] = {
    "Retry-After": OpenAPIHeader(
        schema=Schema(type=OpenAPIType.INTEGER, minimum=0),
        description="seconds to wait before retrying",
    )
}


class ErrorDetail(msgspec.Struct):
    index: int | None  # the event or list position, when there is one
    field: str | None
    message: str


class ErrorBody(msgspec.Struct):
    code: ErrorCode
    message: str
    details: list[ErrorDetail]


class ErrorDocument(msgspec.Struct):
    """Every refusal: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorBody


ERROR_REF = Reference(ref="#/components/schemas/ErrorDocument")


def _security_schemes() -> dict[str, SecurityScheme | Reference]:
    schemes: dict[str, SecurityScheme | Reference] = {}
    for kind in (*KEY_KINDS, "admin"):
        what = "an account admin key" if kind == "admin" else f"a project {kind} key"
        schemes[f"{kind}Key"] = SecurityScheme(
            type="apiKey", name="X-Api-Key", security_scheme_in="header", description=what
        )
        schemes[f"{kind}KeyBearer"] = SecurityScheme(
            type="http", scheme="bearer", description=f"{what}, as `Authorization: Bearer KEY`"
        )
    return schemes


COMPONENTS = Components(security_schemes=_security_schemes())


def key_security(kind: str) -> list[SecurityRequirement]:
    """A key of ``kind`` (write, query, delete, admin), in ``X-Api-Key`` or as a bearer token."""
    return [{f"{kind}Key": []}, {f"{kind}KeyBearer": []}]


def error_answers(descriptions: Mapping[int, str]) -> dict[int, ResponseSpec]:
    """The documented error answers of an operation: status → description."""
    return {
        status: ResponseSpec(
            data_container=ErrorDocument, description=description, generate_examples=False
        )
        for status, description in descriptions.items()
    }


@dataclass
class RetryAfterDocumented(Operation):
    """An operation whose 429 and 503 answers document their ``Retry-After``
    (Litestar's ``ResponseSpec`` has no headers)."""

    def __post_init__(self) -> None:
        for status, answer in (self.responses or {}).items():
            if status in ("429", "503") and isinstance(answer, OpenAPIResponse):
                answer.headers = {**(answer.headers or {}), **_RETRY_AFTER}


def _json(schema: Schema | Reference) -> dict[str, MediaType]:
    return {"application/json": MediaType(schema=schema)}


def _error(description: str) -> OpenAPIResponse:
    return OpenAPIResponse(description=description, content=_json(ERROR_REF))


def _unavailable(description: str) -> OpenAPIResponse:
    return OpenAPIResponse(description=description, headers=_RETRY_AFTER, content=_json(ERROR_REF))


def _set_operation(app: Litestar, path: str, operation: Operation) -> None:
    """``operation`` as the POST of ``path`` (a raw route: Litestar has none)."""
    openapi = app.openapi_schema
    paths = dict(openapi.paths or {})
    item = paths.get(path) or PathItem()
    item.post = operation
    paths[path] = item
    openapi.paths = paths


def document_raw_routes(app: Litestar) -> None:
    """Add the raw routes' operations to ``app``'s generated schema."""
    _document_ingest(app)
    _document_import(app)


def _document_ingest(app: Litestar) -> None:
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
        security=key_security("write"),
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


_INTEGER = Schema(type=OpenAPIType.INTEGER)
_NULLABLE_STRING = Schema(one_of=[_STRING, Schema(type=OpenAPIType.NULL)])
_IMPORT_OUTCOME_FIELDS: dict[str, Schema | Reference] = {
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
                "field": _NULLABLE_STRING,
                "message": _STRING,
            },
        ),
    ),
    "import_id": _NULLABLE_STRING,
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
    outcome = Schema(type=OpenAPIType.OBJECT, properties=_IMPORT_OUTCOME_FIELDS)
    partial = Schema(
        all_of=[ERROR_REF, outcome],
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
        security=key_security("write"),
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
