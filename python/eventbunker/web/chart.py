"""A daily bar chart as plain geometry, drawn as inline SVG by the template."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

WIDTH = 1000
HEIGHT = 250
LEFT = 56  # room for the y-axis labels
RIGHT = 4
BOTTOM = 30  # room for the x-axis labels
TOP = 20  # half a label above the top grid line


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: date
    value: int


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    text: str
    anchor: str  # SVG text-anchor: the last label ends at the right edge


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    left: int
    plot_bottom: float
    bars: list[Bar]
    ticks: list[Tick]
    labels: list[Label]
    total: int


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if factor * step >= value:
                return factor * step
        step *= 10


def short_number(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:g}M"
    if n >= 1_000:
        return f"{n / 1_000:g}k"
    return str(n)


def daily_chart(days: list[tuple[date, int]]) -> Chart:
    top = nice_ceiling(max((v for _, v in days), default=0))
    plot_height = HEIGHT - TOP - BOTTOM
    plot_bottom = float(HEIGHT - BOTTOM)
    slot = (WIDTH - LEFT - RIGHT) / max(len(days), 1)
    gap = min(4.0, slot * 0.2)
    bars = []
    labels = []
    for i, (day, value) in enumerate(days):
        height = plot_height * value / top
        x = LEFT + i * slot + gap / 2
        # A day with writes stays visible even beside a much larger one.
        if value > 0:
            height = max(height, 1.5)
        bars.append(Bar(x, plot_bottom - height, slot - gap, height, day, value))
        if i == len(days) - 1:
            labels.append(Label(x + slot - gap, day.strftime("%b %-d"), "end"))
        elif (len(days) - 1 - i) % 7 == 0:
            labels.append(Label(x + (slot - gap) / 2, day.strftime("%b %-d"), "middle"))
    fractions = (0.0, 0.5, 1.0) if top % 2 == 0 else (0.0, 1.0)
    ticks = [Tick(plot_bottom - plot_height * f, short_number(round(top * f))) for f in fractions]
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        plot_bottom=plot_bottom,
        bars=bars,
        ticks=ticks,
        labels=labels,
        total=sum(v for _, v in days),
    )
