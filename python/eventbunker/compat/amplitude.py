"""Amplitude's HTTP V2 and Batch APIs: ``{"code": 200, "events_ingested",
"payload_size_bytes", "server_upload_time"}``; errors as ``{"code",
"error"}``. A refused key answers 400 ``Invalid API key: …`` (the SDKs stop
on it); invalid events name their indexes in ``events_with_invalid_fields``
or ``events_with_missing_fields``, so the SDKs drop those and retry the
others (a batch is all or nothing: the others were not stored). Over a rate
limit, ``429`` lists every index in ``throttled_events``: the SDKs then
retry those events after a delay (30 s in amplitude-analytics) instead of
at once, which would spend their retries within the overload."""

from __future__ import annotations

from typing import Any

import orjson

from eventbunker.compat.endpoint import Answer, Call
from eventbunker.errors import Refusal

KEY_CODES = frozenset({"missing_key", "unknown_key", "revoked_key", "wrong_key_kind"})


class Amplitude:
    format = "amplitude"

    def __init__(self, max_batch_events: int) -> None:
        # A refused request was not parsed: its events are at most this many.
        self._all_indexes = list(range(max_batch_events))

    def accepted(self, call: Call, accepted: int, duplicates: int) -> Answer:
        body = {
            "code": 200,
            "events_ingested": accepted + duplicates,
            "payload_size_bytes": call.body_bytes,
            "server_upload_time": call.received_at_us // 1000,
        }
        return Answer(200, orjson.dumps(body))

    def refused(self, call: Call, refusal: Refusal) -> Answer:
        if refusal.code in KEY_CODES:
            return Answer(
                400, orjson.dumps({"code": 400, "error": f"Invalid API key: {refusal.message}"})
            )
        body: dict[str, Any] = {"code": refusal.status, "error": refusal.message}
        if refusal.status == 429:
            body["throttled_events"] = self._all_indexes
        missing: dict[str, list[int]] = {}
        invalid: dict[str, list[int]] = {}
        for d in refusal.details or []:
            if d.get("index") is None:
                continue
            into = missing if d.get("message") == "is required" else invalid
            into.setdefault(d.get("field") or "event", []).append(d["index"])
        if missing:
            body["events_with_missing_fields"] = missing
        if invalid:
            body["events_with_invalid_fields"] = invalid
        return Answer(refusal.status, orjson.dumps(body))


PATHS: dict[str, str | None] = {"/2/httpapi": None, "/batch": None}
