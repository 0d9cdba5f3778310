"""PostHog capture: ``{"status": 1}``; errors as PostHog's
``{"type", "code", "detail"}`` (posthog-python reads ``detail``; its clients
retry 429 and 5xx, not other 4xx). posthog-js's start-up calls (remote
config, flags) get a valid "nothing configured" answer."""

from __future__ import annotations

import orjson

from eventbunker.compat.endpoint import Answer, Call
from eventbunker.errors import Refusal

SUCCESS = orjson.dumps({"status": 1})

ERROR_TYPES = {400: "validation_error", 401: "authentication_error", 403: "authentication_error"}


class PostHog:
    format = "posthog"

    def accepted(self, call: Call, accepted: int, duplicates: int) -> Answer:
        return Answer(200, SUCCESS)

    def refused(self, call: Call, refusal: Refusal) -> Answer:
        kind = ERROR_TYPES.get(refusal.status, "server_error" if refusal.status >= 500 else "")
        body = {
            "type": kind or "validation_error",
            "code": refusal.code,
            "detail": refusal.message,
            "attr": (refusal.details or [{}])[0].get("field"),
        }
        return Answer(refusal.status, orjson.dumps(body))


PATHS: dict[str, str | None] = {
    "/batch/": None,
    "/capture/": None,
    "/capture": None,
    "/e/": None,
    "/e": None,
    "/i/v0/e/": None,
    "/i/v0/e": None,
    # posthog-python's capture_ai() lane (the same batch body).
    "/i/v0/ai/batch/": None,
    "/i/v0/ai/batch": None,
}
# Shared with Mixpanel, whose SDKs post to the same paths, told apart by the
# payload's shape (rust/src/compat/mod.rs); path → the call (``engage`` and
# ``groups``: profile updates, one shape for both, rust/src/compat/profile.rs).
SHARED_PATHS: dict[str, str | None] = {
    "/track/": None,
    "/engage/": "engage",
    "/engage": "engage",
    "/groups/": "groups",
    "/groups": "groups",
}


def remote_config(token: str) -> dict[str, object]:
    """posthog-js's ``/array/<token>/config``: nothing switched on server-side
    (no flags, recordings, surveys, site apps); gzip accepted."""
    return {
        "token": token,
        "supportedCompression": ["gzip-js", "base64"],
        "hasFeatureFlags": False,
        "autocapture_opt_out": False,
        "autocaptureExceptions": False,
        "captureDeadClicks": False,
        "capturePerformance": False,
        "analytics": {"endpoint": "/i/v0/e/"},
        "elementsChainAsString": True,
        "sessionRecording": False,
        "heatmaps": False,
        "surveys": False,
        "productTours": False,
        "defaultIdentifiedOnly": True,
        "siteApps": [],
    }


def no_flags() -> dict[str, object]:
    """``/flags/`` (and the older ``/decide/``): no feature flag is defined."""
    return {
        "flags": {},
        "featureFlags": {},
        "featureFlagPayloads": {},
        "errorsWhileComputingFlags": False,
        "quotaLimited": [],
        **remote_config(""),
    }
