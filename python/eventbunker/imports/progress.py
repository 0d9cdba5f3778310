"""Import progress on stderr: ``rich``'s live bar on a terminal, plain lines in logs.

On a TTY a ``rich`` progress bar is redrawn in place (percent of the input
read, line, events/s, ETA), with notes printed above it; elsewhere (CI logs,
``2> file``) a plain line every few seconds, since redraws would pile up into
one unreadable line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, TextIO

from rich.console import Console
from rich.progress import BarColumn, TextColumn
from rich.progress import Progress as Bar

Mode = Literal["bar", "lines", "off"]

BAR_REDRAW_S = 0.2


def choose_mode(stream: TextIO, *, quiet: bool) -> Mode:
    if quiet:
        return "off"
    try:
        return "bar" if stream.isatty() else "lines"
    except ValueError:  # closed stream
        return "off"


class Progress:
    """Reports the import's position; ``update`` is cheap to call per chunk.

    Rates are measured from the first update after ``restart`` (a resumed
    attempt first skips committed lines fast, which must not inflate them).
    """

    def __init__(
        self,
        stream: TextIO,
        mode: Mode,
        total_bytes: int | None,
        *,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._mode = mode
        self._total = total_bytes or None
        self._every = BAR_REDRAW_S if mode == "bar" else max(interval_s, 0.0)
        self._now = clock
        # The bar shows at once; plain lines start after one interval.
        self._last_draw = float("-inf") if mode == "bar" else self._now()
        self._base: tuple[float, int, int] | None = None  # time, bytes, line
        self._bytes = 0
        self._line = 0
        self._bar: Bar | None = None
        if mode == "bar":
            console = Console(file=stream, highlight=False)
            # Redrawn by update() (no refresh thread): at most every BAR_REDRAW_S.
            self._bar = Bar(
                BarColumn(bar_width=24),
                TextColumn("{task.fields[figures]}", markup=False),
                console=console,
                auto_refresh=False,
                get_time=clock,
                # The summary goes to stdout as it is, never through the bar.
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._task = self._bar.add_task("import", total=self._total, figures="")

    def restart(self) -> None:
        """A new attempt: measure rates from its first chunk on."""
        self._base = None

    def update(self, bytes_read: int, line: int) -> None:
        self._bytes, self._line = bytes_read, line
        now = self._now()
        if self._base is None:
            self._base = (now, bytes_read, line)
        if self._mode == "off" or now - self._last_draw < self._every:
            return
        self._last_draw = now
        self._draw(now)

    def note(self, message: str) -> None:
        """A message on a line of its own (a retry, a warning), even when quiet."""
        text = f"eventbunker import: {message}"
        if self._bar is not None and self._bar.live.is_started:
            self._bar.console.print(text, markup=False)  # above the bar
            self._last_draw = float("-inf")  # redraw the bar at the next update
            return
        self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        """The final state (the bar stays on screen, ended by a newline)."""
        if self._bar is not None and self._base is not None:
            self._draw(self._now())
            self._bar.stop()

    def _draw(self, now: float) -> None:
        percent, rate, eta = self._figures(now)
        if self._bar is not None:
            figures = " ".join(
                part
                for part in (
                    f"{percent:5.1f}%" if percent is not None else "",
                    f"line {self._line:,}",
                    f"{rate:,.0f} events/s" if rate is not None else "",
                    f"ETA {_duration(eta)}" if eta is not None else "",
                )
                if part
            )
            self._bar.update(self._task, completed=self._bytes, figures=figures)
            if not self._bar.live.is_started:
                self._bar.start()
            self._bar.refresh()
            return
        parts = [f"line {self._line}"]
        if percent is not None:
            parts.insert(0, f"{percent:.1f}% read")
        if rate is not None:
            parts.append(f"{rate:.0f} events/s")
        if eta is not None:
            parts.append(f"ETA {_duration(eta)}")
        self._stream.write("eventbunker import: " + ", ".join(parts) + "\n")
        self._stream.flush()

    def _figures(self, now: float) -> tuple[float | None, float | None, float | None]:
        percent = min(100.0, 100.0 * self._bytes / self._total) if self._total else None
        rate = eta = None
        if self._base is not None:
            started, base_bytes, base_line = self._base
            elapsed = now - started
            if elapsed > 0.5:
                rate = (self._line - base_line) / elapsed
                byte_rate = (self._bytes - base_bytes) / elapsed
                if self._total and byte_rate > 0:
                    eta = max(0.0, self._total - self._bytes) / byte_rate
        return percent, rate, eta


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
