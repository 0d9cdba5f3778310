"""The body limit of the framework's routes, with an answer that arrives.

Litestar's own limit (10 MB) answers 413 without reading the rest of the
body; the connection then closes with unread bytes, the kernel resets it, and
a client that writes its whole body before reading (Python's ``http.client``,
``urllib``) sees a broken pipe: 10 of 10 sends of 12 MiB to ``/v1/query``.
Here the body of every request Litestar serves (queries, deletes, the admin
API, the web app: all small JSON or forms) is read first, as the ingest
endpoint reads its own, up to the ``max_body_bytes`` setting; past it the
rest is read and dropped (up to a bound) before the 413 ``body_too_large``;
a body not whole within ``body_timeout_seconds`` is answered 408.
"""

from __future__ import annotations

from typing import Any

from eventbunker.errors import Refusal
from eventbunker.ingest.endpoint import Receive, Scope, Send, read_limited_body, refuse
from eventbunker.routing import ASGIApp


class BodyLimit:
    """``app`` behind a read-whole body limit of ``max_bytes`` and ``timeout_s``."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await read_limited_body(
                dict(scope["headers"]), receive, self._max_bytes, self._timeout_s
            )
        except Refusal as refusal:
            await refuse(send, refusal)
            return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that answers the body read once, then the connection's own."""
    pending: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Any:
        return pending.pop() if pending else await receive()

    return replayed
