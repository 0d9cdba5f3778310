"""Load for the scale-out fault test, run inside the test's client namespace.

``python tests/stream_load.py OUT_DIR KEY INGEST_URLS NATS_URLS``: threads POST
batches of uniquely numbered events (``seq``) to the ingest nodes, in turn,
and append every acknowledged seq to OUT_DIR/acked; a 503 or a connection
error moves to the other node. When OUT_DIR/stop appears (or after
MAX_SECONDS) it stops, waits until the stream is drained and writes the
seconds that took to OUT_DIR/drained. Bounded in time; stops by itself.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson

from eventbunker.scaleout.stream import backlog, connect

MAX_SECONDS = 180.0
BATCH = 20
THREADS = 4


def main() -> None:
    out, key, ingest_urls, nats_urls = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    nodes = ingest_urls.split(",")
    seq = itertools.count()
    lock = threading.Lock()
    statuses: Counter[str] = Counter()
    acked = (out / "acked").open("a")
    deadline = time.monotonic() + MAX_SECONDS

    def run(index: int) -> None:
        node = index % len(nodes)
        with httpx.Client(timeout=10) as http:
            while not (out / "stop").exists() and time.monotonic() < deadline:
                with lock:
                    seqs = [next(seq) for _ in range(BATCH)]
                events = [{"event_name": "fault", "seq": s} for s in seqs]
                try:
                    answer = http.post(
                        nodes[node] + "/v1/events", json=events, headers={"X-Api-Key": key}
                    )
                    status = str(answer.status_code)
                except httpx.HTTPError:
                    status = "connection_error"
                with lock:
                    statuses[status] += 1
                    if status == "202":
                        acked.write("".join(f"{s}\n" for s in seqs))
                        acked.flush()
                if status != "202":
                    node = (node + 1) % len(nodes)
                    time.sleep(0.05)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    acked.close()
    stopped = time.monotonic()
    asyncio.run(wait_drained(nats_urls, deadline + 60))
    (out / "drained").write_text(f"{time.monotonic() - stopped:.2f}")
    (out / "statuses.json").write_bytes(orjson.dumps(dict(statuses)))


async def wait_drained(nats_urls: str, deadline: float) -> None:
    nc = await connect(nats_urls, "fault-test-load")
    try:
        while time.monotonic() < deadline:
            try:
                if (await backlog(nc, "eventbunker-events")).messages == 0:
                    return
            except Exception:  # a node may still be electing: ask again
                pass
            await asyncio.sleep(0.1)
    finally:
        await nc.close()


if __name__ == "__main__":
    main()
