"""The OS account the server runs as (``postgres`` when we are root) and the
ownership and permissions it needs."""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

from eventbunker.cluster.errors import ClusterError

SERVER_ACCOUNT_WHEN_ROOT = "postgres"

logger = logging.getLogger(__name__)


class _Account:
    """The OS account the server runs as."""

    def __init__(self, name: str, uid: int, gid: int, groups: list[int], home: str) -> None:
        self.name = name
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.home = home

    @classmethod
    def lookup(cls, name: str) -> _Account:
        pw = pwd.getpwnam(name)
        return cls(name, pw.pw_uid, pw.pw_gid, os.getgrouplist(name, pw.pw_gid), pw.pw_dir)


def _ensure_system_account(name: str) -> _Account:
    try:
        return _Account.lookup(name)
    except KeyError:
        pass
    logger.warning("creating system account %r to run PostgreSQL (it refuses to run as root)", name)
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    try:
        subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/var/lib/postgresql",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "PostgreSQL administrator",
                name,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.CalledProcessError as exc:
        # Another process may have created it meanwhile.
        with contextlib.suppress(KeyError):
            return _Account.lookup(name)
        raise ClusterError(
            f"could not create the {name!r} system account (needed because PostgreSQL "
            f"refuses to run as root): {exc.stderr.strip()}"
        ) from exc
    except (OSError, subprocess.SubprocessError) as exc:
        raise ClusterError(f"could not create the {name!r} system account: {exc}") from exc
    return _Account.lookup(name)


def _ensure_traversable(path: Path, account: _Account) -> None:
    """Give ``account`` search (x) permission on ``path`` and all its parents."""
    for directory in [path, *path.parents]:
        st = directory.stat()
        if st.st_uid == account.uid:
            bit = stat.S_IXUSR
        elif st.st_gid in account.groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            if directory != path:
                logger.warning(
                    "adding search permission to %s so that the %r account can reach %s",
                    directory,
                    account.name,
                    path,
                )
            os.chmod(directory, stat.S_IMODE(st.st_mode) | bit)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _owner_name(uid: int) -> str:
    try:
        return repr(pwd.getpwuid(uid).pw_name)
    except KeyError:
        return f"uid {uid}"
