"""The browser SDKs from npm (``@segment/analytics-next``, ``posthog-js``,
``mixpanel-browser``, ``@amplitude/analytics-browser``, installed in
tests/sdk_web/ by scripts/setup.sh) on a page served from another origin,
in Debian's headless Chromium: a pageview and a custom event from each
arrive with the browser's user agent parsed and the page URL's UTM tags.
"""

from __future__ import annotations

import functools
import time
import urllib.parse
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_web import DESKTOP_UA, browser  # noqa: F401 (the Chromium fixture)

import sdk_table
from conftest import Project, Server, serving, serving_in_a_thread

SDK_WEB = Path(__file__).resolve().parent / "sdk_web"
UTM = {"utm_source": "browser-test", "utm_medium": "cpc", "utm_campaign": "launch"}
VISIBLE_WITHIN_S = 20.0

# The pageview each SDK sends, by its own name for it.
PAGEVIEWS = {
    "segment": "page",
    "posthog": "$pageview",
    "mixpanel": "$mp_web_page_view",
    "amplitude": "[Amplitude] Page Viewed",
}


PACKAGES = {
    "segment": "@segment/analytics-next",
    "posthog": "posthog-js",
    "mixpanel": "mixpanel-browser",
    "amplitude": "@amplitude/analytics-browser",
}


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_origin() -> Iterator[str]:
    """tests/sdk_web/ (the page and the SDKs' node_modules) on its own origin."""
    if not (SDK_WEB / "node_modules").is_dir():
        pytest.fail("tests/sdk_web/node_modules is missing: run scripts/setup.sh (npm ci)")
    handler = functools.partial(QuietHandler, directory=str(SDK_WEB))
    with serving_in_a_thread(ThreadingHTTPServer(("127.0.0.1", 0), handler)) as url:
        yield url


@pytest.fixture(scope="module")
def sdk_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log_dir = tmp_path_factory.mktemp("browser-sdk")
    with sdk_table.writing(), serving(database_url, log_dir, "--workers", "1") as srv:
        yield srv


def wait_rows(db: psycopg.Connection[Any], project_id: int, names: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + VISIBLE_WITHIN_S
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    while True:
        rows = cur.execute("SELECT * FROM events WHERE project_id = %s", (project_id,)).fetchall()
        found = {r["event_name"]: r for r in rows}
        if names <= found.keys() or time.monotonic() > deadline:
            assert names <= found.keys(), sorted(found)
            return found
        time.sleep(0.1)


@pytest.mark.parametrize("sdk", sorted(PAGEVIEWS))
def test_browser_sdk_pageview_and_event(
    sdk: str,
    sdk_server: Server,
    page_origin: str,
    browser: Any,  # noqa: F811 (the fixture imported from test_web)
    project: Project,
    db: psycopg.Connection[Any],
) -> None:
    query = urllib.parse.urlencode(
        {"sdk": sdk, "server": sdk_server.url, "key": project.write_key, **UTM}
    )
    page_url = f"{page_origin}/page.html?{query}"
    context = browser.new_context(user_agent=DESKTOP_UA)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(page_url)
        page.wait_for_function("window.sdkDone || window.sdkError", timeout=15_000)
        assert page.evaluate("window.sdkError || null") is None
        rows = wait_rows(db, project.id, {PAGEVIEWS[sdk], "Browser Click"})
    finally:
        context.close()
    for call, name in (("pageview", PAGEVIEWS[sdk]), ("custom event", "Browser Click")):
        sdk_table.record(f"{PACKAGES[sdk]} (browser)", call, name in rows)
    for name in (PAGEVIEWS[sdk], "Browser Click"):
        row = rows[name]
        assert row["ua_browser"] == "Chrome", (name, row["user_agent"])
        assert row["ua_os"] == "Windows"
        assert {k: row[k] for k in UTM} == UTM, name
        assert row["distinct_id"], name
    assert rows["Browser Click"]["properties"]["button"] == "buy"
    pageview = rows[PAGEVIEWS[sdk]]
    assert pageview["url_host"] == "127.0.0.1"
    assert pageview["url_path"] == "/page.html"
    # No error on the page: start-up calls (PostHog's config and flags,
    # Segment's settings) got valid answers.
    assert errors == []
