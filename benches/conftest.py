"""Benchmarks (run only when asked: ``pytest benches/... --benchmark-only``).

Benchmarks record their figures in ``RESULTS`` (through the ``bench_results``
fixture); a summary table is printed at the end of the run.
"""

from __future__ import annotations

from typing import Any

import pytest

RESULTS: dict[str, Any] = {}


@pytest.fixture(scope="session")
def bench_results() -> dict[str, Any]:
    return RESULTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = RESULTS.get("summary_lines")
    if callable(lines):
        terminalreporter.section("enrichment benchmark summary")
        for line in lines():
            terminalreporter.write_line(line)
