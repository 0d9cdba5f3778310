"""The SDK x call type -> stored table the README shows, as the SDK tests
observed it: the tests ``record()`` each call type they made, and
``EVENTBUNKER_SDK_TABLE=FILE`` appends their rows to FILE.

Run as a script, it runs those tests, prints the table with each SDK's
share of call types stored, and writes it into README.md between the
``sdk-table`` markers (exit status 1 unless every SDK is at 100 % and the tests pass):

    .venv/bin/python tests/sdk_table.py            # --no-readme: print only

The README's table is therefore never edited by hand; a test module whose
observations disagree with it fails at teardown (the README is stale).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TESTS = ["tests/test_compat_sdks.py", "tests/test_compat_browser.py"]
HEADER = ["| SDK | call type | stored |", "|---|---|---|"]
BEGIN = "<!-- sdk-table: written by tests/sdk_table.py from the SDK tests; do not edit -->"
END = "<!-- /sdk-table -->"
# The SDKs issue 12 names, in the table's order: one with no row was not
# tested, and counts as 0 %.
SDKS = [
    "Segment (segment-analytics-python)",
    "PostHog (posthog)",
    "Mixpanel (mixpanel)",
    "Amplitude (amplitude-analytics)",
    "@segment/analytics-next (browser)",
    "posthog-js (browser)",
    "mixpanel-browser (browser)",
    "@amplitude/analytics-browser (browser)",
]

Row = tuple[str, str, bool]
ROWS: dict[tuple[str, str], bool] = {}


def record(sdk: str, call: str, stored: bool) -> None:
    assert sdk in SDKS, f"{sdk!r} is not one of sdk_table.SDKS"
    ROWS[(sdk, call)] = stored


@contextmanager
def writing() -> Iterator[None]:
    """Around a test module's server: write the rows recorded in the block
    (``EVENTBUNKER_SDK_TABLE``), then check them against the README's table."""
    try:
        yield
    finally:
        rows = [(sdk, call, ok) for (sdk, call), ok in ROWS.items()]
        ROWS.clear()
        write(rows)
    if not os.environ.get("EVENTBUNKER_SDK_TABLE"):  # else the README is being written
        stale = [row for row in rows if row not in set(readme_rows())]
        assert not stale, f"README's SDK table says otherwise of {stale}: run tests/sdk_table.py"


def write(rows: list[Row]) -> None:
    path = os.environ.get("EVENTBUNKER_SDK_TABLE")
    if path and rows:
        with Path(path).open("a") as f:
            f.write("".join(f"{sdk}\t{call}\t{int(ok)}\n" for sdk, call, ok in rows))


def parse(lines: Iterable[str]) -> list[Row]:
    """The rows of a written table (``| sdk | call | yes/no |`` lines)."""
    rows = []
    for line in lines:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[2] in ("yes", "no"):
            rows.append((cells[0], cells[1], cells[2] == "yes"))
    return rows


def readme_rows() -> list[Row]:
    text = README.read_text()
    start, end = text.find(BEGIN), text.find(END)
    return parse(text[start:end].splitlines()) if 0 <= start < end else []


def render(rows: list[Row]) -> tuple[list[str], bool]:
    """The table (rows by SDK in ``SDKS``' order, calls as recorded) and the
    share stored per SDK; whether every SDK is at 100 %."""
    by_sdk: dict[str, list[Row]] = {sdk: [] for sdk in SDKS}
    for row in rows:
        by_sdk[row[0]].append(row)
    table = list(HEADER)
    table += [
        f"| {sdk} | {call} | {'yes' if ok else 'no'} |"
        for r in by_sdk.values()
        for sdk, call, ok in r
    ]
    summary, complete = [], True
    for sdk, calls in by_sdk.items():
        stored = sum(ok for _, _, ok in calls)
        share = stored / len(calls) if calls else 0.0
        complete &= share == 1.0
        summary.append(f"- {sdk}: {stored}/{len(calls)} call types stored ({share:.0%})")
    return [*table, "", *summary], complete


def write_readme(lines: list[str]) -> None:
    text = README.read_text()
    start, end = text.index(BEGIN), text.index(END)
    README.write_text(text[: start + len(BEGIN)] + "\n" + "\n".join(lines) + "\n" + text[end:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sdk-table-") as tmp:
        observed = Path(tmp) / "sdk-table.tsv"
        tests = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
            cwd=ROOT,
            env={**os.environ, "EVENTBUNKER_SDK_TABLE": str(observed)},
        )
        lines = observed.read_text().splitlines() if observed.exists() else []
    rows = [(sdk, call, ok == "1") for sdk, call, ok in (line.split("\t") for line in lines)]
    table, complete = render(rows)
    print("\n".join(table))
    if not args.no_readme:
        write_readme(table)
    return 0 if complete and tests.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
