"""Server processes for the benchmarks: a free loopback port, readiness, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command(
    conninfo: str, port: int, workers: int, spool_dir: Path, geoip_db: Path | None
) -> list[str]:
    """``eventbunker serve`` on loopback ``port`` against ``conninfo``."""
    command = [
        sys.executable,
        "-m",
        "eventbunker",
        "serve",
        "--database-url",
        conninfo,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--spool-dir",
        str(spool_dir),
    ]
    if geoip_db is not None:
        command += ["--geoip-db", str(geoip_db)]
    return command


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    """Return once ``url`` answers at all; exit if the server dies first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (a graceful drain), SIGKILL after 30 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
