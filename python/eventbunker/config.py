"""Settings: one definition per setting, from which everything else is made.

Each field of ``Settings`` is declared once, with ``setting(default, help)``;
the ``serve`` flag (``--max-body-bytes``), the environment variable
(``EVENTBUNKER_MAX_BODY_BYTES``), the ``--help`` text and the parsing of both
are generated from it (``add_flags``, ``Settings.from_env``). Adding a setting
is adding one field here.

Granian starts each worker in its own process, so the CLI exports the resolved
settings into the environment and every worker rebuilds them with ``from_env``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "EVENTBUNKER_"
UNSET_PATH = Path()  # a Path setting left to its derived default
DEFAULT_DATA_DIR = Path(".eventbunker")


def setting(default: Any, help: str, *, database: bool = False, flag: str = "") -> Any:
    """One setting: its default and its ``--help`` line.

    ``database`` marks the settings that choose the database; the admin
    commands take those flags too (and only those). ``flag``: a flag name other
    than the one made from the field's name (``--nats`` for ``nats_url``).
    """
    return field(default=default, metadata={"help": help, "database": database, "flag": flag})


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = setting("127.0.0.1", "address to bind")
    port: int = setting(8000, "TCP port")
    workers: int = setting(0, "worker processes (0: one per core)")
    database_url: str = setting(
        "",
        "PostgreSQL+TimescaleDB URL (empty: the managed cluster under --data-dir)",
        database=True,
    )
    data_dir: Path = setting(DEFAULT_DATA_DIR, "managed local cluster directory", database=True)
    runtime_dir: Path = setting(
        UNSET_PATH, "directory the workers of one server share (metrics); default: a temporary one"
    )
    # Request limits.
    max_body_bytes: int = setting(1_048_576, "request body limit, in bytes")
    max_batch_events: int = setting(1000, "events per request")
    max_json_depth: int = setting(32, "deepest JSON nesting")
    max_string_bytes: int = setting(65_536, "longest JSON string, in bytes")
    body_timeout_seconds: float = setting(
        30.0,
        "a request body not whole within this many seconds is answered 408 and its connection"
        " closed (1 MiB at 384 kbit/s, slow 3G, takes 22 s); an import, streamed, when no byte"
        " came for that long",
    )
    keep_alive_timeout_seconds: float = setting(
        30.0,
        "a connection without a request under way (just opened, or kept alive after an answer),"
        " or whose request headers are not whole, is closed after this many seconds (up to 60)",
    )
    max_connections: int = setting(
        8192,
        "open connections per worker (more wait in the listen backlog); at most the open-files"
        " limit less a reserve",
    )
    max_future_seconds: int = setting(
        86_400,
        "an event timed further ahead of its receipt (after clock-skew correction) is stored"
        " at its receipt, the time it was sent with kept in properties.future_timestamp",
    )
    # Write-ahead spool: a 202 means fsynced here.
    spool_dir: Path = setting(UNSET_PATH, "write-ahead spool directory (default: <data-dir>/spool)")
    spool_max_bytes: int = setting(
        1 << 30, "spool size past which ingest answers 503 (e.g. database down)"
    )
    spool_max_pending_bytes: int = setting(
        32 << 20, "bytes per worker waiting for the disk before ingest answers 503"
    )
    spool_segment_bytes: int = setting(
        16 << 20, "spool segment size; drained segments are deleted whole"
    )
    drain_interval_ms: float = setting(
        50.0, "spool -> TimescaleDB: wait this long for more records before a COPY"
    )
    max_lag_seconds: float = setting(
        2.0,
        "queryable lag bound: while the database is reachable, ingest answers 503"
        " (overloaded) rather than let an acknowledged event wait longer",
    )
    # Rate limits (ingest/rate_limits.py): per write key, or per customer for
    # customer-scoped keys, shared by the workers of a node.
    rate_limit_events_per_second: float = setting(
        0.0, "events per second a write key may send (0: no limit); over it, 429 rate_limited"
    )
    rate_limit_burst: int = setting(
        0, "events a write key may send at once above its rate (0: one second's worth)"
    )
    idempotency_window_hours: float = setting(
        48.0, "how long an event id is remembered for deduplication"
    )
    auth_refresh_ms: int = setting(
        250, "how often each worker re-checks its cached keys (revocation visibility)"
    )
    geoip_db: str = setting("", "MaxMind .mmdb file for IP -> geo (empty: no geo)")
    query_timeout_ms: int = setting(10_000, "time limit of one query; 503 beyond")
    delete_timeout_ms: int = setting(300_000, "time limit of one delete; 503 beyond")
    query_pool_size: int = setting(4, "database connections per worker for queries and deletes")
    trusted_proxies: str = setting(
        "", "addresses/CIDRs, comma-separated, whose X-Forwarded-For is believed"
    )
    rollups: bool = setting(
        True,
        "keep the live rollups (storage/rollups.py); off only to measure what they cost"
        " (benches/sustained_batches.py): queries then read raw rows, and rollups left"
        " behind must be rebuilt (storage.rollups.rebuild_statement) before turning it on",
    )
    anonymize_ip: bool = setting(
        False, "store ip with the last IPv4 octet / IPv6 80 bits zeroed, after the GeoIP lookup"
    )
    # Scale-out mode (scaleout/): publish to a JetStream stream instead of the
    # local spool, `eventbunker writer` processes store it; empty: single-node mode.
    nats_url: str = setting(
        "",
        "scale-out mode: NATS server URLs, comma-separated, nearest first",
        flag="--nats",
    )
    nats_stream: str = setting("eventbunker-events", "JetStream stream of the scale-out mode")
    nats_replicas: int = setting(3, "replicas of the JetStream stream when it is created")
    query_database_url: str = setting(
        "", "queries read here, e.g. a streaming replica (empty: the database URL)"
    )

    def __post_init__(self) -> None:
        if self.spool_dir == UNSET_PATH:
            object.__setattr__(self, "spool_dir", self.data_dir / "spool")

    @property
    def effective_workers(self) -> int:
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in fields(cls):
            raw = env.get(env_name(item))
            if raw is not None and raw != "":
                values[item.name] = _convert(item, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        return {env_name(item): str(getattr(self, item.name)) for item in fields(self)}


def env_name(item: Field[Any]) -> str:
    return ENV_PREFIX + item.name.upper()


def flag_name(item: Field[Any]) -> str:
    return item.metadata["flag"] or "--" + item.name.replace("_", "-")


def add_flags(
    parser: argparse.ArgumentParser,
    *,
    database_only: bool = False,
    database_group: Any = None,
) -> None:
    """Add one flag per setting (``database_only``: the database choice only).

    The database flags exclude each other (in ``database_group`` if given).
    Flags default to ``None`` so that an unset flag leaves the environment's
    value (or the field default) in place: see ``from_args``.
    """
    group = database_group or parser.add_mutually_exclusive_group()
    for item in fields(Settings):
        if database_only and not item.metadata["database"]:
            continue
        target: Any = group if item.metadata["database"] else parser
        default = item.default
        shown = "" if default in ("", UNSET_PATH) else f"; default {default}"
        help_text = f"{item.metadata['help']} (env {env_name(item)}{shown})"
        kind = _kind(item)
        if kind == "bool":
            target.add_argument(
                flag_name(item),
                dest=item.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
            continue
        convert: Any = {"int": int, "float": float, "Path": Path}.get(kind, str)
        target.add_argument(
            flag_name(item), dest=item.name, type=convert, metavar=kind.upper(), help=help_text
        )


def from_args(args: argparse.Namespace) -> Settings:
    """Settings from parsed flags over the environment over the defaults."""
    overrides = {item.name: getattr(args, item.name, None) for item in fields(Settings)}
    if overrides.get("data_dir") is not None:
        overrides["database_url"] = ""  # an explicit --data-dir wins over the environment
    return Settings.from_env(**overrides)


def _kind(item: Field[Any]) -> str:
    # `from __future__ import annotations` leaves field types as strings.
    kind = item.type
    return kind if isinstance(kind, str) else getattr(kind, "__name__", "")


def _convert(item: Field[Any], raw: str) -> Any:
    kind = _kind(item)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "bool":
            return _bool(raw)
    except ValueError as exc:
        raise SystemExit(f"{env_name(item)}: {exc}") from exc
    return raw


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")
