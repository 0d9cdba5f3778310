"""The ingest node's durable sink in scale-out mode: a JetStream publish.

Same contract as the spool's ``append``: it returns once the record is
durable, here once JetStream acknowledged it (stored on a quorum of the
stream's replicas), and raises a SpoolFull (503) when that cannot happen in
time. The body is spool records (``_native.decode_spool``), so a writer
decodes it as the drainer does. The lag it reports (the age of the stream's
oldest message) feeds the same Backpressure as the spool's.

Group commit, as the spool's shared fsync: up to ``MAX_PUBLISHES`` publishes
are in flight per worker; records appended meanwhile wait and go together
in the next one, one message (up to the server's max payload) for many
requests. A JetStream message costs about the same CPU on every replica
whatever its size (benches/scaleout_throughput.py: ≈ 200 µs summed over 3
replicas for a single-event message), so under load this divides the
cluster's work by the records per message. All records of a message are
stored, or none: the writer claims them by the message's stream sequence.

Each message gets its own ``Nats-Msg-Id``: a publish retried after a timeout
or a reconnection (its first try may have been stored, only the ack lost)
is dropped by the stream's deduplication, never stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from eventbunker.ingest.spool import SpoolFull
from eventbunker.scaleout.stream import Backlog, backlog, connect, ensure_stream

log = logging.getLogger(__name__)

# One try waits this long for JetStream's ack (a leader election takes ~2 s);
# the request is refused when none came within PUBLISH_DEADLINE_S.
ATTEMPT_TIMEOUT_S = 1.0
PUBLISH_DEADLINE_S = 5.0
BACKLOG_EVERY_S = 0.05
# The writers count as working when they acknowledged a message this recently.
PROGRESS_WINDOW_S = 1.0
# Publishes in flight per worker; records appended meanwhile share the next one.
MAX_PUBLISHES = 4


class NoQuorum(SpoolFull):
    """JetStream did not acknowledge the record in time: answer 503."""


class JetStreamSink:
    def __init__(self, urls: str, stream: str, replicas: int, *, name: str) -> None:
        self._urls = urls
        self._stream = stream
        self._replicas = replicas
        self._name = name
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._backlog = Backlog(0, 0, 0.0, 0)
        self._backlog_ok = False
        self._writers_progressed_at = 0.0
        self.drained_changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._waiting: list[tuple[bytes, asyncio.Future[None]]] = []
        self._publishers: set[asyncio.Task[None]] = set()  # referenced while they run
        self._publishing = 0  # counted in the coroutine: a done callback would come late

    @property
    def backlog(self) -> Backlog:
        return self._backlog

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def start(self) -> None:
        self._nc = await connect(self._urls, self._name)
        self._js = self._nc.jetstream(timeout=ATTEMPT_TIMEOUT_S)
        await ensure_stream(self._js, self._stream, self._replicas)
        self._task = asyncio.create_task(self._watch_backlog())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._nc is not None:
            with contextlib.suppress(nats.errors.Error, OSError):
                await self._nc.drain()

    async def append(self, record: bytes) -> None:
        """Return once JetStream stored ``record`` on a quorum; else raise."""
        assert self._js is not None, "start() first"
        stored = asyncio.get_running_loop().create_future()
        self._waiting.append((record, stored))
        if self._publishing < MAX_PUBLISHES:
            self._publishing += 1
            task = asyncio.create_task(self._publish_waiting())
            self._publishers.add(task)
            task.add_done_callback(self._publishers.discard)
        await stored

    async def _publish_waiting(self) -> None:
        """Publish the waiting records, as many per message as fit, until none wait."""
        assert self._nc is not None
        try:
            while self._waiting:
                batch: list[tuple[bytes, asyncio.Future[None]]] = []
                size, limit = 0, self._nc.max_payload
                while self._waiting and (not batch or size + len(self._waiting[0][0]) <= limit):
                    batch.append(self._waiting.pop(0))
                    size += len(batch[-1][0])
                failure: Exception | None = None
                try:
                    await self._publish(b"".join(record for record, _ in batch))
                except NoQuorum as exc:
                    failure = exc
                except Exception as exc:
                    log.exception("publishing to the event stream failed")
                    failure = exc
                for _, stored in batch:
                    if stored.done():  # its request was cancelled
                        continue
                    if failure is None:
                        stored.set_result(None)
                    else:
                        stored.set_exception(NoQuorum(str(failure)))
        finally:
            self._publishing -= 1

    async def _publish(self, payload: bytes) -> None:
        """One message, retried under one ``Nats-Msg-Id`` until acknowledged or too late."""
        assert self._js is not None
        headers = {"Nats-Msg-Id": secrets.token_hex(12)}
        deadline = time.monotonic() + PUBLISH_DEADLINE_S
        while True:
            left = deadline - time.monotonic()
            try:
                await self._js.publish(
                    self._stream,
                    payload,
                    timeout=max(0.05, min(ATTEMPT_TIMEOUT_S, left)),
                    headers=headers,
                )
                return
            except (nats.errors.Error, TimeoutError) as exc:
                if time.monotonic() + 0.05 >= deadline:
                    raise NoQuorum(f"the event stream did not acknowledge: {exc!r}") from None
                await asyncio.sleep(0.05)

    def lag_seconds(self) -> float:
        """Age of the stream's oldest message: acknowledged, not yet stored."""
        return self._backlog.oldest_age_s

    def writers_working(self) -> bool:
        """Whether a writer acknowledged a message lately (the database is written).

        With the database unreachable too (an outage), backpressure holds and
        refuses nothing, as in single-node mode: the stream keeps the backlog
        until the writers are back.
        """
        return time.monotonic() - self._writers_progressed_at < PROGRESS_WINDOW_S

    async def _watch_backlog(self) -> None:
        """The stream's backlog, for the lag bound (one request per interval)."""
        assert self._nc is not None
        while True:
            try:
                latest = await backlog(self._nc, self._stream)
                progressed = latest.removed > self._backlog.removed
                self._backlog = latest
                if progressed:
                    self._writers_progressed_at = time.monotonic()
                    self.drained_changed.set()  # wake the requests backpressure holds
                    self.drained_changed.clear()
                self._backlog_ok = True
            except (nats.errors.Error, TimeoutError, RuntimeError) as exc:
                if self._backlog_ok:
                    log.warning("cannot read the stream's backlog (%r)", exc)
                self._backlog_ok = False
            await asyncio.sleep(BACKLOG_EVERY_S)

    def state(self) -> dict[str, object]:
        return {
            "nats": "ok" if self.connected and self._backlog_ok else "unreachable",
            "stream_pending_messages": self._backlog.messages,
        }
