"""The replicated log between ingest nodes and writers: one JetStream stream.

The stream is a work queue (a message leaves it once a writer acknowledged
it), in files, replicated on ``replicas`` NATS nodes: a publish is
acknowledged once a quorum of them stored it. Its subject is its name. One
durable pull consumer, ``WRITERS``, is shared by every writer process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import nats
import nats.errors
import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError

log = logging.getLogger(__name__)

WRITERS = "eventbunker-writers"
# Publish-side deduplication (``Nats-Msg-Id``) covers retries within this window.
DUPLICATE_WINDOW_S = 120.0
# A message a writer has not acknowledged by then goes to another writer.
ACK_WAIT_S = 5.0
# Unacknowledged messages per writer process and fetch.
MAX_ACK_PENDING = 20_000
# How long a starting ingest node or writer waits for the cluster.
START_WAIT_S = 30.0


def server_urls(urls: str) -> list[str]:
    """``nats://a:4222,b:4222`` → one URL per server (the scheme defaults to nats)."""
    found = [u.strip() for u in urls.split(",") if u.strip()]
    return [u if "://" in u else f"nats://{u}" for u in found]


async def connect(urls: str, name: str, wait_s: float = START_WAIT_S) -> Client:
    """A connection that fails over among ``urls`` (the first that answers, in
    order: list a nearby server first) and never gives up reconnecting.

    At start-up, waits up to ``wait_s`` for a server to answer.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await _connect(urls, name)
        except (nats.errors.Error, OSError, TimeoutError):
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.5)


async def _connect(urls: str, name: str) -> Client:
    return await nats.connect(
        servers=server_urls(urls),
        name=name,
        dont_randomize=True,
        connect_timeout=2,
        reconnect_time_wait=0.25,
        max_reconnect_attempts=-1,
        # A server that stops answering (not only one whose socket closes) is
        # left for another within about three seconds.
        ping_interval=1,
        max_outstanding_pings=3,
    )


async def ensure_stream(
    js: JetStreamContext, stream: str, replicas: int, wait_s: float = START_WAIT_S
) -> None:
    """Create the stream if it is missing (ingest nodes and writers race to it),
    waiting up to ``wait_s`` for the cluster to elect its JetStream leader."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            await _ensure_stream(js, stream, replicas)
            return
        except (nats.errors.Error, TimeoutError):
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.5)


async def _ensure_stream(js: JetStreamContext, stream: str, replicas: int) -> None:
    with contextlib.suppress(NotFoundError):
        await js.stream_info(stream)
        return
    try:
        await js.add_stream(stream_config(stream, replicas))
        log.info("created the JetStream stream %s (%d replicas)", stream, replicas)
    except BadRequestError:
        await js.stream_info(stream)  # another process created it meanwhile


def stream_config(
    stream: str, replicas: int, duplicate_window_s: float = DUPLICATE_WINDOW_S
) -> api.StreamConfig:
    return api.StreamConfig(
        name=stream,
        subjects=[stream],
        retention=api.RetentionPolicy.WORK_QUEUE,
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=duplicate_window_s,
        # Never drop stored messages to make room: refuse the new ones.
        discard=api.DiscardPolicy.NEW,
    )


def writers_consumer(stream: str) -> api.ConsumerConfig:
    """The shared durable consumer, as ``pull_subscribe`` creates it (the
    writer recreates it with this very config: see writer.StreamWriter.unstall)."""
    return api.ConsumerConfig(
        name=WRITERS,
        durable_name=WRITERS,
        filter_subject=stream,
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_wait=ACK_WAIT_S,
        max_ack_pending=MAX_ACK_PENDING,
        max_deliver=-1,  # never give a message up
    )


@dataclass(frozen=True, slots=True)
class Backlog:
    """Messages acknowledged to clients and not yet acknowledged by a writer."""

    messages: int
    first_seq: int
    oldest_age_s: float  # 0 when empty
    # Messages the writers acknowledged so far (a work queue drops them then).
    removed: int


async def backlog(nc: Client, stream: str, timeout_s: float = 1.0) -> Backlog:
    """The stream's state; raw API because nats-py's StreamState drops first_ts."""
    reply = await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=timeout_s)
    info = orjson.loads(reply.data)
    if "error" in info:
        raise RuntimeError(f"stream info: {info['error'].get('description')}")
    state = info["state"]
    messages = int(state.get("messages", 0))
    age = 0.0
    if messages:
        age = max(0.0, time.time() - _epoch_seconds(state["first_ts"]))
    last_seq = int(state.get("last_seq", 0))
    return Backlog(messages, int(state.get("first_seq", 0)), age, last_seq - messages)


def _epoch_seconds(rfc3339: str) -> float:
    """NATS's UTC times (``2026-12-02T11:40:00.123456789Z``; nanoseconds cut to µs)."""
    whole, _, fraction = rfc3339.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp()
    return seconds + (float("0." + fraction[:6]) if fraction else 0.0)
