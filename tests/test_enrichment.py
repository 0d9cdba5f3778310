"""Enrichment over real HTTP (DESIGN.md "Enrichment"): user agent, client
address (peer, trusted X-Forwarded-For, body), GeoIP from MaxMind's test
database, anonymisation, UTM and URL fields, as stored in ``events``.

Expected places are read from ``GeoIP2-City-Test.json`` beside the database,
e.g. 81.2.69.142 is in ``::81.2.69.142/127``: GB, England, London.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from conftest import Project, Server, shared_testdata, start_server, stop_server

GEOIP_DB = shared_testdata("geoip/GeoIP2-City-Test.mmdb")

UA_COLUMNS = (
    "ua_browser",
    "ua_browser_version",
    "ua_os",
    "ua_os_version",
    "ua_device_type",
    "ua_device_brand",
    "ua_device_model",
    "is_bot",
)
GEO_COLUMNS = (
    "geo_country",
    "geo_region",
    "geo_city",
    "geo_latitude",
    "geo_longitude",
    "geo_timezone",
)
NO_GEO = dict.fromkeys(GEO_COLUMNS)
# From a 202 to visible in `events` (DESIGN.md: within a second; generous
# here, on a busy machine).
VISIBLE_WITHIN_S = 5.0

LONDON = {
    "geo_country": "GB",
    "geo_region": "England",
    "geo_city": "London",
    "geo_latitude": 51.5142,
    "geo_longitude": -0.0931,
    "geo_timezone": "Europe/London",
}
SAN_DIEGO = {  # 2001:480:10::/48
    "geo_country": "US",
    "geo_region": "California",
    "geo_city": "San Diego",
    "geo_latitude": 32.7203,
    "geo_longitude": -117.1552,
    "geo_timezone": "America/Los_Angeles",
}
LINKOPING = {  # ::89.160.20.128/121
    "geo_country": "SE",
    "geo_region": "Östergötland County",
    "geo_city": "Linköping",
    "geo_latitude": 58.4167,
    "geo_longitude": 15.6167,
    "geo_timezone": "Europe/Stockholm",
}
TOKYO_COUNTRY_ONLY = {  # 2001:218::/32: a country, no region or city
    "geo_country": "JP",
    "geo_region": None,
    "geo_city": None,
    "geo_latitude": 35.68536,
    "geo_longitude": 139.75309,
    "geo_timezone": "Asia/Tokyo",
}

# name: (user agent, the ua_* columns and is_bot, as uap-core and our device
# rules give them)
USER_AGENTS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "chrome-windows": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/120.0.0.0 Safari/537.36",
        ("Chrome", "120.0.0", "Windows", "10", "desktop", None, None, False),
    ),
    "firefox-linux": (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        ("Firefox", "121.0", "Ubuntu", None, "desktop", None, None, False),
    ),
    "safari-mac": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15"
        " (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
        ("Safari", "17.1", "Mac OS X", "10.15.7", "desktop", "Apple", "Mac", False),
    ),
    "iphone": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"
        " (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        ("Mobile Safari", "17.1", "iOS", "17.1", "mobile", "Apple", "iPhone", False),
    ),
    "android-phone": (
        "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/120.0.0.0 Mobile Safari/537.36",
        ("Chrome Mobile", "120.0.0", "Android", "13", "mobile", "Samsung", "SM-S911B", False),
    ),
    "ipad": (
        "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15"
        " (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        ("Mobile Safari", "17.1", "iOS", "17.1", "tablet", "Apple", "iPad", False),
    ),
    "android-tablet": (
        "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/120.0.0.0 Safari/537.36",
        # uap-core's generic rule for Android tablets names no real brand.
        (
            "Chrome",
            "120.0.0",
            "Android",
            "13",
            "tablet",
            "Generic_Android_Tablet",
            "SM-X700",
            False,
        ),
    ),
    "googlebot": (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        ("Googlebot", "2.1", None, None, "bot", "Spider", "Desktop", True),
    ),
}


# --- servers and helpers ---------------------------------------------------


@pytest.fixture(scope="module")
def geo_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """GeoIP, and 127.0.0.1 (the tests' own address) as a trusted proxy."""
    srv = start_server(
        database_url,
        tmp_path_factory.mktemp("geo-server"),
        "--workers",
        "1",
        "--geoip-db",
        str(GEOIP_DB),
        "--trusted-proxies",
        "127.0.0.1",
    )
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def anonymizing_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """GeoIP and anonymisation (from the environment); trusts only 10.0.0.0/8,
    so not the tests' own address."""
    srv = start_server(
        database_url,
        tmp_path_factory.mktemp("anon-server"),
        "--workers",
        "1",
        env={
            "EVENTBUNKER_GEOIP_DB": str(GEOIP_DB),
            "EVENTBUNKER_TRUSTED_PROXIES": "10.0.0.0/8, fd00::/8",
            "EVENTBUNKER_ANONYMIZE_IP": "true",
        },
    )
    try:
        yield srv
    finally:
        stop_server(srv)


def send(
    server: Server,
    key: str,
    body: Any,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
) -> None:
    all_headers = [("Content-Type", "application/json"), ("X-Api-Key", key)]
    if headers:
        all_headers += list(headers.items() if isinstance(headers, dict) else headers)
    response = httpx.post(
        server.url + "/v1/events", content=orjson.dumps(body), headers=all_headers, timeout=10
    )
    assert response.status_code == 202, response.text


def stored(db: psycopg.Connection[Any], project_id: int, count: int) -> dict[str, dict[str, Any]]:
    """The project's events by event_name, once ``count`` are visible (a 202
    means durable in the spool; the drainer makes them visible soon after)."""
    deadline = time.monotonic() + VISIBLE_WITHIN_S
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    while True:
        rows = cur.execute("SELECT * FROM events WHERE project_id = %s", (project_id,)).fetchall()
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) == count, [r["event_name"] for r in rows]
            return {row["event_name"]: row for row in rows}
        time.sleep(0.02)


def geo(row: dict[str, Any]) -> dict[str, Any]:
    return {c: row[c] for c in GEO_COLUMNS}


# --- user agents -----------------------------------------------------------


def test_user_agents_of_browsers_phones_tablets_and_bots(
    geo_server: Server, db: psycopg.Connection[Any], project: Project
) -> None:
    batch = [{"event_name": name, "user_agent": ua} for name, (ua, _) in USER_AGENTS.items()]
    send(geo_server, project.write_key, batch)
    # And from the User-Agent header when the body has none.
    header_ua, header_want = USER_AGENTS["iphone"]
    send(geo_server, project.write_key, {"event_name": "from-header"}, {"User-Agent": header_ua})
    rows = stored(db, project.id, len(USER_AGENTS) + 1)
    for name, (ua, want) in USER_AGENTS.items():
        row = rows[name]
        assert row["user_agent"] == ua
        assert tuple(row[c] for c in UA_COLUMNS) == want, name
    assert tuple(rows["from-header"][c] for c in UA_COLUMNS) == header_want


def test_unknown_and_missing_user_agents(
    geo_server: Server, db: psycopg.Connection[Any], project: Project
) -> None:
    send(
        geo_server,
        project.write_key,
        [
            {"event_name": "unknown", "user_agent": "TotallyNewThing/0.1"},
            {"event_name": "empty", "user_agent": ""},
            {"event_name": "curl", "user_agent": "curl/8.5.0"},
            {"event_name": "huge", "user_agent": "Mozilla/5.0 " + "x" * 50_000},
        ],
    )
    rows = stored(db, project.id, 4)
    assert rows["unknown"]["ua_device_type"] == "other"
    assert rows["unknown"]["ua_browser"] is None and rows["unknown"]["is_bot"] is False
    assert all(rows["empty"][c] is None for c in UA_COLUMNS[:-1])
    assert rows["empty"]["is_bot"] is False
    assert (rows["curl"]["ua_browser"], rows["curl"]["is_bot"]) == ("curl", True)
    assert len(rows["huge"]["user_agent"]) == 50_012  # stored whole, parsed cut


# --- client address and GeoIP ---------------------------------------------


def test_geo_from_the_body_ip_ipv4_and_ipv6(
    geo_server: Server, db: psycopg.Connection[Any], project: Project
) -> None:
    send(
        geo_server,
        project.write_key,
        [
            {"event_name": "london", "ip": "81.2.69.142"},
            {"event_name": "san-diego", "ip": "2001:480:10::1"},
            {"event_name": "linkoping", "ip": "89.160.20.128"},
            {"event_name": "japan", "ip": "2001:218::1"},
            {"event_name": "mapped", "ip": "::ffff:81.2.69.142"},
            {"event_name": "unknown", "ip": "8.8.8.8"},
        ],
    )
    rows = stored(db, project.id, 6)
    assert geo(rows["london"]) == LONDON
    assert rows["london"]["ip"] == "81.2.69.142"
    assert geo(rows["san-diego"]) == SAN_DIEGO
    assert rows["san-diego"]["ip"] == "2001:480:10::1"
    assert geo(rows["linkoping"]) == LINKOPING
    assert geo(rows["japan"]) == TOKYO_COUNTRY_ONLY
    assert rows["mapped"]["ip"] == "81.2.69.142"
    assert geo(rows["mapped"]) == LONDON
    assert geo(rows["unknown"]) == NO_GEO


def test_private_and_reserved_addresses_have_no_geo(
    geo_server: Server, db: psycopg.Connection[Any], project: Project
) -> None:
    private = ["10.1.2.3", "192.168.0.9", "172.16.5.5", "100.64.0.1", "169.254.1.1"]
    private += ["::1", "fe80::1", "fd12:3456::1", "2001:db8::1", "203.0.113.7", "0.0.0.0"]
    send(geo_server, project.write_key, [{"event_name": ip, "ip": ip} for ip in private])
    # The peer itself: loopback.
    send(geo_server, project.write_key, {"event_name": "peer"})
    rows = stored(db, project.id, len(private) + 1)
    for ip in private:
        assert rows[ip]["ip"] == ip
        assert geo(rows[ip]) == NO_GEO, ip
    assert rows["peer"]["ip"] == "127.0.0.1"
    assert geo(rows["peer"]) == NO_GEO


def test_forwarded_for_from_a_trusted_proxy(
    geo_server: Server, db: psycopg.Connection[Any], project: Project
) -> None:
    key = project.write_key
    # The right-most address that is not a trusted proxy is the client; what
    # the client wrote to its left is not believed.
    send(geo_server, key, {"event_name": "v4"}, {"X-Forwarded-For": "6.6.6.6, 81.2.69.142"})
    send(
        geo_server,
        key,
        {"event_name": "v6-and-trusted-hop"},
        {"X-Forwarded-For": "2001:480:10::1, 127.0.0.1"},
    )
    # Two header lines are one list (the client is in the first line, the
    # second holds only a trusted hop).
    send(
        geo_server,
        key,
        {"event_name": "two-lines"},
        [("X-Forwarded-For", "6.6.6.6, 89.160.20.128"), ("X-Forwarded-For", "127.0.0.1")],
    )
    send(geo_server, key, {"event_name": "with-port"}, {"X-Forwarded-For": "[2001:218::1]:443"})
    send(geo_server, key, {"event_name": "garbage"}, {"X-Forwarded-For": "unknown"})
    # The body's ip wins over the header.
    send(
        geo_server,
        key,
        {"event_name": "body-wins", "ip": "89.160.20.128"},
        {"X-Forwarded-For": "81.2.69.142"},
    )
    rows = stored(db, project.id, 6)
    assert (rows["v4"]["ip"], geo(rows["v4"])) == ("81.2.69.142", LONDON)
    assert rows["v6-and-trusted-hop"]["ip"] == "2001:480:10::1"
    assert geo(rows["v6-and-trusted-hop"]) == SAN_DIEGO
    assert (rows["two-lines"]["ip"], geo(rows["two-lines"])) == ("89.160.20.128", LINKOPING)
    assert (rows["with-port"]["ip"], geo(rows["with-port"])) == (
        "2001:218::1",
        TOKYO_COUNTRY_ONLY,
    )
    assert (rows["garbage"]["ip"], geo(rows["garbage"])) == ("127.0.0.1", NO_GEO)
    assert (rows["body-wins"]["ip"], geo(rows["body-wins"])) == ("89.160.20.128", LINKOPING)


def test_forwarded_for_is_ignored_from_an_untrusted_peer_and_ips_are_anonymised(
    anonymizing_server: Server, db: psycopg.Connection[Any], project: Project
) -> None:
    key = project.write_key
    send(anonymizing_server, key, {"event_name": "xff"}, {"X-Forwarded-For": "81.2.69.142"})
    send(
        anonymizing_server,
        key,
        [
            {"event_name": "v4", "ip": "81.2.69.142"},
            {"event_name": "v6", "ip": "2001:480:10:aaaa:bbbb::1"},
            {"event_name": "private", "ip": "192.168.7.77"},
        ],
    )
    rows = stored(db, project.id, 4)
    # 127.0.0.1 is not trusted here: its X-Forwarded-For is not believed.
    assert (rows["xff"]["ip"], geo(rows["xff"])) == ("127.0.0.0", NO_GEO)
    # Looked up whole, stored anonymised.
    assert (rows["v4"]["ip"], geo(rows["v4"])) == ("81.2.69.0", LONDON)
    assert (rows["v6"]["ip"], geo(rows["v6"])) == ("2001:480:10::", SAN_DIEGO)
    assert (rows["private"]["ip"], geo(rows["private"])) == ("192.168.7.0", NO_GEO)


def test_without_a_database_geo_is_null_and_the_server_says_so(
    server: Server, client: httpx.Client, db: psycopg.Connection[Any], project: Project
) -> None:
    response = client.post(
        "/v1/events",
        content=orjson.dumps({"event_name": "e", "ip": "81.2.69.142"}),
        headers={"X-Api-Key": project.write_key, "X-Forwarded-For": "89.160.20.128"},
    )
    assert response.status_code == 202, response.text
    row = stored(db, project.id, 1)["e"]
    assert row["ip"] == "81.2.69.142"
    assert geo(row) == NO_GEO
    assert server.log().count("GeoIP: no database configured") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--geoip-db", "/nonexistent/GeoLite2-City.mmdb"), "cannot open GeoIP database"),
        (("--trusted-proxies", "127.0.0.1, 10.0.0.0/33"), '"10.0.0.0/33"'),
    ],
)
def test_bad_enrichment_settings_stop_the_server_with_a_clear_message(
    database_url: str, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    with pytest.raises(RuntimeError, match="server exited early") as failure:
        start_server(database_url, tmp_path, *args)
    assert message in str(failure.value)


# --- URL fields and UTM ----------------------------------------------------


def test_utm_from_body_then_url_then_referer_header(
    geo_server: Server, db: psycopg.Connection[Any], project: Project
) -> None:
    referer = "https://Search.Example:8443/results?q=x&utm_source=ref&utm_campaign=ref_campaign"
    send(
        geo_server,
        project.write_key,
        [
            {
                "event_name": "all-three",
                "utm_source": "body_source",
                "url": "https://www.shop.example/pricing/?utm_source=url&utm_medium=email&utm_term=a+b",
            },
            {"event_name": "header-only"},
            {"event_name": "body-referrer", "referrer": "http://news.example/story?utm_content=c"},
        ],
        {"Referer": referer},
    )
    rows = stored(db, project.id, 3)
    row = rows["all-three"]
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"], row["utm_term"]) == (
        "body_source",
        "email",
        "ref_campaign",
        "a b",
    )
    assert row["utm_content"] is None
    assert (row["url_host"], row["url_path"]) == ("www.shop.example", "/pricing/")
    assert (row["referrer"], row["referrer_host"]) == (referer, "search.example")
    assert "utm_source" not in row["properties"]
    row = rows["header-only"]
    assert (row["utm_source"], row["utm_campaign"], row["url_host"]) == (
        "ref",
        "ref_campaign",
        None,
    )
    row = rows["body-referrer"]
    assert (row["referrer_host"], row["utm_content"], row["utm_source"]) == (
        "news.example",
        "c",
        None,
    )


def test_malformed_urls_and_huge_query_strings_never_fail_an_event(
    geo_server: Server, db: psycopg.Connection[Any], project: Project
) -> None:
    huge = "https://big.example/p?" + "&".join(f"k{i}={'v' * 40}" for i in range(1200))
    huge += "&utm_source=" + "s" * 5000 + "&utm_medium=cpc"
    assert 50_000 < len(huge) < 65_536  # under the JSON string limit
    urls = {
        "spaces": "ht tp://bad host/x?utm_source=still",
        "unclosed-ipv6": "http://[::1/path?utm_medium=m",
        "percent-garbage": "https://a.example/%%%zz?utm_campaign=%E0%A4%A&utm_term=%ZZ",
        "no-scheme": "example.com/landing?utm_source=bare",
        "bad-port": "https://a.example:port/x",
        "only-query": "?utm_source=q",
        "huge": huge,
    }
    send(
        geo_server,
        project.write_key,
        [{"event_name": name, "url": url, "referrer": url} for name, url in urls.items()],
        {"Referer": "::::not a url::::"},
    )
    rows = stored(db, project.id, len(urls))
    assert set(rows) == set(urls)
    for name, url in urls.items():
        assert rows[name]["url"] == url
    assert (rows["spaces"]["url_host"], rows["spaces"]["utm_source"]) == (None, "still")
    assert rows["unclosed-ipv6"]["utm_medium"] == "m"
    assert rows["percent-garbage"]["url_host"] == "a.example"
    assert rows["percent-garbage"]["utm_campaign"] is not None
    assert rows["no-scheme"]["url_host"] is None
    assert rows["no-scheme"]["utm_source"] == "bare"
    assert rows["bad-port"]["url_host"] is None
    assert rows["only-query"]["utm_source"] == "q"
    big = rows["huge"]
    assert (big["url_host"], big["url_path"]) == ("big.example", "/p")
    assert big["utm_source"] is None  # longer than the 2048 bytes kept
    assert big["utm_medium"] == "cpc"


# --- settings --------------------------------------------------------------


def test_enrichment_settings_from_flags_and_environment() -> None:
    from eventbunker.cli import build_parser
    from eventbunker.config import Settings, from_args
    from eventbunker.ingest.enrichment import proxy_list

    args = build_parser().parse_args(
        ["serve", "--geoip-db", "x.mmdb", "--trusted-proxies", "10.0.0.0/8, ::1", "--anonymize-ip"]
    )
    settings = from_args(args)
    assert (settings.geoip_db, settings.anonymize_ip) == ("x.mmdb", True)
    assert proxy_list(settings.trusted_proxies) == ["10.0.0.0/8", "::1"]
    assert proxy_list(" 127.0.0.1 10.0.0.0/8,,fd00::/8 ") == ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]
    # The environment, and the round trip the workers depend on.
    for raw, want in [("true", True), ("1", True), ("False", False), ("off", False)]:
        assert Settings.from_env({"EVENTBUNKER_ANONYMIZE_IP": raw}).anonymize_ip is want
    assert Settings.from_env(settings.to_env()).anonymize_ip is True
    with pytest.raises(SystemExit, match="EVENTBUNKER_ANONYMIZE_IP"):
        Settings.from_env({"EVENTBUNKER_ANONYMIZE_IP": "maybe"})


def test_enricher_refuses_bad_configuration_with_value_errors() -> None:
    from eventbunker import _native

    with pytest.raises(ValueError, match=r'"10\.0\.0\.0/33"'):
        _native.Enricher(trusted_proxies=["10.0.0.0/33"])
    with pytest.raises(ValueError, match=r"cannot open GeoIP database /nonexistent\.mmdb"):
        _native.Enricher(geoip_db="/nonexistent.mmdb")
    asn = shared_testdata("geoip/GeoLite2-ASN-Test.mmdb")
    with pytest.raises(ValueError, match="GeoLite2-ASN"):
        _native.Enricher(geoip_db=asn)
    enricher = _native.Enricher(trusted_proxies=["127.0.0.1", "10.1.2.3/8"], anonymize_ip=True)
    assert enricher.trusted_proxies == ["127.0.0.1/32", "10.0.0.0/8"]
    assert (enricher.geoip_db, enricher.anonymize_ip) == (None, True)
    assert enricher.cache_stats()["user_agents"]["capacity"] == 10_000
