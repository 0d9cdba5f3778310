"""Scale-out mode on loopback: ingest nodes → a 3-node JetStream cluster → writers.

Real nats-server processes (our own ports and store directories), the real
server with ``--nats``, real ``eventbunker writer`` processes, a real
TimescaleDB. The fault test with network namespaces is test_scaleout_faults.py.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from nats.js import api
from nats.js.errors import NotFoundError, ServiceUnavailableError

from conftest import (
    Project,
    Server,
    start_server,
    stop_process_group,
    stop_server,
    wait_until,
)
from eventbunker.config import Settings
from eventbunker.scaleout.stream import (
    ACK_WAIT_S,
    WRITERS,
    backlog,
    connect,
    stream_config,
    writers_consumer,
)
from eventbunker.scaleout.writer import StreamWriter
from nats_cluster import NatsCluster, loopback_cluster, wait_for_jetstream

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "nats-server"], capture_output=True).returncode != 0,
    reason="nats-server is installed by scripts/setup.sh",
)

DRAIN_TIMEOUT_S = 30.0  # conftest.wait_until's default


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    cluster = loopback_cluster(tmp_path_factory.mktemp("nats"))
    cluster.start()
    try:
        asyncio.run(wait_for_jetstream(cluster.urls))
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def stream() -> str:
    return f"test-{secrets.token_hex(4)}"


def start_writer(
    database_url: str, urls: str, stream: str, log_dir: Path, *prefix: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *prefix,
            sys.executable,
            "-m",
            "eventbunker",
            "writer",
            "--nats",
            urls,
            "--nats-stream",
            stream,
            "--database-url",
            database_url,
        ],
        stdout=(log_dir / f"writer-{time.monotonic_ns()}.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def ingest_node(database_url: str, tmp_path: Path, urls: str, stream: str, *extra: str) -> Server:
    return start_server(
        database_url,
        tmp_path,
        "--workers",
        "1",
        "--nats",
        urls,
        "--nats-stream",
        stream,
        *extra,
    )


def stored_seqs(db: psycopg.Connection[Any], project_id: int) -> list[int]:
    rows = db.execute(
        "SELECT (properties->>'seq')::int FROM events WHERE project_id = %s", (project_id,)
    ).fetchall()
    return [int(r[0]) for r in rows]


def billed(db: psycopg.Connection[Any], project_id: int) -> int:
    row = db.execute(
        "SELECT coalesce(sum(events), 0) FROM write_counters WHERE project_id = %s",
        (project_id,),
    ).fetchone()
    return int(row[0]) if row else 0


def stream_messages(urls: str, stream: str) -> int:
    async def count() -> int:
        nc = await connect(urls, "test")
        try:
            return (await backlog(nc, stream)).messages
        finally:
            await nc.close()

    return asyncio.run(count())


def writers_waiting(urls: str, stream: str) -> int:
    """Writers with a fetch open on the shared consumer (0 before the first starts)."""

    async def count() -> int:
        nc = await connect(urls, "test")
        try:
            info = await nc.jetstream().consumer_info(stream, WRITERS)
            return int(info.num_waiting or 0)
        except NotFoundError:
            return 0
        finally:
            await nc.close()

    return asyncio.run(count())


def test_two_ingest_nodes_and_two_writers_store_each_event_once(
    database_url: str,
    db: psycopg.Connection[Any],
    project: Project,
    nats: NatsCluster,
    stream: str,
    tmp_path: Path,
) -> None:
    nodes = [ingest_node(database_url, tmp_path, nats.urls, stream) for _ in range(2)]
    writers = [start_writer(database_url, nats.urls, stream, tmp_path) for _ in range(2)]
    try:
        # Writers still starting would be writers too slow: the lag bound would refuse.
        assert wait_until(lambda: writers_waiting(nats.urls, stream) == 2), "writers not up"
        seq = 0
        with httpx.Client(timeout=10) as http:
            for request in range(60):
                events = [{"event_name": "flow", "seq": seq + i} for i in range(10)]
                seq += 10
                if request % 3 == 0:
                    for event in events:
                        event["event_id"] = f"flow-{event['seq']}"
                answer = http.post(
                    nodes[request % 2].url + "/v1/events",
                    json=events,
                    headers={"X-Api-Key": project.write_key},
                )
                assert answer.status_code == 202, answer.text
                assert answer.json() == {"accepted": 10, "duplicates": 0}
            # A client retry of a request with ids, on the other node: stored once.
            retry = [{"event_name": "flow", "seq": s, "event_id": f"flow-{s}"} for s in range(10)]
            answer = http.post(
                nodes[1].url + "/v1/events", json=retry, headers={"X-Api-Key": project.write_key}
            )
            assert answer.status_code == 202, answer.text
        assert wait_until(lambda: stream_messages(nats.urls, stream) == 0), "stream not drained"
        assert wait_until(lambda: len(stored_seqs(db, project.id)) >= 600)
        seqs = stored_seqs(db, project.id)
        assert sorted(seqs) == list(range(600))  # nothing lost, nothing twice
        assert billed(db, project.id) == 600
        ready = httpx.get(nodes[0].url + "/readyz", timeout=5).json()
        assert ready["nats"] == "ok", ready
    finally:
        for writer in writers:
            stop_process_group(writer)
        for node in nodes:
            stop_server(node)


def test_concurrent_requests_share_messages_and_are_stored_once(
    database_url: str,
    db: psycopg.Connection[Any],
    project: Project,
    nats: NatsCluster,
    stream: str,
    tmp_path: Path,
) -> None:
    """Group commit: requests appended while publishes are in flight go together
    in one message; each is acknowledged, each stored once."""
    node = ingest_node(database_url, tmp_path, nats.urls, stream, "--max-lag-seconds", "600")
    requests = 200

    async def send_all() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as http:

            async def send(seq: int) -> int:
                answer = await http.post(
                    node.url + "/v1/events",
                    json=[{"event_name": "group", "seq": seq * 2 + i} for i in range(2)],
                    headers={"X-Api-Key": project.write_key},
                )
                return answer.status_code

            return list(await asyncio.gather(*(send(seq) for seq in range(requests))))

    try:
        assert asyncio.run(send_all()) == [202] * requests
    finally:
        stop_server(node)
    messages = stream_messages(nats.urls, stream)
    assert 0 < messages < requests, messages
    writer = start_writer(database_url, nats.urls, stream, tmp_path)
    try:
        assert wait_until(lambda: stream_messages(nats.urls, stream) == 0), "not drained"
    finally:
        stop_process_group(writer)
    assert sorted(stored_seqs(db, project.id)) == list(range(2 * requests))
    assert billed(db, project.id) == 2 * requests


def test_a_redelivery_after_commit_stores_nothing_twice(
    database_url: str,
    db: psycopg.Connection[Any],
    project: Project,
    nats: NatsCluster,
    stream: str,
    tmp_path: Path,
) -> None:
    """A writer commits a batch and dies before acknowledging it: the messages
    come back to another writer, which stores nothing of them again."""
    # No writer runs while the stream fills: a lag bound far away keeps it from refusing.
    node = ingest_node(database_url, tmp_path, nats.urls, stream, "--max-lag-seconds", "600")
    try:
        with httpx.Client(timeout=10) as http:
            for request in range(20):
                events = [{"event_name": "redo", "seq": request * 5 + i} for i in range(5)]
                answer = http.post(
                    node.url + "/v1/events", json=events, headers={"X-Api-Key": project.write_key}
                )
                assert answer.status_code == 202, answer.text
    finally:
        stop_server(node)
    settings = Settings(nats_url=nats.urls, nats_stream=stream, database_url=database_url)

    async def commit_without_ack() -> int:
        writer = StreamWriter(settings, database_url)
        await writer.start(asyncio.Event())
        try:
            messages: list[Any] = []
            while len(messages) < 20:
                fetched = await writer.fetch()
                assert fetched, "the stream should hold 20 messages"
                messages += fetched
            return await writer.write(messages)  # committed; the acks never sent
        finally:
            await writer.stop()

    assert asyncio.run(commit_without_ack()) == 100
    assert sorted(stored_seqs(db, project.id)) == list(range(100))
    assert stream_messages(nats.urls, stream) == 20  # still unacknowledged

    started = time.monotonic()
    writer = start_writer(database_url, nats.urls, stream, tmp_path)
    try:
        assert wait_until(lambda: stream_messages(nats.urls, stream) == 0), "not redelivered"
        assert time.monotonic() - started < ACK_WAIT_S + DRAIN_TIMEOUT_S
    finally:
        stop_process_group(writer)
    assert sorted(stored_seqs(db, project.id)) == list(range(100))
    assert billed(db, project.id) == 100


def test_a_stalled_consumer_is_asked_to_elect_another_leader(
    database_url: str,
    db: psycopg.Connection[Any],
    project: Project,
    nats: NatsCluster,
    stream: str,
    tmp_path: Path,
) -> None:
    """The writer's way out of a stalled consumer with messages pending: with
    the stream's oldest message older than the stall bound, its leader is
    asked to step down and another node leads it; a second writer seeing the
    same stall a moment later leaves the new leader alone (one writer acts
    per stall period). The writers then store everything once."""
    node = ingest_node(database_url, tmp_path, nats.urls, stream, "--max-lag-seconds", "600")
    try:
        for seq in range(3):
            answer = httpx.post(
                node.url + "/v1/events",
                json={"event_name": "stall", "seq": seq},
                headers={"X-Api-Key": project.write_key},
                timeout=10,
            )
            assert answer.status_code == 202, answer.text
    finally:
        stop_server(node)
    settings = Settings(nats_url=nats.urls, nats_stream=stream, database_url=database_url)

    async def leader() -> str:
        nc = await connect(nats.urls, "test")
        try:
            info = await nc.jetstream().consumer_info(stream, WRITERS)
            return str(info.cluster.leader if info.cluster else "")
        except ServiceUnavailableError:  # electing
            return ""
        finally:
            await nc.close()

    async def unstall() -> tuple[str, str, str, str, str]:
        writer, other = (StreamWriter(settings, database_url) for _ in range(2))
        await writer.start(asyncio.Event())  # makes the consumer; fetches nothing
        await other.start(asyncio.Event())
        try:
            first = await leader()
            too_early = await writer.unstall(stall_s=3600)
            await asyncio.sleep(2.1)  # the messages are older than 2 s
            asked = await writer.unstall(stall_s=2.0)
            # The other writer sees the same stall: the turn is taken for 2 s.
            not_twice = await other.unstall(stall_s=2.0)
            deadline = time.monotonic() + 15
            while (now := await leader()) in ("", first) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            return too_early, asked, not_twice, first, now
        finally:
            await writer.stop()
            await other.stop()

    too_early, asked, not_twice, before, after = asyncio.run(unstall())
    assert (too_early, asked, not_twice) == ("", "step-down", "")
    assert before and after and after != before, (before, after)
    writer = start_writer(database_url, nats.urls, stream, tmp_path)
    try:
        assert wait_until(lambda: stream_messages(nats.urls, stream) == 0), "not drained"
    finally:
        stop_process_group(writer)
    assert sorted(stored_seqs(db, project.id)) == [0, 1, 2]


def post_events(node: Server, key: str, name: str, requests: int, per_request: int) -> None:
    """``requests`` requests one after another (one stream message each), seq 0…"""
    with httpx.Client(timeout=10) as http:
        for request in range(requests):
            events = [
                {"event_name": name, "seq": request * per_request + i} for i in range(per_request)
            ]
            answer = http.post(node.url + "/v1/events", json=events, headers={"X-Api-Key": key})
            assert answer.status_code == 202, answer.text


def test_two_copies_of_a_message_in_the_stream_are_stored_once(
    database_url: str,
    db: psycopg.Connection[Any],
    project: Project,
    nats: NatsCluster,
    stream: str,
    tmp_path: Path,
) -> None:
    """The stream can hold one publish twice under one Nats-Msg-Id (issue 13:
    NATS 2.9.10 after a partition healed). Made here with a duplicate window
    of 0.1 s: a message published again past it is a second stream message
    with the same id. Writers claim a message by its id: one copy in the same
    batch as the first, one after the first was stored and acknowledged;
    each record is stored and billed once."""

    async def make_stream() -> None:
        nc = await connect(nats.urls, "test")
        try:
            await nc.jetstream().add_stream(stream_config(stream, 3, duplicate_window_s=0.1))
        finally:
            await nc.close()

    asyncio.run(make_stream())
    node = ingest_node(database_url, tmp_path, nats.urls, stream, "--max-lag-seconds", "600")
    try:
        post_events(node, project.write_key, "copied", 2, 5)
    finally:
        stop_server(node)

    async def originals() -> list[api.RawStreamMsg]:
        nc = await connect(nats.urls, "test")
        try:
            return [await nc.jetstream().get_msg(stream, seq) for seq in (1, 2)]
        finally:
            await nc.close()

    async def publish_again(original: api.RawStreamMsg) -> None:
        """The same body under the same id, once the stream has forgotten it."""
        assert original.headers and original.headers["Nats-Msg-Id"]
        nc = await connect(nats.urls, "test")
        try:
            js = nc.jetstream()
            for _ in range(50):
                await asyncio.sleep(0.2)  # past the duplicate window
                ack = await js.publish(stream, original.data or b"", headers=original.headers)
                if not ack.duplicate:
                    copy = await js.get_msg(stream, ack.seq)
                    assert copy.headers == original.headers and copy.data == original.data
                    return
            raise AssertionError("the stream kept deduplicating the id")
        finally:
            await nc.close()

    first, second = asyncio.run(originals())
    asyncio.run(publish_again(first))
    assert stream_messages(nats.urls, stream) == 3  # two of them with one Nats-Msg-Id
    writer = start_writer(database_url, nats.urls, stream, tmp_path)
    try:
        assert wait_until(lambda: stream_messages(nats.urls, stream) == 0), "not drained"
        assert sorted(stored_seqs(db, project.id)) == list(range(10))
        asyncio.run(publish_again(second))  # its first copy is stored and gone
        assert wait_until(lambda: stream_messages(nats.urls, stream) == 0), "not drained"
    finally:
        stop_process_group(writer)
    assert sorted(stored_seqs(db, project.id)) == list(range(10))
    assert billed(db, project.id) == 10


def test_a_consumer_left_behind_the_stream_is_made_again(
    database_url: str,
    db: psycopg.Connection[Any],
    project: Project,
    nats: NatsCluster,
    stream: str,
    tmp_path: Path,
) -> None:
    """The consumer stall of the fault test: nothing pending, nothing
    unacknowledged, while the stream still holds messages; some of them were
    stored already (committed, never acknowledged). NATS refuses a consumer
    with DeliverPolicy.NEW on a work-queue stream, so the stalled consumer is
    made here filtered on another subject of the stream, which none of the
    messages has. Two writers with a stall bound of 1 s: the consumer is
    deleted and made again (as the writers make it), the stream drains, and
    both writers' subscriptions (bound before) fetch from the new consumer.
    Everything is stored once."""

    async def make_stream() -> None:
        nc = await connect(nats.urls, "test")
        try:
            config = stream_config(stream, 3)
            config.subjects = [stream, f"{stream}.elsewhere"]
            await nc.jetstream().add_stream(config)
        finally:
            await nc.close()

    asyncio.run(make_stream())
    node = ingest_node(database_url, tmp_path, nats.urls, stream, "--max-lag-seconds", "600")
    settings = Settings(nats_url=nats.urls, nats_stream=stream, database_url=database_url)

    async def commit_without_ack() -> int:
        """The first 4 messages stored, never acknowledged."""
        writer = StreamWriter(settings, database_url)
        await writer.start(asyncio.Event())
        try:
            messages: list[Any] = []
            while len(messages) < 4:
                messages += await writer.fetch(4 - len(messages))
            return await writer.write(messages)
        finally:
            await writer.stop()

    async def consumer_past_the_stream() -> tuple[int, int]:
        nc = await connect(nats.urls, "test")
        try:
            js = nc.jetstream()
            await js.delete_consumer(stream, WRITERS)
            config = writers_consumer(stream)
            config.filter_subject = f"{stream}.elsewhere"
            await js.add_consumer(stream, config)
            info = await js.consumer_info(stream, WRITERS)
            return info.num_pending or 0, info.num_ack_pending or 0
        finally:
            await nc.close()

    async def drain() -> tuple[list[str], list[int]]:
        """Both writers run until the stream is drained; then two more
        messages, one fetched by each writer; what unstall did, and those."""
        writers = [StreamWriter(settings, database_url, stall_s=1.0) for _ in range(2)]
        done: list[str] = []
        for writer in writers:
            assert await writer.start(asyncio.Event())
            unstall = writer.unstall

            async def noted(stall_s: float | None = None, unstall: Any = unstall) -> str:
                done.append(await unstall(stall_s))
                return done[-1]

            writer.unstall = noted  # type: ignore[method-assign]
        nc = await connect(nats.urls, "test")
        try:
            stopping = asyncio.Event()
            runs = [asyncio.create_task(writer.run(stopping)) for writer in writers]
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while (await backlog(nc, stream)).messages and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            stopping.set()
            await asyncio.gather(*runs)
            await asyncio.sleep(1.5)  # the last fetch requests expire
            async with httpx.AsyncClient(timeout=10) as http:
                for request in range(2):
                    events = [
                        {"event_name": "behind", "seq": 30 + request * 3 + i} for i in range(3)
                    ]
                    answer = await http.post(
                        node.url + "/v1/events",
                        json=events,
                        headers={"X-Api-Key": project.write_key},
                    )
                    assert answer.status_code == 202, answer.text
            fetched = []
            for writer in writers:
                messages = await writer.fetch(1)
                fetched.append(len(messages))
                await writer.write(messages)
                await writer.acknowledge(messages)
            return done, fetched
        finally:
            await nc.close()
            for writer in writers:
                await writer.stop()

    try:
        post_events(node, project.write_key, "behind", 10, 3)
        assert asyncio.run(commit_without_ack()) == 12
        assert asyncio.run(consumer_past_the_stream()) == (0, 0)
        assert stream_messages(nats.urls, stream) == 10
        done, fetched = asyncio.run(drain())
    finally:
        stop_server(node)
    assert "recreated" in done, done
    assert fetched == [1, 1]
    assert stream_messages(nats.urls, stream) == 0
    assert sorted(stored_seqs(db, project.id)) == list(range(36))
    assert billed(db, project.id) == 36


def test_past_the_lag_bound_503_until_a_writer_drains(
    database_url: str,
    db: psycopg.Connection[Any],
    project: Project,
    nats: NatsCluster,
    stream: str,
    tmp_path: Path,
) -> None:
    """The database is up but no writer runs, then the one writer is stalled
    (SIGSTOP): once the stream's oldest message is older than --max-lag-seconds,
    503 overloaded + Retry-After; a writer draining the stream brings the 202s
    back. Every acknowledged event is stored once, no refused one."""
    max_lag_s = 1.0
    node = ingest_node(
        database_url, tmp_path, nats.urls, stream, "--max-lag-seconds", str(max_lag_s)
    )
    writers: list[subprocess.Popen[bytes]] = []
    acked: list[int] = []
    refused: list[float] = []  # seconds since the oldest unstored event was acknowledged
    oldest_at = [0.0]
    seqs = iter(range(1_000_000))
    try:
        with httpx.Client(timeout=10) as http:

            def post() -> int:
                seq = next(seqs)
                answer = http.post(
                    node.url + "/v1/events",
                    json={"event_name": "lag", "seq": seq},
                    headers={"X-Api-Key": project.write_key},
                )
                if answer.status_code == 202:
                    acked.append(seq)
                elif answer.status_code == 503:
                    assert answer.json()["error"]["code"] == "overloaded", answer.text
                    assert answer.headers["retry-after"] == "1"
                    refused.append(time.monotonic() - oldest_at[0])
                else:
                    raise AssertionError(answer.text)
                return answer.status_code

            def shed_then_recover(resume: Any) -> None:
                oldest_at[0] = time.monotonic()
                assert post() == 202
                assert wait_until(lambda: post() == 503, 15.0), "never refused"
                # Never before the bound (the stream's clock and ours: one machine).
                assert min(refused) >= max_lag_s - 0.05, refused
                shedding = httpx.get(node.url + "/readyz", timeout=5)
                assert shedding.status_code == 503 and shedding.json()["shedding_load"]
                resume()
                assert wait_until(lambda: post() == 202, 30.0), "no recovery"
                refused.clear()

            # No writer running.
            shed_then_recover(
                lambda: writers.append(start_writer(database_url, nats.urls, stream, tmp_path))
            )
            assert wait_until(lambda: stream_messages(nats.urls, stream) == 0)
            # The one writer stalled.
            os.killpg(writers[0].pid, signal.SIGSTOP)
            shed_then_recover(lambda: os.killpg(writers[0].pid, signal.SIGCONT))
        assert wait_until(lambda: stream_messages(nats.urls, stream) == 0), "stream not drained"
        assert sorted(stored_seqs(db, project.id)) == sorted(acked)
        assert len(acked) > 4
    finally:
        for writer in writers:
            os.killpg(writer.pid, signal.SIGCONT)
            stop_process_group(writer)
        stop_server(node)


def test_no_quorum_means_503_and_no_ack(
    database_url: str,
    db: psycopg.Connection[Any],
    project: Project,
    tmp_path: Path,
    stream: str,
) -> None:
    """With two of three NATS nodes down, no publish reaches a quorum: 503 +
    Retry-After, nothing stored; once they are back, 202s again. (A writer runs
    throughout: without one, the aging backlog would be refused as overloaded.)"""
    cluster = loopback_cluster(tmp_path / "nats")
    cluster.start()
    node: Server | None = None
    writer: subprocess.Popen[bytes] | None = None
    try:
        asyncio.run(wait_for_jetstream(cluster.urls))
        node = ingest_node(database_url, tmp_path, cluster.urls, stream)
        writer = start_writer(database_url, cluster.urls, stream, tmp_path)
        with httpx.Client(timeout=15) as http:

            def post(seq: int) -> httpx.Response:
                return http.post(
                    node.url + "/v1/events",  # type: ignore[union-attr]
                    json={"event_name": "quorum", "seq": seq},
                    headers={"X-Api-Key": project.write_key},
                )

            assert post(0).status_code == 202
            cluster.nodes[1].kill()
            cluster.nodes[2].kill()
            refused = post(1)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "storage_unavailable"
            cluster.nodes[1].start()
            cluster.nodes[2].start()
            answers: list[httpx.Response] = []

            def accepted_again() -> bool:
                answers.append(post(2))
                return answers[-1].status_code == 202

            assert wait_until(accepted_again, 30.0), (answers[-1].status_code, answers[-1].text)
        assert wait_until(lambda: stream_messages(cluster.urls, stream) == 0)
        # (The refused event may still be stored once the quorum is back, as
        # after any 503 whose fate the server could not know: never lost.)
        seqs = stored_seqs(db, project.id)
        assert 0 in seqs and 2 in seqs, seqs
    finally:
        if writer is not None:
            stop_process_group(writer)
        if node is not None:
            stop_server(node)
        cluster.stop()
