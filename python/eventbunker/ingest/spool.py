"""The write-ahead spool: a request is durable once its record is fsynced here.

Each worker appends the prepared rows of every accepted request to its own
directory of segment files and answers ``202`` only after an ``fdatasync``
that covers the record; concurrent requests share one fsync (group commit on
a local file). The fsyncs run on the Rust syncer's threads
(``rust/src/syncer.rs``), which wake the event loop through a socket: no
Python thread, so no GIL handoff per fsync (through asyncio's thread pool,
ours cost 242 µs of CPU per request against the bare handler's 222; on the
syncer, 201 to 221 against 239 to 241, benches/ingest_load.py). The drainer
(``drainer.py``) copies the spool into TimescaleDB afterwards and records,
in the same transaction, how far it got.

Records are framed and checksummed by the Rust extension (``rust/src/spool.rs``:
``Prepared.record`` on the way in, ``decode_spool`` for the drainer): a torn or
corrupt record (crash mid-write, bit rot) fails its length or checksum, and
readers keep every complete record before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from eventbunker import _native

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".seg"
LOCK_FILE = "owner.lock"
MAX_SYNCS_IN_FLIGHT = 2


class SpoolFull(Exception):
    """No room to make the request durable: answer 503."""


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A point in a spool: the byte ``offset`` within segment number ``segment``."""

    segment: int
    offset: int


def segment_path(directory: Path, segment: int) -> Path:
    return directory / f"{segment:010d}{SEGMENT_SUFFIX}"


def segments(directory: Path) -> list[int]:
    return sorted(
        int(p.name.removesuffix(SEGMENT_SUFFIX)) for p in directory.glob("*" + SEGMENT_SUFFIX)
    )


def try_lock(directory: Path) -> int | None:
    """An exclusive lock on a spool directory, or None if its owner lives."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@dataclass(slots=True)
class _Waiting:
    data: bytes
    at: float  # when the request asked (monotonic)
    done: asyncio.Future[None]


class Spool:
    """This worker's spool: append, group fsync, rotate segments."""

    def __init__(
        self,
        root: Path,
        name: str,
        *,
        segment_bytes: int = 16 << 20,
        max_bytes: int = 1 << 30,
        max_pending_bytes: int = 32 << 20,
    ) -> None:
        self.root = root
        self.directory = root / name
        self.name = name
        self._segment_bytes = segment_bytes
        self._max_bytes = max_bytes
        self._max_pending_bytes = max_pending_bytes
        self._waiting: list[_Waiting] = []
        self._pending_bytes = 0
        self._wakeup = asyncio.Event()
        self.durable_changed = asyncio.Event()
        self.drained_changed = asyncio.Event()  # pulsed by mark_drained()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop  # set by start()
        self._lock_fd: int | None = None
        self._fd = -1
        self._segment = 0
        self._size = 0  # bytes written to the current segment
        self._capacity = 0  # its preallocated size
        self._durable = Position(0, 0)
        self._last_write_ok = True
        # Durable size of each segment still on disk, and how far the drainer got.
        self._sizes: dict[int, int] = {}
        self.drained = Position(1, 0)
        # Written groups waiting for an fsync, with the position after each.
        self._unsynced: list[tuple[Position, list[_Waiting]]] = []
        # Written groups not yet drained: the position after each and when its
        # oldest request arrived (the queryable lag is the age of the first).
        self._undrained: deque[tuple[Position, float]] = deque()
        self._syncs_in_flight = 0
        # fsyncs run on the syncer's threads; each ticket's covered position.
        self._syncer: _native.Syncer  # set by start(): its threads are this process's
        self._tickets = 0
        self._covering: dict[int, Position] = {}

    @property
    def accepting(self) -> bool:
        """False once the size limit is reached or the last write failed."""
        return self._last_write_ok and self.backlog_bytes < self._max_bytes

    @property
    def backlog_bytes(self) -> int:
        """Durable bytes not yet drained into the database."""
        drained = self.drained
        return max(
            0,
            sum(size for seg, size in self._sizes.items() if seg >= drained.segment)
            - drained.offset,
        )

    def lag_seconds(self) -> float:
        """Age of the oldest request written here and not yet drained (0 if none)."""
        undrained = self._undrained
        while undrained and undrained[0][0] <= self.drained:
            undrained.popleft()
        if undrained:
            return time.monotonic() - undrained[0][1]
        if self._waiting:
            return time.monotonic() - self._waiting[0].at
        return 0.0

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    @property
    def durable(self) -> Position:
        """Everything before this position is fsynced."""
        return self._durable

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = try_lock(self.directory)
        if self._lock_fd is None:
            raise RuntimeError(f"spool {self.directory} is owned by another process")
        _fsync_dir(self.root)
        self._open_segment(1)
        self._durable = Position(self._segment, self._size)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()  # asked once: Python 3.11 asks with getpid()
        self._syncer = _native.Syncer(MAX_SYNCS_IN_FLIGHT)
        self._loop.add_reader(self._syncer.fileno(), self._synced)
        self._task = asyncio.create_task(self._sync_loop())

    async def stop(self) -> None:
        while self._waiting or self._syncs_in_flight:
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._loop.remove_reader(self._syncer.fileno())
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def mark_drained(self, position: Position) -> None:
        """The drainer stored everything before ``position``: wake who waits for that."""
        self.drained = position
        self.drained_changed.set()
        self.drained_changed.clear()  # the current waiters are woken; later ones wait anew

    def forget_segments_before(self, segment: int) -> None:
        for number in [n for n in self._sizes if n < segment]:
            del self._sizes[number]

    def release(self) -> None:
        """Give up ownership (the directory may then be removed or adopted)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def append(self, record: bytes) -> None:
        """Return once ``record`` is on disk; raise SpoolFull when it cannot be."""
        size = len(record)
        if self.backlog_bytes + self._pending_bytes + size > self._max_bytes:
            raise SpoolFull("the spool is at its size limit")
        if self._pending_bytes + size > self._max_pending_bytes:
            raise SpoolFull("too many requests waiting for the disk")
        waiting = _Waiting(record, time.monotonic(), self._loop.create_future())
        self._waiting.append(waiting)
        self._pending_bytes += size
        self._wakeup.set()
        await waiting.done

    async def _sync_loop(self) -> None:
        """Write each group, then fsync it; up to MAX_SYNCS_IN_FLIGHT fsyncs overlap.

        A group's fsync often waits for the disk longer than the next group
        takes to gather, so the next one starts before it ends: a request
        waits for about one fsync, not one and a half. An fsync makes durable
        everything written before it started, so whichever ends first
        releases every group written before it.
        """
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting or self._syncs_in_flight >= MAX_SYNCS_IN_FLIGHT:
                self._wakeup.clear()
                await self._wakeup.wait()
            group, self._waiting = self._waiting, []
            data = b"".join(w.data for w in group)
            self._pending_bytes -= len(data)
            if self._size + len(data) > self._capacity:
                while self._syncs_in_flight:  # never close a file being fsynced
                    self._wakeup.clear()
                    await self._wakeup.wait()
                try:
                    await loop.run_in_executor(
                        None, self._open_segment, self._segment + 1, len(data)
                    )
                except OSError as exc:
                    self._refuse(group, exc)
                    continue
            try:
                self._write(data)  # into the page cache: fast, the fsync is what waits
            except OSError as exc:
                self._refuse(group, exc)
                continue
            end = Position(self._segment, self._size)
            self._unsynced.append((end, group))
            self._undrained.append((end, group[0].at))
            self._syncs_in_flight += 1
            self._tickets += 1
            self._covering[self._tickets] = end  # all written so far
            self._syncer.sync(self._fd, self._tickets)

    def _synced(self) -> None:
        """The loop's callback when the syncer finished fsyncs: release their groups."""
        for ticket, errno in self._syncer.finished():
            self._sync_finished(self._covering.pop(ticket), errno)

    def _sync_finished(self, covered: Position, errno: int) -> None:
        """An fsync that covered everything written before ``covered`` ended."""
        self._syncs_in_flight -= 1
        self._wakeup.set()
        if errno:
            exc = OSError(errno, os.strerror(errno))
            failed = [g for end, g in self._unsynced if end <= covered]
            self._unsynced = [(end, g) for end, g in self._unsynced if end > covered]
            for group in failed:
                self._refuse(group, exc)
            return
        if covered > self._durable:
            self._durable = covered
            self._sizes[covered.segment] = covered.offset
        self._last_write_ok = True
        done = [g for end, g in self._unsynced if end <= covered]
        self._unsynced = [(end, g) for end, g in self._unsynced if end > covered]
        for group in done:
            for w in group:
                if not w.done.done():
                    w.done.set_result(None)
        self.durable_changed.set()

    def _refuse(self, group: list[_Waiting], exc: OSError) -> None:
        self._last_write_ok = False
        log.error("spool write failed (%s); refusing %d requests", exc, len(group))
        error = SpoolFull(f"the spool cannot be written: {exc.strerror}")
        for w in group:
            if not w.done.done():
                w.done.set_exception(error)

    def _write(self, data: bytes) -> None:
        # On an error _size stays put: the next group overwrites the partial one.
        view = memoryview(data)
        offset = self._size
        while view:
            written = os.pwrite(self._fd, view, offset)
            view = view[written:]
            offset += written
        self._size = offset

    def _open_segment(self, segment: int, at_least: int = 0) -> None:
        """Start a new segment, its blocks allocated up front (they read as zeros).

        Writing into allocated blocks spares each fdatasync the file's new
        size in the filesystem journal, which is slow when the database is
        extending its own files. ``posix_fallocate`` allocates without writing:
        zero-filling 16 MiB per segment cost 10 % of a worker's samples under
        sustained batches (py-spy).
        """
        path = segment_path(self.directory, segment)
        capacity = max(self._segment_bytes, at_least)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.posix_fallocate(fd, 0, capacity)
            os.fsync(fd)
            _fsync_dir(self.directory)  # the new file's name is durable too
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._segment = segment
        self._size = 0
        self._capacity = capacity


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
