"""Every SDK path and its endpoint, as rows of the application's raw-route
table (routing.py)."""

from __future__ import annotations

from typing import Any

import orjson
from litestar import MediaType, Request, Response, get
from litestar.handlers import HTTPRouteHandler

from eventbunker.compat import amplitude, mixpanel, posthog, segment
from eventbunker.compat.endpoint import Answer, Dialect, SdkEndpoint, answer
from eventbunker.ingest.auth import KeyCache
from eventbunker.ingest.endpoint import IngestEndpoint, header_map
from eventbunker.routing import RawEndpoint, RawRoute


def sdk_routes(ingest: IngestEndpoint, keys: KeyCache) -> list[RawRoute]:
    """POST and OPTIONS (the endpoints answer browsers' preflights themselves:
    mixpanel-browser sends credentials, so the origin is echoed)."""

    def endpoint(dialects: dict[str, Dialect], fmt: str, call: str | None) -> SdkEndpoint:
        return SdkEndpoint(ingest, keys, dialects, format=fmt, call=call)

    seg: dict[str, Dialect] = {"segment": segment.Segment()}
    ph: dict[str, Dialect] = {"posthog": posthog.PostHog()}
    shared: dict[str, Dialect] = {
        "posthog": posthog.PostHog(),
        "mixpanel": mixpanel.MixpanelTrack(),
    }
    amp: dict[str, Dialect] = {"amplitude": amplitude.Amplitude(ingest.limits.max_batch_events)}
    routes: list[tuple[str, RawEndpoint]] = []
    routes += [(p, endpoint(seg, "segment", c)) for p, c in segment.PATHS.items()]
    routes += [(p, endpoint(ph, "posthog", c)) for p, c in posthog.PATHS.items()]
    routes += [
        (p, endpoint(shared, "posthog-or-mixpanel", c)) for p, c in posthog.SHARED_PATHS.items()
    ]
    routes += [
        ("/track", endpoint({"mixpanel": mixpanel.MixpanelTrack()}, "mixpanel", None)),
        ("/import", endpoint({"mixpanel": mixpanel.MixpanelImport()}, "mixpanel", "import")),
    ]
    routes += [(p, endpoint(amp, "amplitude", c)) for p, c in amplitude.PATHS.items()]
    flags = StaticAnswer(posthog.no_flags())
    rows = [
        RawRoute(method, path, endpoint, exact=True)
        for path, endpoint in routes
        for method in ("POST", "OPTIONS")
    ]
    rows += [
        RawRoute(method, path, flags, exact=True)
        for path in ("/flags/", "/flags", "/decide/", "/decide")
        for method in ("POST", "GET", "OPTIONS")
    ]
    return rows


class StaticAnswer:
    """A fixed JSON answer to any method (with CORS): posthog-js's ``/flags/``."""

    def __init__(self, document: dict[str, object]) -> None:
        self._body = orjson.dumps(document)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = header_map(scope)
        preflight = scope["method"] == "OPTIONS"
        reply = Answer(204, b"") if preflight else Answer(200, self._body)
        await answer(send, reply, headers, preflight=preflight)


def posthog_config_handlers() -> list[HTTPRouteHandler]:
    """posthog-js fetches its remote config at start-up (a simple GET)."""

    @get("/array/{token:str}/config", media_type=MediaType.JSON, include_in_schema=False)
    async def config(token: str) -> Response[dict[str, object]]:
        return Response(posthog.remote_config(token), headers=ANY_ORIGIN)

    @get(
        "/array/{token:str}/config.js", media_type="application/javascript", include_in_schema=False
    )
    async def config_js(token: str) -> Response[str]:
        document = orjson.dumps({"config": posthog.remote_config(token), "siteApps": []}).decode()
        script = (
            "(function(){window._POSTHOG_REMOTE_CONFIG=window._POSTHOG_REMOTE_CONFIG||{};"
            f"window._POSTHOG_REMOTE_CONFIG[{orjson.dumps(token).decode()}]={document};}})();"
        )
        return Response(script, headers=ANY_ORIGIN)

    return [config, config_js]


def segment_settings_handlers() -> list[HTTPRouteHandler]:
    """analytics.js (analytics-next) loads its settings from ``cdnURL``: with
    ``cdnURL`` set to this server, they send to it (its Segment.io
    destination only, no device-mode integrations)."""

    @get(
        "/v1/projects/{write_key:str}/settings", media_type=MediaType.JSON, include_in_schema=False
    )
    async def settings(
        request: Request[Any, Any, Any], write_key: str
    ) -> Response[dict[str, object]]:
        host = request.headers.get("host", "")
        return Response(segment.settings(write_key, host, request.url.scheme), headers=ANY_ORIGIN)

    return [settings]


ANY_ORIGIN = {"access-control-allow-origin": "*"}
