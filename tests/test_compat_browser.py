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

# The other calls page.html makes, each with the key of its stored event
# (``call_key``).
OTHER_CALLS = {
    "segment": {
        "screen": "screen",
        "identify": "identify",
        "group": "group",
        "alias": "alias",
    },
    "posthog": {
        "identify": "$identify",
        "setPersonProperties": "$set",
        "group": "$groupidentify",
        "alias": "$create_alias",
        "captureException": "$exception",
    },
    "mixpanel": {
        "identify": "$identify",
        "alias": "$create_alias",
        **{
            f"people.{op}": f"engage {key}"
            for op, key in {
                "set": "$set",
                "set_once": "$set_once",
                "increment": "$add",
                "append": "$append",
                "union": "$union",
                "unset": "$unset",
                "remove": "$remove",
                "clear_charges": "$set $transactions",
                "delete_user": "$delete",
            }.items()
        },
        "set_group": "engage $set company",
        **{
            f"get_group().{op}": f"groups {op_key}"
            for op, op_key in {
                "set": "$set",
                "set_once": "$set_once",
                "union": "$union",
                "unset": "$unset",
                "remove": "$remove",
                "delete": "$delete",
            }.items()
        },
    },
    "amplitude": {
        "identify": "$identify",
        "setGroup": "$identify groups",
        "groupIdentify": "$groupidentify",
        "revenue": "revenue_amount",
    },
}
PROFILE_OPS = ("$set", "$set_once", "$add", "$append", "$union", "$unset", "$remove", "$delete")


def call_key(sdk: str, row: dict[str, Any]) -> str:
    """A stored event by its name, but Mixpanel's profile updates (stored as
    ``$identify`` / ``$groupidentify``, rust/src/compat/profile.rs) by their
    operation, and Amplitude's set_group apart from its identify."""
    name, props = str(row["event_name"]), row["properties"]
    if sdk == "mixpanel" and "mp_lib" not in props:
        op = next(k for k in props if k in PROFILE_OPS)
        detail = [k for k in ("$transactions", "company") if k in (props[op] or ())]
        return " ".join(["engage" if name == "$identify" else "groups", op, *detail])
    if sdk == "amplitude" and name == "$identify" and "groups" in props:
        return "$identify groups"
    return name


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


def wait_rows(
    db: psycopg.Connection[Any], project_id: int, sdk: str, keys: set[str]
) -> dict[str, Any]:
    """The project's events by ``call_key`` once all ``keys`` are there (or
    the time is up)."""
    deadline = time.monotonic() + VISIBLE_WITHIN_S
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    while True:
        rows = cur.execute("SELECT * FROM events WHERE project_id = %s", (project_id,)).fetchall()
        found = {call_key(sdk, r): r for r in rows}
        if keys <= found.keys() or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.mark.parametrize("sdk", list(PAGEVIEWS))
def test_browser_sdk_calls(
    sdk: str,
    sdk_server: Server,
    page_origin: str,
    browser: Any,  # noqa: F811 (the fixture imported from test_web)
    project: Project,
    db: psycopg.Connection[Any],
) -> None:
    """A pageview and a custom event with the page's UA and UTM tags, then
    every other call type of the SDK (page.html), each stored."""
    query = urllib.parse.urlencode(
        {"sdk": sdk, "server": sdk_server.url, "key": project.write_key, **UTM}
    )
    page_url = f"{page_origin}/page.html?{query}"
    context = browser.new_context(user_agent=DESKTOP_UA)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    calls = {"pageview": PAGEVIEWS[sdk], "custom event": "Browser Click", **OTHER_CALLS[sdk]}
    try:
        page.goto(page_url)
        page.wait_for_function("window.sdkDone || window.sdkError", timeout=15_000)
        assert page.evaluate("window.sdkError || null") is None
        rows = wait_rows(db, project.id, sdk, set(calls.values()))
    finally:
        context.close()
    for call, key in calls.items():
        sdk_table.record(f"{PACKAGES[sdk]} (browser)", call, key in rows)
    assert set(calls.values()) <= rows.keys(), sorted(rows)
    for name in (PAGEVIEWS[sdk], "Browser Click"):
        row = rows[name]
        assert row["ua_browser"] == "Chrome", (name, row["user_agent"])
        assert row["ua_os"] == "Windows"
        assert {k: row[k] for k in UTM} == UTM, name
    assert rows["Browser Click"]["properties"]["button"] == "buy"
    pageview = rows[PAGEVIEWS[sdk]]
    assert pageview["url_host"] == "127.0.0.1"
    assert pageview["url_path"] == "/page.html"
    # Every call names its person (a group's own update has none: Mixpanel).
    for key, row in rows.items():
        assert row["distinct_id"] or key.startswith("groups "), key
    # One identify names the user; mixpanel-browser's alias() then identifies
    # as the alias too (a second $identify, stored in either order).
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    every = cur.execute("SELECT * FROM events WHERE project_id = %s", (project.id,)).fetchall()
    identify = OTHER_CALLS[sdk]["identify"]
    assert "b-user" in {r["distinct_id"] for r in every if call_key(sdk, r) == identify}
    # No error on the page: start-up calls (PostHog's config and flags,
    # Segment's settings, Mixpanel's flags) got valid answers.
    assert errors == []
