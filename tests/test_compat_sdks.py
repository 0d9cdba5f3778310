"""The official server SDKs, unmodified, pointed at the real server
(DESIGN.md "Compatible endpoints"): Segment's ``segment-analytics-python``,
``posthog``, ``mixpanel`` and ``amplitude-analytics``. Every call type each
SDK has for the endpoints we serve is made and checked in ``events``,
column by column; a retried message id is stored once.

``EVENTBUNKER_SDK_TABLE=path`` writes the SDK x call type → stored table
(the README's) from what these tests observed.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import socket
import socketserver
import ssl
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import trustme

import sdk_table
from conftest import Project, Server, serving, serving_in_a_thread, shared_testdata, wait_until

VISIBLE_WITHIN_S = 10.0
# 81.2.69.142 is in MaxMind's test database: GB, England, London.
LONDON_IP = "81.2.69.142"
CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
PAGE_URL = "https://shop.example/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=winter"


@pytest.fixture(scope="module")
def sdk_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    geoip = ("--geoip-db", str(shared_testdata("geoip/GeoIP2-City-Test.mmdb")))
    log_dir = tmp_path_factory.mktemp("sdk-server")
    with sdk_table.writing(), serving(database_url, log_dir, "--workers", "1", *geoip) as srv:
        yield srv


def stored(
    db: psycopg.Connection[Any], project_id: int, count: int, *, settle_s: float = 0.3
) -> list[dict[str, Any]]:
    """The project's events in time order, once ``count`` are visible (and
    no more arrive for ``settle_s``, so that duplicates would show)."""
    rows = visible(db, project_id, count, settle_s=settle_s)
    assert len(rows) == count, [(r["event_name"], r["event_id"]) for r in rows]
    return rows


def visible(
    db: psycopg.Connection[Any], project_id: int, count: int, *, settle_s: float
) -> list[dict[str, Any]]:
    """The project's events in time order once ``count`` are visible (or
    the time is up), after ``settle_s`` more."""
    deadline = time.monotonic() + VISIBLE_WITHIN_S
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    sql = 'SELECT * FROM events WHERE project_id = %s ORDER BY "timestamp", received_at'
    while True:
        rows = cur.execute(sql, (project_id,)).fetchall()
        if len(rows) >= count or time.monotonic() > deadline:
            time.sleep(settle_s)
            return cur.execute(sql, (project_id,)).fetchall()
        time.sleep(0.05)


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["event_name"]: r for r in rows}


def stored_calls(
    db: psycopg.Connection[Any],
    project_id: int,
    count: int,
    sdk: str,
    calls: dict[str, str],
    key: Callable[[dict[str, Any]], str] = lambda row: row["event_name"],
) -> dict[str, dict[str, Any]]:
    """The ``count`` stored events by ``key`` (their name), each SDK call
    type noted in the SDK table as stored or not (calls: type → its key),
    also when fewer or more than ``count`` were stored."""
    rows = visible(db, project_id, count, settle_s=0.3)
    named = {key(row): row for row in rows}
    for call, name in calls.items():
        sdk_table.record(sdk, call, name in named)
    assert len(rows) == count, [(r["event_name"], r["event_id"]) for r in rows]
    return named


def assert_enriched(row: dict[str, Any], *, browser: str = "Chrome") -> None:
    assert row["ua_browser"] == browser
    assert row["geo_country"] == "GB"
    assert row["geo_city"] == "London"
    assert row["geo_timezone"] == "Europe/London"
    assert row["ip"] == LONDON_IP


def assert_tracked(
    row: dict[str, Any],
    *,
    distinct_id: str,
    properties: dict[str, Any],
    key_member: str,
    browser: str = "Chrome",
    referrer: bool = True,
) -> None:
    """A tracked event, column by column: its person, its properties (these
    among them, not the SDK's key member), enrichment, page and referrer."""
    assert row["distinct_id"] == distinct_id
    assert row["properties"].items() >= properties.items(), row["properties"]
    assert key_member not in row["properties"]
    assert row["referrer_host"] == ("search.example" if referrer else None)
    assert_enriched(row, browser=browser)
    assert_page(row)


def assert_page(row: dict[str, Any]) -> None:
    assert row["url"] == PAGE_URL
    assert row["url_host"] == "shop.example"
    assert row["url_path"] == "/pricing"
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"]) == (
        "newsletter",
        "email",
        "winter",
    )


# --- Segment -------------------------------------------------------------------


def test_segment_python_sdk(
    sdk_server: Server, project: Project, db: psycopg.Connection[Any]
) -> None:
    from segment.analytics import Client

    errors: list[Any] = []
    client = Client(
        write_key=project.write_key,
        host=sdk_server.url,
        sync_mode=True,
        on_error=lambda e, batch: errors.append(e),
        max_retries=2,
    )
    context = {
        "ip": LONDON_IP,
        "userAgent": CHROME_UA,
        "page": {"url": PAGE_URL, "referrer": "https://search.example/q"},
    }
    client.track(
        "u-1", "Signed Up", {"plan": "pro", "seats": 3}, context=context, message_id="seg-1"
    )
    client.track(
        "u-1", "Signed Up", {"plan": "pro", "seats": 3}, context=context, message_id="seg-1"
    )
    client.page("u-1", "Docs", "Pricing", {"title": "Pricing"}, context=context)
    client.screen("u-1", "App", "Home", {"tab": 1}, context=context)
    client.identify("u-1", {"email": "u1@example.com"}, context=context)
    client.group("u-1", "g-1", {"name": "Acme"}, context=context)
    client.alias("anon-9", "u-1", context=context)
    client.track(anonymous_id="anon-2", event="Browsed", context=context)
    client.flush()
    assert errors == []

    named = stored_calls(
        db,
        project.id,
        7,
        "Segment (segment-analytics-python)",
        {
            "track": "Signed Up",
            "page": "page",
            "screen": "screen",
            "identify": "identify",
            "group": "group",
            "alias": "alias",
        },
    )
    track = named["Signed Up"]
    assert track["event_id"] == "seg-1"  # sent twice, stored once
    assert_tracked(
        track, distinct_id="u-1", properties={"plan": "pro", "seats": 3}, key_member="writeKey"
    )
    assert track["properties"]["context"]["library"]["name"] == "analytics-python"
    assert named["page"]["properties"]["name"] == "Pricing"
    assert named["page"]["properties"]["category"] == "Docs"
    assert named["screen"]["properties"]["tab"] == 1
    assert named["identify"]["properties"]["email"] == "u1@example.com"
    assert named["group"]["properties"]["groupId"] == "g-1"
    assert named["alias"]["properties"]["previousId"] == "anon-9"
    assert named["Browsed"]["distinct_id"] == "anon-2"
    # sentAt corrected the clock skew: received_at - sent_at is small here.
    assert abs((track["received_at"] - track["timestamp"]).total_seconds()) < 60


def test_segment_answers_and_auth(sdk_server: Server, project: Project) -> None:
    msg = {"type": "track", "event": "x", "userId": "u"}
    ok = httpx.post(sdk_server.url + "/v1/track", json={**msg, "writeKey": project.write_key})
    assert (ok.status_code, ok.json()) == (200, {"success": True})
    by_header = httpx.post(
        sdk_server.url + "/v1/track", json=msg, headers={"X-Api-Key": project.write_key}
    )
    assert by_header.status_code == 200
    unknown = httpx.post(sdk_server.url + "/v1/batch", json={"batch": [msg]}, auth=("nope", ""))
    assert unknown.status_code == 401
    assert unknown.json()["success"] is False
    invalid = httpx.post(
        sdk_server.url + "/v1/batch",
        json={"batch": [{"type": "track"}]},
        auth=(project.write_key, ""),
    )
    assert invalid.status_code == 400
    assert invalid.json()["code"] == "invalid_event"
    query_key = httpx.post(sdk_server.url + "/v1/track", json=msg, auth=(project.query_key, ""))
    assert query_key.status_code == 403


# --- PostHog -------------------------------------------------------------------


def test_posthog_python_sdk(
    sdk_server: Server, project: Project, db: psycopg.Connection[Any]
) -> None:
    from posthog import Posthog

    errors: list[Any] = []
    client = Posthog(
        project.write_key,
        host=sdk_server.url,
        sync_mode=True,
        on_error=lambda e, batch: errors.append(e),
        disable_geoip=False,
    )
    props = {
        "$ip": LONDON_IP,
        "$raw_user_agent": CHROME_UA,
        "$current_url": PAGE_URL,
        "$referrer": "https://search.example/q",
        "plan": "free",
    }
    event_uuid = str(uuid.uuid4())
    client.capture("Played", distinct_id="d-1", properties=props, uuid=event_uuid)
    client.capture("Played", distinct_id="d-1", properties=props, uuid=event_uuid)
    client.capture("$pageview", distinct_id="d-1", properties=props)
    client.set(distinct_id="d-1", properties={"email": "d1@example.com"})
    client.set_once(distinct_id="d-1", properties={"first_seen": "today"})
    client.group_identify("company", "acme", {"name": "Acme"}, distinct_id="d-1")
    client.alias("d-1", "d-previous")
    try:
        raise ValueError("boom")
    except ValueError as exc:
        client.capture_exception(exc, distinct_id="d-1", properties=props)
    # The AI lane posts to its own endpoint, /i/v0/ai/batch/.
    client.capture_ai("$ai_generation", distinct_id="d-1", properties={"$ai_model": "m-1"})
    # Asks /flags/ (nothing configured: no flag) and reports the call.
    assert client.evaluate_flags("d-1").get_flag("beta") is None
    client.flush()
    client.shutdown()
    assert errors == []

    named = stored_calls(
        db,
        project.id,
        9,
        "PostHog (posthog)",
        {
            "capture": "Played",
            "capture $pageview": "$pageview",
            "set": "$set",
            "set_once": "$set_once",
            "group_identify": "$groupidentify",
            "alias": "$create_alias",
            "capture_exception": "$exception",
            "capture_ai": "$ai_generation",
            "evaluate_flags get_flag": "$feature_flag_called",
        },
    )
    played = named["Played"]
    assert played["event_id"] == event_uuid
    assert_tracked(played, distinct_id="d-1", properties={"plan": "free"}, key_member="token")
    assert named["$set"]["properties"]["$set"] == {"email": "d1@example.com"}
    assert named["$groupidentify"]["properties"]["$group_type"] == "company"
    exception = named["$exception"]
    assert exception["distinct_id"] == "d-1"
    assert exception["properties"]["$exception_list"][0]["type"] == "ValueError"
    assert_enriched(exception)
    assert named["$ai_generation"]["properties"]["$ai_model"] == "m-1"
    assert named["$feature_flag_called"]["properties"]["$feature_flag"] == "beta"


def test_posthog_historical_migration_keeps_timestamps(
    sdk_server: Server, project: Project, db: psycopg.Connection[Any]
) -> None:
    from posthog import Posthog

    client = Posthog(
        project.write_key, host=sdk_server.url, sync_mode=True, historical_migration=True
    )
    client.capture("Old", distinct_id="d-9", timestamp="2024-03-01T12:00:00Z", properties={"a": 1})
    client.shutdown()
    [row] = stored(db, project.id, 1)
    assert row["timestamp"].isoformat() == "2024-03-01T12:00:00+00:00"


def test_posthog_answers(sdk_server: Server, project: Project) -> None:
    batch = {"api_key": project.write_key, "batch": [{"event": "x", "distinct_id": "d"}]}
    ok = httpx.post(sdk_server.url + "/batch/", json=batch)
    assert (ok.status_code, ok.json()) == (200, {"status": 1})
    bad = httpx.post(sdk_server.url + "/batch/", json={**batch, "api_key": "nope"})
    assert bad.status_code == 401
    assert bad.json()["type"] == "authentication_error"
    flags = httpx.post(sdk_server.url + "/flags/?v=2", json={"token": project.write_key})
    assert flags.status_code == 200
    assert flags.json()["featureFlags"] == {}
    config = httpx.get(sdk_server.url + f"/array/{project.write_key}/config")
    assert config.json()["hasFeatureFlags"] is False


def test_posthog_bodies(sdk_server: Server, project: Project, db: psycopg.Connection[Any]) -> None:
    """What posthog-js and older clients send besides JSON: a base64 ``data=``
    form, raw gzip without a header (``compression=gzip-js``), ``/engage/``
    person updates, and ``/track/`` (shared with mixpanel-browser)."""
    key = project.write_key
    event = {"event": "Form", "properties": {"token": key, "distinct_id": "p-1"}}
    form = base64.b64encode(json.dumps([event]).encode()).decode()
    r = httpx.post(sdk_server.url + "/e/?compression=base64", data={"data": form})
    assert r.status_code == 200, r.text
    gz = gzip.compress(json.dumps([{**event, "event": "Gzip"}]).encode())
    r = httpx.post(sdk_server.url + "/i/v0/e/", content=gz, headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    gz_js = gzip.compress(json.dumps([{**event, "event": "GzipJs"}]).encode())
    r = httpx.post(sdk_server.url + "/e/?compression=gzip-js&ver=1.449.2", content=gz_js)
    assert r.status_code == 200, r.text
    engage = {"$token": key, "$distinct_id": "p-1", "$set": {"plan": "pro"}}
    assert httpx.post(sdk_server.url + "/engage/", json=engage).status_code == 200
    track = {"api_key": key, "event": "Shared", "distinct_id": "p-1", "uuid": "u-shared"}
    assert httpx.post(sdk_server.url + "/track/", json=track).json() == {"status": 1}
    named = by_name(stored(db, project.id, 5))
    assert set(named) == {"Form", "Gzip", "GzipJs", "$identify", "Shared"}
    assert named["$identify"]["properties"]["$set"] == {"plan": "pro"}
    assert named["Shared"]["event_id"] == "u-shared"
    assert all(row["distinct_id"] == "p-1" for row in named.values())


# --- Mixpanel ------------------------------------------------------------------


def test_mixpanel_python_sdk(
    sdk_server: Server, project: Project, db: psycopg.Connection[Any]
) -> None:
    from mixpanel import Consumer, Mixpanel

    consumer = Consumer(
        events_url=sdk_server.url + "/track",
        people_url=sdk_server.url + "/engage",
        import_url=sdk_server.url + "/import",
        groups_url=sdk_server.url + "/groups",
        retry_limit=1,
    )
    mp = Mixpanel(project.write_key, consumer=consumer)
    props = {
        "ip": LONDON_IP,
        "$current_url": PAGE_URL,
        "$referrer": "https://search.example/q",
        "genre": "jazz",
    }
    mp.track("m-1", "Played", props)
    insert_id = "mp-insert-1"
    mp.track("m-1", "Paused", {**props}, meta={})
    mp.track("m-1", "Liked", {**props, "$insert_id": insert_id})
    mp.track("m-1", "Liked", {**props, "$insert_id": insert_id})
    mp.import_data(
        None,
        "m-1",
        "Imported",
        1_700_000_000,
        {"ip": LONDON_IP, "$insert_id": "imp-1"},
        api_secret=project.write_key,
    )
    # alias() posts to mixpanel.com whatever the consumer: test_mixpanel_alias;
    # merge() goes through the consumer to /import.
    mp.merge(None, "m-1", "m-1-other", api_secret=project.write_key)
    # Profile updates (/engage, /groups): one person or group per call.
    mp.people_set("p-set", {"plan": "pro"})
    mp.people_set_once("p-set_once", {"first_seen": "today"})
    mp.people_increment("p-increment", {"plays": 2})
    mp.people_append("p-append", {"songs": "a"})
    mp.people_union("p-union", {"genres": ["jazz"]})
    mp.people_unset("p-unset", ["plan"])
    mp.people_remove("p-remove", {"genres": "jazz"})
    mp.people_delete("p-delete")
    mp.people_track_charge("p-track_charge", 9.5, {"sku": "s1"})
    mp.people_clear_charges("p-clear_charges")
    mp.group_set("company", "g-set", {"name": "Acme"})
    mp.group_set_once("company", "g-set_once", {"founded": 1999})
    mp.group_union("company", "g-union", {"tags": ["b2b"]})
    mp.group_unset("company", "g-unset", ["name"])
    mp.group_remove("company", "g-remove", {"tags": "b2b"})
    mp.group_delete("company", "g-delete")
    people = ["set", "set_once", "increment", "append", "union", "unset", "remove", "delete"]
    people += ["track_charge", "clear_charges"]
    groups = ["set", "set_once", "union", "unset", "remove", "delete"]

    def profile_key(row: dict[str, Any]) -> str:
        """Profile updates by the person or group they update."""
        if row["event_name"] == "$identify":
            return f"$identify {row['distinct_id']}"
        if row["event_name"] == "$groupidentify":
            return f"$groupidentify {row['properties']['$group_id']}"
        return str(row["event_name"])

    named = stored_calls(
        db,
        project.id,
        5 + len(people) + len(groups),
        "Mixpanel (mixpanel)",
        {
            "track": "Played",
            "import_data": "Imported",
            "merge": "$merge",
            **{f"people_{op}": f"$identify p-{op}" for op in people},
            **{f"group_{op}": f"$groupidentify g-{op}" for op in groups},
        },
        key=profile_key,
    )
    played = named["Played"]
    assert played["event_id"]  # the SDK's own $insert_id
    assert_tracked(
        played,
        distinct_id="m-1",
        properties={"genre": "jazz"},
        key_member="token",
        browser="Python Requests",
    )
    assert named["Liked"]["event_id"] == insert_id
    assert named["Imported"]["timestamp"].timestamp() == 1_700_000_000
    person = named["$identify p-set"]
    assert person["properties"] == {"$set": {"plan": "pro"}}
    assert abs((person["received_at"] - person["timestamp"]).total_seconds()) < 60
    assert named["$identify p-increment"]["properties"] == {"$add": {"plays": 2}}
    charge = named["$identify p-track_charge"]["properties"]["$append"]["$transactions"]
    assert charge["$amount"] == 9.5
    assert charge["sku"] == "s1"
    assert named["$identify p-delete"]["properties"] == {"$delete": ""}
    group = named["$groupidentify g-set"]
    assert group["distinct_id"] is None
    assert group["properties"] == {
        "$group_key": "company",
        "$group_id": "g-set",
        "$set": {"name": "Acme"},
    }


@contextmanager
def https_proxy_to(server_url: str, ca: trustme.CA, host: str) -> Iterator[str]:
    """An HTTPS proxy (HTTP ``CONNECT``) that answers for ``host`` with a
    certificate of the test CA ``ca`` and relays the decrypted requests to
    the server: how a network sends an SDK's hard-wired HTTPS host to
    EventBunker without changing the SDK. Yields the proxy's URL."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(tls)
    upstream = urllib.parse.urlsplit(server_url)
    address = (upstream.hostname or "127.0.0.1", upstream.port or 80)

    class Connect(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            request_line = self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # the CONNECT request's headers
            if not request_line.startswith(f"CONNECT {host}:443 ".encode()):
                self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with (
                tls.wrap_socket(self.connection, server_side=True) as client,
                socket.create_connection(address) as server,
            ):
                back = threading.Thread(target=pump, args=(server, client), daemon=True)
                back.start()
                pump(client, server)
                back.join(timeout=5)

    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    with serving_in_a_thread(socketserver.ThreadingTCPServer(("127.0.0.1", 0), Connect)) as url:
        yield url


def test_mixpanel_alias(
    sdk_server: Server,
    project: Project,
    db: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """``alias()`` always posts to https://api.mixpanel.com/track with a
    consumer of its own, whatever the app configured: it is stored when the
    network routes that host to the server (here an HTTPS proxy whose CA the
    process trusts, through requests' own HTTPS_PROXY and REQUESTS_CA_BUNDLE)."""
    from mixpanel import Mixpanel

    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with https_proxy_to(sdk_server.url, ca, "api.mixpanel.com") as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        monkeypatch.setenv("NO_PROXY", "")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        Mixpanel(project.write_key).alias("m-new", "m-1")
    named = stored_calls(db, project.id, 1, "Mixpanel (mixpanel)", {"alias": "$create_alias"})
    alias = named["$create_alias"]
    assert alias["distinct_id"] == "m-1"
    assert alias["properties"]["alias"] == "m-new"
    assert "token" not in alias["properties"]


def test_mixpanel_answers(sdk_server: Server, project: Project) -> None:
    event = {"event": "x", "properties": {"token": project.write_key, "distinct_id": "d"}}
    plain = httpx.post(sdk_server.url + "/track", data={"data": json.dumps(event)})
    assert (plain.status_code, plain.text) == (200, "1")
    verbose = httpx.post(sdk_server.url + "/track?verbose=1", json=[event])
    assert verbose.json() == {"status": 1, "error": None}
    bad = httpx.post(
        sdk_server.url + "/track?verbose=1", json=[{**event, "properties": {"token": "nope"}}]
    )
    assert bad.status_code == 401
    assert bad.json()["status"] == 0
    strict = httpx.post(
        sdk_server.url + "/import?strict=1",
        content=b'{"event": "ok", "properties": {"time": 1700000000}}\n'
        b'{"properties": {"time": 1}}\n',
        auth=(project.write_key, ""),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert strict.status_code == 400
    body = strict.json()
    assert body["num_records_imported"] == 0
    assert body["failed_records"][0]["index"] == 1
    imported = httpx.post(
        sdk_server.url + "/import",
        content=b'{"event": "ok", "properties": {"time": 1700000000, "distinct_id": "d"}}\n',
        auth=(project.write_key, ""),
    )
    assert imported.json() == {"code": 200, "num_records_imported": 1, "status": "OK"}


# --- Amplitude -----------------------------------------------------------------


def test_amplitude_python_sdk(
    sdk_server: Server, project: Project, db: psycopg.Connection[Any]
) -> None:
    from amplitude import Amplitude, BaseEvent, Config, EventOptions, Identify, Revenue

    results: list[tuple[str, int]] = []
    for url_path, use_batch in (("/2/httpapi", False), ("/batch", True)):
        config = Config(
            server_url=sdk_server.url + url_path,
            use_batch=use_batch,
            callback=lambda event, code, message=None: results.append((event.event_type, code)),
            flush_interval_millis=100,
        )
        client = Amplitude(project.write_key, config)
        suffix = "" if not use_batch else " (batch)"
        props = {"[Amplitude] Page Location": PAGE_URL, "bpm": 120}
        for _ in range(2):  # the same insert_id twice: stored once
            client.track(
                BaseEvent(
                    "Song Played" + suffix,
                    user_id="a-user-1",
                    device_id="dev-1",
                    ip=LONDON_IP,
                    insert_id=f"amp-{use_batch}",
                    event_properties=props,
                )
            )
        identify = Identify().set("plan", "pro")
        client.identify(identify, EventOptions(user_id="a-user-1", ip=LONDON_IP))
        client.group_identify(
            "org", "acme", Identify().set("size", 10), EventOptions(user_id="a-user-1")
        )
        client.revenue(
            Revenue(price=9.99, quantity=1, product_id="p1"), EventOptions(user_id="a-user-1")
        )
        client.set_group("org", "acme", EventOptions(user_id="a-user-2"))
        client.flush()
        client.shutdown()
    assert results and all(code == 200 for _, code in results), results

    def set_group_apart(row: dict[str, Any]) -> str:
        """set_group() sends an $identify too, with the user's groups."""
        groups = row["event_name"] == "$identify" and "groups" in row["properties"]
        return "$identify groups" if groups else str(row["event_name"])

    named = stored_calls(
        db,
        project.id,
        10,
        "Amplitude (amplitude-analytics)",
        {
            "track (/2/httpapi)": "Song Played",
            "track (/batch)": "Song Played (batch)",
            "identify": "$identify",
            "group_identify": "$groupidentify",
            "revenue": "revenue_amount",
            "set_group": "$identify groups",
        },
        key=set_group_apart,
    )
    played = named["Song Played"]
    assert played["event_id"] == "amp-False"
    assert_tracked(
        played,
        distinct_id="a-user-1",
        properties={"bpm": 120, "device_id": "dev-1"},
        key_member="api_key",
        browser="Python-urllib",
        referrer=False,
    )
    assert named["$identify"]["properties"]["user_properties"] == {"$set": {"plan": "pro"}}
    set_group = named["$identify groups"]
    assert set_group["distinct_id"] == "a-user-2"
    assert set_group["properties"]["groups"] == {"org": "acme"}


def test_amplitude_answers(sdk_server: Server, project: Project) -> None:
    body = {"api_key": project.write_key, "events": [{"event_type": "x", "user_id": "u-12345"}]}
    ok = httpx.post(sdk_server.url + "/2/httpapi", json=body)
    assert ok.status_code == 200
    assert ok.json()["events_ingested"] == 1
    bad_key = httpx.post(sdk_server.url + "/batch", json={**body, "api_key": "nope"})
    assert bad_key.status_code == 400
    assert bad_key.json()["error"].startswith("Invalid API key:")
    invalid = httpx.post(
        sdk_server.url + "/2/httpapi",
        json={"api_key": project.write_key, "events": [{"event_type": "ok"}, {"user_id": "u"}]},
    )
    assert invalid.status_code == 400
    assert invalid.json()["events_with_missing_fields"] == {"event_name": [1]}


def test_distinct_id_on_our_own_endpoint(
    sdk_server: Server, project: Project, db: psycopg.Connection[Any]
) -> None:
    response = httpx.post(
        sdk_server.url + "/v1/events",
        json={"event_name": "signup", "distinct_id": "person-1"},
        headers={"X-Api-Key": project.write_key},
    )
    assert response.status_code == 202
    [row] = stored(db, project.id, 1)
    assert row["distinct_id"] == "person-1"
    assert "distinct_id" not in row["properties"]


# --- Retries: 429 + Retry-After is retried, an invalid body is not ------------

LIMIT_EVENTS_PER_S = 20
AMPLITUDE_THROTTLE_DELAY_S = 30.0  # amplitude-analytics' wait before a throttled event's retry


@pytest.fixture(scope="module")
def limited_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose write keys may send 20 events a second (burst 20)."""
    limits = ("--rate-limit-events-per-second", str(LIMIT_EVENTS_PER_S))
    limits += ("--rate-limit-burst", str(LIMIT_EVENTS_PER_S))
    with serving(database_url, tmp_path_factory.mktemp("sdk-limited"), *limits) as srv:
        yield srv


def rejected(server: Server, reason: str) -> float:
    """The server's count of requests refused for ``reason`` (/metrics)."""
    metrics = httpx.get(server.url + "/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("eventbunker_requests_rejected_total") and f'reason="{reason}"' in line
    )


def send_over_the_limit(sdk: str, server: Server, key: str, count: int) -> list[Any]:
    """``count`` events from ``sdk``'s client, in batches of 10 as fast as it
    sends them, so that the limit answers 429 + Retry-After; its errors."""
    errors: list[Any] = []
    if sdk == "segment":
        from segment.analytics import Client

        seg = Client(
            write_key=key,
            host=server.url,
            upload_size=10,
            max_retries=20,
            on_error=lambda e, batch: errors.append(e),
        )
        for i in range(count):
            seg.track("u-1", "Retried", {"i": i}, message_id=f"r-{i}")
        seg.flush()
        seg.shutdown()
    elif sdk == "posthog":
        from posthog import Posthog

        ph = Posthog(
            key,
            host=server.url,
            flush_at=10,
            max_retries=20,
            on_error=lambda e, batch: errors.append(e),
        )
        for i in range(count):
            ph.capture("Retried", distinct_id="d-1", properties={"i": i}, uuid=str(uuid.uuid4()))
        ph.flush()
        ph.shutdown()
    elif sdk == "mixpanel":
        from mixpanel import BufferedConsumer, Mixpanel, MixpanelException

        # mixpanel-python retries only 5xx, and only to https:// hosts: a 429
        # raises MixpanelException to the app, the BufferedConsumer keeping
        # its buffer for the app to flush again (as the SDK documents).
        consumer = BufferedConsumer(max_size=10, events_url=server.url + "/track")
        mp = Mixpanel(key, consumer=consumer)

        def retried(send: Callable[[], None]) -> None:
            for _ in range(20):
                try:
                    return send()
                except MixpanelException as e:
                    assert "over the rate limit" in str(e.__cause__), e
                    time.sleep(1)  # the Retry-After

        for i in range(count):
            retried(functools.partial(mp.track, "m-1", "Retried", {"i": i, "$insert_id": f"r-{i}"}))
        retried(consumer.flush)
    else:
        from amplitude import Amplitude, BaseEvent, Config

        results: list[int] = []

        def callback(event: Any, code: int, message: str | None = None) -> None:
            results.append(code)
            if code != 200:
                errors.append((code, message))

        config = Config(
            server_url=server.url + "/2/httpapi",
            flush_queue_size=10,
            flush_max_retries=20,
            flush_interval_millis=100,
            callback=callback,
        )
        amp = Amplitude(key, config)
        for i in range(count):
            amp.track(BaseEvent("Retried", user_id="a-user-1", insert_id=f"r-{i}"))
        # Its retries of a 429 are its own (not flush()'s), 30 s after the
        # answer, because it names them in throttled_events: wait for them.
        wait_until(lambda: len(results) == count, AMPLITUDE_THROTTLE_DELAY_S + VISIBLE_WITHIN_S)
        amp.shutdown()
    return errors


@pytest.mark.parametrize("sdk", ["segment", "posthog", "mixpanel", "amplitude"])
def test_sdks_retry_429_until_stored(
    sdk: str, limited_server: Server, project: Project, db: psycopg.Connection[Any]
) -> None:
    """Three times the burst at once: the limit refuses some batches with
    429 + Retry-After, each SDK retries them, and every event is stored once."""
    before = rejected(limited_server, "rate_limited")
    count = 3 * LIMIT_EVENTS_PER_S
    errors = send_over_the_limit(sdk, limited_server, project.write_key, count)
    assert errors == []
    rows = visible(db, project.id, count, settle_s=0.5)
    assert len(rows) == count
    assert rejected(limited_server, "rate_limited") > before  # the SDK did meet a 429


def test_amplitude_429_names_every_event_throttled(
    limited_server: Server, project: Project
) -> None:
    """Amplitude's 429 shape: each index of the refused batch in
    ``throttled_events`` (what makes its SDKs wait before retrying), and Retry-After."""
    events = [{"event_type": "Throttled", "user_id": "t-1"} for _ in range(5)]
    body = {"api_key": project.write_key, "events": events}
    answers = [
        httpx.post(limited_server.url + "/2/httpapi", json=body)
        for _ in range(2 * LIMIT_EVENTS_PER_S // len(events) + 1)
    ]
    refused = [a for a in answers if a.status_code == 429]
    assert refused, [a.status_code for a in answers]
    answer = refused[0].json()
    assert answer["code"] == 429
    assert set(range(len(events))) <= set(answer["throttled_events"])
    assert int(refused[0].headers["retry-after"]) >= 1


def test_sdks_do_not_retry_an_invalid_body(sdk_server: Server, project: Project) -> None:
    """An invalid event (a name over 256 characters) is answered 400 once:
    the SDKs drop it (on_error) instead of retrying it."""
    from posthog import Posthog
    from segment.analytics import Client

    long_name = "x" * 300
    before = rejected(sdk_server, "invalid_event")
    seg_errors: list[Any] = []
    seg = Client(
        write_key=project.write_key,
        host=sdk_server.url,
        max_retries=5,
        on_error=lambda e, batch: seg_errors.append(e),
    )
    seg.track("u-1", long_name)
    seg.flush()
    seg.shutdown()
    ph_errors: list[Any] = []
    ph = Posthog(
        project.write_key,
        host=sdk_server.url,
        max_retries=5,
        on_error=lambda e, batch: ph_errors.append(e),
    )
    ph.capture(long_name, distinct_id="d-1")
    ph.flush()
    ph.shutdown()
    assert [e.status for e in seg_errors] == [400]
    assert [e.status for e in ph_errors] == [400]
    assert rejected(sdk_server, "invalid_event") - before == 2  # one request each
