"""The one router of the raw ASGI routes, in front of Litestar.

A few routes skip the framework: Litestar's routing and exception middleware
cost more than the whole ingest endpoint on a single-event POST, and an
import's body must be streamed rather than read whole. They are rows of one
table (``RawRoute``: method and path → endpoint, see ``app.py``); the router
answers their CORS preflight and wrong methods, and hands every other request
to Litestar (a row whose endpoint is Litestar itself keeps a Litestar route
under the router's preflight, as for an import's progress).
``ops/openapi.py`` describes the raw routes in the schema; Litestar
describes the rest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from eventbunker.errors import ErrorCode, error_body
from eventbunker.ingest.endpoint import Receive, Scope, Send, drained, respond

RawEndpoint = Callable[[Scope, Receive, Send], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

PREFLIGHT_ALLOW_HEADERS = b"content-type, content-encoding, x-api-key, authorization"
PREFLIGHT_MAX_AGE_S = b"86400"


@dataclass(frozen=True, slots=True)
class RawRoute:
    """``method path`` answered by ``endpoint`` without the framework.

    A path ending in ``/`` is a prefix (``/v1/events/import/`` serves
    ``/v1/events/import/<id>``); any other path must match exactly.
    ``allow_headers``: what a browser's preflight may send. ``exact``: a
    path ending in ``/`` that is matched exactly (PostHog's ``/e/``).
    """

    method: str
    path: str
    endpoint: RawEndpoint
    allow_headers: bytes = PREFLIGHT_ALLOW_HEADERS
    exact: bool = False


class RawRouter:
    """The raw routes first (exact paths, then prefixes), Litestar for the rest.

    A wrong method's body is read and dropped before its 405, within
    ``body_timeout_s`` (``endpoint.refuse_unread`` says why)."""

    def __init__(
        self, app: ASGIApp, routes: Iterable[RawRoute], body_timeout_s: float = 30.0
    ) -> None:
        self.app = app
        self._body_timeout_s = body_timeout_s
        self._exact: dict[str, dict[str, RawRoute]] = {}
        self._prefixes: dict[str, dict[str, RawRoute]] = {}
        for route in routes:
            prefix = route.path.endswith("/") and not route.exact
            table = self._prefixes if prefix else self._exact
            methods = table.setdefault(route.path, {})
            if route.method in methods:
                raise ValueError(f"two raw routes for {route.method} {route.path}")
            methods[route.method] = route

    def _methods(self, path: str) -> dict[str, RawRoute] | None:
        methods = self._exact.get(path)
        if methods is not None:
            return methods
        for prefix, methods in self._prefixes.items():
            if path.startswith(prefix) and len(path) > len(prefix):
                return methods
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        methods = self._methods(scope["path"]) if scope["type"] == "http" else None
        if methods is None:
            await self.app(scope, receive, send)
            return
        route = methods.get(scope["method"])
        if route is not None:
            await route.endpoint(scope, receive, send)
            return
        allowed = ", ".join([*methods, "OPTIONS"]).encode()
        if scope["method"] == "OPTIONS":
            some_route = next(iter(methods.values()))
            preflight = [
                (b"access-control-allow-methods", allowed),
                (b"access-control-allow-headers", some_route.allow_headers),
                (b"access-control-max-age", PREFLIGHT_MAX_AGE_S),
            ]
            await respond(send, 204, b"", preflight)
            return
        body = error_body(ErrorCode.METHOD_NOT_ALLOWED, "use " + " or ".join(methods))
        headers = [(b"allow", allowed)]
        if not await drained(receive, self._body_timeout_s):
            headers.append((b"connection", b"close"))
        await respond(send, 405, body, headers)
