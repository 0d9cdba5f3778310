"""Bulk import vs PostgreSQL's own COPY of the same final rows (issue 7).

Generates a realistic NDJSON file (seeded; cached between runs), starts a
managed TimescaleDB cluster and the real server (GeoIP test database as
enrichment), then alternates, in one run, truncating the tables before each:

- ours: ``eventbunker import FILE --url URL --key KEY --quiet`` end to end,
  from the NDJSON file to committed rows (the CLI returns once the server
  answered, i.e. after the last commit);
- baseline: ``psql -c "\\copy events (<EVENT_COLUMNS>) FROM 'rows.copy'"`` of
  exactly the rows our import stored (exported once, after the first import).

Reports events/s of both per round, the ratios (per round, of the medians, of
the bests), CPU seconds of the client, the server and PostgreSQL, the CPU the
whole machine spent meanwhile (to spot foreign load), and one final JSON line.
Issue 7 asks for ours >= 0.8 x the baseline. With ``--event-ids`` every
event has a unique ``event_id``: ours then also claims each id in
``event_ids`` (the dedup), while the baseline still copies only the rows.
``--sample-waits 0.05`` samples what the writing backend waits on.

    .venv/bin/python benches/import_copy.py [--events 1000000] [--rounds 2] [--event-ids]
    .venv/bin/python benches/import_copy.py --events 10000000 --rounds 1 --skip-baseline

``--via batch-api`` sends the same events through ``POST /v1/events`` (JSON
arrays of 1000) instead of the import endpoint, for comparison.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from eventbunker.admin.projects import create_project
from eventbunker.cluster import ManagedCluster
from eventbunker.storage.migrate import migrate
from pg_meter import (
    Meter,
    count_rows,
    export_rows,
    postmaster_pid,
    reset,
    run_baseline,
)
from processes import free_port, serve_command, stop, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
GEOIP_DB = ROOT.parent / "shared/testdata/geoip/GeoIP2-City-Test.mmdb"
TARGET_RATIO = 0.8
GENERATOR_VERSION = 1  # bump when the generated events change (invalidates cached files)
CHUNK_EVENTS = 50_000

# --------------------------------------------------------------------------- events

END_EPOCH_S = 1_746_057_600  # 2025-05-01T00:00:00Z: historical data, as in a migration
SPAN_S = 30 * 86_400

EVENT_NAMES = {
    "page_view": 44,
    "click": 14,
    "search": 8,
    "add_to_cart": 5,
    "purchase": 4,
    "signup": 3,
    "api_request": 14,  # with a metric
    "web_vitals": 8,  # with a metric
}
USER_AGENTS = [
    # desktop browsers
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/123.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.0.0 Safari/537.36 OPR/109.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/16.6 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.0.0 Safari/537.36",
    # phones and tablets
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_7_7 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Mobile/15E148 Instagram 327.1.6.30.88 (iPhone14,5; iOS 17_3_1;"
    " en_US; en; scale=3.00; 1170x2532; 589278395)",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8 Pro) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/123.0.6312.118 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko)"
    " SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 12; Redmi Note 11) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/122.0.6261.119 Mobile Safari/537.36",
    "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 11; moto g(30)) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/121.0.6167.178 Mobile Safari/537.36",
    # bots and tools
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1;"
    " +http://www.google.com/bot.html) Chrome/124.0.6367.91 Safari/537.36",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "okhttp/4.12.0",
]
UA_WEIGHTS = [
    *[60, 25, 30, 20, 4, 5, 30, 25, 8, 8, 6, 5, 3],
    *[45, 12, 10, 6, 8, 35, 8, 14, 8, 6, 4, 4, 4],
    *[3, 2, 2, 1, 1, 1, 1, 1, 1, 1],
]
# MaxMind test-database addresses (GeoIP2-City-Test.json): they resolve to a
# country, city, location and time zone.
GEO_IPS = [
    "81.2.69.142",  # London
    "81.2.69.160",
    "81.2.69.195",
    "2.125.160.216",  # Boxford
    "216.160.83.56",  # Milton, US
    "216.160.83.58",
    "89.160.20.112",  # Linköping
    "89.160.20.130",
    "175.16.199.7",  # Changchun
    "214.78.120.5",  # San Diego
    "214.0.1.12",  # Melbourne
    "2001:480:10::1",  # San Diego
    "2001:218::1",  # JP
    "2a02:d180::5",  # DE
    "2a02:cfc0::9",  # FR
]
HOSTS = ["shop.example"] * 8 + ["www.shop.example", "docs.shop.example"]
PATHS = (
    ["/", "/pricing", "/signup", "/login", "/cart", "/checkout", "/search", "/blog"]
    + [f"/docs/guide-{i}" for i in range(80)]
    + [f"/products/{i}" for i in range(2000)]
)
UTM = [
    "?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale",
    "?utm_source=google&utm_medium=cpc&utm_campaign=brand&utm_term=analytics",
    "?utm_source=twitter&utm_medium=social&utm_campaign=launch&utm_content=video",
    "?utm_source=facebook&utm_medium=paid_social&utm_campaign=retargeting",
    "?ref=producthunt",
]
REFERRERS = [
    "https://www.google.com/",
    "https://www.google.de/",
    "https://www.bing.com/search?q=event+analytics",
    "https://t.co/a1B2c3D4e5",
    "https://news.ycombinator.com/item?id=40120450",
    "https://www.facebook.com/",
    "https://shop.example/",
    "https://shop.example/pricing",
    "https://duckduckgo.com/",
]
PLANS = {"free": 70, "pro": 25, "enterprise": 5}
LOCALES = ["en-US", "en-GB", "de-DE", "fr-FR", "sv-SE", "ja-JP", "pt-BR", "es-ES"]
SCREENS = [(1920, 1080), (1440, 900), (2560, 1440), (390, 844), (412, 915), (820, 1180)]
ENDPOINTS = ["/api/search", "/api/cart", "/api/checkout", "/api/products", "/api/user"]
USERS = 300_000


def _public_ipv4(rng: random.Random) -> str:
    while True:
        a = rng.randint(1, 223)
        if a not in (10, 100, 127, 169, 172, 192, 198, 203):
            return f"{a}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _ip_pool(rng: random.Random, size: int) -> list[str]:
    pool = [_public_ipv4(rng) for _ in range(size * 9 // 10)]
    pool += [
        f"2a0{rng.randint(0, 9)}:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}::"
        f"{rng.getrandbits(16):x}"
        for _ in range(size - len(pool))
    ]
    return pool


def _timestamp(epoch_ms: int, offset_h: int) -> str:
    """RFC 3339 with milliseconds, in UTC ("Z") or at a whole-hour offset."""
    local_ms = epoch_ms + offset_h * 3_600_000
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(local_ms // 1000))
    suffix = "Z" if offset_h == 0 else f"{offset_h:+03d}:00"
    return f"{text}.{local_ms % 1000:03d}{suffix}"


def generate_events(total: int, seed: int, event_ids: bool) -> Iterator[bytes]:
    """NDJSON chunks of ``total`` events in (nearly) time order over 30 days."""
    rng = random.Random(seed)
    ips = _ip_pool(rng, 200_000)
    start_ms = (END_EPOCH_S - SPAN_S) * 1000
    step_ms = SPAN_S * 1000 / max(total, 1)
    names_list, names_w = list(EVENT_NAMES), list(EVENT_NAMES.values())
    plans_list, plans_w = list(PLANS), list(PLANS.values())
    done = 0
    while done < total:
        k = min(CHUNK_EVENTS, total - done)
        names = rng.choices(names_list, names_w, k=k)
        uas = rng.choices(USER_AGENTS, UA_WEIGHTS, k=k)
        paths = rng.choices(PATHS, k=k)
        plans = rng.choices(plans_list, plans_w, k=k)
        out = []
        for i in range(k):
            seq = done + i
            epoch_ms = int(start_ms + seq * step_ms) + rng.randint(-30_000, 30_000)
            offset_h = 0 if rng.random() < 0.85 else rng.choice((-7, -4, 1, 2, 9))
            name = names[i]
            user = f"u{int(USERS * rng.random() ** 2)}"
            ip = rng.choice(GEO_IPS) if rng.random() < 0.35 else rng.choice(ips)
            event: dict[str, Any] = {
                "event_name": name,
                "timestamp": _timestamp(epoch_ms, offset_h),
            }
            if event_ids:
                event["event_id"] = f"{rng.getrandbits(64):016x}-{seq:08x}"
            if name == "api_request":
                event["metric_name"] = "api_latency_ms"
                event["metric_value"] = round(rng.lognormvariate(3.5, 0.6), 2)
                event["ip"] = ip
                event["user_agent"] = rng.choice(USER_AGENTS[-3:])
                event["endpoint"] = rng.choice(ENDPOINTS)
                event["status"] = 200 if rng.random() < 0.97 else 500
                event["user_id"] = user
                out.append(orjson.dumps(event))
                continue
            if name in ("purchase", "signup"):
                # Sent by the shop's backend: no browser context.
                event["ip"] = ip
                event["user_id"] = user
                event["plan"] = plans[i]
                if name == "purchase":
                    event["order"] = {
                        "amount": round(rng.lognormvariate(3.8, 0.8), 2),
                        "currency": "EUR",
                        "items": [
                            {"sku": f"SKU-{rng.randint(1, 2000)}", "qty": rng.randint(1, 3)}
                            for _ in range(rng.randint(1, 3))
                        ],
                    }
                out.append(orjson.dumps(event))
                continue
            if name == "web_vitals":
                event["metric_name"] = "lcp_ms"
                event["metric_value"] = round(rng.lognormvariate(7.4, 0.5), 1)
            event["ip"] = ip
            event["user_agent"] = uas[i]
            url = f"https://{rng.choice(HOSTS)}{paths[i]}"
            if rng.random() < 0.25:
                url += rng.choice(UTM)
            event["url"] = url
            if rng.random() < 0.4:
                event["referrer"] = rng.choice(REFERRERS)
            event["user_id"] = user
            event["plan"] = plans[i]
            if name == "search":
                event["query"] = rng.choice(("pricing", "export csv", "sdk", "retention", "api"))
            elif rng.random() < 0.2:
                w, h = rng.choice(SCREENS)
                event["context"] = {"locale": rng.choice(LOCALES), "screen": {"w": w, "h": h}}
            out.append(orjson.dumps(event))
        done += k
        yield b"\n".join(out) + b"\n"


def ndjson_file(cache_dir: Path, total: int, seed: int, event_ids: bool) -> Path:
    """The generated file, reused when one with the same parameters exists."""
    ids = "-ids" if event_ids else ""
    path = cache_dir / f"events-v{GENERATOR_VERSION}-n{total}-s{seed}{ids}.ndjson"
    if path.exists():
        print(f"reusing {path} ({path.stat().st_size / 1e6:,.0f} MB)", flush=True)
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(f".tmp{os.getpid()}")
    started = time.perf_counter()
    with scratch.open("wb") as f:
        for chunk in generate_events(total, seed, event_ids):
            f.write(chunk)
    scratch.rename(path)
    size = path.stat().st_size
    print(
        f"generated {path}: {total:,} events, {size / 1e6:,.0f} MB ({size / total:.0f} bytes"
        f" per event) in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return path


# --------------------------------------------------------------------------- CPU accounting


@dataclass
class Run:
    path: str  # "ours" or "baseline"
    round: int
    wall_s: float
    events: int
    client_cpu_s: float
    server_cpu_s: float
    postgres_cpu_s: float
    machine_cpu_s: float
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s

    @property
    def other_cpu_s(self) -> float:
        """CPU the machine spent on anything else meanwhile (other people's work)."""
        return max(
            0.0, self.machine_cpu_s - self.client_cpu_s - self.server_cpu_s - self.postgres_cpu_s
        )


def run_import(url: str, key: str, path: Path, meter: Meter) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "eventbunker",
        "import",
        str(path),
        "--url",
        url,
        "--key",
        key,
        "--quiet",
    ]
    with meter.measure() as m:
        proc = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(
            f"eventbunker import exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    detail: dict[str, Any] = {**m}
    for line in reversed(proc.stdout.splitlines()):
        with contextlib.suppress(orjson.JSONDecodeError):
            answer = orjson.loads(line)
            if isinstance(answer, dict):
                detail["answer"] = {k: v for k, v in answer.items() if k != "errors"}
                break
    return detail


def run_batch_api(
    url: str,
    key: str,
    path: Path,
    meter: Meter,
    stored: Callable[[], int],
    batch: int = 1000,
    senders: int = 8,
) -> dict[str, Any]:
    """The same events as JSON arrays through ``POST /v1/events`` (for comparison).

    A 202 there may mean "fsynced in the spool": the run ends once the drainer
    has committed every accepted event.
    """
    lock = threading.Lock()
    with path.open("rb") as f, meter.measure() as m:

        def bodies() -> Iterator[bytes]:
            while True:
                with lock:
                    lines = [line for _, line in zip(range(batch), f, strict=False)]
                if not lines:
                    return
                yield b"[" + b",".join(line.rstrip(b"\n") for line in lines) + b"]"

        def sender() -> int:
            sent = 0
            headers = {"X-Api-Key": key, "Content-Type": "application/json"}
            with httpx.Client(base_url=url, timeout=120, headers=headers) as client:
                for body in bodies():
                    response = client.post("/v1/events", content=body)
                    if response.status_code != 202:
                        raise RuntimeError(f"{response.status_code} {response.text[:300]}")
                    sent += int(response.json()["accepted"])
            return sent

        with concurrent.futures.ThreadPoolExecutor(senders) as pool:
            accepted = sum(pool.map(lambda _: sender(), range(senders)))
        deadline = time.monotonic() + 600
        while stored() < accepted:
            if time.monotonic() > deadline:
                raise SystemExit("the drainer did not commit every accepted event")
            time.sleep(0.05)
    return {**m, "answer": {"accepted": accepted}}


# --------------------------------------------------------------------------- orchestration


def start_server(
    conninfo: str, workers: int, tmp: Path, geoip: Path | None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        serve_command(conninfo, port, workers, tmp / "spool", geoip),
        cwd=ROOT,
        stdout=(tmp / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/healthz", process)
    return process, url


def check_disk(where: Path, args: argparse.Namespace, ndjson_cached: bool) -> None:
    # Measured: ~280 bytes of NDJSON, ~430 bytes of COPY text and ~900 bytes of
    # table + indexes + WAL per event (10 M events: ~3 + 4.3 + 9 GB).
    need = args.events * (900 + (0 if args.skip_baseline else 430))
    if not ndjson_cached:
        need += args.events * 280
    free = shutil.disk_usage(where).free
    print(f"disk: {free / 1e9:,.1f} GB free in {where}, ~{need / 1e9:,.1f} GB needed", flush=True)
    if free < need * 1.2:
        raise SystemExit("not enough free disk space for this run")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each path")
    parser.add_argument("--event-ids", action="store_true", help="a unique event_id per event")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--skip-baseline", action="store_true", help="time only our import")
    parser.add_argument(
        "--via",
        choices=("import", "batch-api"),
        default="import",
        help="our path: the import endpoint through the CLI (default), or POST /v1/events",
    )
    parser.add_argument(
        "--geoip-db", type=Path, default=GEOIP_DB, help="MaxMind .mmdb (skipped if missing)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "eventbunker-import-bench",
        help="where the generated NDJSON is kept for the next run",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="delete the generated NDJSON at the end"
    )
    parser.add_argument(
        "--sample-waits",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="sample what the writing backend waits on every SECONDS (e.g. 0.05)",
    )
    parser.add_argument(
        "--work-dir", type=Path, help="parent of the temporary cluster (default: system temp)"
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.events < 1:
        raise SystemExit("--rounds and --events must be positive")

    ids = "-ids" if args.event_ids else ""
    cached = (
        args.cache_dir / f"events-v{GENERATOR_VERSION}-n{args.events}-s{args.seed}{ids}.ndjson"
    ).exists()
    work_dir = args.work_dir or Path(tempfile.gettempdir())
    check_disk(work_dir, args, cached)
    ndjson = ndjson_file(args.cache_dir, args.events, args.seed, args.event_ids)
    geoip = args.geoip_db if args.geoip_db.exists() else None
    print(
        f"{args.events:,} events ({ndjson.stat().st_size / args.events:.0f} bytes each),"
        f" event ids: {'unique per event' if args.event_ids else 'none'};"
        f" server: {args.workers} workers, GeoIP database: {geoip or 'none'}; our path: {args.via}",
        flush=True,
    )
    ndjson_bytes = ndjson.stat().st_size
    runs: list[Run] = []
    try:
        with tempfile.TemporaryDirectory(prefix="eb-import-bench-", dir=work_dir) as tmp_name:
            tmp = Path(tmp_name)
            runs = measure_all(args, ndjson, tmp, geoip)
    finally:
        if args.no_cache:
            ndjson.unlink(missing_ok=True)
    report(args, runs, ndjson_bytes)


def measure_all(args: argparse.Namespace, ndjson: Path, tmp: Path, geoip: Path | None) -> list[Run]:
    cluster = ManagedCluster(tmp / "cluster")
    cluster.start()
    runs: list[Run] = []
    try:
        migrate(cluster.conninfo)
        with psycopg.connect(cluster.conninfo) as conn:
            project = create_project(conn, "import-bench")
        project_id, key = int(project["id"]), str(project["keys"]["write"])
        server, url = start_server(cluster.conninfo, args.workers, tmp, geoip)
        try:
            meter = Meter(server.pid, postmaster_pid(cluster), cluster.conninfo, args.sample_waits)

            def stored() -> int:
                return count_rows(cluster.conninfo, project_id)

            warm_up(args, url, key, ndjson, tmp, meter, stored)
            rows = tmp / "rows.copy"
            for number in range(1, args.rounds + 1):
                paths = ["ours"] if args.skip_baseline else ["ours", "baseline"]
                for name in paths:
                    reset(cluster.conninfo)
                    if name == "ours":
                        if args.via == "import":
                            detail = run_import(url, key, ndjson, meter)
                        else:
                            detail = run_batch_api(url, key, ndjson, meter, stored)
                    else:
                        detail = run_baseline(cluster, rows, meter)
                    count = stored()
                    run = Run(
                        path=name,
                        round=number,
                        events=count,
                        wall_s=detail.pop("wall_s"),
                        client_cpu_s=detail.pop("client_cpu_s"),
                        server_cpu_s=detail.pop("server_cpu_s"),
                        postgres_cpu_s=detail.pop("postgres_cpu_s"),
                        machine_cpu_s=detail.pop("machine_cpu_s"),
                        detail=detail,
                    )
                    runs.append(run)
                    print_run(run)
                    accepted = detail.get("answer", {}).get("accepted", count)
                    if count != args.events or accepted != count:
                        print(f"answer: {detail.get('answer')}")
                        raise SystemExit(f"FAIL: {count:,} rows stored, expected {args.events:,}")
                    if name == "ours" and not args.skip_baseline and not rows.exists():
                        export_rows(cluster, project_id, rows)
            with psycopg.connect(cluster.conninfo) as conn:
                size = conn.execute("SELECT pg_size_pretty(hypertable_size('events'))").fetchone()
            print(f"events hypertable after the last run: {size[0] if size else '?'}", flush=True)
        finally:
            stop(server)
    finally:
        cluster.stop()
    return runs


def warm_up(
    args: argparse.Namespace,
    url: str,
    key: str,
    ndjson: Path,
    tmp: Path,
    meter: Meter,
    stored: Callable[[], int],
) -> None:
    """A small first import: connections, caches and code paths are warm for round 1."""
    sample = tmp / "warm-up.ndjson"
    with ndjson.open("rb") as src, sample.open("wb") as dst:
        for _, line in zip(range(2000), src, strict=False):
            dst.write(line)
    if args.via == "import":
        run_import(url, key, sample, meter)
    else:
        run_batch_api(url, key, sample, meter, stored)
    sample.unlink()


HEADER = (
    f"{'path':<9} {'round':>5} {'wall s':>8} {'events/s':>10} {'client':>7} {'server':>7}"
    f" {'postgres':>8} {'other':>6}   (CPU seconds; other: the rest of the machine)"
)


def print_run(run: Run) -> None:
    print(
        f"{run.path:<9} {run.round:>5} {run.wall_s:>8.2f} {run.events_per_s:>10,.0f}"
        f" {run.client_cpu_s:>7.1f} {run.server_cpu_s:>7.1f} {run.postgres_cpu_s:>8.1f}"
        f" {run.other_cpu_s:>6.1f}",
        flush=True,
    )


def report(args: argparse.Namespace, runs: list[Run], ndjson_bytes: int) -> None:
    ours = [r for r in runs if r.path == "ours"]
    base = [r for r in runs if r.path == "baseline"]
    print(f"\n{HEADER}")
    for run in runs:
        print_run(run)
    result: dict[str, Any] = {
        "bench": "import_copy",
        "events": args.events,
        "event_ids": args.event_ids,
        "via": args.via,
        "ndjson_bytes": ndjson_bytes,
        "workers": args.workers,
        "ours_events_per_s": [round(r.events_per_s) for r in ours],
        "ours_wall_s": [round(r.wall_s, 2) for r in ours],
        "baseline_events_per_s": [round(r.events_per_s) for r in base],
        "baseline_wall_s": [round(r.wall_s, 2) for r in base],
    }
    print()
    for r in runs:
        n = r.events
        client = "CLI" if r.path == "ours" and args.via == "import" else "client"
        if r.path == "baseline":
            client = "psql"
        mine = r.client_cpu_s + r.server_cpu_s + r.postgres_cpu_s
        print(
            f"{r.path} round {r.round}: {r.wall_s:.1f} s; CPU µs per event:"
            f" {client} {r.client_cpu_s / n * 1e6:.1f}, server {r.server_cpu_s / n * 1e6:.1f},"
            f" postgres {r.postgres_cpu_s / n * 1e6:.1f}; cores busy: this run"
            f" {mine / r.wall_s:.2f}, others {r.other_cpu_s / r.wall_s:.2f}"
        )
    for r in runs:
        if "backend_states" in r.detail:
            states = ", ".join(f"{k} {v:.0%}" for k, v in r.detail["backend_states"].items())
            print(f"{r.path} round {r.round}: writing backend: {states}")
    disturbed = [f"{r.path} {r.round}" for r in runs if r.other_cpu_s / r.wall_s > 0.25]
    if disturbed:
        print(
            "note: other processes kept more than a quarter of a core busy during"
            f" {', '.join(disturbed)}: rerun on a quiet machine for a clean figure"
        )
        result["disturbed_runs"] = disturbed
    if base:
        per_round = [o.events_per_s / b.events_per_s for o, b in zip(ours, base, strict=False)]
        of_medians = median([r.events_per_s for r in ours]) / median([r.events_per_s for r in base])
        of_best = max(r.events_per_s for r in ours) / max(r.events_per_s for r in base)
        result |= {
            "ratio_per_round": [round(x, 3) for x in per_round],
            "ratio_of_medians": round(of_medians, 3),
            "ratio_of_best": round(of_best, 3),
            "target_ratio": TARGET_RATIO,
            "meets_target": of_medians >= TARGET_RATIO,
        }
        print(
            f"ratio ours / COPY per round: {', '.join(f'{x:.2f}' for x in per_round)};"
            f" of the medians: {of_medians:.2f}; of the bests: {of_best:.2f}"
            f" (target >= {TARGET_RATIO})"
        )
    best = min(ours, key=lambda r: r.wall_s)
    print(
        f"wall time for {args.events:,} events (ours, best round): {best.wall_s:.1f} s"
        f" ({best.events_per_s:,.0f} events/s)"
    )
    result["runs"] = [asdict(r) | {"events_per_s": round(r.events_per_s)} for r in runs]
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
