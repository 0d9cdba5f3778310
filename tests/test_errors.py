"""The error catalogue: one status per code, the same as the Rust hot path's,
and every refusal in the Python code taken from it."""

from __future__ import annotations

import gzip
import re
import time
from pathlib import Path

import pytest

from eventbunker import _native
from eventbunker.errors import ErrorCode, Refusal

ROOT = Path(__file__).resolve().parent.parent
RUST_ERRORS = ROOT / "rust" / "src" / "ingest" / "error.rs"

LIMITS = _native.Limits(max_body_bytes=1000, max_batch_events=2, max_depth=4, max_string_bytes=50)
# One body that makes the Rust side raise each of its codes.
TRIGGERS: dict[str, tuple[bytes, bool]] = {
    "body_too_large": (gzip.compress(b'{"event_name": "' + b"a" * 5000 + b'"}'), True),
    "invalid_gzip": (b"not gzip at all", True),
    "malformed_json": (b'{"event_name": ', False),
    "too_deep": (b'{"event_name": "x", "p": [[[[[[1]]]]]]}', False),
    "string_too_long": (b'{"event_name": "' + b"a" * 60 + b'"}', False),
    "batch_too_large": (b'[{"event_name": "a"}, {"event_name": "b"}, {"event_name": "c"}]', False),
    "invalid_event": (b'{"event_name": 5}', False),
}


def rust_codes() -> set[str]:
    """The codes of the Rust enum, read from its `as_str` table."""
    source = RUST_ERRORS.read_text()
    codes = set(re.findall(r'ErrorCode::\w+ => "([a-z_]+)"', source))
    assert len(codes) >= 7, f"cannot read the codes of {RUST_ERRORS}"
    return codes


def test_every_rust_code_is_in_the_catalogue() -> None:
    catalogue = {code.value for code in ErrorCode}
    assert rust_codes() <= catalogue, "add the new Rust code to ErrorCode (errors.py)"
    assert rust_codes() == set(TRIGGERS), "add a body that raises the new code to TRIGGERS"


@pytest.mark.parametrize("code", sorted(TRIGGERS))
def test_rust_answers_each_code_with_the_catalogue_status(code: str) -> None:
    body, gzipped = TRIGGERS[code]
    with pytest.raises(_native.IngestError) as raised:
        _native.prepare_events(
            body,
            gzip=gzipped,
            project_id=1,
            customer_identifier=None,
            received_at_us=time.time_ns() // 1000,
            peer_ip=None,
            user_agent=None,
            referer=None,
            limits=LIMITS,
        )
    assert raised.value.code == code
    assert raised.value.status == ErrorCode[code.upper()].status


def test_refusal_takes_status_and_retry_after_from_the_catalogue() -> None:
    refusal = Refusal(ErrorCode.STORAGE_UNAVAILABLE)
    assert (refusal.status, refusal.code, refusal.retry_after) == (503, "storage_unavailable", True)
    assert refusal.message == ErrorCode.STORAGE_UNAVAILABLE.default_message
    refusal = Refusal(ErrorCode.IMPORT_GAP, "send from line 3")
    assert (refusal.status, refusal.message, refusal.retry_after) == (
        409,
        "send from line 3",
        False,
    )
    assert Refusal(ErrorCode.RATE_LIMITED).retry_after


def test_a_framework_status_is_answered_with_a_catalogued_code() -> None:
    """What Litestar raises with a status only gets the catalogue's code of
    that status, and a status the catalogue does not have becomes 400 or 500."""
    for status in (400, 404, 405, 408, 413, 415, 429, 500, 503):
        assert ErrorCode.for_status(status).status == status
    assert ErrorCode.for_status(413) == ErrorCode.BODY_TOO_LARGE
    assert ErrorCode.for_status(406) == ErrorCode.INVALID_REQUEST
    assert ErrorCode.for_status(502) == ErrorCode.INTERNAL_ERROR


# A refusal whose first argument is not a catalogue code: Refusal(400, ...),
# Refusal("code", ...) (mypy catches the rest).
LITERAL_REFUSAL = re.compile(r"Refusal\(\s*[\d\"']")


def test_every_refusal_in_the_code_takes_its_code_from_the_catalogue() -> None:
    sources = sorted((ROOT / "python" / "eventbunker").rglob("*.py"))
    assert sources
    wrong = [
        f"{path.relative_to(ROOT)}: {found}"
        for path in sources
        for found in LITERAL_REFUSAL.findall(path.read_text())
    ]
    assert not wrong, "use ErrorCode (errors.py), or add the code there: " + ", ".join(wrong)
