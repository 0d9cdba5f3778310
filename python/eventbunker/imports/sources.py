"""Import sources: a file (or stdin) as a stream of whole-line NDJSON chunks.

Reads NDJSON/JSON Lines and JSON arrays, plain or gzip (told by the magic
bytes, not the name). A JSON array is split into its top-level elements
without being loaded: each element becomes one line, so line N of a ``.json``
import is element N. Lines a previous run committed are skipped here, so
they are neither re-read by the server nor sent again.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal

from eventbunker.imports.body import BodyError, GzipStream

Format = Literal["auto", "ndjson", "json"]
FORMATS: tuple[Format, ...] = ("auto", "ndjson", "json")

READ_BYTES = 1 << 20  # one read of the file, and about one chunk of the upload
# A "line" (or array element) longer than this is passed on in pieces rather
# than held whole: the server rejects it as too long, with its line number.
MAX_HELD_BYTES = 16 << 20
ID_SAMPLE_BYTES = 64 << 10
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
WHITESPACE = b" \t\r\n"
STDIN = "-"

# Raw newlines in JSON text are whitespace outside strings (and invalid
# inside them), so spaces keep an element valid on one line.
_NEWLINES_TO_SPACES = bytes.maketrans(b"\r\n", b"  ")
# Runs of bytes that cannot end an element, whole strings included (the regex
# engine skips them, so brackets in strings never count): stops at a
# structural byte, at a string cut off by the end of the buffer, or at the end.
# Nested commas do not matter, so inside an element only brackets stop it.
_SKIP_TOP = re.compile(rb'(?:[^"\[\]{},]++|"(?:[^"\\]++|\\.)*+")*+', re.DOTALL)
_SKIP_NESTED = re.compile(rb'(?:[^"\[\]{}]++|"(?:[^"\\]++|\\.)*+")*+', re.DOTALL)
# The rest of a string cut off by the end of the previous buffer.
_STRING_REST = re.compile(rb'(?:[^"\\]++|\\.)*+(")?', re.DOTALL)
_QUOTE = ord('"')
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")


class SourceError(Exception):
    """The input is unreadable from some point on: corrupt gzip, not a JSON array..."""


def default_import_id(path: str) -> str:
    """A name for the import that a rerun on the same file finds again.

    From the size, the first and last 64 KiB and the base name: cheap on a
    multi-GB file, and a changed or different file gets another id.
    """
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        head = file.read(ID_SAMPLE_BYTES)
        file.seek(max(0, size - ID_SAMPLE_BYTES))
        tail = file.read(ID_SAMPLE_BYTES)
    digest = hashlib.sha256(b"%d\0" % size)
    digest.update(head)
    digest.update(tail)
    digest.update(os.fsencode(Path(path).name))
    return "file-" + digest.hexdigest()[:24]


class _CountingReader:
    """The input's bytes as stored (compressed for gzip), counted for the progress bar."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.bytes_read += len(data)
        return data


class Source:
    """One pass over the input; ``chunks(skip)`` yields whole-line NDJSON chunks.

    A file can be read again (one ``Source`` per attempt); stdin only once.
    ``lines`` counts the lines passed (skipped ones included), so after the
    last chunk it is the input's line count.
    """

    def __init__(self, path: str, fmt: Format = "auto") -> None:
        self.path = path
        self.format = fmt
        self.is_stdin = path == STDIN
        self.total_bytes: int | None = None if self.is_stdin else os.path.getsize(path)
        self.lines = 0
        self.started = False
        self.exhausted = False
        self._reader: _CountingReader | None = None

    @property
    def bytes_read(self) -> int:
        return self._reader.bytes_read if self._reader else 0

    def chunks(self, skip: int = 0) -> Iterator[bytes]:
        """Whole-line chunks of about 1 MiB from line ``skip + 1`` on.

        Raises ``SourceError`` where the input turns unreadable: the chunks
        before it are whole lines and can be imported.
        """
        if self.started:
            raise RuntimeError("a Source is read once")
        self.started = True
        stream = sys.stdin.buffer if self.is_stdin else open(self.path, "rb")  # noqa: SIM115
        try:
            self._reader = _CountingReader(stream)
            blocks = _decoded_blocks(self._reader)
            if self.format == "auto":
                self.format, blocks = _sniff(blocks)
            json = self.format == "json"
            pieces = _json_array_lines(blocks) if json else _ndjson_pieces(blocks)
            yield from self._skip_and_count(pieces, skip)
            self.exhausted = True
        finally:
            if not self.is_stdin:
                stream.close()

    def _skip_and_count(self, pieces: Iterator[bytes], skip: int) -> Iterator[bytes]:
        pending: list[bytes] = []
        size = 0
        mid_line = False  # the bytes read so far end inside a line
        try:
            for piece in pieces:
                if skip:
                    newlines = piece.count(b"\n")
                    if newlines < skip:
                        skip -= newlines
                        self.lines += newlines
                        mid_line = not piece.endswith(b"\n")
                        continue
                    cut = -1
                    for _ in range(skip):
                        cut = piece.index(b"\n", cut + 1)
                    self.lines += skip
                    skip = 0
                    piece = piece[cut + 1 :]
                    mid_line = False
                if not piece:
                    continue
                pending.append(piece)
                size += len(piece)
                mid_line = not piece.endswith(b"\n")
                if size >= READ_BYTES:
                    yield self._counted(pending)
                    pending, size = [], 0
        except SourceError:
            if pending:  # whole lines: still worth importing
                yield self._counted(pending)
            raise
        if pending:
            yield self._counted(pending)
        if mid_line:
            self.lines += 1  # a last line without "\n" is a line

    def _counted(self, pending: list[bytes]) -> bytes:
        chunk = pending[0] if len(pending) == 1 else b"".join(pending)
        self.lines += chunk.count(b"\n")
        return chunk


def _decoded_blocks(reader: _CountingReader) -> Iterator[bytes]:
    """The input's bytes in blocks, gunzipped when it starts with the gzip magic."""
    data = reader.read(READ_BYTES)
    if not data.startswith(GZIP_MAGIC):
        while data:
            yield data
            data = reader.read(READ_BYTES)
        return
    # The server's own incremental gunzip (several members, bounded steps).
    gunzip = GzipStream()
    try:
        while data:
            yield from gunzip.feed(data)
            data = reader.read(READ_BYTES)
        tail = gunzip.finish()
        if tail:
            yield tail
    except BodyError as exc:
        raise SourceError(str(exc)) from None


def _sniff(blocks: Iterator[bytes]) -> tuple[Format, Iterator[bytes]]:
    """A JSON array when the first non-blank byte is ``[``, else NDJSON.

    By content, not name: many ``.json`` exports are really NDJSON.
    """
    seen: list[bytes] = []
    fmt: Format = "ndjson"
    for block in blocks:
        seen.append(block)
        text = block[len(UTF8_BOM) :] if len(seen) == 1 and block.startswith(UTF8_BOM) else block
        stripped = text.lstrip(WHITESPACE)
        if stripped:
            fmt = "json" if stripped.startswith(b"[") else "ndjson"
            break

    def replay() -> Iterator[bytes]:
        yield from seen
        yield from blocks

    return fmt, replay()


def _ndjson_pieces(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """The blocks cut after their last newline: whole lines, plus the last line.

    A line longer than ``MAX_HELD_BYTES`` goes out in pieces instead of being
    held (the server refuses it as too long anyway).
    """
    carry = b""
    first = True
    for block in blocks:
        if first:
            first = False
            block = block.removeprefix(UTF8_BOM)
        data = carry + block if carry else block
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) > MAX_HELD_BYTES:
                yield data
                data = b""
            carry = data
            continue
        carry = data[cut + 1 :]
        yield data[: cut + 1]
    if carry:
        yield carry


def _json_array_lines(blocks: Iterator[bytes]) -> Iterator[bytes]:
    splitter = JsonArraySplitter()
    for block in blocks:
        yield from splitter.feed(block)
    yield from splitter.finish()


class JsonArraySplitter:
    """Splits a JSON array, fed in arbitrary pieces, into one line per element.

    Tracks only strings, escapes and nesting depth: each element is validated
    by the server, which then reports errors by element (line) number.
    ``feed`` returns output pieces: each complete element ends with ``\\n``;
    an element over ``MAX_HELD_BYTES`` is passed on in several pieces.
    """

    def __init__(self, max_held_bytes: int = MAX_HELD_BYTES) -> None:
        self._max_held = max_held_bytes
        self._buf = bytearray()
        self._pos = 0  # next byte to scan
        self._start = 0  # first byte of the current element
        self._depth = 0  # 1: inside the array, between or in top-level elements
        self._state: Literal["before", "inside", "after"] = "before"
        self._in_string = False  # the scan stopped inside a string
        self._partial = False  # part of the current element is already out
        self._fed = False
        self.elements = 0

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        self._fed = self._fed or bool(data)
        out: list[bytes] = []
        pos = self._pos
        if self._state == "before":
            if pos == 0 and UTF8_BOM.startswith(buf[:3]):
                if len(buf) < len(UTF8_BOM):
                    return out  # maybe a byte order mark: wait for the rest
                pos = len(UTF8_BOM)
            pos = _skip_blanks(buf, pos)
            if pos == len(buf):
                self._compact(pos)
                return out
            if buf[pos] != ord("["):
                raise SourceError(f"not a JSON array: starts with {bytes(buf[pos : pos + 20])!r}")
            self._state = "inside"
            self._depth = 1
            pos += 1
            self._start = pos
        depth = self._depth
        end = len(buf)
        while self._state == "inside":
            if self._in_string:
                rest = _STRING_REST.match(buf, pos)
                assert rest is not None  # matches the empty string at worst
                pos = rest.end()
                if rest.group(1) is None:
                    break  # still open: wait for more bytes
                self._in_string = False
            skipped = (_SKIP_TOP if depth == 1 else _SKIP_NESTED).match(buf, pos)
            assert skipped is not None
            pos = skipped.end()
            if pos == end:
                break
            byte = buf[pos]
            pos += 1
            if byte == _QUOTE:  # a string the buffer cuts off
                self._in_string = True
            elif byte in _OPEN:
                depth += 1
            elif byte in _CLOSE:
                depth -= 1
                if depth == 0:  # the array's own "]"
                    self._element(buf, pos - 1, out, last=True)
                    self._state = "after"
            else:  # a "," between top-level elements
                self._element(buf, pos - 1, out, last=False)
                self._start = pos
        self._depth = depth
        if self._state == "after":
            trailing = _skip_blanks(buf, pos)
            if trailing < len(buf):
                extra = bytes(buf[trailing : trailing + 20])
                raise SourceError(f"data after the end of the JSON array: {extra!r}")
            pos = len(buf)
        elif pos - self._start > self._max_held:
            piece = bytes(buf[self._start : pos])
            if not self._partial:
                piece = piece.lstrip(WHITESPACE)
            out.append(piece.translate(_NEWLINES_TO_SPACES))
            self._partial = True
            self._start = pos
        self._compact(pos)
        return out

    def finish(self) -> list[bytes]:
        if self._state == "inside":
            raise SourceError(f"the JSON array is cut off after element {self.elements}")
        if self._state == "before" and self._fed:
            raise SourceError("not a JSON array: the input is blank")
        return []

    def _element(self, buf: bytearray, end: int, out: list[bytes], *, last: bool) -> None:
        text = bytes(buf[self._start : end])
        # Whitespace at the start of a piece after a partial one may be in a string.
        text = text.rstrip(WHITESPACE) if self._partial else text.strip(WHITESPACE)
        if not self._partial and not text:
            if last and self.elements == 0:
                return  # []
            raise SourceError(
                f"malformed JSON array: an empty element after element {self.elements}"
            )
        self._partial = False
        self.elements += 1
        out.append(text.translate(_NEWLINES_TO_SPACES) + b"\n")

    def _compact(self, pos: int) -> None:
        # Keep only the current element's bytes (none outside the array).
        keep_from = self._start if self._state == "inside" else pos
        del self._buf[:keep_from]
        self._pos = pos - keep_from
        self._start = 0


def _skip_blanks(buf: bytearray, pos: int) -> int:
    while pos < len(buf) and buf[pos] in WHITESPACE:
        pos += 1
    return pos
