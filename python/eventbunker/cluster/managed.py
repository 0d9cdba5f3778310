"""The managed cluster's lifecycle: initdb, configure, start, stop, adopt
(the layout and rules are in the package docstring)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow

from eventbunker.cluster.accounts import (
    SERVER_ACCOUNT_WHEN_ROOT,
    _Account,
    _chown_tree,
    _ensure_system_account,
    _ensure_traversable,
    _owner_name,
)
from eventbunker.cluster.binaries import INSTALL_HINT, bin_dir_for
from eventbunker.cluster.errors import ClusterError

logger = logging.getLogger(__name__)

SUPERUSER = "eventbunker"
"""Superuser role created by initdb; does not depend on the OS account."""
MAX_SOCKET_PATH_BYTES = 100
LOG_TAIL_LINES = 30

START_TIMEOUT_S = 300  # includes crash recovery, which can take a while
STOP_TIMEOUT_S = 120  # a fast shutdown still writes a checkpoint
CONNECT_TIMEOUT_S = 30.0
LOCK_TIMEOUT_S = 600.0
ORPHAN_WAIT_S = 15.0  # for the processes of a crashed server to exit
INITDB_TIMEOUT_S = 300

INCLUDE_LINE = "include = 'eventbunker.conf'"


def _conf_quote(value: str) -> str:
    """A postgresql.conf string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


_c_utf8_available: bool | None = None


def _c_utf8_locale_available() -> bool:
    global _c_utf8_available
    if _c_utf8_available is None:
        try:
            out = subprocess.run(
                ["locale", "-a"],
                capture_output=True,
                text=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        _c_utf8_available = any(
            name.strip().lower() in ("c.utf8", "c.utf-8") for name in out.splitlines()
        )
    return _c_utf8_available


def _subprocess_env() -> dict[str, str]:
    """The environment for initdb/pg_ctl: no PG* variables of the caller, C locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env.pop("LANGUAGE", None)
    return env


class ManagedCluster:
    """A PostgreSQL + TimescaleDB cluster under ``data_dir`` (see the module docs).

    ``start()`` initializes it on first use, starts it unless it is running, and
    makes sure database ``dbname`` exists with the ``timescaledb`` extension. As a
    context manager it stops the server on exit only if it started it.
    """

    def __init__(self, data_dir: Path, *, port: int = 5432, dbname: str = "eventbunker") -> None:
        if not 1 <= port <= 65535:
            raise ValueError(f"port out of range: {port}")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pg_dir = self.data_dir / "pg"
        self.log_file = self.data_dir / "postgresql.log"
        self.lock_file = self.data_dir / "cluster.lock"
        self.dbname = dbname
        self._port = port
        self._socket_dir = self._default_socket_dir(port)
        self._bin_dir: Path | None = None
        self._started_here = False
        self._account: _Account | None = None  # set (when root) by _prepare

    # ------------------------------------------------------------------ public API

    @property
    def port(self) -> int:
        return self._port

    @property
    def socket_dir(self) -> Path:
        return self._socket_dir

    @property
    def conninfo(self) -> str:
        """libpq conninfo for the cluster's Unix socket, as its superuser."""
        return self._conninfo(self.dbname)

    def is_running(self) -> bool:
        """Whether a postmaster is running on this cluster's data directory."""
        pid = self._live_postmaster_pid()
        return pid is not None

    def start(self) -> bool:
        """Initialize (first use), start if needed, and ensure database + extension.

        Returns True if this call started the server, False if it was running.
        """
        with self._locked():
            pid = self._live_postmaster_pid()
            if pid is not None:
                self._adopt_running_settings()
                started = False
            else:
                self._prepare()
                if not (self.pg_dir / "PG_VERSION").is_file():
                    self._initdb()
                self._configure()
                self._pg_ctl_start()
                started = True
            try:
                self._ensure_database()
            except BaseException:
                if started:
                    with contextlib.suppress(ClusterError):
                        self._pg_ctl_stop()
                raise
        return started

    def stop(self) -> None:
        """Fast shutdown (rolls back open transactions, checkpoints), and wait for it."""
        if not self.pg_dir.exists():
            self._started_here = False
            return
        with self._locked():
            if self._live_postmaster_pid() is not None:
                self._pg_ctl_stop()
            if not self._socket_dir.is_relative_to(self.data_dir):
                # The /tmp fallback: do not leave empty directories behind.
                with contextlib.suppress(OSError):
                    self._socket_dir.rmdir()
        self._started_here = False

    def __enter__(self) -> Self:
        self._started_here = self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._started_here:
            self.stop()

    def __repr__(self) -> str:
        return f"ManagedCluster({str(self.data_dir)!r}, port={self._port}, dbname={self.dbname!r})"

    # ------------------------------------------------------------------ paths

    def _default_socket_dir(self, port: int) -> Path:
        preferred = self.data_dir / "run"
        if len(os.fsencode(preferred / f".s.PGSQL.{port}")) < MAX_SOCKET_PATH_BYTES:
            return preferred
        digest = hashlib.sha256(os.fsencode(self.data_dir)).hexdigest()[:16]
        return Path("/tmp") / f"eventbunker-{os.geteuid()}-{digest}"

    def _conninfo(self, dbname: str) -> str:
        return make_conninfo(
            "", host=str(self._socket_dir), port=self._port, user=SUPERUSER, dbname=dbname
        )

    # ------------------------------------------------------------------ binaries

    def _bin(self, name: str) -> str:
        if self._bin_dir is None:
            self._bin_dir = bin_dir_for(self.pg_dir)
        return str(self._bin_dir / name)

    # ------------------------------------------------------------------ processes

    def _run(
        self, args: Sequence[str], *, timeout: float, what: str
    ) -> subprocess.CompletedProcess[str]:
        account = self._account
        env = _subprocess_env()
        if account is not None:
            env.update(HOME=account.home, USER=account.name, LOGNAME=account.name)
        try:
            return subprocess.run(
                list(args),
                cwd="/",  # the server account may not be able to read the caller's cwd
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                user=account.uid if account is not None else None,
                group=account.gid if account is not None else None,
                extra_groups=account.groups if account is not None else None,
                start_new_session=True,  # Ctrl-C on the caller's terminal is not ours
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"{what}: timed out after {timeout:.0f}s{self._log_hint()}") from exc
        except OSError as exc:
            raise ClusterError(f"{what}: cannot run {args[0]}: {exc}") from exc

    def _log_hint(self) -> str:
        if not self.log_file.exists():
            return ""
        tail = _tail(self.log_file)
        hint = ""
        if 'could not access file "timescaledb' in tail:
            hint = f"\n{INSTALL_HINT}"
        return f"\nLast lines of {self.log_file}:\n{tail}{hint}"

    def _failure(self, what: str, proc: subprocess.CompletedProcess[str]) -> ClusterError:
        output = "\n".join(part.strip() for part in (proc.stdout, proc.stderr) if part.strip())
        return ClusterError(
            f"{what} failed (exit status {proc.returncode}):\n{output}{self._log_hint()}"
        )

    # ------------------------------------------------------------------ locking

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ClusterError(
                            f"another process has held {self.lock_file} for more than "
                            f"{LOCK_TIMEOUT_S:.0f}s"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # releases the lock

    # ------------------------------------------------------------------ postmaster.pid

    def _read_postmaster_pid(self) -> list[str] | None:
        try:
            return (self.pg_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        except PermissionError as exc:
            raise ClusterError(
                f"cannot read {self.pg_dir}/postmaster.pid: {exc} (the cluster belongs to "
                "another account; run as that account, or as root)"
            ) from exc

    def _live_postmaster_pid(self) -> int | None:
        """PID of the postmaster running on pg_dir; None if none (or a stale pid file)."""
        lines = self._read_postmaster_pid()
        if not lines:
            return None
        try:
            pid = abs(int(lines[0]))  # negative: a standalone backend
        except ValueError:
            return None
        if pid <= 0:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, another account's
        # After a crash or reboot the PID may now belong to an unrelated process, or
        # to a not yet reaped zombie. A server process's cwd is always its data
        # directory, and a zombie has none (Linux /proc).
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except FileNotFoundError:
            if Path("/proc/self").exists():
                return None  # gone, or a zombie
            return pid  # no /proc: trust kill()
        except OSError:
            return pid  # cannot tell
        if os.path.realpath(cwd) != os.path.realpath(self.pg_dir):
            return None
        return pid

    def _server_processes(self) -> list[int] | None:
        """Live processes whose cwd is pg_dir (server processes); None without /proc."""
        if not Path("/proc/self").exists():
            return None
        target = os.path.realpath(self.pg_dir)
        pids: list[int] = []
        with os.scandir("/proc") as entries:
            for entry in entries:
                if not entry.name.isdigit():
                    continue
                try:
                    cwd = os.readlink(f"/proc/{entry.name}/cwd")
                except OSError:
                    continue
                if cwd == target:
                    pids.append(int(entry.name))
        return pids

    def _clear_stale_lock_files(self) -> None:
        """Remove the lock files of a dead server (crash, reboot); lock held, not running.

        PostgreSQL removes a stale lock file by itself unless its PID is in use again
        (by an unrelated process, or a zombie not yet reaped), in which case it refuses
        to start. They are removed here only once no process of the old server is
        left (orphaned backends would still use the old shared memory).
        """
        pid_file = self.pg_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        deadline = time.monotonic() + ORPHAN_WAIT_S
        while (leftovers := self._server_processes()) is None or leftovers:
            if leftovers is None:
                return  # cannot tell: leave it to PostgreSQL's own checks
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"processes of a previous server are still running in {self.pg_dir} "
                    f"(PIDs {', '.join(map(str, leftovers))}); stop them first"
                )
            time.sleep(0.1)
        logger.warning("removing stale %s", pid_file)
        pid_file.unlink(missing_ok=True)
        socket_lock = self._socket_dir / f".s.PGSQL.{self._port}.lock"
        try:
            owner_dir = socket_lock.read_text().splitlines()[1]
        except (OSError, IndexError):
            return
        if os.path.realpath(owner_dir) == os.path.realpath(self.pg_dir):
            logger.warning("removing stale %s", socket_lock)
            socket_lock.unlink(missing_ok=True)

    def _adopt_running_settings(self) -> None:
        """Use the socket directory and port the running server actually has."""
        lines = self._read_postmaster_pid() or []
        if len(lines) >= 5:
            with contextlib.suppress(ValueError):
                port = int(lines[3])
                if port != self._port:
                    logger.info("cluster in %s is running on port %d", self.data_dir, port)
                    self._port = port
            socket_dir = lines[4].split(",")[0].strip()
            if socket_dir:
                self._socket_dir = Path(socket_dir)

    # ------------------------------------------------------------------ setup

    def _prepare(self) -> None:
        """Server account, ownership and permissions; called with the lock held."""
        self._socket_dir = self._default_socket_dir(self._port)
        if os.geteuid() == 0:
            account = _ensure_system_account(SERVER_ACCOUNT_WHEN_ROOT)
            self._account = account
            uid, gid = account.uid, account.gid
        else:
            self._account = None
            uid, gid = os.geteuid(), os.getegid()

        if self._account is not None:
            _ensure_traversable(self.data_dir, self._account)

        if self.pg_dir.exists():
            st = self.pg_dir.stat()
            if st.st_uid != uid:
                if self._account is None:
                    owner = _owner_name(st.st_uid)
                    raise ClusterError(
                        f"{self.pg_dir} belongs to {owner}, not to the current user; run "
                        "EventBunker as that user (or as root)"
                    )
                logger.warning("changing the owner of %s to %r", self.pg_dir, self._account.name)
                _chown_tree(self.pg_dir, uid, gid)
            if (self.pg_dir / "PG_VERSION").is_file():
                os.chmod(self.pg_dir, 0o700)
            elif any(self.pg_dir.iterdir()):
                raise ClusterError(
                    f"{self.pg_dir} exists, is not empty and is not a PostgreSQL data directory"
                )

        self._prepare_socket_dir(uid, gid)

        fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_uid != uid:
                os.fchown(fd, uid, gid)
        finally:
            os.close(fd)

    def _prepare_socket_dir(self, uid: int, gid: int) -> None:
        directory = self._socket_dir
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
        st = os.lstat(directory)
        if not stat.S_ISDIR(st.st_mode):
            raise ClusterError(f"socket directory {directory} is not a directory")
        if st.st_uid != uid:
            if os.geteuid() != 0 and st.st_uid != os.geteuid():
                raise ClusterError(
                    f"socket directory {directory} belongs to {_owner_name(st.st_uid)}"
                )
            os.chown(directory, uid, gid, follow_symlinks=False)
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(directory, 0o700)

    def _initdb(self) -> None:
        """initdb into a scratch directory, renamed into place once complete."""
        scratch = self.data_dir / "pg.initdb"
        if scratch.exists():
            shutil.rmtree(scratch)  # left over by an interrupted initdb (we hold the lock)
        scratch.mkdir(mode=0o700)
        if self._account is not None:
            os.chown(scratch, self._account.uid, self._account.gid)
        if _c_utf8_locale_available():
            # Unicode-aware character classes and upper()/lower(), byte-order (fast)
            # sorting.
            locale_args = ["--locale=C.UTF-8", "--lc-collate=C"]
        else:
            locale_args = ["--no-locale"]
        logger.info("initializing a PostgreSQL cluster in %s", self.pg_dir)
        proc = self._run(
            [
                self._bin("initdb"),
                f"--pgdata={scratch}",
                f"--username={SUPERUSER}",
                "--auth=trust",
                "--encoding=UTF8",
                *locale_args,
            ],
            timeout=INITDB_TIMEOUT_S,
            what="initdb",
        )
        if proc.returncode != 0:
            raise self._failure("initdb", proc)
        if self.pg_dir.exists():
            self.pg_dir.rmdir()  # empty (checked in _prepare)
        os.rename(scratch, self.pg_dir)

    def _settings(self) -> list[tuple[str, str]]:
        return [
            # Unix socket only: never collides with another server's TCP port.
            ("listen_addresses", "''"),
            ("port", str(self._port)),
            ("unix_socket_directories", _conf_quote(str(self._socket_dir))),
            ("unix_socket_permissions", "0700"),
            ("cluster_name", _conf_quote("eventbunker")),
            ("max_connections", "200"),
            ("shared_buffers", "'256MB'"),
            ("work_mem", "'8MB'"),
            ("maintenance_work_mem", "'128MB'"),
            ("max_wal_size", "'2GB'"),
            ("wal_compression", "on"),
            # Durability is a product invariant: a 2xx means committed.
            ("fsync", "on"),
            ("synchronous_commit", "on"),
            ("full_page_writes", "on"),
            # Short analytic queries: JIT compilation costs more than it saves.
            ("jit", "off"),
            ("timezone", "'UTC'"),
            ("log_timezone", "'UTC'"),
            ("logging_collector", "off"),
            ("log_destination", "'stderr'"),
            ("log_line_prefix", _conf_quote("%m [%p] %q%u@%d ")),
            ("shared_preload_libraries", "'timescaledb'"),
            ("timescaledb.license", "'apache'"),
            ("timescaledb.telemetry_level", "off"),
            ("timescaledb.max_background_workers", "8"),
            ("max_worker_processes", "16"),
            ("max_locks_per_transaction", "128"),
        ]

    def _configure(self) -> None:
        """Write eventbunker.conf and include it from postgresql.conf (idempotent)."""
        lines = [
            "# Managed by EventBunker (eventbunker/cluster/): rewritten before every start.",
            "# Use ALTER SYSTEM (postgresql.auto.conf) to override a setting.",
            *(f"{name} = {value}" for name, value in self._settings()),
        ]
        conf = self.pg_dir / "eventbunker.conf"
        scratch = self.pg_dir / "eventbunker.conf.tmp"
        scratch.write_text("\n".join(lines) + "\n")
        if self._account is not None:
            os.chown(scratch, self._account.uid, self._account.gid)
        os.chmod(scratch, 0o600)
        os.replace(scratch, conf)

        main_conf = self.pg_dir / "postgresql.conf"
        text = main_conf.read_text()
        if INCLUDE_LINE not in text.splitlines():
            with main_conf.open("a") as f:
                f.write(
                    ("" if text.endswith("\n") else "\n")
                    + "\n# EventBunker's settings (see eventbunker.conf)\n"
                    + INCLUDE_LINE
                    + "\n"
                )

    def _pg_ctl_start(self) -> None:
        logger.info("starting PostgreSQL in %s", self.pg_dir)
        self._clear_stale_lock_files()
        proc = self._run(
            [
                self._bin("pg_ctl"),
                "start",
                "--pgdata",
                str(self.pg_dir),
                "--log",
                str(self.log_file),
                "--wait",
                "--timeout",
                str(START_TIMEOUT_S),
            ],
            timeout=START_TIMEOUT_S + 30,
            what="pg_ctl start",
        )
        if proc.returncode != 0:
            raise self._failure(f"starting PostgreSQL in {self.pg_dir}", proc)

    def _pg_ctl_stop(self) -> None:
        logger.info("stopping PostgreSQL in %s", self.pg_dir)
        if self._account is None and os.geteuid() == 0:
            self._account = _Account.lookup(SERVER_ACCOUNT_WHEN_ROOT)
        proc = self._run(
            [
                self._bin("pg_ctl"),
                "stop",
                "--pgdata",
                str(self.pg_dir),
                "--mode",
                "fast",
                "--wait",
                "--timeout",
                str(STOP_TIMEOUT_S),
            ],
            timeout=STOP_TIMEOUT_S + 30,
            what="pg_ctl stop",
        )
        if proc.returncode != 0 and self._live_postmaster_pid() is not None:
            raise self._failure(f"stopping PostgreSQL in {self.pg_dir}", proc)

    # ------------------------------------------------------------------ database

    def _connect(self, dbname: str) -> psycopg.Connection[TupleRow]:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            try:
                return psycopg.connect(self._conninfo(dbname), autocommit=True, connect_timeout=10)
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"cannot connect to the cluster in {self.data_dir} "
                        f"({self._conninfo(dbname)}): {exc}{self._log_hint()}"
                    ) from exc
                time.sleep(0.1)

    def _ensure_database(self) -> None:
        with self._connect("postgres") as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)
            ).fetchone()
            if exists is None:
                logger.info("creating database %r", self.dbname)
                with contextlib.suppress(errors.DuplicateDatabase):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))
        with self._connect(self.dbname) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            # Under the Apache license this built-in job (pruning the history of
            # TSL-only jobs) fails with "not supported under the current apache
            # license" on every run, filling the log; alter_job() is TSL-only too.
            try:
                conn.execute(
                    "UPDATE _timescaledb_config.bgw_job SET scheduled = false"
                    " WHERE proc_name = 'policy_job_stat_history_retention' AND scheduled"
                    " AND current_setting('timescaledb.license') = 'apache'"
                )
            except psycopg.Error as exc:
                logger.debug("could not unschedule the job history retention job: %s", exc)
            row = conn.execute(
                "SELECT e.extversion, a.default_version FROM pg_extension e"
                " JOIN pg_available_extensions a ON a.name = e.extname"
                " WHERE e.extname = 'timescaledb'"
            ).fetchone()
        if row is not None and row[0] != row[1]:
            # A newer TimescaleDB was installed: update the extension. This must be the
            # first statement of a session (before the old version gets loaded).
            logger.info("updating the timescaledb extension from %s to %s", row[0], row[1])
            try:
                with self._connect(self.dbname) as conn:
                    conn.execute("ALTER EXTENSION timescaledb UPDATE")
            except psycopg.Error as exc:
                logger.warning("could not update the timescaledb extension: %s", exc)
