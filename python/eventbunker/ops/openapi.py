"""OpenAPI description of the routes Litestar cannot describe itself.

``POST /v1/events`` is a raw ASGI handler (for speed), so Litestar knows
nothing of its body or answers; this adds them to the generated schema.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.openapi.spec import (
    Components,
    OpenAPIResponse,
    Operation,
    PathItem,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec import (
    OpenAPIMediaType as MediaType,
)
from litestar.openapi.spec.enums import OpenAPIType

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
                "code": _STRING,
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


def _json(schema: Schema | Reference) -> dict[str, MediaType]:
    return {"application/json": MediaType(schema=schema)}


def _error(description: str) -> OpenAPIResponse:
    return OpenAPIResponse(description=description, content=_json(ERROR_SCHEMA))


def document_ingest(app: Litestar) -> None:
    openapi = app.openapi_schema
    if openapi.components is None:
        openapi.components = Components()
    openapi.components.security_schemes = {
        **(openapi.components.security_schemes or {}),
        "writeKey": SecurityScheme(type="apiKey", name="X-Api-Key", security_scheme_in="header"),
    }
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
        security=[{"writeKey": []}],
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
            "503": _error("Overloaded or storage unavailable; see Retry-After"),
        },
    )
    openapi.paths = {**(openapi.paths or {}), "/v1/events": PathItem(post=operation)}
