"""``eventbunker import FILE``: sources, progress and the client, as a user runs them.

The unit tests of the readers need no server; the others run the real
command in a subprocess against the real server and TimescaleDB, kill it
mid-import and check that a rerun stores every event exactly once.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pty
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from conftest import Project, Server, free_port, start_server, stop_server
from eventbunker.imports import sources
from eventbunker.imports.progress import Progress, choose_mode
from eventbunker.imports.sources import JsonArraySplitter, Source, SourceError, default_import_id

SUMMARY_KEYS = {
    "import_id",
    "file",
    "target",
    "status",
    "message",
    "accepted",
    "rejected",
    "duplicates",
    "skipped",
    "lines",
    "committed_lines",
    "errors",
    "seconds",
    "events_per_second",
    "resumed_from",
    "attempts",
    "import",
}
RESUME_EVENTS = 300_000  # the server's first commit comes after ~1 s
COMMAND_TIMEOUT_S = 60

# Strings that a naive splitter would cut: brackets, braces, commas, escaped
# quotes and backslashes, a backslash right before the closing quote.
TRICKY = [
    {"event_name": "a]b", "s": '[{"nested": "]}"}]', "q": 'say "hi", [ok]'},
    {"event_name": "back\\slash", "s": "ends with a backslash \\", "t": "\\\\\\"},
    {"event_name": "nest", "deep": {"a": [1, [2, [3, {"b": "},{"}]]], "c": None}, "e": []},
    {"event_name": "unicode", "s": "caf\u00e9 \u2603 \U0001f600", "esc": '\t\n\r"\u0001'},
    {"event_name": "num", "value": -1.5e3, "empty": {}, "flag": False},
]


# --- helpers -------------------------------------------------------------------


def run_import(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], str]:
    result = subprocess.run(
        [sys.executable, "-m", "eventbunker", "import", *args],
        input=stdin,
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
        env={**os.environ, **(env or {})},
    )
    return result.returncode, summary_of(result.stdout), result.stderr.decode()


def summary_of(stdout: bytes) -> dict[str, Any]:
    lines = stdout.decode().strip().splitlines()
    assert len(lines) == 1, f"one JSON summary on stdout, got {stdout!r}"
    summary = orjson.loads(lines[0])
    assert isinstance(summary, dict)
    return summary


def to_server(server: Server, project: Project) -> list[str]:
    return ["--url", server.url, "--key", project.write_key]


def stored_ns(db: psycopg.Connection[Any], project_id: int) -> tuple[int, int]:
    row = db.execute(
        "SELECT count(*), count(DISTINCT properties->>'n') FROM events WHERE project_id = %s",
        (project_id,),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def properties(db: psycopg.Connection[Any], project_id: int) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT event_name, properties FROM events WHERE project_id = %s"
        " ORDER BY (properties->>'n')::int",
        (project_id,),
    ).fetchall()
    return [{"event_name": name, **props} for name, props in rows]


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(event) + b"\n" for event in events)


def split(text: bytes, step: int) -> list[bytes]:
    splitter = JsonArraySplitter()
    out: list[bytes] = []
    for i in range(0, len(text), step):
        out += splitter.feed(text[i : i + step])
    return out + splitter.finish()


def read_all(path: Path | str, skip: int = 0, fmt: sources.Format = "auto") -> tuple[bytes, Source]:
    source = Source(str(path), fmt)
    chunks = list(source.chunks(skip))
    assert all(chunk.endswith(b"\n") for chunk in chunks[:-1]), "whole-line chunks"
    return b"".join(chunks), source


# --- the JSON array splitter (no server) -------------------------------------


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 1 << 20])
def test_splitter_puts_each_element_on_one_line(step: int) -> None:
    events = [*TRICKY, 42, "a string, with [brackets]", None, [1, {"x": "]"}]]
    text = json.dumps(events, indent=2).encode()
    assert b"\n" in text
    out = b"".join(split(text, step))
    lines = out.split(b"\n")
    assert lines.pop() == b""
    assert [json.loads(line) for line in lines] == events


def test_splitter_keeps_strings_and_whitespace() -> None:
    text = b' \r\n[ {"a": "x\\"y"} ,\r\n\t{"b":\n[1,\n2]} ] \n'
    assert split(text, 5) == [b'{"a": "x\\"y"}\n', b'{"b": [1, 2]}\n']
    assert split(b"[]", 1) == []
    assert split(b"\xef\xbb\xbf [ ] ", 1) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'{"event_name": "x"}', "not a JSON array"),
        (b"  \n ", "blank"),
        (b'[{"a": 1}] {"b": 2}', "data after the end"),
        (b'[{"a": 1}, {"b": "cut', "cut off after element 1"),
        (b"[1,,2]", "empty element after element 1"),
        (b"[1,2,]", "empty element after element 2"),
    ],
)
def test_splitter_refuses_what_is_not_an_array(text: bytes, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        split(text, 3)


def test_splitter_passes_a_giant_element_in_pieces() -> None:
    big = {"event_name": "big", "s": "x" * 5000}
    text = json.dumps([{"n": 1}, big, {"n": 3}]).encode()
    splitter = JsonArraySplitter(max_held_bytes=1000)
    pieces: list[bytes] = []
    for i in range(0, len(text), 300):
        pieces += splitter.feed(text[i : i + 300])
    pieces += splitter.finish()
    assert len(pieces) > 3  # the big one came in several pieces, never held whole
    lines = b"".join(pieces).split(b"\n")[:-1]
    assert [json.loads(line) for line in lines] == [{"n": 1}, big, {"n": 3}]


# --- sources: formats, gzip, skipping (no server) ----------------------------


def test_ndjson_lines_are_counted_like_the_server(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_bytes(b'{"n": 1}\r\n\r\n{"n": 3}\n\n{"n": 5}')  # CRLF, blanks, no final \n
    data, source = read_all(path)
    assert data == path.read_bytes()
    assert (source.lines, source.exhausted, source.format) == (5, True, "ndjson")
    assert source.bytes_read == source.total_bytes == path.stat().st_size
    for skip, rest in [(1, b'\r\n{"n": 3}\n\n{"n": 5}'), (3, b'\n{"n": 5}'), (4, b'{"n": 5}')]:
        data, source = read_all(path, skip)
        assert (data, source.lines) == (rest, 5)
    for skip in (5, 6, 100):
        data, source = read_all(path, skip)
        assert (data, source.lines) == (b"", 5)


def test_skipping_across_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "READ_BYTES", 64)  # many blocks, lines across them
    lines = [orjson.dumps({"n": i, "pad": "p" * (i % 50)}) for i in range(500)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    for skip in (0, 1, 63, 250, 499, 500):
        data, source = read_all(path, skip)
        assert data == b"".join(line + b"\n" for line in lines[skip:])
        assert source.lines == 500


def test_gzip_is_told_by_its_magic_not_its_name(tmp_path: Path) -> None:
    body = ndjson([{"event_name": "e", "n": i} for i in range(1000)])
    disguised = tmp_path / "looks-plain.ndjson"
    disguised.write_bytes(gzip.compress(body[:500]) + gzip.compress(body[500:]))  # 2 members
    data, source = read_all(disguised)
    assert (data, source.lines) == (body, 1000)
    assert source.bytes_read == disguised.stat().st_size  # compressed bytes: the % shown
    plain = tmp_path / "looks-gzipped.ndjson.gz"
    plain.write_bytes(body)
    assert read_all(plain, 10)[0] == b"".join(body.splitlines(keepends=True)[10:])


def test_gzip_cut_off_raises_after_the_whole_lines(tmp_path: Path) -> None:
    body = ndjson([{"event_name": "e", "n": i, "r": random.random()} for i in range(20000)])
    packed = gzip.compress(body)
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(packed[: len(packed) // 2])
    source = Source(str(path))
    got = b""
    with pytest.raises(SourceError, match="cut off"):
        for chunk in source.chunks():
            got += chunk
    assert got.endswith(b"\n") and body.startswith(got)


def test_json_arrays_are_sniffed_and_skipped_by_element(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(TRICKY, indent=4).encode())
    data, source = read_all(path)
    assert source.format == "json"
    assert [json.loads(line) for line in data.splitlines()] == TRICKY
    data, source = read_all(path, 3)
    assert [json.loads(line) for line in data.splitlines()] == TRICKY[3:]
    assert source.lines == len(TRICKY)
    ndjson_named_json = tmp_path / "really-ndjson.json"
    ndjson_named_json.write_bytes(ndjson(TRICKY))
    assert read_all(ndjson_named_json)[1].format == "ndjson"
    with pytest.raises(SourceError, match="not a JSON array"):
        read_all(ndjson_named_json, fmt="json")


def test_default_import_id_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson"
    path.write_bytes(b'{"event_name": "e"}\n' * 10000)
    first = default_import_id(str(path))
    assert re.fullmatch(r"file-[0-9a-f]{24}", first)
    assert default_import_id(str(path)) == first
    copy = tmp_path / "b.ndjson"
    copy.write_bytes(path.read_bytes())
    assert default_import_id(str(copy)) != first  # the name counts
    path.write_bytes(path.read_bytes() + b'{"event_name": "f"}\n')
    assert default_import_id(str(path)) != first


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def without_ansi(text: str) -> str:
    """``text`` without its terminal control sequences (colours, line erases)."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_progress_plain_lines_and_bar() -> None:
    now = [100.0]
    plain = Stream(tty=False)
    progress = Progress(plain, choose_mode(plain, quiet=False), 1000, clock=lambda: now[0])
    progress.update(100, 10)
    now[0] += 4.0
    progress.update(300, 30)
    assert plain.getvalue() == ""  # every 5 s only
    now[0] += 1.0
    progress.update(500, 50)
    progress.close()
    assert plain.getvalue() == "eventbunker import: 50.0% read, line 50, 8 events/s, ETA 6s\n"

    bar = Stream(tty=True)
    progress = Progress(bar, choose_mode(bar, quiet=False), 1000, clock=lambda: now[0])
    progress.update(250, 25)
    progress.note("retrying")
    now[0] += 60.0
    progress.update(400, 2025)
    progress.close()
    # rich's live bar: each frame redrawn over the last (\r), the note above it.
    frames = without_ansi(bar.getvalue()).split("\r")
    assert frames[0] == "━━━━━━╺━━━━━━━━━━━━━━━━━  25.0% line 25"
    assert "eventbunker import: retrying\n━━━━━━╺━━━━━━━━━━━━━━━━━  25.0% line 25" in frames
    assert frames[-1] == "━━━━━━━━━╸━━━━━━━━━━━━━━  40.0% line 2,025 33 events/s ETA 4m00s\n"
    assert choose_mode(bar, quiet=True) == "off"


# --- the command against the real server ---------------------------------------


def test_plain_file_with_crlf_and_blank_lines(server: Server, project: Project, db, tmp_path):
    path = tmp_path / "events.ndjson"
    events = [{"event_name": "crlf", "n": i, "plan": "pro"} for i in range(5)]
    lines = [orjson.dumps(e) for e in events]
    path.write_bytes(
        lines[0] + b"\r\n\r\n" + lines[1] + b"\n   \n" + b"\r\n".join(lines[2:])  # no final EOL
    )
    code, summary, stderr = run_import(str(path), *to_server(server, project), "--quiet")
    assert code == 0, stderr
    assert stderr == ""
    assert set(summary) == SUMMARY_KEYS
    assert summary["import_id"] == default_import_id(str(path))
    assert summary["file"] == str(path)
    assert summary["status"] == "complete" and summary["message"] is None
    assert (summary["accepted"], summary["rejected"], summary["duplicates"]) == (5, 0, 0)
    # crlf, blank, n1, "   ", n2, n3, n4 (no final newline): 7 lines
    assert (summary["lines"], summary["committed_lines"], summary["skipped"]) == (7, 7, 0)
    assert (summary["resumed_from"], summary["attempts"], summary["errors"]) == (1, 1, [])
    assert summary["import"] == {
        "accepted": 5,
        "rejected": 0,
        "duplicates": 0,
        "committed_lines": 7,
        "errors": [],
    }
    assert summary["seconds"] > 0 and summary["events_per_second"] > 0
    assert properties(db, project.id) == events

    # The same command again: all committed, nothing sent, nothing stored twice.
    code, again, _ = run_import(str(path), *to_server(server, project), "--quiet")
    assert code == 0
    assert (again["accepted"], again["skipped"], again["resumed_from"]) == (0, 7, 8)
    assert (again["attempts"], again["lines"], again["committed_lines"]) == (0, 7, 7)
    assert stored_ns(db, project.id) == (5, 5)


@pytest.mark.parametrize("upload_gzip", [False, True])
def test_gzip_file_and_gzip_upload(server, project, db, tmp_path, upload_gzip: bool) -> None:
    events = [{"event_name": "gz", "n": i, "text": "x" * (i % 100)} for i in range(3000)]
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(ndjson(events)))
    extra = ["--gzip"] if upload_gzip else []
    code, summary, stderr = run_import(str(path), *to_server(server, project), *extra)
    assert code == 0, stderr
    assert (summary["accepted"], summary["lines"], summary["committed_lines"]) == (3000,) * 3
    assert stored_ns(db, project.id) == (3000, 3000)


def test_json_array_file(server, project, db, tmp_path) -> None:
    events = [{**event, "n": n} for n, event in enumerate(TRICKY)]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(events, indent=2, ensure_ascii=False), encoding="utf-8")
    code, summary, stderr = run_import(str(path), *to_server(server, project))
    assert code == 0, stderr
    assert (summary["accepted"], summary["rejected"], summary["lines"]) == (5, 0, 5)
    assert properties(db, project.id) == events


def test_invalid_lines_are_reported_by_line_number(server, project, db, tmp_path) -> None:
    bad = {17: b"{not json", 2500: b'{"n": 2500}', 7777: b'{"event_name": ""}', 10000: b"[1, 2]"}
    lines = [bad.get(i, orjson.dumps({"event_name": "ok", "n": i})) for i in range(1, 10001)]
    path = tmp_path / "ten-thousand.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    code, summary, stderr = run_import(str(path), *to_server(server, project))
    assert code == 0, stderr  # all lines processed: rejections are in the summary
    assert (summary["accepted"], summary["rejected"]) == (9996, 4)
    assert (summary["lines"], summary["committed_lines"]) == (10000, 10000)
    assert summary["status"] == "complete"
    assert summary["message"] == "4 line(s) rejected: see errors"
    assert "4 line(s) rejected" in stderr
    assert [error["line"] for error in summary["errors"]] == sorted(bad)
    assert all(error["message"] for error in summary["errors"])
    assert stored_ns(db, project.id) == (9996, 9996)

    # --fail-on-rejected: the same import again (nothing re-sent), exit 3.
    code, summary, _ = run_import(str(path), *to_server(server, project), "--fail-on-rejected")
    assert code == 3
    assert summary["import"]["rejected"] == 4


def test_a_line_over_the_limit_is_rejected_by_number(server, project, db, tmp_path) -> None:
    huge = orjson.dumps({"event_name": "huge", "s": "h" * (2 << 20)})
    path = tmp_path / "huge.ndjson"
    path.write_bytes(ndjson([{"event_name": "ok", "n": 1}]) + huge + b"\n" + b'{"event_name":"ok"}')
    code, summary, stderr = run_import(str(path), *to_server(server, project))
    assert code == 0, stderr
    assert (summary["accepted"], summary["rejected"], summary["lines"]) == (2, 1, 3)
    assert [error["line"] for error in summary["errors"]] == [2]


def test_a_broken_json_array_imports_what_precedes(server, project, db, tmp_path) -> None:
    events = [{"event_name": "cut", "n": n} for n in range(2000)]
    text = json.dumps(events, indent=1).encode()
    path = tmp_path / "cut.json"
    path.write_bytes(text[: text.index(b'"n": 1500')])  # cut inside element 1501
    code, summary, stderr = run_import(str(path), *to_server(server, project))
    assert code == 1
    assert summary["status"] == "failed"
    assert "cut off after element 1500" in summary["message"] and "cut off" in stderr
    assert (summary["accepted"], summary["committed_lines"]) == (1500, 1500)
    assert stored_ns(db, project.id) == (1500, 1500)


def test_stdin_with_an_import_id(server, project, db) -> None:
    body = ndjson([{"event_name": "stdin", "n": i} for i in range(100)])
    args = ["-", *to_server(server, project), "--import-id", "stdin-test.1"]
    code, summary, stderr = run_import(*args, stdin=body)
    assert code == 0, stderr
    assert (summary["import_id"], summary["file"], summary["accepted"]) == (
        "stdin-test.1",
        "-",
        100,
    )
    code, summary, _ = run_import(*args, stdin=body)  # piped again: resumes, all committed
    assert (code, summary["accepted"], summary["skipped"]) == (0, 0, 100)
    assert stored_ns(db, project.id) == (100, 100)


def test_key_and_url_from_the_environment(server, project, db, tmp_path) -> None:
    path = tmp_path / "env.ndjson"
    path.write_bytes(ndjson([{"event_name": "env", "n": 1}]))
    env = {"EVENTBUNKER_URL": server.url, "EVENTBUNKER_KEY": project.write_key}
    code, summary, stderr = run_import(str(path), env=env)
    assert code == 0, stderr
    assert summary["accepted"] == 1


def test_refusals_stop_with_a_clear_message(server, project, tmp_path) -> None:
    path = tmp_path / "a.ndjson"
    path.write_bytes(ndjson([{"event_name": "e", "n": 1}]))
    code, summary, stderr = run_import(str(path), "--url", server.url, "--key", "ebw_nope")
    assert code == 1
    assert summary["status"] == "failed"
    assert "401" in summary["message"] and "401" in stderr
    code, summary, _ = run_import(str(path), "--url", server.url, "--key", project.query_key)
    assert (code, summary["status"]) == (1, "failed")
    assert "403" in summary["message"]
    code, summary, _ = run_import(str(tmp_path / "missing.ndjson"), *to_server(server, project))
    assert code == 1 and "cannot read" in summary["message"]
    result = subprocess.run(
        [sys.executable, "-m", "eventbunker", "import", str(path), "--url", server.url],
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
        env={k: v for k, v in os.environ.items() if k != "EVENTBUNKER_KEY"},
    )
    assert result.returncode == 2 and b"write key" in result.stderr


def test_gives_up_after_its_retries_when_nothing_listens(project, tmp_path) -> None:
    path = tmp_path / "a.ndjson"
    path.write_bytes(ndjson([{"event_name": "e", "n": 1}]))
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code, summary, stderr = run_import(str(path), "--url", url, "--key", "k", "--retries", "2")
    assert code == 1
    assert time.monotonic() - started < 15  # backoff 0.5 s, 1 s
    assert summary["message"].startswith("giving up after 3 failed attempts")
    assert stderr.count("retrying in") == 2


def test_plain_progress_lines_when_not_a_tty(server, project, tmp_path) -> None:
    path = tmp_path / "progress.ndjson"
    path.write_bytes(ndjson([{"event_name": "p", "n": i, "pad": "x" * 200} for i in range(60000)]))
    args = [str(path), *to_server(server, project), "--progress-interval", "0.05"]
    code, summary, stderr = run_import(*args)
    assert code == 0, stderr
    assert summary["accepted"] == 60000
    assert "\r" not in stderr
    lines = stderr.splitlines()
    assert lines, "at least one progress line"
    pattern = r"eventbunker import: \d+\.\d% read, line \d+(, \d+ events/s)?(, ETA \S+)?"
    assert all(re.fullmatch(pattern, line) for line in lines), lines


def test_progress_bar_on_a_tty(server, project, tmp_path) -> None:
    path = tmp_path / "bar.ndjson"
    path.write_bytes(
        ndjson([{"event_name": "bar", "n": i, "pad": "x" * 200} for i in range(30000)])
    )
    master, slave = pty.openpty()
    output = bytearray()

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            output.extend(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    result = subprocess.run(
        [sys.executable, "-m", "eventbunker", "import", str(path), *to_server(server, project)],
        stdout=subprocess.PIPE,
        stderr=slave,
        timeout=COMMAND_TIMEOUT_S,
    )
    os.close(slave)
    reader.join(5)
    os.close(master)
    assert result.returncode == 0
    assert summary_of(result.stdout)["accepted"] == 30000
    text = without_ansi(output.decode())
    assert "\r━" in text and "100.0% line 30,000" in text
    assert text.endswith("\n")


@pytest.fixture
def resume_file(tmp_path: Path) -> Path:
    """300 000 events without event_id, each with a unique ``n``."""
    path = tmp_path / "resume.ndjson"
    with path.open("wb") as file:
        for start in range(0, RESUME_EVENTS, 10000):
            file.write(
                b"".join(
                    b'{"event_name":"resume","n":%d,"pad":"%b"}\n' % (n, b"r" * (n % 40))
                    for n in range(start, start + 10000)
                )
            )
    return path


def committed(server: Server, project: Project, import_id: str) -> int:
    response = httpx.get(
        f"{server.url}/v1/events/import/{import_id}",
        headers={"X-Api-Key": project.write_key},
        timeout=5,
    )
    return int(response.json()["committed_lines"]) if response.status_code == 200 else 0


def start_import(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "eventbunker", "import", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # SIGINT as a terminal's Ctrl-C delivers it even when the suite runs
        # in a background job: bash starts those with SIGINT ignored (SigIgn
        # 0x7 under `(nohup bash -c ... &)`), the import inherits that,
        # Python then raises no KeyboardInterrupt, and the import ran to exit 0.
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_commit(
    server: Server, project: Project, import_id: str, process: subprocess.Popen[bytes]
) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = committed(server, project, import_id)
        if done:
            return done
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    raise AssertionError("nothing committed within 30 s")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_resume_after_a_kill_stores_each_event_once(
    server, project, db, resume_file: Path, how: signal.Signals
) -> None:
    args = [str(resume_file), *to_server(server, project), "--quiet"]
    import_id = default_import_id(str(resume_file))
    process = start_import(*args)
    at_kill = wait_for_commit(server, project, import_id, process)
    process.send_signal(how)
    stdout, stderr = process.communicate(timeout=30)
    assert at_kill < RESUME_EVENTS, "the import ended before the kill: make the file bigger"
    if how == signal.SIGINT:
        assert process.returncode == 130, (stdout[-600:], stderr[-600:])
        interrupted = summary_of(stdout)
        assert interrupted["status"] == "interrupted"
        assert "run the same command again to resume" in interrupted["message"]
        assert b"run the same command again" in stderr
        assert 0 < interrupted["committed_lines"] < RESUME_EVENTS
    else:
        assert process.returncode == -signal.SIGKILL

    code, summary, stderr_text = run_import(*args)
    assert code == 0, stderr_text
    assert summary["status"] == "complete"
    assert summary["resumed_from"] > 1
    assert summary["skipped"] == summary["resumed_from"] - 1
    assert (summary["lines"], summary["committed_lines"]) == (RESUME_EVENTS, RESUME_EVENTS)
    assert summary["import"]["accepted"] == RESUME_EVENTS
    assert summary["accepted"] + summary["skipped"] == RESUME_EVENTS
    assert stored_ns(db, project.id) == (RESUME_EVENTS, RESUME_EVENTS)


@pytest.fixture
def restartable(database_url: str, tmp_path: Path) -> Iterator[list[Server]]:
    servers: list[Server] = []
    yield servers
    for server in servers:
        stop_server(server)


def test_server_restart_mid_import_is_retried_and_resumed(
    database_url, restartable: list[Server], project, db, resume_file: Path, tmp_path
) -> None:
    """Nothing listens at first, then the server dies mid-body: one run still
    imports every line once (connection refused and reset are retried)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    import_id = default_import_id(str(resume_file))
    process = start_import(str(resume_file), "--url", url, "--key", project.write_key)
    time.sleep(0.8)  # connection refused, at least once
    restartable.append(start_server(database_url, tmp_path, "--workers", "1", port=port))
    first = restartable[-1]
    at_kill = wait_for_commit(first, project, import_id, process)
    assert at_kill < RESUME_EVENTS
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait()
    restartable.append(start_server(database_url, tmp_path, "--workers", "1", port=port))
    stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT_S)
    assert process.returncode == 0, stderr.decode()
    summary = summary_of(stdout)
    assert summary["attempts"] >= 2
    assert summary["resumed_from"] == 1
    assert summary["committed_lines"] == RESUME_EVENTS
    assert summary["accepted"] == RESUME_EVENTS
    assert b"retrying in" in stderr
    assert stored_ns(db, project.id) == (RESUME_EVENTS, RESUME_EVENTS)


def test_direct_database_mode(database_url, project, db, tmp_path) -> None:
    path = tmp_path / "direct.ndjson"
    path.write_bytes(ndjson([{"event_name": "direct", "n": i} for i in range(1000)]) + b"{bad\n")
    args = [str(path), "--database-url", database_url, "--key", project.write_key]
    code, summary, stderr = run_import(*args)
    assert code == 0, stderr
    assert summary["target"] == "database"
    assert (summary["accepted"], summary["rejected"], summary["lines"]) == (1000, 1, 1001)
    assert [error["line"] for error in summary["errors"]] == [1001]
    code, summary, _ = run_import(*args)
    assert (code, summary["accepted"], summary["skipped"]) == (0, 0, 1001)
    assert stored_ns(db, project.id) == (1000, 1000)


def test_managed_cluster_mode(tmp_path: Path) -> None:
    """``--data-dir``, like the admin commands: the cluster a server would run."""
    data_dir = str(tmp_path / "data")
    created = subprocess.run(
        [sys.executable, "-m", "eventbunker", "project", "create", "p", "--data-dir", data_dir],
        capture_output=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr.decode()
    key = orjson.loads(created.stdout)["keys"]["write"]
    path = tmp_path / "managed.ndjson"
    path.write_bytes(ndjson([{"event_name": "managed", "n": i} for i in range(10)]))
    code, summary, stderr = run_import(str(path), "--data-dir", data_dir, "--key", key)
    assert code == 0, stderr
    assert (summary["target"], summary["accepted"]) == ("database", 10)
