"""``eventbunker writer``: the JetStream stream → TimescaleDB, exactly once.

Every writer process pulls from the one durable consumer, so the messages
are spread over the writers, and those a dead or slow writer did not
acknowledge within the consumer's ack wait go to another. Each batch is one
transaction of the single-node writer (``EventWriter.store``: event-id
claims, COPY, billed counters) that also claims each message of the batch
by its ``Nats-Msg-Id`` (``stream_message_claims``; a message without one by
its stream sequence); only then are the messages acknowledged. A message
found claimed stores nothing and is acknowledged: a redelivery after its
batch committed (its writer died before the ack, was slower than the ack
wait, or a consumer leader that lost its place delivered it again: seen in
the fault test, one message given to both writers 48 ms apart), and another
stream message of the same publish (the sink retries a publish under one
id, so every copy of it has that id).

Claims by stream sequence alone (until migration 0019) let the fault test's
probe, answered 503, be stored twice (issue 13): two deliveries they did not
catch, either under two sequences (the stream holding the publish twice) or
after its claim was pruned. They were pruned below the stream's first
sequence as a ``STREAM.INFO`` answered it, and in NATS 2.9.10 every replica
answers that itself, with its own state, while its group has no leader
(each replica removes an acknowledged message itself, when it applies the
ack; see the stall below for acknowledged messages never removed). Claims
are now kept while their message can be in the stream and for the event-id
idempotency window after (``prune``), whatever a replica says.

A consumer can stall in a cluster (NATS 2.9.10, in the fault test), and a
writer that fetched nothing for ``stall_s`` while the stream's oldest
message is older than that logs the consumer's state and acts (``unstall``):

- The consumer has nothing pending and nothing unacknowledged, yet the
  stream holds old messages. Seen twice: 153 messages stored in the seconds
  after a NATS node was killed, and 17 at the start of the partition. Each
  had been delivered and acknowledged, the consumer's ack floor was past
  them, but the stream never removed them, and no leader step-down made the
  consumer deliver them again. The writer deletes the consumer and makes it
  again, DeliverPolicy.ALL: it delivers everything the stream holds once
  more; claimed, those messages are only acknowledged, and leave the stream.
  (Once, the consumer made again then had 4 messages past its delivered
  sequence and none pending, never delivered: made again once more, it
  delivered them.)
- It has messages to deliver and delivers none (after a partition moved the
  stream's leader; or, once, while the replica of the isolated node, until
  it reset its stream state, was the consumer's leader): its leader is asked
  to step down; the new one delivers.

Whichever writer takes the turn first acts; the others wait a stall period
(``stream_unstalls``). Before, every writer stepped the leader down a moment
after the other, and the second step-down undid the first: twice back to
the node that delivered nothing, the stream drained 33 s after the load
stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

import nats.errors
import psycopg
import uvloop
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from eventbunker import _native
from eventbunker.config import Settings
from eventbunker.database import open_database
from eventbunker.ingest.pipeline import COUNTER_SHARDS
from eventbunker.ingest.writer import EventWriter
from eventbunker.scaleout.stream import (
    ACK_WAIT_S,
    WRITERS,
    backlog,
    connect,
    ensure_stream,
    writers_consumer,
)

log = logging.getLogger(__name__)

BATCH_MESSAGES = 1000
FETCH_TIMEOUT_S = 1.0
PRUNE_EVERY_S = 60.0
MAX_BACKOFF_S = 2.0
# Longer than a redelivery after a writer's death (the ack wait) takes.
STALL_S = 2 * ACK_WAIT_S

# The turn to act on a stall, for one writer per stall period (of every writer).
TAKE_UNSTALL_TURN = (
    "INSERT INTO stream_unstalls AS u (stream, acted_at) VALUES (%s, now())"
    " ON CONFLICT (stream) DO UPDATE SET acted_at = now()"
    " WHERE u.acted_at < now() - make_interval(secs => %s)"
    " RETURNING acted_at"
)
CLAIM_MESSAGES = (
    "INSERT INTO stream_message_claims (stream, message_key, seq)"
    " SELECT %s, * FROM unnest(%s::text[], %s::bigint[])"
    " ON CONFLICT DO NOTHING RETURNING message_key"
)


class StreamWriter:
    def __init__(self, settings: Settings, conninfo: str, *, stall_s: float = STALL_S) -> None:
        self._settings = settings
        self._conninfo = conninfo
        self._stall_s = stall_s
        self._stream = settings.nats_stream
        self._events = EventWriter(
            conninfo,
            shard=os.getpid() % COUNTER_SHARDS,
            application_name="eventbunker-writer",
            rollups=settings.rollups,
        )
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None
        self.stored = 0

    async def start(self, stopping: asyncio.Event) -> bool:
        """Connect and bind to the consumer; False if stopped first.

        A cluster that is starting, electing or has lost its quorum answers
        the stream and consumer requests with timeouts: the writer waits for
        it rather than exit (a writer that died at start-up left the stream
        undrained and ingest refusing as overloaded).
        """
        self._nc = await connect(self._settings.nats_url, f"eventbunker-writer-{os.getpid()}")
        js = self._js = self._nc.jetstream(timeout=5)
        backoff = 0.1
        while not stopping.is_set():
            try:
                await ensure_stream(js, self._stream, self._settings.nats_replicas)
                self._sub = await js.pull_subscribe(
                    self._stream, durable=WRITERS, config=writers_consumer(self._stream)
                )
                return True
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("the stream is not ready (%r); retrying in %.1f s", exc, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        return False

    async def stop(self) -> None:
        await self._events.close()
        if self._nc is not None:
            with contextlib.suppress(nats.errors.Error, OSError):
                await self._nc.close()

    async def fetch(self, batch: int = BATCH_MESSAGES) -> list[Msg]:
        """Up to ``batch`` messages, as soon as there is one (none after a second)."""
        try:
            return list(await self._sub.fetch(batch, timeout=FETCH_TIMEOUT_S))
        except TimeoutError:
            return []

    async def write(self, messages: Sequence[Msg]) -> int:
        """Store the messages not stored yet, in one transaction; the events stored.

        A message is stored by the first of its copies to claim its key (its
        ``Nats-Msg-Id``): a redelivery, or a second copy of it in the stream,
        in this batch or a later one, stores nothing.
        """
        keys: list[str] = []
        sequences: list[int] = []
        bodies: list[bytes] = []
        for message in messages:
            if _whole_records(message):
                keys.append(claim_key(message))
                sequences.append(message.metadata.sequence.stream)
                bodies.append(message.data)

        async def unclaimed(conn: psycopg.AsyncConnection[Any]) -> _native.SpoolBatch:
            cur = await conn.execute(CLAIM_MESSAGES, (self._stream, keys, sequences))
            new = {str(row[0]) for row in await cur.fetchall()}
            data = bytearray()
            for key, body in zip(keys, bodies, strict=True):
                if key in new:
                    new.discard(key)  # its other copies in this batch store nothing
                    data += body
            return _native.decode_spool(bytes(data), 0, 0)

        stored = await self._events.store(unclaimed, "") if bodies else 0
        self.stored += stored
        return stored

    async def acknowledge(self, messages: Sequence[Msg]) -> None:
        for message in messages:
            await message.ack()
        await self._nc.flush(timeout=5)

    async def prune(self) -> None:
        """Forget the claims of messages gone from the stream (below its first
        sequence: acknowledged) for longer than the idempotency window; enforce
        retention and compact settled chunks, as the drainer does."""
        first_seq = (await backlog(self._nc, self._stream)).first_seq
        window_s = self._settings.idempotency_window_hours * 3600
        await self._events.store(
            _empty,
            f"DELETE FROM stream_message_claims WHERE stream = '{_checked(self._stream)}'"
            f" AND seq < {int(first_seq)}"
            f" AND claimed_at < now() - make_interval(secs => {float(window_s)})",
        )
        await self._events.prune_event_ids(window_s)
        await self._events.enforce_retention()
        self._events.compact_in_background()

    async def unstall(self, stall_s: float | None = None) -> str:
        """If the stream's oldest message waits longer than ``stall_s``, get the
        consumer delivering again; what was done ("" when nothing).

        "recreated": the consumer has nothing pending nor unacknowledged, so it
        will never deliver what the stream still holds: it is deleted and made
        again (DeliverPolicy.ALL), which delivers everything in the stream once
        more; the claims make the messages already stored no-ops, acknowledged
        and gone. "step-down": it does have messages to deliver; its leader is
        asked to step down (the new leader delivers).

        Of all writers, one acts per ``stall_s`` (the turn in ``stream_unstalls``):
        two step-downs a moment apart gave the leader chosen by the first no
        time, and the second could move it back where nothing was delivered.
        """
        stall_s = self._stall_s if stall_s is None else stall_s
        state = await backlog(self._nc, self._stream)
        if state.messages == 0 or state.oldest_age_s < stall_s:
            return ""
        if not await self._take_unstall_turn(stall_s):
            log.info("the stream's consumer is stalled; another writer acted on it just now")
            return ""
        info = await self._js.consumer_info(self._stream, WRITERS)
        behind = not info.num_pending and not info.num_ack_pending
        log.warning(
            "no message fetched for %.0f s, the stream holds %d (oldest %.0f s old, first %d);"
            " consumer: %s pending, %s unacknowledged, %s waiting, delivered up to %s,"
            " acknowledged up to %s, leader %s: %s",
            stall_s,
            state.messages,
            state.oldest_age_s,
            state.first_seq,
            info.num_pending,
            info.num_ack_pending,
            info.num_waiting,
            info.delivered.stream_seq if info.delivered else None,
            info.ack_floor.stream_seq if info.ack_floor else None,
            info.cluster.leader if info.cluster else None,
            "recreating it" if behind else "asking its leader to step down",
        )
        if behind:
            await self._recreate_consumer()
            return "recreated"
        await self._nc.request(
            f"$JS.API.CONSUMER.LEADER.STEPDOWN.{self._stream}.{WRITERS}", b"", timeout=5
        )
        return "step-down"

    async def _take_unstall_turn(self, stall_s: float) -> bool:
        """Whether no writer acted on a stall of this stream within ``stall_s``
        (then this one does: the turn is taken)."""
        async with await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, application_name="eventbunker-writer"
        ) as conn:
            cur = await conn.execute(TAKE_UNSTALL_TURN, (self._stream, stall_s))
            return await cur.fetchone() is not None

    async def _recreate_consumer(self) -> None:
        """Delete the shared consumer and make it again with the same config.

        Every writer's pull subscription goes on working: a fetch is a request
        to the consumer's name, answered by whichever consumer has it (in the
        moment between, a fetch fails and the writer retries). Two writers
        doing this at once leave one consumer; at worst messages are delivered
        once more, and stored nothing the second time.
        """
        with contextlib.suppress(NotFoundError):
            await self._js.delete_consumer(self._stream, WRITERS)
        await self._js.add_consumer(self._stream, writers_consumer(self._stream))

    async def run(self, stopping: asyncio.Event) -> None:
        """Fetch, write, acknowledge, until ``stopping`` is set."""
        backoff = 0.05
        next_prune = time.monotonic() + 5.0
        fetched_at = time.monotonic()
        while not stopping.is_set():
            try:
                messages = await self.fetch()
                if messages:
                    fetched_at = time.monotonic()
                    await self.write(messages)
                    await self.acknowledge(messages)
                elif time.monotonic() - fetched_at > self._stall_s:
                    fetched_at = time.monotonic()  # ask again a stall later at most
                    await self.unstall()
                if time.monotonic() >= next_prune:
                    await self.prune()
                    next_prune = time.monotonic() + PRUNE_EVERY_S
            except (psycopg.Error, OSError, nats.errors.Error, TimeoutError) as exc:
                # Unacknowledged messages come back after the ack wait.
                log.warning("writer batch failed, retrying (%r)", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = 0.05


def claim_key(message: Msg) -> str:
    """What a message is claimed by: its ``Nats-Msg-Id`` (the same for every
    copy of it in the stream), else its stream sequence."""
    msg_id = (message.headers or {}).get("Nats-Msg-Id")
    if msg_id:
        return f"id:{msg_id}"
    return f"seq:{message.metadata.sequence.stream}"


def _whole_records(message: Msg) -> bool:
    """Whether a message is whole spool records (else it is terminated)."""
    batch = _native.decode_spool(message.data, 0, 0)
    if batch.records >= 1 and batch.end == len(message.data):
        return True
    log.error(
        "stream message %d is not EventBunker records (%s); terminated",
        message.metadata.sequence.stream,
        batch.damage or batch.stop,
    )
    asyncio.get_running_loop().create_task(message.term())
    return False


async def _empty(_: psycopg.AsyncConnection[Any]) -> _native.SpoolBatch:
    return _native.decode_spool(b"", 0, 0)


def _checked(name: str) -> str:
    # Stream names are NATS tokens; only those are spelled into SQL.
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"unexpected stream name {name!r}")
    return name


def run_writer(settings: Settings) -> int:
    if not settings.nats_url:
        raise SystemExit("eventbunker writer needs --nats URL (or EVENTBUNKER_NATS_URL)")
    with open_database(settings) as conninfo:
        return uvloop.run(_main(settings, conninfo))


async def _main(settings: Settings, conninfo: str) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    writer = StreamWriter(settings, conninfo)
    try:
        if not await writer.start(stopping):
            return 0
        log.info("writing the stream %s into the database", settings.nats_stream)
        await writer.run(stopping)
    finally:
        await writer.stop()
        log.info("writer stopped after storing %d events", writer.stored)
    return 0
