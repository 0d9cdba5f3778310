"""The SDK x call type -> stored table the README shows, as the SDK tests
observed it: ``EVENTBUNKER_SDK_TABLE=FILE`` appends their rows to FILE."""

from __future__ import annotations

import os
from pathlib import Path

ROWS: dict[tuple[str, str], bool] = {}


def record(sdk: str, call: str, stored: bool) -> None:
    ROWS[(sdk, call)] = stored


def write() -> None:
    path = os.environ.get("EVENTBUNKER_SDK_TABLE")
    if not path or not ROWS:
        return
    out = Path(path)
    lines = (
        []
        if out.exists() and out.stat().st_size
        else ["| SDK | call type | stored |", "|---|---|---|"]
    )
    lines += [f"| {sdk} | {call} | {'yes' if ok else 'no'} |" for (sdk, call), ok in ROWS.items()]
    with out.open("a") as f:
        f.write("\n".join(lines) + "\n")
    ROWS.clear()
