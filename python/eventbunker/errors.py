"""The one error shape of the HTTP API.

``{"error": {"code", "message", "details": [{"index", "field", "message"}]}}``
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


def error_document(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}}


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    return orjson.dumps(error_document(code, message, details))


@dataclass(frozen=True, slots=True)
class Refusal(Exception):
    """A refused request, answered with the error shape (and Retry-After on 503s)."""

    status: int
    code: str
    message: str
    details: list[dict[str, Any]] | None = None
    retry_after: bool = False

    def body(self) -> bytes:
        return error_body(self.code, self.message, self.details)
