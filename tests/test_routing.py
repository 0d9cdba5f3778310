"""The raw routes' router, over real HTTP: methods, preflights, fall-through."""

from __future__ import annotations

import httpx
import pytest

from conftest import Project
from eventbunker.routing import RawRoute, RawRouter


@pytest.mark.parametrize(
    ("path", "method", "allowed"),
    [
        ("/v1/events", "GET", "POST"),
        ("/v1/events/import", "GET", "POST"),
        ("/v1/events/import/some-id", "POST", "GET"),
    ],
)
def test_wrong_method_is_405_with_allow(
    client: httpx.Client, path: str, method: str, allowed: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == f"{allowed}, OPTIONS"
    assert response.json() == {
        "error": {"code": "method_not_allowed", "message": f"use {allowed}", "details": []}
    }


@pytest.mark.parametrize(
    ("path", "allowed"),
    [("/v1/events", "POST"), ("/v1/events/import", "POST"), ("/v1/events/import/x", "GET")],
)
def test_preflight_names_the_route_methods(client: httpx.Client, path: str, allowed: str) -> None:
    preflight = client.options(path, headers={"Origin": "https://shop.example"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-methods"] == f"{allowed}, OPTIONS"
    assert preflight.headers["access-control-allow-origin"] == "*"


def test_other_paths_reach_litestar(client: httpx.Client, project: Project) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    missing = client.get("/v1/events/importx")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    # The bare prefix is no progress route.
    assert client.get("/v1/events/import/").status_code == 404


def test_two_endpoints_for_one_route_are_refused() -> None:
    async def endpoint(scope: object, receive: object, send: object) -> None:
        return None

    with pytest.raises(ValueError, match="two raw routes for POST /x"):
        RawRouter(endpoint, [RawRoute("POST", "/x", endpoint), RawRoute("POST", "/x", endpoint)])
