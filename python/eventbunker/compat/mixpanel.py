"""Mixpanel ingestion: ``/track`` answers ``1``/``0``, or with ``verbose=1``
``{"status": 1|0, "error"}``; ``/import`` answers ``{"code",
"num_records_imported", "status"}`` and, refused, ``failed_records`` per
record (index, ``$insert_id``, field, message) as Mixpanel's ``strict=1``
describes them. A batch is all or nothing: with an invalid record none is
imported (``num_records_imported: 0``)."""

from __future__ import annotations

from typing import Any

import orjson

from eventbunker.compat.endpoint import Answer, Call
from eventbunker.errors import Refusal

TEXT = b"text/plain"


def _verbose(call: Call) -> bool:
    return bool(call.verbose) or call.query.get("verbose") == "1"


class MixpanelTrack:
    format = "mixpanel"

    def accepted(self, call: Call, accepted: int, duplicates: int) -> Answer:
        if _verbose(call):
            return Answer(200, orjson.dumps({"status": 1, "error": None}))
        return Answer(200, b"1", TEXT)

    def refused(self, call: Call, refusal: Refusal) -> Answer:
        if _verbose(call):
            return Answer(refusal.status, orjson.dumps({"status": 0, "error": refusal.message}))
        return Answer(refusal.status, b"0", TEXT)


class MixpanelImport:
    format = "mixpanel"

    def accepted(self, call: Call, accepted: int, duplicates: int) -> Answer:
        # Mixpanel's Python client posts a form with verbose=1 and checks
        # status == 1; the JSON API says "OK".
        status: Any = 1 if call.verbose else "OK"
        return Answer(
            200,
            orjson.dumps(
                {"code": 200, "num_records_imported": accepted + duplicates, "status": status}
            ),
        )

    def refused(self, call: Call, refusal: Refusal) -> Answer:
        body: dict[str, Any] = {
            "code": refusal.status,
            "error": refusal.message,
            "status": 0 if call.verbose else "Bad Request",
            "num_records_imported": 0,
        }
        if refusal.details:
            body["failed_records"] = [
                {"index": d.get("index"), "field": d.get("field"), "message": d.get("message")}
                for d in refusal.details
            ]
        return Answer(refusal.status, orjson.dumps(body))
