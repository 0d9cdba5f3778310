"""``POST /v1/events`` as a raw ASGI handler.

This is the hot path, so it skips Litestar's request parsing and DI (about
half the cost of a regular handler on these machines) and does only: read
the key and the body, authenticate, hand the bytes to Rust, wait for the
spool's fsync, answer. Browsers may call it cross-origin with a write key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from eventbunker import _native
from eventbunker.errors import ErrorCode, Refusal
from eventbunker.ingest.auth import ApiKey, KeyCache, presented_secret
from eventbunker.ingest.backpressure import Backpressure
from eventbunker.ingest.body_deadline import BodyTimeout, within
from eventbunker.ingest.idempotency import DuplicateCheck
from eventbunker.ingest.rate_limits import RateLimits
from eventbunker.ingest.rejections import RejectionCounter
from eventbunker.ingest.spool import SpoolFull
from eventbunker.ops.metrics import Metrics

ACCEPTED_MEDIA_TYPES = frozenset({b"", b"application/json", b"text/plain"})

CORS_HEADERS = [(b"access-control-allow-origin", b"*")]  # on every answer
Scope = dict[str, Any]


@dataclass(frozen=True, slots=True)
class SdkPayload:
    """What an SDK endpoint says about its body (see ``_native.prepare_events``)."""

    format: str
    call: str | None = None
    form: bool = False
    # False: do not use the peer's address (Mixpanel's ip=0).
    use_peer: bool = True


class DurableSink(Protocol):
    """Where an accepted request is made durable before its 2xx: the spool,
    or in scale-out mode the JetStream stream (scaleout/sink.py)."""

    async def append(self, record: bytes) -> None:
        """Return once ``record`` is durable; raise SpoolFull if it cannot be."""


Receive = Any
Send = Any


class IngestEndpoint:
    def __init__(
        self,
        keys: KeyCache,
        spool: DurableSink,
        duplicates: DuplicateCheck,
        rejections: RejectionCounter,
        metrics: Metrics,
        limits: _native.Limits,
        max_body_bytes: int,
        *,
        backpressure: Backpressure,
        enricher: _native.Enricher | None = None,
        rate_limits: RateLimits | None = None,
        body_timeout_s: float = 30.0,
    ) -> None:
        self._keys = keys
        self._spool = spool
        self._duplicates = duplicates
        self._rejections = rejections
        self._metrics = metrics
        self._limits = limits
        self._max_body_bytes = max_body_bytes
        self._enricher = enricher
        self._backpressure = backpressure
        self._rate_limits = rate_limits
        self._body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # POST only: routing.RawRouter answers preflights and other methods.
        headers = header_map(scope)
        key: ApiKey | None = None
        reading = False  # refused before: the body is still to be read
        try:
            key = await self._keys.require(presented_key(headers), "write")
            received_at_us = time.time_ns() // 1000
            gzip = content_encoding_is_gzip(headers)
            media_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
            if media_type not in ACCEPTED_MEDIA_TYPES:
                raise Refusal(
                    ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send application/json or text/plain"
                )
            reading = True
            body = await self.read_body(headers, receive)
            accepted, duplicates = await self.accept(
                key, scope, headers, body, received_at_us, gzip=gzip
            )
        except Refusal as refusal:
            self.count_refusal(key, refusal)
            if reading:
                await refuse(send, refusal)
            else:
                await refuse_unread(send, receive, refusal, self._body_timeout_s)
            return
        await respond(send, 202, orjson.dumps({"accepted": accepted, "duplicates": duplicates}))

    async def accept(
        self,
        key: ApiKey,
        scope: Scope,
        headers: dict[bytes, bytes],
        body: bytes,
        received_at_us: int,
        *,
        gzip: bool,
        sdk: SdkPayload | None = None,
    ) -> tuple[int, int]:
        """Make a read body's events durable; return (accepted, duplicates).

        The one durable path (lag admission, Rust preparation, spool append),
        shared with the SDK endpoints (compat/), which name their payload's
        format in ``sdk``.
        """
        if self._rate_limits is not None:
            self._rate_limits.admit(key)
        if self._backpressure.behind():
            await self._backpressure.admit()
        client = scope.get("client") if sdk is None or sdk.use_peer else None
        try:
            prepared = _native.prepare_events(
                body,
                gzip=gzip,
                project_id=key.project_id,
                customer_identifier=key.customer_identifier,
                received_at_us=received_at_us,
                peer_ip=client[0] if client else None,
                user_agent=_text(headers.get(b"user-agent")),
                referer=_text(headers.get(b"referer")),
                limits=self._limits,
                forwarded_for=_forwarded_for(scope, headers) if client else None,
                enricher=self._enricher,
                format=sdk.format if sdk else None,
                call=sdk.call if sdk else None,
                form=sdk.form if sdk else False,
            )
        except _native.IngestError as exc:
            raise Refusal(ErrorCode[exc.code.upper()], exc.message, exc.details) from None
        if self._rate_limits is not None:
            self._rate_limits.take(key, prepared.count)
        event_ids = prepared.event_ids
        earlier = await self._duplicates.earlier(key.project_id, event_ids)
        try:
            await self._spool.append(prepared.record)
        except SpoolFull as exc:
            raise Refusal(ErrorCode.STORAGE_UNAVAILABLE, str(exc)) from None
        # Claimed after the append: ids are claimed only once durable.
        duplicates = await self._duplicates.count(key.project_id, event_ids, earlier)
        self._duplicates.remember(key.project_id, event_ids)
        return prepared.count - duplicates, duplicates

    def count_refusal(self, key: ApiKey | None, refusal: Refusal) -> None:
        """Count a refused request (per project once its key is known)."""
        self._metrics.reject(refusal.code)
        if key is not None:
            self._rejections.add(key.project_id, refusal.code)

    @property
    def limits(self) -> _native.Limits:
        return self._limits

    async def read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        """The whole body, refused past the body limit."""
        return await read_limited_body(headers, receive, self._max_body_bytes, self._body_timeout_s)


async def read_limited_body(
    headers: dict[bytes, bytes], receive: Receive, limit: int, timeout_s: float
) -> bytes:
    """The whole body; past ``limit`` bytes, the rest is read and dropped
    (see ``discard_body``) and 413 body_too_large is raised; not whole within
    ``timeout_s``, 408 request_timeout (a stuck or trickling client must not
    hold a connection and its memory for ever)."""
    try:
        return await within(timeout_s, _read_body(headers, receive, limit))
    except BodyTimeout:
        raise Refusal(
            ErrorCode.REQUEST_TIMEOUT, f"the body was not whole within {timeout_s:g} s"
        ) from None


async def _read_body(headers: dict[bytes, bytes], receive: Receive, limit: int) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        await discard_body(receive)
        raise Refusal(ErrorCode.BODY_TOO_LARGE, f"the body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refusal(ErrorCode.CLIENT_DISCONNECTED, "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if message.get("more_body", False):
                await discard_body(receive)
            raise Refusal(ErrorCode.BODY_TOO_LARGE, f"the body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# How much of an over-limit body is read and dropped so that the 413 reaches
# the client: closing a connection with unread bytes resets it, and the
# client then sees a broken pipe instead of the answer (1 in 20 sends of 3 MiB).
DISCARD_MAX_BYTES = 64 << 20


async def discard_body(receive: Receive, max_bytes: int = DISCARD_MAX_BYTES) -> bool:
    """Read the rest of the body, up to ``max_bytes``, and drop it; whether
    it ended (or the client went away) within the bound."""
    size = 0
    while size <= max_bytes:
        message = await receive()
        if message["type"] == "http.disconnect":
            return True
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return False


async def refuse_unread(
    send: Send, receive: Receive, refusal: Refusal, timeout_s: float, body: bytes | None = None
) -> None:
    """Answer ``refusal``, made before the request's body was read (a bad
    key, a wrong content type): the body is read and dropped first, up to
    ``DISCARD_MAX_BYTES`` and within ``timeout_s``, for the same reason as
    before a 413 (an unknown key with 3 MiB: 10 of 10 chunked sends saw a
    broken pipe, not the 401). What is still unread then is not: the
    connection closes after the answer."""
    await refuse(send, refusal, body, close=not await drained(receive, timeout_s))


async def drained(receive: Receive, timeout_s: float) -> bool:
    """``discard_body`` within ``timeout_s``: whether the body ended in time."""
    try:
        return await within(timeout_s, discard_body(receive))
    except BodyTimeout:
        return False


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    api_key = headers.get(b"x-api-key")
    authorization = headers.get(b"authorization")
    return presented_secret(
        api_key.decode("latin-1") if api_key is not None else None,
        authorization.decode("latin-1") if authorization is not None else None,
    )


def header_map(scope: Scope) -> dict[bytes, bytes]:
    # ASGI header names are lower-case already.
    return dict(scope["headers"])


def content_encoding_is_gzip(headers: dict[bytes, bytes]) -> bool:
    encoding = headers.get(b"content-encoding", b"").strip().lower()
    if encoding in (b"", b"identity"):
        return False
    if encoding in (b"gzip", b"x-gzip"):
        return True
    raise Refusal(ErrorCode.UNSUPPORTED_ENCODING, "Content-Encoding must be gzip or identity")


def _forwarded_for(scope: Scope, headers: dict[bytes, bytes]) -> str | None:
    """``X-Forwarded-For``, its header lines joined in order (one list, RFC 9110)."""
    if b"x-forwarded-for" not in headers:
        return None
    lines = [value for name, value in scope["headers"] if name == b"x-forwarded-for"]
    return b",".join(lines).decode("latin-1")


def _text(value: bytes | None) -> str | None:
    return value.decode("utf-8", "replace") if value else None


async def refuse(
    send: Send, refusal: Refusal, body: bytes | None = None, *, close: bool = False
) -> None:
    """Answer ``refusal`` (its error shape unless ``body`` is given; Retry-After
    on 503s); ``close``: the connection closes after it (a 408 always does)."""
    extra = [(b"retry-after", refusal.retry_after_s.encode())] if refusal.retry_after else []
    if close or refusal.status == 408:
        extra.append((b"connection", b"close"))  # what is left of its body is not read
    await respond(send, refusal.status, refusal.body() if body is None else body, extra)


async def respond(
    send: Send, status: int, body: bytes, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *CORS_HEADERS,
    ]
    if extra_headers:
        headers += extra_headers
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
