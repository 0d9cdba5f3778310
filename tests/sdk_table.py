"""The SDK x call type -> stored table the README shows, as the SDK tests
observed it: ``EVENTBUNKER_SDK_TABLE=FILE`` appends their rows to FILE.

Run as a script, it runs those tests and prints the table with each SDK's
share of call types stored (exit status 1 unless every SDK is at 100 %):

    .venv/bin/python tests/sdk_table.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROWS: dict[tuple[str, str], bool] = {}
TESTS = ["tests/test_compat_sdks.py", "tests/test_compat_browser.py"]
HEADER = ["| SDK | call type | stored |", "|---|---|---|"]


def record(sdk: str, call: str, stored: bool) -> None:
    ROWS[(sdk, call)] = stored


@contextmanager
def writing() -> Iterator[None]:
    """Write the rows recorded in the ``with`` block (a test module's server)."""
    try:
        yield
    finally:
        write()


def write() -> None:
    path = os.environ.get("EVENTBUNKER_SDK_TABLE")
    if not path or not ROWS:
        return
    out = Path(path)
    lines = [] if out.exists() and out.stat().st_size else list(HEADER)
    lines += [f"| {sdk} | {call} | {'yes' if ok else 'no'} |" for (sdk, call), ok in ROWS.items()]
    with out.open("a") as f:
        f.write("\n".join(lines) + "\n")
    ROWS.clear()


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="sdk-table-") as tmp:
        table = Path(tmp) / "sdk-table.md"
        tests = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
            cwd=root,
            env={**os.environ, "EVENTBUNKER_SDK_TABLE": str(table)},
        )
        rows = table.read_text().splitlines() if table.exists() else []
    print("\n".join(rows))
    stored: dict[str, list[bool]] = {}
    for row in rows[len(HEADER) :]:
        sdk, _call, ok = (cell.strip() for cell in row.strip("|").split("|"))
        stored.setdefault(sdk, []).append(ok == "yes")
    print()
    for sdk, calls in stored.items():
        print(f"{sdk}: {sum(calls)}/{len(calls)} call types stored ({sum(calls) / len(calls):.0%})")
    complete = bool(stored) and all(all(calls) for calls in stored.values())
    return 0 if complete and tests.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
