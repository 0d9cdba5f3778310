"""The web app: sessions, cookies and CSRF over HTTP, then a real headless Chromium.

The browser is Debian's ``chromium`` (installed by ``scripts/setup.sh``)
driven by Playwright; screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from test_admin_api import wait_stored

from conftest import Server, shared_testdata, start_server, stop_server
from eventbunker.admin.accounts import (
    create_account,
    create_admin_key,
    create_project_in_account,
    revoke_admin_key,
)

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
GEOIP_DB = shared_testdata("geoip/GeoIP2-City-Test.mmdb")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
DESKTOP_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36"
    " (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)


@pytest.fixture(scope="module")
def web_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker behind a "proxy" on loopback (X-Forwarded-Proto is believed), with GeoIP."""
    args = ["--workers", "1", "--trusted-proxies", "127.0.0.1", "--geoip-db", str(GEOIP_DB)]
    server = start_server(database_url, tmp_path_factory.mktemp("web"), *args)
    try:
        yield server
    finally:
        stop_server(server)


def csrf_token(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "every form carries a CSRF token"
    return match[1]


def cookie_attributes(response: httpx.Response, name: str) -> dict[str, str]:
    for header in response.headers.get_list("set-cookie"):
        parts = [p.strip() for p in header.split(";")]
        key, _, value = parts[0].partition("=")
        if key == name:
            attrs = {"value": value}
            for part in parts[1:]:
                k, _, v = part.partition("=")
                attrs[k.lower()] = v
            return attrs
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers}")


def sign_in(http: httpx.Client, admin_key: str, **headers: str) -> httpx.Response:
    token = csrf_token(http.get("/login", headers=headers).text)
    return http.post("/login", data={"admin_key": admin_key, "csrf_token": token}, headers=headers)


def test_sign_in_cookie_and_csrf_rules(server: Server, db: psycopg.Connection[Any]) -> None:
    account = create_account(db, "web-rules")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/").headers["location"] == "/login"
        login_page = http.get("/login")
        assert login_page.status_code == 200
        login_cookie = cookie_attributes(login_page, "eventbunker_login_csrf")
        assert "httponly" in login_cookie and login_cookie["samesite"].lower() == "lax"
        token = csrf_token(login_page.text)

        # The sign-in form itself is CSRF-checked: no token, a wrong one, another site.
        form = {"admin_key": account["admin_key"]}
        assert http.post("/login", data=form).status_code == 403
        assert http.post("/login", data={**form, "csrf_token": "forged"}).status_code == 403
        other_site = {"Origin": "https://evil.example"}
        refused = http.post("/login", data={**form, "csrf_token": token}, headers=other_site)
        assert refused.status_code == 403
        assert "eventbunker_session" not in refused.headers.get("set-cookie", "")
        # Project keys and unknown keys do not sign in.
        project_key = create_project_key(db, account["id"])
        wrong = http.post("/login", data={"admin_key": project_key, "csrf_token": token})
        assert wrong.status_code == 401 and "project key" in wrong.text
        unknown = http.post("/login", data={"admin_key": "eba_nope", "csrf_token": token})
        assert unknown.status_code == 401

        signed_in = http.post("/login", data={**form, "csrf_token": token})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
        session_cookie = cookie_attributes(signed_in, "eventbunker_session")
        assert "httponly" in session_cookie
        assert session_cookie["samesite"].lower() == "lax"
        assert "secure" not in session_cookie  # plain http here
        assert session_cookie["path"] == "/"
        # The database keeps only a hash of the session token.
        hashes = db.execute("SELECT token_hash FROM web_sessions").fetchall()
        assert all(session_cookie["value"].encode() not in bytes(h[0]) for h in hashes)

        home = http.get("/")
        assert home.status_code == 200
        assert "web-rules" in home.text
        assert home.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in home.headers["content-security-policy"]
        assert home.headers["x-frame-options"] == "DENY"
        token = csrf_token(home.text)

        # Every form POST needs this session's token, from this site.
        def projects() -> int:
            row = db.execute(
                "SELECT count(*) FROM projects WHERE account_id = %s", (account["id"],)
            ).fetchone()
            assert row is not None
            return int(row[0])

        before = projects()
        assert http.post("/projects", data={"name": "no-token"}).status_code == 403
        bad = http.post("/projects", data={"name": "bad", "csrf_token": token[:-2] + "xx"})
        assert bad.status_code == 403
        assert "security token" in bad.text
        cross = http.post(
            "/projects", data={"name": "cross", "csrf_token": token}, headers=other_site
        )
        assert cross.status_code == 403
        # A token of another session of the same account is not this session's.
        with httpx.Client(base_url=server.url, timeout=10) as other:
            sign_in(other, account["admin_key"])
            other_token = csrf_token(other.get("/").text)
        assert other_token != token
        stolen = http.post("/projects", data={"name": "other", "csrf_token": other_token})
        assert stolen.status_code == 403
        assert projects() == before

        created = http.post("/projects", data={"name": "from-web", "csrf_token": token})
        assert created.status_code == 201
        assert projects() == before + 1
        assert len(re.findall(r'class="secret-value"', created.text)) == 3

        # Same rule for the other forms, e.g. revoking a key.
        key_id = db.execute(
            "SELECT k.id, k.project_id FROM api_keys k JOIN projects p ON p.id = k.project_id"
            " WHERE p.account_id = %s AND k.revoked_at IS NULL ORDER BY k.id LIMIT 1",
            (account["id"],),
        ).fetchone()
        assert key_id is not None
        revoke = f"/projects/{key_id[1]}/keys/{key_id[0]}/revoke"
        assert http.post(revoke).status_code == 403
        assert http.post(revoke, data={"csrf_token": "x"}).status_code == 403
        still = db.execute("SELECT revoked_at FROM api_keys WHERE id = %s", (key_id[0],))
        assert still.fetchone() == (None,)
        assert http.post(revoke, data={"csrf_token": token}).status_code == 303
        done = db.execute("SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = %s", (key_id[0],))
        assert done.fetchone() == (True,)

        # Sign out ends the session server-side: the old cookie is worthless.
        old_cookie = http.cookies.get("eventbunker_session")
        assert http.post("/logout", data={"csrf_token": token}).status_code == 303
        with httpx.Client(base_url=server.url, timeout=10) as replay:
            replay.cookies.set("eventbunker_session", old_cookie or "")
            assert replay.get("/").status_code == 303


def create_project_key(db: psycopg.Connection[Any], account_id: int) -> str:
    created = create_project_in_account(db, account_id, "keys-only")
    return str(created["keys"]["write"])


def test_sessions_are_per_account_and_end_with_their_key(
    server: Server, db: psycopg.Connection[Any]
) -> None:
    mine = create_account(db, "mine")
    theirs = create_account(db, "theirs")
    their_project = create_project_key(db, theirs["id"])
    their_id = db.execute(
        "SELECT project_id FROM api_keys WHERE prefix = %s", (their_project[:10],)
    ).fetchone()
    assert their_id is not None
    second = create_admin_key(db, mine["id"])
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert sign_in(http, second["admin_key"]).status_code == 303
        assert http.get(f"/projects/{their_id[0]}").status_code == 404
        assert http.get(f"/projects/{their_id[0]}/live").status_code == 404
        assert "theirs" not in http.get("/").text
        token = csrf_token(http.get("/").text)
        forged = http.post(
            f"/projects/{their_id[0]}/rename", data={"name": "x", "csrf_token": token}
        )
        assert forged.status_code == 404
        # Revoking the admin key ends the sessions it opened.
        revoke_admin_key(db, second["id"])
        assert http.get("/").status_code == 303
        assert http.get(f"/projects/{their_id[0]}/live").status_code == 401


def test_secure_cookie_over_https(
    web_server: Server, server: Server, db: psycopg.Connection[Any]
) -> None:
    account = create_account(db, "https")
    # Behind a trusted proxy that terminated TLS: both cookies are Secure (so
    # httpx, speaking plain http to the server, must be handed them by hand).
    https = {"X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=web_server.url, timeout=10) as http:
        login_page = http.get("/login", headers=https)
        login_cookie = cookie_attributes(login_page, "eventbunker_login_csrf")
        assert "secure" in login_cookie
        response = http.post(
            "/login",
            data={"admin_key": account["admin_key"], "csrf_token": csrf_token(login_page.text)},
            headers={**https, "Cookie": f"eventbunker_login_csrf={login_cookie['value']}"},
        )
        assert response.status_code == 303
        session_cookie = cookie_attributes(response, "eventbunker_session")
        assert "secure" in session_cookie and "httponly" in session_cookie
    # The same header from a peer that is not a trusted proxy changes nothing.
    with httpx.Client(base_url=server.url, timeout=10) as http:
        response = sign_in(http, account["admin_key"], **{"X-Forwarded-Proto": "https"})
        assert "secure" not in cookie_attributes(response, "eventbunker_session")


def test_ingest_and_api_routes_are_not_behind_csrf(
    server: Server, db: psycopg.Connection[Any]
) -> None:
    account = create_account(db, "no-csrf-on-api")
    key = create_project_key(db, account["id"])
    with httpx.Client(base_url=server.url, timeout=10) as http:
        sign_in(http, account["admin_key"])  # a session cookie is present and ignored
        sent = http.post(
            "/v1/events",
            json={"event_name": "cross-site"},
            headers={"X-Api-Key": key, "Origin": "https://shop.example"},
        )
        assert sent.status_code == 202, sent.text
        assert sent.headers["access-control-allow-origin"] == "*"
        admin = http.post(
            "/v1/projects",
            json={"name": "api"},
            headers={"Authorization": f"Bearer {account['admin_key']}"},
        )
        assert admin.status_code == 201
        for path in ("/healthz", "/readyz", "/metrics"):
            assert http.get(path).status_code == 200


# --- The browser ------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing: run scripts/setup.sh (it installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def send_events(url: str, key: str, batches: int, per_batch: int, pause_s: float) -> None:
    """Traffic as a site would send it, over HTTP with the key made in the browser."""
    pages = ["/pricing", "/", "/checkout"]
    with httpx.Client(base_url=url, timeout=10) as http:
        for i in range(batches):
            batch = [
                {
                    "event_name": "checkout" if n == 0 else "page_view",
                    "url": f"https://shop.example{pages[(i + n) % 3]}?utm_source=newsletter"
                    "&utm_medium=email",
                    "referrer": "https://www.google.com/search?q=eventbunker",
                    "ip": "81.2.69.142",
                    "plan": "pro",
                }
                for n in range(per_batch)
            ]
            ua = IPHONE_UA if i % 2 else DESKTOP_UA
            response = http.post(
                "/v1/events", json=batch, headers={"X-Api-Key": key, "User-Agent": ua}
            )
            assert response.status_code == 202, response.text
            time.sleep(pause_s)


def test_browser_sign_in_create_project_and_key_then_watch_events(
    browser: Any, web_server: Server, db: psycopg.Connection[Any]
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    account = create_account(db, "Acme Retail")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    # Sign in.
    page.goto(web_server.url + "/")
    assert page.url.endswith("/login")
    page.screenshot(path=str(ARTIFACTS / "web-login.png"))
    page.fill("#admin_key", account["admin_key"])
    page.click("button:has-text('Sign in')")
    page.wait_for_url(web_server.url + "/")
    [session] = [c for c in context.cookies() if c["name"] == "eventbunker_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"
    assert session["secure"] is False  # plain http on loopback

    # A project; its three keys are shown once.
    page.fill("#project-name", "Storefront")
    page.click("button:has-text('Create project')")
    page.wait_for_selector("#new-keys")
    assert page.locator(".secret-value").count() == 3
    page.screenshot(path=str(ARTIFACTS / "web-new-project-keys.png"))
    row = db.execute(
        "SELECT id FROM projects WHERE account_id = %s AND name = 'Storefront'", (account["id"],)
    ).fetchone()
    assert row is not None
    project_id = int(row[0])
    page.goto(f"{web_server.url}/projects/{project_id}")

    # A write key, made in the browser; the secret is shown once.
    page.select_option("#new-key select[name=kind]", "write")
    page.fill("#new-key input[name=name]", "website")
    page.fill("#new-key input[name=customer_identifier]", "cust-42")
    page.click("button:has-text('Create key')")
    secret = page.locator(".secret-value[data-kind=write]").inner_text().strip()
    assert secret.startswith("ebw_")
    page.goto(f"{web_server.url}/projects/{project_id}")
    assert secret not in page.content()
    assert page.locator("table.keys").inner_text().count("website") == 1

    # Events sent over HTTP with that key appear on the open page (live polling).
    batches, per_batch = 12, 5
    total = batches * per_batch
    sender = threading.Thread(
        target=send_events, args=(web_server.url, secret, batches, per_batch, 0.35)
    )
    sender.start()
    page.wait_for_function(
        "() => parseFloat(document.getElementById('eps').textContent) > 0", timeout=20_000
    )
    sender.join()
    page.wait_for_function(
        f"() => document.getElementById('billed-today').textContent === '{total}'",
        timeout=20_000,
    )
    page.wait_for_function(
        "() => document.querySelectorAll('#events tr').length === 20"
        " && document.getElementById('events').textContent.includes('checkout')"
    )
    stored = db.execute("SELECT count(*) FROM events WHERE project_id = %s", (project_id,))
    assert stored.fetchone() == (total,)
    # A refused request (counted by reason in the background, once a second).
    refused = httpx.post(
        web_server.url + "/v1/events", json={"no_name": 1}, headers={"X-Api-Key": secret}
    )
    assert refused.status_code == 400
    deadline = time.monotonic() + 5
    while (
        time.monotonic() < deadline
        and not db.execute(
            "SELECT 1 FROM rejected_counters WHERE project_id = %s", (project_id,)
        ).fetchone()
    ):
        time.sleep(0.2)

    # Reloaded: the chart, the enriched fields, the refused requests.
    page.reload()
    events_text = page.locator("#events").inner_text()
    for expected in ("checkout", "page_view", "/pricing", "newsletter", "cust-42"):
        assert expected in events_text, expected
    enriched = db.execute(
        "SELECT DISTINCT ua_browser, ua_os, ua_device_type, geo_country, geo_city"
        " FROM events WHERE project_id = %s",
        (project_id,),
    ).fetchall()
    for row in enriched:
        for value in row:
            if value:
                assert str(value) in events_text
    assert page.locator("#billed-today").inner_text() == str(total)
    assert page.locator("svg.chart rect.bar.today title").text_content() == (
        f"{datetime.now(UTC).date().isoformat()}: {total} writes"
    )
    assert "invalid_event" in page.locator("main").inner_text()

    # The picture is taken with traffic flowing, so the live rate is not zero.
    more = threading.Thread(target=send_events, args=(web_server.url, secret, 10, 4, 0.3))
    more.start()
    page.wait_for_function(
        "() => parseFloat(document.getElementById('eps').textContent) > 0"
        f" && document.getElementById('billed-today').textContent !== '{total}'"
    )
    page.screenshot(path=str(ARTIFACTS / "web-project.png"), full_page=True)
    more.join()
    total += 10 * 4
    page.wait_for_function(
        f"() => document.getElementById('billed-today').textContent === '{total}'"
    )

    # A second project with a few events of its own.
    docs = create_project_in_account(db, account["id"], "Docs site")
    send_events(web_server.url, docs["keys"]["write"], 1, 7, 0)
    wait_stored(db, docs["id"], 7)

    # The projects list: today's and this month's billed writes, per project.
    page.click("nav.crumbs a")
    page.wait_for_url(web_server.url + "/")
    row = page.locator("table.projects tr", has_text="Storefront")
    assert row.locator("td[data-col=today]").inner_text() == str(total)
    assert row.locator("td[data-col=month]").inner_text() == str(total)
    docs_row = page.locator("table.projects tr", has_text="Docs site")
    assert docs_row.locator("td[data-col=today]").inner_text() == "7"
    assert page.locator("#total-today").inner_text() == str(total + 7)
    page.screenshot(path=str(ARTIFACTS / "web-projects.png"), full_page=True)

    # Revoke the key in the browser: ingest refuses it within a second.
    page.goto(f"{web_server.url}/projects/{project_id}")
    page.locator("table.keys tr", has_text="website").locator("button:has-text('Revoke')").click()
    page.wait_for_selector("table.keys tr.revoked:has-text('website')")
    time.sleep(1.0)
    late = httpx.post(
        web_server.url + "/v1/events", json={"event_name": "late"}, headers={"X-Api-Key": secret}
    )
    assert late.status_code == 403

    # On a phone.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone.add_cookies([session])
    mobile = phone.new_page()
    mobile.goto(f"{web_server.url}/projects/{project_id}")
    assert mobile.locator("h1").inner_text().startswith("Storefront")
    width = mobile.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, "no horizontal scrolling of the page itself on a phone"
    mobile.screenshot(path=str(ARTIFACTS / "web-project-phone.png"), full_page=True)
    phone.close()

    # Sign out.
    page.click("button:has-text('Sign out')")
    page.wait_for_url(web_server.url + "/login")
    context.close()
    assert errors == []


def run_query(url: str, key: str, body: dict[str, Any]) -> Any:
    """The same query through the public API, with a real query key."""
    answer = httpx.post(url + "/v1/query", json=body, headers={"X-Api-Key": key}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def shown_table(page: Any) -> list[list[str]]:
    return [
        [cell.strip() for cell in row]
        for row in page.eval_on_selector_all(
            "#explore-table tbody tr",
            "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))",
        )
    ]


def test_browser_explore_page_charts_and_tables_the_query_api(
    browser: Any, web_server: Server, db: psycopg.Connection[Any]
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    account = create_account(db, "Explorers")
    project = create_project_in_account(db, account["id"], "Explored")
    pid, keys = project["id"], project["keys"]
    now = datetime.now(UTC).replace(microsecond=0)
    events: list[dict[str, Any]] = [
        {"event_name": "signup", "ip": ip, "plan": plan, "timestamp": now.isoformat()}
        for ip, plan in [("81.2.69.142", "pro")] * 3 + [("216.160.83.56", "free")] * 2
    ]
    events += [
        {"event_name": "api_request", "metric_name": "latency_ms", "metric_value": v}
        for v in (10, 20, 60)
    ]
    sent = httpx.post(
        web_server.url + "/v1/events", json=events, headers={"X-Api-Key": keys["write"]}
    )
    assert sent.status_code == 202, sent.text
    wait_stored(db, pid, len(events))
    key_rows = db.execute("SELECT count(*) FROM api_keys WHERE project_id = %s", (pid,)).fetchone()

    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(web_server.url + "/login")
    page.fill("#admin_key", account["admin_key"])
    page.click("button:has-text('Sign in')")
    page.wait_for_url(web_server.url + "/")

    # From the project page; the names come from the project's own events.
    page.goto(f"{web_server.url}/projects/{pid}")
    page.click("#explore-link")
    page.wait_for_url(f"{web_server.url}/projects/{pid}/explore")
    options = page.eval_on_selector_all("#selection option", "os => os.map(o => o.value)")
    assert options == ["event:api_request", "event:signup", "metric:latency_ms"]

    # Signups per hour over 24 hours: the chart's bars and the table are the API's answer.
    page.select_option("#selection", "event:signup")
    page.wait_for_url("**selection=event%3Asignup**")
    page.select_option("#timeframe", "this_24_hours")
    page.wait_for_url("**timeframe=this_24_hours**")
    page.select_option("#interval", "hourly")
    page.wait_for_url("**interval=hourly**")
    shown = orjson.loads(page.locator("#query-json").inner_text())
    assert shown == {
        "analysis": "count",
        "event_name": "signup",
        "timeframe": "this_24_hours",
        "interval": "hourly",
        "timezone": "UTC",
    }
    page.wait_for_function("() => document.querySelectorAll('#explore-table tbody tr').length > 0")
    expected = run_query(web_server.url, keys["query"], shown)
    assert len(expected) in (24, 25) and sum(b["value"] for b in expected) == 5
    table = shown_table(page)
    assert [(r[0], int(r[1])) for r in table] == [
        (b["timeframe"]["start"], b["value"]) for b in expected
    ]
    assert page.locator("#explore-chart rect.bar").count() == len(expected)
    titles = page.eval_on_selector_all(
        "#explore-chart rect.bar title", "ts => ts.map(t => t.textContent)"
    )
    assert titles == [
        f"{datetime.fromisoformat(b['timeframe']['start']).isoformat()}: {b['value']}"
        for b in expected
    ]

    # Live: events sent meanwhile appear without a reload.
    more = [{"event_name": "signup", "ip": "81.2.69.142", "plan": "pro"}] * 2
    sent = httpx.post(
        web_server.url + "/v1/events", json=more, headers={"X-Api-Key": keys["write"]}
    )
    assert sent.status_code == 202, sent.text
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#explore-table tbody tr'))"
        ".reduce((n, r) => n + Number(r.cells[1].textContent), 0) === 7",
        timeout=20_000,
    )
    page.screenshot(path=str(ARTIFACTS / "web-explore.png"), full_page=True)

    # Grouped by a column, no interval: one bar and one row per country.
    page.fill("#group_by", "geo_country")
    page.select_option("#interval", "none")
    page.wait_for_url("**group_by=geo_country**")
    body = orjson.loads(page.locator("#query-json").inner_text())
    assert body["group_by"] == ["geo_country"] and "interval" not in body
    expected = run_query(web_server.url, keys["query"], body)
    page.wait_for_function("() => document.querySelectorAll('#explore-chart rect.bar').length > 0")
    rows = shown_table(page)
    assert sorted((r[0], int(r[1])) for r in rows) == sorted(
        (str(g["geo_country"]), g["result"]) for g in expected
    )
    assert sum(g["result"] for g in expected) == 7 and len(expected) == 2
    assert page.locator("#explore-chart rect.bar").count() == 2

    # A metric's average: one number, the API's.
    page.goto(
        f"{web_server.url}/projects/{pid}/explore?selection=metric:latency_ms&analysis=avg"
        "&timeframe=this_24_hours&interval=none"
    )
    body = orjson.loads(page.locator("#query-json").inner_text())
    assert body["metric_name"] == "latency_ms" and body["target_property"] == "metric_value"
    assert run_query(web_server.url, keys["query"], body) == 30
    page.wait_for_function("() => document.getElementById('explore-number').textContent === '30'")

    # A query the API refuses shows the API's own message (its 400 is the one console error).
    assert errors == []
    page.goto(
        f"{web_server.url}/projects/{pid}/explore?selection=event:signup&analysis=sum"
        "&timeframe=this_24_hours"
    )
    page.wait_for_selector("#explore-error:not([hidden])")
    assert "target_property" in page.locator("#explore-error").inner_text()

    # No key ever reaches the browser, and none was made for the page.
    assert not any(secret in page.content() for secret in keys.values())
    assert "ebq_" not in page.content()
    assert (
        db.execute("SELECT count(*) FROM api_keys WHERE project_id = %s", (pid,)).fetchone()
        == key_rows
    )
    context.close()
    assert errors and all("status of 400" in e for e in errors), errors

    # The answers are the session's account's only.
    other = create_account(db, "Not explorers")
    with httpx.Client(base_url=web_server.url, timeout=10) as http:
        result_url = f"/projects/{pid}/explore/result?selection=event:signup"
        assert http.get(result_url).status_code == 401
        sign_in(http, other["admin_key"])
        assert http.get(result_url).status_code == 404
        assert http.get(f"/projects/{pid}/explore").status_code == 404


def test_browser_sets_retention(
    browser: Any, web_server: Server, db: psycopg.Connection[Any]
) -> None:
    account = create_account(db, "Retainers")
    project = create_project_in_account(db, account["id"], "Kept")
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(web_server.url + "/login")
    page.fill("#admin_key", account["admin_key"])
    page.click("button:has-text('Sign in')")
    page.wait_for_url(web_server.url + "/")
    page.goto(f"{web_server.url}/projects/{project['id']}")
    assert "kept forever" in page.locator("#retention").inner_text()

    def retention() -> Any:
        row = db.execute("SELECT retention_days FROM projects WHERE id = %s", (project["id"],))
        return row.fetchone()

    page.fill("#retention-days", "30")
    page.click("#retention button:has-text('Save')")
    page.wait_for_selector("#retention:has-text('kept 30 days')")
    assert retention() == (30,)
    page.fill("#retention-days", "0")
    page.click("#retention button:has-text('Save')")
    page.wait_for_selector(".alert.error:has-text('retention_days')")
    assert retention() == (30,)
    page.goto(f"{web_server.url}/projects/{project['id']}")
    page.fill("#retention-days", "forever")
    page.click("#retention button:has-text('Save')")
    page.wait_for_selector("#retention:has-text('kept forever')")
    assert retention() == (None,)
    context.close()
