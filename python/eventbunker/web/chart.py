"""A bar chart as plain geometry: drawn as inline SVG by the project page's
template (billed writes per day) and by the Explore page's script (any
analysis per interval bucket or group)."""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    name: str  # what the bar stands for, in full (its tooltip)
    value: float


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
    total: float


def nice_ceiling(value: float) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value``
    (1 for anything up to 1)."""
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


@dataclass(frozen=True, slots=True)
class Point:
    name: str  # the bar's tooltip: "2026-12-02", "US"
    label: str  # its x-axis label, when it gets one: "Dec 2", "US"
    value: float


def bar_chart(points: Sequence[Point], label_every: int | None = None) -> Chart:
    """Bars of ``points`` (negative values drawn as empty), the last one and
    every ``label_every``-th before it labelled (default: about 8 labels)."""
    every = label_every or max(1, math.ceil(len(points) / 8))
    top = nice_ceiling(max((p.value for p in points), default=0))
    plot_height = HEIGHT - TOP - BOTTOM
    plot_bottom = float(HEIGHT - BOTTOM)
    slot = (WIDTH - LEFT - RIGHT) / max(len(points), 1)
    gap = min(4.0, slot * 0.2)
    bars = []
    labels = []
    for i, point in enumerate(points):
        height = plot_height * max(point.value, 0) / top
        x = LEFT + i * slot + gap / 2
        # A bar with a value stays visible even beside a much larger one.
        if point.value > 0:
            height = max(height, 1.5)
        bars.append(Bar(x, plot_bottom - height, slot - gap, height, point.name, point.value))
        if i == len(points) - 1:
            labels.append(Label(x + slot - gap, point.label, "end"))
        elif (len(points) - 1 - i) % every == 0:
            labels.append(Label(x + (slot - gap) / 2, point.label, "middle"))
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
        total=sum(p.value for p in points),
    )


def daily_chart(days: list[tuple[date, int]]) -> Chart:
    """Billed writes per day, a label every week back from the last day."""
    points = [Point(day.isoformat(), day.strftime("%b %-d"), value) for day, value in days]
    return bar_chart(points, label_every=7)
