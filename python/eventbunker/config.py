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
    # Group commit: a flush takes up to batch_max_rows rows; when fewer are
    # waiting it waits at most batch_max_wait_ms for more.
    batch_max_rows: int = 5000
    batch_max_wait_ms: float = 0.0
    flushers: int = 2
    queue_max_rows: int = 50_000
    # How often each worker re-checks its cached keys (revocation visibility).
    auth_refresh_ms: int = 250
    geoip_db: str = ""
    trusted_proxies: str = ""

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
    except ValueError as exc:
        raise SystemExit(f"{ENV_PREFIX}{name.upper()}: {exc}") from exc
    return raw
