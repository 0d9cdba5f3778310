"""The framework ceiling: a regular Litestar handler that parses the JSON
body with orjson and answers 202, storing nothing."""

from __future__ import annotations

import orjson
from litestar import Litestar, Request, Response, post


@post("/v1/events", status_code=202)
async def ingest(request: Request[None, None, None]) -> Response[bytes]:
    parsed = orjson.loads(await request.body())
    count = len(parsed) if isinstance(parsed, list) else 1
    return Response(
        orjson.dumps({"accepted": count, "duplicates": 0}),
        status_code=202,
        media_type="application/json",
    )


def create_app() -> Litestar:
    return Litestar([ingest], logging_config=None, openapi_config=None)
