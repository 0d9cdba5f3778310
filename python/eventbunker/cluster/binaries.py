"""Finding the PostgreSQL binaries (with TimescaleDB) the managed cluster runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from eventbunker.cluster.errors import ClusterError

PG_BIN_ENV = "EVENTBUNKER_PG_BIN"
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")

INSTALL_HINT = (
    "Run scripts/install-postgres.sh (as root, or with sudo) to install PostgreSQL "
    f"and TimescaleDB, or set {PG_BIN_ENV} to the bin directory of a PostgreSQL "
    "server that has the TimescaleDB extension installed."
)


def _version_key(name: str) -> tuple[int, ...] | None:
    if not re.fullmatch(r"\d+(\.\d+)*", name):
        return None
    return tuple(int(part) for part in name.split("."))


def _pg_config_sharedir(bin_dir: Path) -> Path | None:
    pg_config = bin_dir / "pg_config"
    if not os.access(pg_config, os.X_OK):
        return None
    out = _ask_pg_config(str(pg_config), "--sharedir")
    return Path(out) if out else None


def _has_timescaledb(bin_dir: Path) -> bool:
    """Whether ``bin_dir`` holds a PostgreSQL server whose share dir has TimescaleDB."""
    if not os.access(bin_dir / "postgres", os.X_OK) or not os.access(bin_dir / "pg_ctl", os.X_OK):
        return False
    control = Path("extension") / "timescaledb.control"
    # Debian layout first (no process to spawn): /usr/lib/postgresql/<v>/bin ->
    # /usr/share/postgresql/<v>.
    debian_share = Path("/usr/share/postgresql") / bin_dir.parent.name
    if bin_dir.parent.parent == DEBIAN_PG_ROOT and (debian_share / control).is_file():
        return True
    sharedir = _pg_config_sharedir(bin_dir)
    return sharedir is not None and (sharedir / control).is_file()


def _candidate_bin_dirs() -> list[tuple[tuple[int, ...], Path]]:
    """Debian's ``/usr/lib/postgresql/<version>/bin`` with TimescaleDB, newest first."""
    found: list[tuple[tuple[int, ...], Path]] = []
    try:
        entries = list(DEBIAN_PG_ROOT.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        key = _version_key(entry.name)
        if key is not None and _has_timescaledb(entry / "bin"):
            found.append((key, entry / "bin"))
    found.sort(reverse=True)
    return found


def find_pg_bin_dir() -> Path:
    """The bin directory of the newest PostgreSQL that has TimescaleDB installed.

    ``EVENTBUNKER_PG_BIN`` overrides the search. Otherwise the newest
    ``/usr/lib/postgresql/<version>/bin`` whose share directory has
    ``extension/timescaledb.control`` wins; failing that, the ``pg_config`` on
    ``PATH`` (non-Debian systems). Raises :class:`ClusterError` if there is none.
    """
    override = os.environ.get(PG_BIN_ENV, "").strip()
    if override:
        bin_dir = Path(override).expanduser().absolute()
        missing = [
            name for name in ("initdb", "pg_ctl", "postgres") if not (bin_dir / name).exists()
        ]
        if missing:
            raise ClusterError(
                f"{PG_BIN_ENV}={override} is not a PostgreSQL bin directory "
                f"(no {', '.join(missing)} there). {INSTALL_HINT}"
            )
        return bin_dir
    candidates = _candidate_bin_dirs()
    if candidates:
        return candidates[0][1]
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        out = _ask_pg_config(pg_config, "--bindir")
        if out and _has_timescaledb(Path(out)):
            return Path(out)
    raise ClusterError(f"No PostgreSQL server with TimescaleDB was found. {INSTALL_HINT}")


def _ask_pg_config(pg_config: str, flag: str) -> str:
    """``pg_config <flag>``'s answer, or "" when it cannot tell."""
    try:
        return subprocess.run(
            [pg_config, flag],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def bin_dir_for(pg_dir: Path) -> Path:
    """The binaries for the cluster in ``pg_dir``: the PostgreSQL of its major
    version when it exists (else the newest, ``find_pg_bin_dir``)."""
    if os.environ.get(PG_BIN_ENV, "").strip():
        return find_pg_bin_dir()
    try:
        version = (pg_dir / "PG_VERSION").read_text().strip()
    except OSError:
        return find_pg_bin_dir()
    candidates = _candidate_bin_dirs()
    for key, bin_dir in candidates:
        if ".".join(map(str, key)) == version:
            return bin_dir
    if candidates:
        found = ", ".join(".".join(map(str, key)) for key, _ in candidates)
        raise ClusterError(
            f"{pg_dir} was initialized by PostgreSQL {version}, but TimescaleDB is "
            f"installed only for PostgreSQL {found}. Install TimescaleDB for "
            f"PostgreSQL {version}, set {PG_BIN_ENV}, or upgrade the cluster "
            "(pg_upgrade)."
        )
    return find_pg_bin_dir()
