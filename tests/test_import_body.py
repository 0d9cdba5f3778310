"""The import body's stream handling: gunzip, whole-line chunks, skipping."""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventbunker.imports.body import BodyError, GzipStream, LineChunker, LongLine, skip_lines

MAX_LINE = 25


def chunked(data: bytes, cuts: list[int], chunk_bytes: int) -> list[bytes | LongLine]:
    chunker = LineChunker(chunk_bytes, MAX_LINE)
    out: list[bytes | LongLine] = []
    start = 0
    for cut in sorted(cuts):
        out += chunker.feed(data[start:cut])
        start = max(start, cut)
    out += chunker.feed(data[start:])
    out += chunker.finish()
    return out


def lines_of(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    return lines[:-1] if lines[-1] == b"" else lines


@given(
    lines=st.lists(st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"x")), max_size=30),
    trailing_newline=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=2_000), max_size=20),
    chunk_bytes=st.sampled_from([1, 16, 64, 10_000]),
)
def test_chunks_hold_the_lines_in_order_and_never_buffer_a_long_one(
    lines: list[bytes], trailing_newline: bool, cuts: list[int], chunk_bytes: int
) -> None:
    data = b"\n".join(lines) + (b"\n" if trailing_newline and lines else b"")
    out = chunked(data, cuts, chunk_bytes)
    seen: list[bytes | int] = []
    for item in out:
        if isinstance(item, LongLine):
            seen.append(item.size)
        else:
            assert item, "no empty chunk"
            # Every chunk but the last ends a line.
            assert item.endswith(b"\n") or item is out[-1]
            seen += lines_of(item)
    # A line over the limit arrives whole (when it was whole in one piece)
    # or as a LongLine of its size: either way, once and in its place.
    expected = [len(line) if len(line) > MAX_LINE else line for line in lines_of(data)]
    assert [len(s) if isinstance(s, bytes) and len(s) > MAX_LINE else s for s in seen] == expected


def test_a_line_over_the_limit_is_dropped_while_it_streams() -> None:
    chunker = LineChunker(1 << 20, 100)
    out = list(chunker.feed(b'{"a":1}\n' + b"x" * 150))
    assert out == [b'{"a":1}\n']
    # Its bytes are counted, not kept.
    assert list(chunker.feed(b"y" * 10_000)) == []
    assert list(chunker.feed(b'yy\n{"b":2}\n')) == [LongLine(10_152)]
    assert list(chunker.finish()) == [b'{"b":2}\n']


def test_whole_lines_drops_the_line_a_cut_went_through() -> None:
    chunker = LineChunker(1 << 20, 100)
    assert list(chunker.feed(b"a\nb\nhalf-a-li")) == []
    assert list(chunker.whole_lines()) == [b"a\nb\n"]
    assert list(chunker.finish()) == []


def test_gzip_members_in_a_row_and_any_split() -> None:
    raw = gzip.compress(b"a\n" * 1_000) + gzip.compress(b"b\n" * 10)
    stream = GzipStream()
    out = b"".join(part for i in range(0, len(raw), 7) for part in stream.feed(raw[i : i + 7]))
    stream.finish()
    assert out == b"a\n" * 1_000 + b"b\n" * 10


def test_a_bomb_inflates_in_bounded_steps() -> None:
    bomb = gzip.compress(b"\n" * (64 << 20))
    sizes = [len(part) for part in GzipStream().feed(bomb)]
    assert sum(sizes) == 64 << 20
    assert max(sizes) <= 4 << 20


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (gzip.compress(b"a\n" * 100)[:-4], "ends early"),
        (b"not gzip at all", "invalid gzip"),
    ],
)
def test_broken_gzip_is_a_body_error(data: bytes, message: str) -> None:
    stream = GzipStream()
    with pytest.raises(BodyError, match=message):
        list(stream.feed(data))
        stream.finish()


def test_skip_lines() -> None:
    assert skip_lines(b"a\nb\nc\n", 2) == (b"c\n", 2)
    assert skip_lines(b"a\nb\nc", 5) == (b"", 3)
    assert skip_lines(b"a\nb\n", 5) == (b"", 2)
    assert skip_lines(b"a\n", 0) == (b"a\n", 0)
