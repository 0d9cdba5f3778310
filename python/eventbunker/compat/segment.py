"""Segment's HTTP tracking API: ``{"success": true}``; errors as
``{"success": false, "code", "message"}`` with the status that tells
analytics clients whether to retry (429 and 5xx: yes; other 4xx: no)."""

from __future__ import annotations

import orjson

from eventbunker.compat.endpoint import Answer, Call
from eventbunker.errors import Refusal

SUCCESS = orjson.dumps({"success": True})


class Segment:
    format = "segment"

    def accepted(self, call: Call, accepted: int, duplicates: int) -> Answer:
        return Answer(200, SUCCESS)

    def refused(self, call: Call, refusal: Refusal) -> Answer:
        body = {"success": False, "code": refusal.code, "message": refusal.message}
        if refusal.details:
            body["details"] = refusal.details
        return Answer(refusal.status, orjson.dumps(body))


# Path → the call it stands for (None: a batch, each message names its type).
# analytics.js (analytics-next) posts to the one-letter paths.
PATHS: dict[str, str | None] = {
    "/v1/batch": None,
    "/v1/b": None,
    "/v1/track": "track",
    "/v1/t": "track",
    "/v1/page": "page",
    "/v1/p": "page",
    "/v1/screen": "screen",
    "/v1/s": "screen",
    "/v1/identify": "identify",
    "/v1/i": "identify",
    "/v1/group": "group",
    "/v1/g": "group",
    "/v1/alias": "alias",
    "/v1/a": "alias",
}


def settings(write_key: str, host: str, scheme: str) -> dict[str, object]:
    """analytics-next's project settings: only the Segment.io destination,
    sending here."""
    return {
        "integrations": {
            "Segment.io": {"apiKey": write_key, "apiHost": f"{host}/v1", "protocol": scheme}
        },
        "plan": {"track": {"__default": {"enabled": True, "integrations": {}}}},
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }
