"""/metrics through prometheus_client: counts published once, workers' files
aggregated (counters summed, live gauges only), real worker processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import metric
from eventbunker.ops.metrics import Metrics

# One worker: counts, publishes, then stops cleanly or is killed, as told.
WORKER = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from pathlib import Path
    from eventbunker.ops.metrics import Metrics

    runtime_dir, accepted, lag, ending = sys.argv[1:5]
    runtime_dir, accepted, lag = Path(runtime_dir), int(accepted), float(lag)
    metrics = Metrics(runtime_dir)
    metrics.accepted += accepted
    metrics.reject("rate_limited")
    metrics.gauges["eventbunker_queryable_lag_seconds"] = lambda: lag
    metrics.gauges["eventbunker_ingest_shedding"] = lambda: 1.0
    metrics.publish()
    if ending == "stop":
        asyncio.run(metrics.stop())
        print("done", flush=True)
    else:
        print("done", flush=True)
        time.sleep(60)
    """
)


def test_counts_are_published_once() -> None:
    metrics = Metrics(None)
    metrics.accepted += 3
    metrics.reject("missing_key")
    metrics.gauges["eventbunker_queryable_lag_seconds"] = lambda: 2.5
    text = metrics.render()
    assert metric(text, "eventbunker_events_accepted_total") == 3
    assert metric(text, 'eventbunker_requests_rejected_total{reason="missing_key"}') == 1
    assert metric(text, "eventbunker_queryable_lag_seconds") == 2.5
    assert f'eventbunker_worker_queryable_lag_seconds{{worker="{os.getpid()}"}} 2.5' in text
    assert "eventbunker_spool_backlog_bytes" not in text  # nobody registered it
    metrics.accepted += 2
    text = metrics.render()
    assert metric(text, "eventbunker_events_accepted_total") == 5  # not 3 + 5
    assert metric(text, 'eventbunker_requests_rejected_total{reason="missing_key"}') == 1


def test_workers_files_are_aggregated(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}

    def worker(accepted: int, lag: float, ending: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path), str(accepted), str(lag), ending],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None and process.stdout.readline() == "done\n"
        return process

    stopped = worker(10, 7.0, "stop")
    killed = worker(20, 9.0, "kill")
    alive = worker(5, 1.5, "live")
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        stopped.wait(10)
        # Read as a fourth process would: the files of all of them.
        reader = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from eventbunker.ops.metrics import"
                " Metrics; print(Metrics(Path(sys.argv[1])).render())",
                str(tmp_path),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    finally:
        alive.kill()
        alive.wait(10)
    # Counters: every worker's, dead or alive.
    assert metric(reader, "eventbunker_events_accepted_total") == 35
    assert metric(reader, 'eventbunker_requests_rejected_total{reason="rate_limited"}') == 3
    # Gauges: the live worker's only (one stopped, one was killed).
    assert metric(reader, "eventbunker_queryable_lag_seconds") == 1.5
    assert metric(reader, "eventbunker_ingest_shedding") == 1
    assert re.findall(
        r'^eventbunker_worker_queryable_lag_seconds\{worker="(\d+)"\}', reader, re.M
    ) == [str(alive.pid)]
