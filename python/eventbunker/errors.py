"""The one error shape of the HTTP API.

``{"error": {"code", "message", "details": [{"index", "field", "message"}]}}``
"""

from __future__ import annotations

from typing import Any

import orjson


def error_document(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}}


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    return orjson.dumps(error_document(code, message, details))
