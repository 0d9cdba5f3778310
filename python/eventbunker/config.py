"""Settings: every one is a command-line flag and an ``EVENTBUNKER_*`` variable.

Granian starts each worker in its own process, so the CLI exports the resolved
settings into the environment and every worker rebuilds them with ``from_env``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "EVENTBUNKER_"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 0  # 0: one per core
    database_url: str = ""  # empty: the managed cluster under data_dir
    data_dir: Path = Path(".eventbunker")
    # Directory shared by the workers of one server (metrics snapshots).
    runtime_dir: Path = Path()
    # Request limits.
    max_body_bytes: int = 1_048_576
    max_batch_events: int = 1000
    max_json_depth: int = 32
    max_string_bytes: int = 65_536
    # Write-ahead spool (default: <data_dir>/spool): a 202 means fsynced here.
    spool_dir: Path = Path()
    spool_max_bytes: int = 1 << 30  # past this (e.g. database down): 503
    spool_max_pending_bytes: int = 32 << 20  # waiting for the disk, per worker
    spool_segment_bytes: int = 16 << 20  # drained segments are deleted whole
    # Spool -> TimescaleDB: wait this long for more records before a COPY.
    drain_interval_ms: float = 50.0
    # Queryable lag bound: while the database is reachable, ingest answers 503
    # (overloaded) rather than let an acknowledged event wait longer than this.
    max_lag_seconds: float = 2.0
    idempotency_window_hours: float = 48.0
    # How often each worker re-checks its cached keys (revocation visibility).
    auth_refresh_ms: int = 250
    geoip_db: str = ""
    # Queries and deletes: per-statement time limits (503 beyond) and the
    # connections each worker keeps for them.
    query_timeout_ms: int = 10_000
    delete_timeout_ms: int = 300_000
    query_pool_size: int = 4
    trusted_proxies: str = ""
    # Store `ip` with the last IPv4 octet / last 80 IPv6 bits zeroed (after
    # the GeoIP lookup).
    anonymize_ip: bool = False

    def __post_init__(self) -> None:
        if self.spool_dir == Path():
            object.__setattr__(self, "spool_dir", self.data_dir / "spool")

    @property
    def effective_workers(self) -> int:
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is not None and raw != "":
                values[field.name] = _convert(field.type, raw, field.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        return {
            ENV_PREFIX + field.name.upper(): str(getattr(self, field.name))
            for field in fields(self)
        }


def _convert(type_name: object, raw: str, name: str) -> Any:
    # `from __future__ import annotations` leaves field types as strings.
    kind = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", "")
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
        raise SystemExit(f"{ENV_PREFIX}{name.upper()}: {exc}") from exc
    return raw


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")
