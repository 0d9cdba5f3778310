"""One raw ASGI endpoint per SDK path: read the body, find the key, hand the
body to the ingest endpoint's durable path, answer in the SDK's own shape.

Raw ASGI for the same reason as ``POST /v1/events``: these are ingest hot
paths (see ingest/endpoint.py).
"""

from __future__ import annotations

import base64
import binascii
import functools
import time
import urllib.parse
from dataclasses import dataclass
from typing import Protocol

from eventbunker import _native
from eventbunker.errors import ErrorCode, Refusal
from eventbunker.ingest.auth import ApiKey, KeyCache
from eventbunker.ingest.endpoint import (
    IngestEndpoint,
    Receive,
    Scope,
    SdkPayload,
    Send,
    content_encoding_is_gzip,
    header_map,
)

FORM_MEDIA_TYPE = b"application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class Call:
    """One request to an SDK endpoint, as its answer needs it."""

    query: dict[str, str]
    body_bytes: int
    received_at_us: int
    # The form's fields (Mixpanel's verbose/strict), when the body was a form.
    verbose: bool | None = None
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: bytes = b"application/json"


class Dialect(Protocol):
    """How one SDK talks: its format name and its answers."""

    format: str

    def accepted(self, call: Call, accepted: int, duplicates: int) -> Answer: ...

    def refused(self, call: Call, refusal: Refusal) -> Answer: ...


def request_secret(headers: dict[bytes, bytes]) -> str | None:
    """``X-Api-Key``, ``Authorization: Bearer KEY`` or ``Basic`` with the key as
    the user name (Segment's write key, Mixpanel's secret; the password is
    ignored)."""
    api_key = headers.get(b"x-api-key")
    if api_key:
        return api_key.decode("latin-1")
    authorization = headers.get(b"authorization")
    return _authorization_secret(authorization) if authorization else None


@functools.lru_cache(maxsize=1024)
def _authorization_secret(authorization: bytes) -> str | None:
    """Cached: an SDK sends the same header on every request (decoding it
    was a per-request cost of the Segment path)."""
    scheme, _, credentials = authorization.decode("latin-1").strip().partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip() or None
    if scheme.lower() == "basic":
        try:
            user = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user.partition(":")[0] or None
    return None


def query_fields(scope: Scope) -> dict[str, str]:
    """The query string's fields (the last of repeated ones); most SDK
    requests have none, and skip the parser."""
    query_string: bytes = scope.get("query_string", b"")
    if not query_string:
        return {}
    return {k: v[-1] for k, v in urllib.parse.parse_qs(query_string.decode()).items()}


class SdkEndpoint:
    """``POST`` of one SDK path (``OPTIONS`` for browsers' preflights)."""

    def __init__(
        self,
        ingest: IngestEndpoint,
        keys: KeyCache,
        dialects: dict[str, Dialect],
        *,
        format: str,
        call: str | None = None,
    ) -> None:
        """``format`` names the payload (``posthog-or-mixpanel``: resolved by
        its shape, and ``dialects`` holds an answer shape for each)."""
        self._ingest = ingest
        self._keys = keys
        self._dialects = dialects
        self._format = format
        self._call = call
        # The common case (a known format, a key in the headers, a JSON
        # body) needs no per-request lookups.
        self._dialect = dialects.get(format) or next(iter(dialects.values()))
        self._payload = SdkPayload(format, call) if format in dialects else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope)
        if scope["method"] == "OPTIONS":
            await answer(send, Answer(204, b""), headers, preflight=True)
            return
        received_at_us = time.time_ns() // 1000
        query = query_fields(scope)
        call = Call(query, 0, received_at_us)
        dialect = self._dialect
        key: ApiKey | None = None
        try:
            if scope["method"] != "POST":
                raise Refusal(ErrorCode.METHOD_NOT_ALLOWED, "use POST")
            body = await self._ingest.read_body(headers, receive)
            gzip = content_encoding_is_gzip(headers) or query.get("compression") == "gzip-js"
            media_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
            form = media_type == FORM_MEDIA_TYPE
            secret = request_secret(headers)
            payload = self._payload
            if secret is None or form or payload is None:
                decoded = self._decode(body, self._format, gzip=gzip, form=form)
                dialect = self._dialects[decoded.format]
                call = Call(query, len(body), received_at_us, decoded.verbose, decoded.strict)
                secret = secret or decoded.key
                use_peer = query.get("ip") != "0" and decoded.ip is not False
                payload = SdkPayload(decoded.format, self._call, use_peer=use_peer)
                body, gzip = decoded.json, False
            else:
                call = Call(query, len(body), received_at_us)
                if query.get("ip") == "0":
                    payload = SdkPayload(payload.format, self._call, use_peer=False)
            key = await self._keys.require(secret, "write")
            accepted, duplicates = await self._ingest.accept(
                key, scope, headers, body, received_at_us, gzip=gzip, sdk=payload
            )
        except Refusal as refusal:
            self._ingest.count_refusal(key, refusal)
            extra = (
                [(b"retry-after", refusal.retry_after_s.encode())] if refusal.retry_after else []
            )
            await answer(send, dialect.refused(call, refusal), headers, extra=extra)
            return
        await answer(send, dialect.accepted(call, accepted, duplicates), headers)

    def _decode(self, body: bytes, fmt: str, *, gzip: bool, form: bool) -> _native.SdkBody:
        try:
            return _native.sdk_body(
                body, format=fmt, gzip=gzip, form=form, limits=self._ingest.limits
            )
        except _native.IngestError as exc:
            raise Refusal(ErrorCode[exc.code.upper()], exc.message, exc.details) from None


def cors_headers(headers: dict[bytes, bytes], *, preflight: bool) -> list[tuple[bytes, bytes]]:
    """The SDKs call from any page, some with credentials (mixpanel-browser's
    XHR): the origin is echoed, since ``*`` is refused with credentials."""
    origin = headers.get(b"origin")
    if origin is None:
        return [(b"access-control-allow-origin", b"*")]
    out = [
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-credentials", b"true"),
        (b"vary", b"Origin"),
    ]
    if preflight:
        requested = headers.get(b"access-control-request-headers")
        out += [
            (b"access-control-allow-methods", b"POST, GET, OPTIONS"),
            (b"access-control-allow-headers", requested or b"content-type"),
            (b"access-control-max-age", b"86400"),
        ]
    return out


async def answer(
    send: Send,
    reply: Answer,
    request_headers: dict[bytes, bytes],
    *,
    preflight: bool = False,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", reply.content_type),
        (b"content-length", str(len(reply.body)).encode()),
        *cors_headers(request_headers, preflight=preflight),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
