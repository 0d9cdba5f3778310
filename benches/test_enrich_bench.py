"""The whole per-event preparation (parse, validate, enrich, encode the COPY
row): our Rust extension against a straightforward pure-Python pipeline
(orjson, ``ua-parser`` with its Rust accelerator ``ua-parser-rs``,
``urllib.parse``, ``geoip2`` on the same MaxMind test database).

    .venv/bin/python -m pytest benches/test_enrich_bench.py --benchmark-only

The mix: user agents from uap-core's own test file, client addresses from
MaxMind's test database (IPv4 and IPv6), page URLs with and without UTM tags,
referrers. *Cached*: a pool of 20 user agents and 20 addresses, as a site's
steady traffic (every lookup a cache hit after the first round). *Uncached*:
a different user agent and address for every event, with caching off (ours:
``Enricher(ua_cache_size=0, geo_cache_size=0)``; Python: no
``CachingResolver``, no ``lru_cache``). Both pipelines use the same
``regexes.yaml`` (rust/data/uap-core) and the same ``.mmdb``; before timing,
a sample is enriched by both and compared field by field (correctness next
to speed), and the summary table at the end says how many agreed, also
against ua-parser's reference resolver (Python ``re``, uap-core's semantics
as written).

Times: pytest-benchmark's wall-clock table, and in the summary the CPU time
of the benchmarking thread (``time.thread_time``, best of the rounds), which
other processes on a shared machine inflate less. Ours releases the GIL but
works on the calling thread, so its CPU time is all counted.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from eventbunker import _native

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = ROOT.parent / "shared/testdata"
MMDB = TESTDATA / "geoip/GeoIP2-City-Test.mmdb"
MMDB_JSON = TESTDATA / "geoip/GeoIP2-City-Test.json"
TEST_UA = TESTDATA / "uap-core/test_ua.yaml"
REGEXES = ROOT / "rust/data/uap-core/regexes.yaml"

for needed in (MMDB, MMDB_JSON, TEST_UA):
    if not needed.exists():  # a missing file fails the benchmark, never skips it
        pytest.fail(f"test data missing: {needed} (shared test data beside the repository)")

RECEIVED_AT = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
RECEIVED_AT_US = int(RECEIVED_AT.timestamp()) * 1_000_000
LIMITS = _native.Limits()
CACHED_EVENTS = 1000
UNCACHED_EVENTS = 300

# --- the workload -----------------------------------------------------------


def _user_agents() -> list[str]:
    import yaml  # PyYAML (also what ua-parser's YAML loader uses)

    cases = yaml.safe_load(TEST_UA.read_text())["test_cases"]
    return list(dict.fromkeys(c["user_agent_string"] for c in cases if c["user_agent_string"]))


def _addresses() -> list[str]:
    """The first address of every network in the test database that is a
    global unicast address (IPv4 networks are stored as ``::a.b.c.d/n``)."""
    out = []
    for entry in orjson.loads(MMDB_JSON.read_bytes()):
        for network in entry:
            net = ipaddress.ip_network(network, strict=False)
            addr: ipaddress.IPv4Address | ipaddress.IPv6Address = net.network_address
            ipv4_in_ipv6 = net.prefixlen >= 96 and int(addr) >> 32 == 0
            if isinstance(addr, ipaddress.IPv6Address) and ipv4_in_ipv6:
                addr = ipaddress.IPv4Address(int(addr) & 0xFFFF_FFFF)
            if addr.is_global:
                out.append(str(addr))
    return list(dict.fromkeys(out))


def _event(rng: random.Random, i: int) -> bytes:
    page = rng.choice(["/", "/pricing", "/blog/rust-on-the-hot-path", "/docs/ingest", "/signup"])
    url = "https://www.shop.example" + page
    if rng.random() < 0.5:
        url += f"?utm_source={rng.choice(['newsletter', 'twitter', 'google'])}"
        url += f"&utm_medium={rng.choice(['email', 'social', 'cpc'])}&utm_campaign=spring_{i % 7}"
    elif rng.random() < 0.3:
        url += "?ref=home&page=2"
    referrer = rng.choice(
        ["https://www.google.com/", "https://news.example/story?utm_content=banner", None]
    )
    event: dict[str, Any] = {
        "event_name": "page_view",
        "timestamp": "2026-11-26T09:59:59.123Z",
        "url": url,
        "event_id": f"0b6f6f0e-5b4e-4c1e-9d0a-{i:012d}",
        "plan": rng.choice(["free", "pro"]),
        "count": rng.randint(1, 9),
    }
    if referrer:
        event["referrer"] = referrer
    return orjson.dumps(event)


Workload = list[tuple[bytes, str, str]]  # (body, User-Agent header, peer address)


@pytest.fixture(scope="module")
def workloads() -> dict[str, Workload]:
    rng = random.Random(20261126)
    uas, ips = _user_agents(), _addresses()
    rng.shuffle(uas)
    rng.shuffle(ips)
    ua_pool, ip_pool = uas[:20], ips[:20]
    cached = [
        (_event(rng, i), rng.choice(ua_pool), rng.choice(ip_pool)) for i in range(CACHED_EVENTS)
    ]
    uncached = [
        (_event(rng, i), uas[i % len(uas)], ips[i % len(ips)]) for i in range(UNCACHED_EVENTS)
    ]
    return {"cached": cached, "uncached": uncached, "all_uas": [(b"", ua, "") for ua in uas]}


# --- our pipeline -----------------------------------------------------------


def ours(enricher: _native.Enricher) -> Callable[[bytes, str, str], bytes]:
    def prepare(body: bytes, user_agent: str, peer_ip: str) -> bytes:
        return _native.prepare_events(
            body,
            gzip=False,
            project_id=1,
            customer_identifier=None,
            received_at_us=RECEIVED_AT_US,
            peer_ip=peer_ip,
            user_agent=user_agent,
            referer=None,
            limits=LIMITS,
            enricher=enricher,
        ).rows

    return prepare


# --- the pure-Python pipeline ----------------------------------------------

UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
KNOWN_FIELDS = frozenset(
    (
        *("event_name", "timestamp", "sent_at", "metric_name", "metric_value", "event_id"),
        *("customer_identifier", "ip", "user_agent", "url", "referrer"),
        *UTM_FIELDS,
    )
)
NO_GEO: tuple[Any, ...] = (None,) * 6
MAX_DERIVED = 2048


class PurePython:
    """What one would write in Python: same rules, the usual libraries."""

    def __init__(self, *, cached: bool, reference: bool = False) -> None:
        """``reference``: ua-parser's pure-``re`` resolver instead of
        ``ua-parser-rs`` (slow; for checking results)."""
        import geoip2.database
        import geoip2.errors
        from ua_parser import Cache, CachingResolver, Parser, basic, loaders
        from ua_parser.regex import Resolver  # ua-parser-rs, the Rust accelerator

        assert loaders.load_yaml is not None, "PyYAML is needed"
        matchers = loaders.load_yaml(REGEXES)
        resolver: Any = basic.Resolver(matchers) if reference else Resolver(matchers)
        if cached:
            resolver = CachingResolver(resolver, Cache(10_000))
        self._ua_parser = Parser(resolver)
        self._reader = geoip2.database.Reader(str(MMDB))
        self._not_found = geoip2.errors.AddressNotFoundError
        self.user_agent: Callable[[str], tuple[Any, ...]] = self._user_agent
        self.geo: Callable[[str], tuple[Any, ...]] = self._geo
        if cached:
            self.user_agent = functools.lru_cache(maxsize=10_000)(self._user_agent)
            self.geo = functools.lru_cache(maxsize=100_000)(self._geo)

    def _user_agent(self, ua: str) -> tuple[Any, ...]:
        if not ua:
            return (None,) * 7 + (False,)
        r = self._ua_parser.parse(ua[:512])
        agent, os_, device = r.user_agent, r.os, r.device
        browser = agent.family if agent and agent.family != "Other" else None
        os_name = os_.family if os_ and os_.family != "Other" else None
        family = device.family if device else "Other"
        if family == "Spider":
            kind = "bot"
        elif "iPad" in family or "Tablet" in family or "Tablet" in ua:
            kind = "tablet"
        elif os_name in ("iOS", "Android") or "Mobile" in ua:
            kind = "mobile"
        elif os_name:
            kind = "desktop"
        else:
            kind = "other"
        return (
            browser,
            _version(agent.major, agent.minor, agent.patch) if agent else None,
            os_name,
            _version(os_.major, os_.minor, os_.patch) if os_ else None,
            kind,
            device.brand if device else None,
            device.model if device else None,
            kind == "bot",
        )

    def _geo(self, ip: str) -> tuple[Any, ...]:
        if not ipaddress.ip_address(ip).is_global:
            return NO_GEO
        try:
            c = self._reader.city(ip)
        except self._not_found:
            return NO_GEO
        sub = c.subdivisions[0] if c.subdivisions else None
        region = (sub.name or sub.iso_code) if sub else None
        loc = c.location
        return (c.country.iso_code, region, c.city.name, loc.latitude, loc.longitude, loc.time_zone)

    def prepare(self, body: bytes, user_agent: str | None, peer_ip: str | None) -> bytes:
        event = orjson.loads(body)
        if not isinstance(event, dict):
            raise ValueError("event must be a JSON object")
        name = event.get("event_name")
        if not isinstance(name, str) or not name or len(name) > 256:
            raise ValueError("event_name")
        timestamp = _time(event.get("timestamp")) or RECEIVED_AT
        sent_at = _time(event.get("sent_at"))
        if sent_at is not None and event.get("timestamp") is not None:
            timestamp += RECEIVED_AT - sent_at
        metric_name, metric_value = event.get("metric_name"), event.get("metric_value")
        if (metric_name is None) != (metric_value is None):
            raise ValueError("metric_name and metric_value go together")
        event_id = event.get("event_id")
        if event_id is not None and (not isinstance(event_id, str) or len(event_id) > 256):
            raise ValueError("event_id")
        ip = _ip(event.get("ip")) or (_ip(peer_ip) if peer_ip else None)
        ua = _str(event, "user_agent") or user_agent
        url, referrer = _str(event, "url"), _str(event, "referrer")
        url_host, url_path, url_query = _url_parts(url)
        referrer_host, _, referrer_query = _url_parts(referrer)
        utm = [_str(event, f) for f in UTM_FIELDS]
        for query in (url_query, referrer_query):
            if query and None in utm:
                params = parse_qs(query)
                for i, f in enumerate(UTM_FIELDS):
                    if utm[i] is None and params.get(f):
                        value = params[f][0]
                        utm[i] = value if len(value.encode()) <= MAX_DERIVED else None
        properties = {k: v for k, v in event.items() if k not in KNOWN_FIELDS}
        row = [
            _ts(timestamp),
            _ts(RECEIVED_AT),
            _ts(sent_at) if sent_at else None,
            "1",
            name,
            event_id,
            event.get("customer_identifier"),
            metric_name,
            None if metric_value is None else repr(float(metric_value)),
            ip,
            ua,
            url,
            referrer,
            *(self.geo(ip) if ip else NO_GEO),
            *self.user_agent(ua or ""),
            *utm,
            referrer_host,
            url_host,
            url_path,
            orjson.dumps(properties).decode(),
        ]
        return ("\t".join(map(_copy_text, row)) + "\n").encode()


def _version(*parts: str | None) -> str | None:
    out: list[str] = []
    for p in parts:
        if p is None:
            break
        out.append(p)
    return ".".join(out) or None


def _str(event: dict[str, Any], field: str) -> str | None:
    v = event.get(field)
    if v is not None and not isinstance(v, str):
        raise ValueError(f"{field} must be a string")
    return v


def _time(v: Any) -> dt.datetime | None:
    if v is None:
        return None
    if isinstance(v, str):
        t = dt.datetime.fromisoformat(v)
        if t.tzinfo is None:
            raise ValueError("timestamp needs an offset")
        return t.astimezone(dt.UTC)
    if isinstance(v, int | float):
        return dt.datetime.fromtimestamp(v / 1000 if v > 1e11 else v, dt.UTC)
    raise ValueError("bad timestamp")


def _ts(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f+00")


def _ip(v: Any) -> str | None:
    if v is None:
        return None
    addr = ipaddress.ip_address(v)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return str(addr.ipv4_mapped)
    return str(addr)


def _url_parts(url: str | None) -> tuple[str | None, str | None, str | None]:
    if not url:
        return None, None, None
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname if parts.netloc else None
    except ValueError:
        return None, None, url.partition("?")[2].partition("#")[0] or None
    path = (parts.path or "/") if parts.netloc else (parts.path or None)
    keep = lambda s: s if s is not None and len(s) <= MAX_DERIVED else None  # noqa: E731
    return keep(host), keep(path), parts.query or None


def _copy_text(v: Any) -> str:
    if v is None:
        return "\\N"
    if v is True or v is False:
        return "t" if v else "f"
    s = v if isinstance(v, str) else repr(v) if isinstance(v, float) else str(v)
    if "\\" in s or "\n" in s or "\r" in s or "\t" in s or "\0" in s:
        s = s.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        s = s.replace("\t", "\\t").replace("\0", "\ufffd")
    return s


# --- correctness: the same enrichment from both ----------------------------

COMPARED = (
    "ip",
    "geo_country",
    "geo_region",
    "geo_city",
    "geo_latitude",
    "geo_longitude",
    "geo_timezone",
    "ua_browser",
    "ua_browser_version",
    "ua_os",
    "ua_os_version",
    "ua_device_brand",
    "ua_device_model",
    *UTM_FIELDS,
    "referrer_host",
    "url_host",
    "url_path",
)


def _columns(row: bytes) -> dict[str, str | None]:
    fields = row.rstrip(b"\n").decode().split("\t")
    return {
        c: None if f == "\\N" else f.replace("\\\\", "\\")
        for c, f in zip(_native.EVENT_COLUMNS, fields, strict=True)
    }


def compare(
    sample: Iterable[tuple[bytes, str, str]],
    a: Callable[[bytes, str, str], bytes],
    b: Callable[[bytes, str, str], bytes],
) -> tuple[int, int, list[str]]:
    """(events compared, events with identical enrichment, first differences)."""
    total = same = 0
    diffs: list[str] = []
    for body, ua, ip in sample:
        ra, rb = _columns(a(body, ua, ip)), _columns(b(body, ua, ip))
        total += 1
        differing = [c for c in COMPARED if ra[c] != rb[c]]
        if not differing:
            same += 1
        elif len(diffs) < 5:
            diffs.append(
                f"{ua[:60]!r} {ip}: " + ", ".join(f"{c} {ra[c]!r}≠{rb[c]!r}" for c in differing)
            )
    return total, same, diffs


@pytest.fixture(scope="module")
def enrichers() -> dict[str, _native.Enricher]:
    return {
        "cached": _native.Enricher(geoip_db=str(MMDB)),
        "uncached": _native.Enricher(geoip_db=str(MMDB), ua_cache_size=0, geo_cache_size=0),
    }


@pytest.fixture(scope="module")
def correctness(
    workloads: dict[str, Workload],
    enrichers: dict[str, _native.Enricher],
    bench_results: dict[str, Any],
) -> None:
    """Ours and the pure-Python pipeline on every event of both workloads and
    on every user agent of uap-core's test file: the same enrichment, field by
    field; the user agents also against ua-parser's reference resolver."""
    rng = random.Random(7)
    ips = [ip for _, _, ip in workloads["uncached"]]
    every_ua = [
        (_event(rng, i), ua, rng.choice(ips)) for i, (_, ua, _) in enumerate(workloads["all_uas"])
    ]
    sample = workloads["cached"] + workloads["uncached"] + every_ua
    prepare = ours(enrichers["uncached"])
    bench_results["correctness"] = {
        "the pure-Python pipeline (ua-parser-rs)": compare(
            sample, prepare, PurePython(cached=False).prepare
        ),
        "ua-parser's reference resolver (pure re)": compare(
            every_ua, prepare, PurePython(cached=False, reference=True).prepare
        ),
    }
    bench_results["summary_lines"] = functools.partial(_summary, bench_results)


# --- the benchmarks ---------------------------------------------------------


def _run(
    benchmark: Any,
    bench_results: dict[str, Any],
    name: str,
    prepare: Callable[[bytes, str, str], bytes],
    events: Workload,
    rounds: int,
) -> None:
    def run() -> None:
        for body, ua, ip in events:
            prepare(body, ua, ip)

    # Every user agent and address seen once before timing: caches warm,
    # lazily compiled regexes compiled.
    run()
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)
    stats = benchmark.stats.stats
    cpu = []
    for _ in range(rounds):
        start = time.thread_time()
        run()
        cpu.append(time.thread_time() - start)
    per_event = 1e6 / len(events)
    bench_results[name] = (
        min(cpu) * per_event,
        stats.min * per_event,
        stats.median * per_event,
    )


def test_ours_cached(benchmark, bench_results, workloads, enrichers, correctness) -> None:
    benchmark.group = "cached"
    _run(
        benchmark, bench_results, "ours cached", ours(enrichers["cached"]), workloads["cached"], 30
    )


def test_python_cached(benchmark, bench_results, workloads, correctness) -> None:
    benchmark.group = "cached"
    prepare = PurePython(cached=True).prepare
    _run(benchmark, bench_results, "python cached", prepare, workloads["cached"], 10)


def test_ours_uncached(benchmark, bench_results, workloads, enrichers, correctness) -> None:
    benchmark.group = "uncached"
    prepare = ours(enrichers["uncached"])
    _run(benchmark, bench_results, "ours uncached", prepare, workloads["uncached"], 15)


def test_python_uncached(benchmark, bench_results, workloads, correctness) -> None:
    benchmark.group = "uncached"
    prepare = PurePython(cached=False).prepare
    _run(benchmark, bench_results, "python uncached", prepare, workloads["uncached"], 5)


def test_enrichment_cost_on_cache_hits(benchmark, bench_results, workloads, enrichers) -> None:
    """The cached events against the same events with nothing to enrich (no
    user agent, a private peer), rounds alternating so that both see the same
    machine: the difference is what enrichment costs on cache hits."""
    benchmark.group = "cached"
    enriched, bare = ours(enrichers["cached"]), ours(_native.Enricher())
    events = workloads["cached"]
    plain = [(body, "", "10.0.0.1") for body, _, _ in events]

    def run(prepare: Callable[[bytes, str, str], bytes], events: Workload) -> float:
        start = time.thread_time()
        for body, ua, ip in events:
            prepare(body, ua, ip)
        return time.thread_time() - start

    run(enriched, events)
    benchmark.pedantic(run, args=(bare, plain), rounds=30, iterations=1, warmup_rounds=1)
    with_enrichment, without = [], []
    for _ in range(30):
        with_enrichment.append(run(enriched, events))
        without.append(run(bare, plain))
    per_event = 1e6 / len(events)
    bench_results["enrichment on hits"] = (
        min(without) * per_event,
        (min(with_enrichment) - min(without)) * per_event,
    )


def _summary(results: dict[str, Any]) -> list[str]:
    lines = [
        "µs per event: CPU time of the thread (best round), then wall clock (best / median)",
        f"{'':10} {'ours CPU':>9} {'wall':>17} {'Python CPU':>11} {'wall':>17} {'speed-up':>9}",
    ]
    for mode in ("cached", "uncached"):
        a, b = results.get(f"ours {mode}"), results.get(f"python {mode}")
        if a is None or b is None:
            continue
        lines.append(
            f"{mode:10} {a[0]:9.2f} {a[1]:7.2f} / {a[2]:7.2f} {b[0]:11.2f}"
            f" {b[1]:7.2f} / {b[2]:7.2f} {b[0] / a[0]:8.1f}x"
        )
    if "enrichment on hits" in results:
        bare, cost = results["enrichment on hits"]
        lines.append(
            f"ours with nothing to enrich: {bare:.2f} µs/event (CPU); enrichment on cache"
            f" hits adds {cost:.2f} µs/event"
        )
    for against, (total, same, diffs) in results.get("correctness", {}).items():
        lines.append(f"same enrichment as {against}: {same}/{total} events")
        lines += [f"  differs: {d}" for d in diffs]
    return lines
