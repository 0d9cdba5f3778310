"""The error catalogue and the one error shape of the HTTP API.

Every refusal the server sends has a code from ``ErrorCode``; the code fixes
the HTTP status and gives a default message (the catalogue below is the only
place a status is chosen). The codes the Rust hot path raises
(``rust/src/ingest/error.rs``) are here too, with the same status:
``tests/test_errors.py`` checks that the two agree.

The shape: ``{"error": {"code", "message", "details": [{"index", "field", "message"}]}}``
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import orjson
from litestar import MediaType, Response

Details = list[dict[str, Any]]
RETRY_AFTER_S = "1"


class ErrorCode(StrEnum):
    """code → HTTP status → default message."""

    status: int
    default_message: str

    def __new__(cls, code: str, status: int, default_message: str) -> ErrorCode:
        member = str.__new__(cls, code)
        member._value_ = code
        member.status = status
        member.default_message = default_message
        return member

    # The body (the Rust enum `ErrorCode`, same codes and statuses).
    BODY_TOO_LARGE = "body_too_large", 413, "the body is too large"
    INVALID_GZIP = "invalid_gzip", 400, "the body is not a valid gzip stream"
    MALFORMED_JSON = "malformed_json", 400, "the body is not valid JSON"
    TOO_DEEP = "too_deep", 400, "the JSON is nested too deeply"
    STRING_TOO_LONG = "string_too_long", 400, "a JSON string is too long"
    BATCH_TOO_LARGE = "batch_too_large", 400, "the batch has too many events"
    INVALID_EVENT = "invalid_event", 400, "one or more events are invalid"
    # The request.
    INVALID_REQUEST = "invalid_request", 400, "the request is invalid"
    INVALID_QUERY = "invalid_query", 400, "the query is invalid"
    CLIENT_DISCONNECTED = "client_disconnected", 400, "the client went away"
    REQUEST_TIMEOUT = "request_timeout", 408, "the body did not arrive in time"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", 415, "this content type is not accepted"
    UNSUPPORTED_ENCODING = (
        "unsupported_encoding",
        415,
        "Content-Encoding must be gzip or identity",
    )
    NOT_FOUND = "not_found", 404, "not found"
    METHOD_NOT_ALLOWED = "method_not_allowed", 405, "this method is not allowed here"
    # Keys and sessions.
    MISSING_KEY = "missing_key", 401, "send a key in X-Api-Key or Authorization: Bearer"
    UNKNOWN_KEY = "unknown_key", 401, "this key does not exist"
    SIGNED_OUT = "signed_out", 401, "sign in again"
    REVOKED_KEY = "revoked_key", 403, "this key was revoked"
    WRONG_KEY_KIND = "wrong_key_kind", 403, "this key is of the wrong kind for this API"
    BROWSER_REFUSED = "browser_refused", 403, "this API is refused from browsers"
    # Imports.
    INVALID_IMPORT_ID = "invalid_import_id", 400, "the import id is invalid"
    INVALID_FIRST_LINE = "invalid_first_line", 400, "X-Import-First-Line is invalid"
    IMPORT_NOT_FOUND = "import_not_found", 404, "no such import in this project"
    IMPORT_GAP = "import_gap", 409, "the import would skip uncommitted lines"
    IMPORT_CONFLICT = "import_conflict", 409, "the import was moved on by another request"
    # The server (503s carry Retry-After).
    INTERNAL_ERROR = "internal_error", 500, "the request failed; see the server log"
    STORAGE_UNAVAILABLE = "storage_unavailable", 503, "the database cannot answer now; retry"
    QUERY_TIMEOUT = "query_timeout", 503, "the statement ran too long"
    OVERLOADED = "overloaded", 503, "too many requests running; retry"
    RATE_LIMITED = "rate_limited", 429, "over the key's rate limit; retry after Retry-After"

    @classmethod
    def for_status(cls, status: int) -> ErrorCode:
        """The code of an error the framework raised with only a status (a
        status without a code of its own: 400, or 500 for a server error)."""
        known = {
            404: cls.NOT_FOUND,
            405: cls.METHOD_NOT_ALLOWED,
            408: cls.REQUEST_TIMEOUT,
            413: cls.BODY_TOO_LARGE,
            415: cls.UNSUPPORTED_MEDIA_TYPE,
            429: cls.RATE_LIMITED,
            503: cls.STORAGE_UNAVAILABLE,
        }
        default = cls.INTERNAL_ERROR if status >= 500 else cls.INVALID_REQUEST
        return known.get(status, default)


def error_document(code: str, message: str, details: Details | None = None) -> dict[str, Any]:
    return {"error": {"code": str(code), "message": message, "details": details or []}}


def error_body(code: str, message: str, details: Details | None = None) -> bytes:
    return orjson.dumps(error_document(code, message, details))


def field_detail(field: str, message: str) -> Details:
    """The one detail of a problem with one top-level field (or the ``body``)."""
    return [{"index": None, "field": field, "message": message}]


class Refusal(Exception):
    """A refused request, answered with the error shape (and Retry-After on 429s and 503s).

    ``Refusal(ErrorCode.X, message, details)``: the status comes from the
    catalogue and the message defaults to the code's.
    """

    status: int
    code: ErrorCode
    message: str
    details: Details | None
    retry_after: bool
    retry_after_s: str  # the Retry-After value, when retry_after

    def __init__(
        self, code: ErrorCode, message: str | None = None, details: Details | None = None
    ) -> None:
        self.status, self.code = code.status, code
        self.message = message or code.default_message
        self.details = details
        self.retry_after = code.status in (429, 503)
        self.retry_after_s = RETRY_AFTER_S
        super().__init__(self.status, self.code, self.message)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def body(self) -> bytes:
        return error_body(self.code, self.message, self.details)

    def response(self, headers: dict[str, str] | None = None) -> Response[bytes]:
        """The refusal as a Litestar response (for the framework's handlers)."""
        all_headers = dict(headers or {})
        if self.retry_after:
            all_headers["Retry-After"] = self.retry_after_s
        return Response(
            self.body(), status_code=self.status, media_type=MediaType.JSON, headers=all_headers
        )
