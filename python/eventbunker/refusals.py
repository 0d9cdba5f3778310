"""Refusals as answers for the Litestar handlers: the exception handlers that
give every error the API's one shape (``errors.py``), Litestar's own too (a
body its validation refused, 404, 405).

A layer (the app, a router) takes ``exception_handlers(...)`` with the code
its invalid bodies are answered with and the headers its errors carry, and
``strict_bodies(...)`` as its ``before_request``: Litestar converts a body to
its Struct in msgspec's lax mode (``"30"`` would pass for the integer 30),
and our contract is strict, so the body is first decoded strictly against
the handler's ``data`` Struct (once per request, by msgspec).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.types import ExceptionHandlersMap

from eventbunker.errors import ErrorCode, Refusal

# msgspec says where a value is wrong at the end of its message, the body
# being Litestar's ``data``: "Object missing required field `value` - at `$.data.filters[0]`".
_LOCATION = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_NAMED_FIELD = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<name>[^`]+)`")
_INDEX = re.compile(r"\[(\d+)\]")
_BODY = ".data"


def exception_handlers(
    invalid: ErrorCode,
    headers: Mapping[str, str] | None = None,
    *,
    challenge: str | None = None,
    count: Callable[[str], None] | None = None,
) -> ExceptionHandlersMap:
    """Handlers answering refusals with ``headers``; an invalid body or query
    string is ``invalid``; a 401 carries ``WWW-Authenticate: challenge``;
    ``count`` is told the code of every refusal (the metrics)."""

    def answer(refusal: Refusal, more: Mapping[str, str] | None = None) -> Response[bytes]:
        if count is not None:
            count(refusal.code)
        all_headers = {**(headers or {}), **(more or {})}
        if challenge and refusal.status == 401:
            all_headers["WWW-Authenticate"] = challenge
        return refusal.response(all_headers)

    def on_refusal(_: Request[Any, Any, Any], refusal: Refusal) -> Response[bytes]:
        return answer(refusal)

    def on_http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
        return answer(framework_refusal(exc, invalid), exc.headers)

    handlers: dict[type[Exception], Callable[..., Response[bytes]]] = {
        Refusal: on_refusal,
        HTTPException: on_http_error,
    }
    return handlers  # type: ignore[return-value]


def strict_bodies(invalid: ErrorCode) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """A ``before_request`` hook: the body must be its handler's ``data`` type, strictly."""

    async def check(request: Request[Any, Any, Any]) -> None:
        data = request.route_handler.parsed_fn_signature.parameters.get("data")
        if data is None:
            return
        try:
            msgspec.json.decode(await request.body(), type=data.annotation, strict=True)
        except msgspec.ValidationError as exc:
            raise _invalid(str(exc), invalid) from None
        except msgspec.DecodeError as exc:
            raise _malformed(str(exc)) from None

    return check


def framework_refusal(exc: HTTPException, invalid: ErrorCode) -> Refusal:
    """What Litestar raised, as a refusal of the catalogue."""
    if isinstance(exc, ValidationException):
        return validation_refusal(exc, invalid)
    if isinstance(exc.__cause__, SerializationException):  # the body is not JSON
        return _malformed(exc.detail)
    return Refusal(ErrorCode.for_status(exc.status_code), exc.detail)


def validation_refusal(exc: ValidationException, code: ErrorCode) -> Refusal:
    """Litestar's validation error (a query string's, a path's) as ours."""
    return _invalid(str(exc.__cause__ or exc.detail), code)


def _malformed(error: str) -> Refusal:
    message = f"the body is not valid JSON: {error}"
    return Refusal(ErrorCode.MALFORMED_JSON, message, _detail(None, "body", message))


def _invalid(error: str, code: ErrorCode) -> Refusal:
    """A msgspec validation error, its field named as our own validation names
    it (``filters[0].value``, the list position in ``index``)."""
    field, message = _located(error)
    index = _INDEX.search(field)
    return Refusal(
        code,
        f"{field}: {message}",
        _detail(int(index.group(1)) if index else None, field, message),
    )


def _located(error: str) -> tuple[str, str]:
    """(field, message) of a msgspec validation error."""
    location = _LOCATION.search(error)
    message = error[: location.start()] if location else error
    path = location["path"] if location else ""
    if path == _BODY or path.startswith((_BODY + ".", _BODY + "[")):
        path = path[len(_BODY) :]
    named = _NAMED_FIELD.match(message)
    if named and named["name"] == "data":  # no body at all
        return "body", "a JSON object is required"
    if named:
        path += "." + named["name"]
    return path.lstrip(".") or "body", message


def _detail(index: int | None, field: str, message: str) -> list[dict[str, Any]]:
    return [{"index": index, "field": field, "message": message}]
