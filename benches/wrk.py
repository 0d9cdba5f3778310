"""wrk, the load generator of the benchmarks: one run, its figures parsed."""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass
class LoadResult:
    requests: int
    non_2xx: int
    seconds: float
    p50_ms: float  # NaN when wrk printed no such percentile (it leaves some out)
    p99_ms: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(found[1]) * _UNITS_MS[found[2]] if found else math.nan


def run_wrk(url: str, script: Path, duration: float, connections: int) -> LoadResult:
    """``wrk`` with 2 threads for ``duration`` seconds (whole seconds) on ``url``."""
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{int(duration)}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if total is None:
        raise SystemExit(f"wrk printed no request count:\n{out}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return LoadResult(
        requests=int(total[1]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        seconds=_ms(total[2] + total[3]) / 1000,
        p50_ms=_ms(latency.get("50", "")),
        p99_ms=_ms(latency.get("99", "")),
    )
