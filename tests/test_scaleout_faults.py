"""Scale-out fault test on several "hosts": network namespaces the test makes.

Topology: a hub namespace with a bridge, and one namespace per host joined
to it by a veth pair (addresses of 10.213.0.0/24 exist only inside these
namespaces): 3 NATS nodes, 2 ingest nodes, 2 writers, one load client.
TimescaleDB is the suite's cluster, reached through its Unix socket (not
networked). Under continuous load of uniquely numbered events: kill -9 a
NATS node, then an ingest node, then a writer, restarting each; then cut a
NATS node off the network and heal it. Acknowledged events must all be
stored, none twice. Everything is removed at the end; bounded in time.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from conftest import Project, stop_process_group
from nats_cluster import NatsCluster

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nats-server"),
    reason="needs root, ip (iproute2) and nats-server (scripts/setup.sh installs them)",
)

TAG = f"eb{os.getpid() % 100000}"
SUBNET = "10.213.0"
HOSTS = {  # namespace suffix → last octet
    "n1": 1,
    "n2": 2,
    "n3": 3,
    "i1": 11,
    "i2": 12,
    "w1": 21,
    "w2": 22,
    "c": 31,
}
TESTS_DIR = Path(__file__).parent
READY_TIMEOUT_S = 40.0


def ns(host: str) -> str:
    return f"{TAG}-{host}"


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


def address(host: str) -> str:
    return f"{SUBNET}.{HOSTS[host]}"


@pytest.fixture
def network() -> Iterator[None]:
    hub = ns("hub")
    made: list[str] = []
    try:
        sh("ip", "netns", "add", hub)
        made.append(hub)
        sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", hub, "link", "set", "br0", "up")
        for host in HOSTS:
            name = ns(host)
            sh("ip", "netns", "add", name)
            made.append(name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
            sh(
                "ip", "link", "add", "eth0", "netns", name, "type", "veth",
                "peer", "name", f"to-{host}", "netns", hub,
            )  # fmt: skip
            sh("ip", "-n", hub, "link", "set", f"to-{host}", "master", "br0", "up")
            sh("ip", "-n", name, "addr", "add", f"{address(host)}/24", "dev", "eth0")
            sh("ip", "-n", name, "link", "set", "eth0", "up")
        yield
    finally:
        for name in reversed(made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)


def in_ns(host: str) -> list[str]:
    return ["ip", "netns", "exec", ns(host)]


@dataclass
class Proc:
    command: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process, 15)


def wait_for(path: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return True
        time.sleep(0.1)
    return False


def acked_count(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def test_kills_and_a_partition_lose_and_duplicate_nothing(
    network: None,
    database_url: str,
    db: psycopg.Connection[Any],
    project: Project,
    tmp_path: Path,
) -> None:
    nats = NatsCluster(
        tmp_path / "nats",
        [address(h) for h in ("n1", "n2", "n3")],
        [(4222, 6222)] * 3,
        [in_ns(h) for h in ("n1", "n2", "n3")],
    )
    urls = [f"nats://{address(h)}:4222" for h in ("n1", "n2", "n3")]
    python = [sys.executable, "-m", "eventbunker"]

    def ingest(host: str, nats_urls: list[str]) -> Proc:
        return Proc(
            [
                *in_ns(host), *python, "serve", "--host", address(host), "--port", "8000",
                "--workers", "1", "--database-url", database_url, "--nats", ",".join(nats_urls),
                "--spool-dir", str(tmp_path / f"spool-{host}"),
            ],
            tmp_path / f"{host}.log",
        )  # fmt: skip

    def writer(host: str, nats_urls: list[str]) -> Proc:
        return Proc(
            [
                *in_ns(host), *python, "writer", "--database-url", database_url,
                "--nats", ",".join(nats_urls),
            ],
            tmp_path / f"{host}.log",
        )  # fmt: skip

    # Each ingest node and writer prefers a different NATS node (failing over to the others).
    i1, i2 = ingest("i1", urls), ingest("i2", [urls[2], urls[0], urls[1]])
    # An ingest node beside n3 that knows only n3: cut off together with it.
    i3 = ingest("n3", [urls[2]])
    w1, w2 = writer("w1", [urls[1], urls[2], urls[0]]), writer("w2", urls)
    out = tmp_path / "load"
    out.mkdir()
    load = Proc(
        [
            *in_ns("c"), sys.executable, str(TESTS_DIR / "stream_load.py"), str(out),
            project.write_key, f"http://{address('i1')}:8000,http://{address('i2')}:8000",
            ",".join(urls),
        ],
        tmp_path / "load.log",
    )  # fmt: skip
    events: list[tuple[str, float, int]] = []
    started = time.monotonic()

    def mark(what: str) -> None:
        events.append((what, round(time.monotonic() - started, 1), acked_count(out / "acked")))

    try:
        nats.start()
        for proc in (i1, i2, i3, w1, w2):
            proc.start()
        load.start()
        assert wait_for(out / "acked", READY_TIMEOUT_S), _logs(tmp_path, nats)
        mark("load flowing")
        time.sleep(3)

        nats.nodes[1].kill()
        mark("kill -9 NATS n2")
        time.sleep(3)
        nats.nodes[1].start()
        mark("restart n2")
        time.sleep(4)

        i1.kill()
        mark("kill -9 ingest i1")
        time.sleep(2)
        i1.start()
        mark("restart i1")
        time.sleep(4)

        w1.kill()
        mark("kill -9 writer w1")
        time.sleep(2)
        w1.start()
        mark("restart w1")
        time.sleep(4)

        before_partition = acked_count(out / "acked")
        sh("ip", "-n", ns("hub"), "link", "set", "to-n3", "down")
        mark("partition: n3 cut off")
        time.sleep(1)
        # A publish through n3 alone reaches no quorum: it must not be acknowledged.
        isolated = _post_from(
            "n3", f"http://{address('n3')}:8000/v1/events", project.write_key, PROBE_SEQ
        )
        mark(f"POST through the isolated n3: {isolated}")
        time.sleep(max(0.0, 6 - (time.monotonic() - started - events[-2][1])))
        sh("ip", "-n", ns("hub"), "link", "set", "to-n3", "up")
        mark("partition healed")
        time.sleep(4)
        (out / "stop").touch()
        mark("load stopped")
        assert load.process is not None
        load.process.wait(timeout=120)
        assert (out / "drained").exists(), _logs(tmp_path, nats)
        drained_s = float((out / "drained").read_text())
    finally:
        load.stop()
        for proc in (i1, i2, i3, w1, w2):
            proc.stop()
        nats.stop()

    acked = [int(line) for line in (out / "acked").read_bytes().splitlines()]
    stored = Counter(
        int(row[0])
        for row in db.execute(
            "SELECT (properties->>'seq')::int FROM events WHERE project_id = %s", (project.id,)
        )
    )
    lost = [s for s in acked if s not in stored]
    duplicated = [s for s, n in stored.items() if n > 1]
    statuses = orjson.loads((out / "statuses.json").read_bytes())
    report = {
        "acknowledged": len(acked),
        "stored": sum(stored.values()),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "acknowledged_during_and_after_partition": len(acked) - before_partition,
        "answers": statuses,
        "drained_s_after_load_stopped": drained_s,
        "timeline": events,
    }
    print("scale-out fault test:", orjson.dumps(report).decode())
    (tmp_path / "report.json").write_bytes(orjson.dumps(report))
    assert isolated == 503, report
    assert not lost, (report, lost[:20])
    assert not duplicated, (report, duplicated[:20])
    assert len(acked) > 1000, report
    assert len(acked) - before_partition > 0, report  # the cluster served on through it
    assert drained_s < 30, report


PROBE_SEQ = 10_000_000  # outside the load's numbers


def _post_from(host: str, url: str, key: str, seq: int) -> int | str:
    """POST one event from inside ``host``'s namespace; the status (or the error)."""
    probe = (
        "import httpx, sys\n"
        "try:\n"
        f"    r = httpx.post({url!r}, json={{'event_name': 'probe', 'seq': {seq}}},"
        f" headers={{'X-Api-Key': {key!r}}}, timeout=15)\n"
        "    print(r.status_code)\n"
        "except httpx.HTTPError as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    done = subprocess.run(
        [*in_ns(host), sys.executable, "-c", probe], capture_output=True, timeout=30, text=True
    )
    answer = done.stdout.strip()
    return int(answer) if answer.isdigit() else answer or done.stderr[-300:]


def _logs(directory: Path, nats: NatsCluster) -> str:
    parts = [nats.logs()]
    for path in sorted(directory.glob("*.log")):
        parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts)
