"""An import body as a stream of whole-line chunks: gunzip, split, skip.

Memory stays flat whatever the body's size: at most one chunk, one
decompression step and one unfinished line are held. A line longer than the
limit is not buffered: its bytes are dropped until its end and it is
reported by number, so the other lines still get through.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from eventbunker import _native


class BodyError(Exception):
    """The body itself is broken (not a line of it): invalid or cut-off gzip."""


class GzipStream:
    """Incremental gunzip of a body, several gzip members in a row included:
    the Rust inflater of ingest bodies (``_native.Gunzip``), in bounded steps."""

    def __init__(self) -> None:
        self._inflater = _native.Gunzip()

    def feed(self, data: bytes) -> Iterator[bytes]:
        start = 0
        while start < len(data):
            try:
                out, start = self._inflater.step(data, start)
            except ValueError as exc:
                raise BodyError(str(exc)) from None
            if out:
                yield out

    def finish(self) -> bytes:
        """What is left of the body; BodyError when it was cut off."""
        try:
            return self._inflater.finish()
        except ValueError as exc:
            raise BodyError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class LongLine:
    """A line over the limit, dropped: its size so far in bytes."""

    size: int


class LineChunker:
    """Cuts a byte stream into chunks of whole lines of about ``chunk_bytes``.

    ``feed`` yields chunks (bytes ending in ``\\n``) and ``LongLine`` markers,
    in line order; ``finish`` yields what is left (a last line without
    ``\\n``). Each chunk holds at least one whole line.
    """

    def __init__(self, chunk_bytes: int, max_line_bytes: int) -> None:
        self._chunk_bytes = chunk_bytes
        self._max_line_bytes = max_line_bytes
        self._parts: list[bytes] = []
        self._size = 0
        self._whole = 0  # buffered bytes up to and including the last newline
        self._long_line = 0  # bytes dropped of the current over-long line

    def feed(self, data: bytes) -> Iterator[bytes | LongLine]:
        while data:
            if self._long_line:
                end = data.find(b"\n")
                if end < 0:
                    self._long_line += len(data)
                    return
                yield LongLine(self._long_line + end)
                self._long_line = 0
                data = data[end + 1 :]
                continue
            newline = data.rfind(b"\n")
            if newline >= 0:
                self._whole = self._size + newline + 1
            self._parts.append(data)
            self._size += len(data)
            data = b""
            if self._size - self._whole > self._max_line_bytes:
                # The unfinished line is over the limit: keep the lines
                # before it, drop it up to its end.
                whole = self._take_whole()
                if whole:
                    yield whole
                self._long_line, self._parts, self._size = self._size, [], 0
            elif self._size >= self._chunk_bytes and self._whole:
                yield self._take_whole()

    def _take_whole(self) -> bytes:
        """Remove and return the buffered whole lines."""
        buffered = b"".join(self._parts)
        whole, rest = buffered[: self._whole], buffered[self._whole :]
        self._parts, self._size, self._whole = ([rest] if rest else []), len(rest), 0
        return whole

    def whole_lines(self) -> Iterator[bytes]:
        """At a cut-off: the buffered whole lines; the unfinished one is dropped."""
        if self._whole:
            yield self._take_whole()
        self._parts, self._size, self._long_line = [], 0, 0

    def finish(self) -> Iterator[bytes | LongLine]:
        if self._long_line:
            yield LongLine(self._long_line)
            self._long_line = 0
        if self._size:
            yield b"".join(self._parts)
            self._parts, self._size, self._whole = [], 0, 0


def skip_lines(chunk: bytes, count: int) -> tuple[bytes, int]:
    """``chunk`` without its first ``count`` lines; and how many it skipped."""
    position = 0
    skipped = 0
    while skipped < count:
        end = chunk.find(b"\n", position)
        if end < 0:
            if position < len(chunk):
                return b"", skipped + 1  # a last line without newline
            break
        position = end + 1
        skipped += 1
    return chunk[position:], skipped
