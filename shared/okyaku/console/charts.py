"""Charts as server-rendered SVG (no JavaScript, no Node build): pure functions, escaped text.

Each chart scales to its container (``viewBox`` + ``width: 100%``), carries ``role="img"`` with a
title, and sits next to a table holding the same numbers for screen readers and exact values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    note: str = ""  # shown after the bar (e.g. "12 deals")


@dataclass(frozen=True)
class Band:
    """One period of a forecast: the median with its P10-P90 interval."""

    label: str
    p10: float
    p50: float
    p90: float


def money(value: float) -> str:
    """Compact amounts for chart labels: 950, 12.5k, 3.2M."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value >= 1_000_000:
        return f"{sign}{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{sign}{value / 1_000:.0f}k"
    if value >= 1_000:
        return f"{sign}{value / 1_000:.1f}k"
    return f"{sign}{value:.0f}"


def _open(title: str, width: int, height: int) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMinYMin meet"><title>{escape(title)}</title>'
    )


def bar_chart(title: str, bars: Sequence[Bar], *, width: int = 640, row: int = 28) -> str:
    """Horizontal bars, one row per item, labels on the left, value on the right."""
    if not bars:
        return _open(title, width, row) + '<text x="0" y="18" class="muted">No data</text></svg>'
    label_w, value_w = 170, 130
    plot_w = width - label_w - value_w
    top = max((b.value for b in bars), default=0.0) or 1.0
    height = row * len(bars) + 4
    parts = [_open(title, width, height)]
    for i, bar in enumerate(bars):
        y = i * row + 2
        length = max(0.0, bar.value) / top * plot_w
        parts.append(
            f'<text x="{label_w - 8}" y="{y + row * 0.62:.1f}" text-anchor="end" class="label">'
            f"{escape(bar.label[:26])}</text>"
            f'<rect x="{label_w}" y="{y + 4}" width="{length:.1f}" height="{row - 10}" rx="3" class="bar"/>'
            f'<text x="{label_w + length + 6:.1f}" y="{y + row * 0.62:.1f}" class="value">'
            f"{escape(money(bar.value))}{(' · ' + escape(bar.note)) if bar.note else ''}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def band_chart(title: str, bands: Sequence[Band], *, width: int = 640, height: int = 240) -> str:
    """Columns of the median (P50) with a whisker from P10 to P90, one per period."""
    if not bands:
        return _open(title, width, 40) + '<text x="0" y="24" class="muted">No forecast</text></svg>'
    left, bottom, top_pad = 56, 28, 12
    plot_h = height - bottom - top_pad
    plot_w = width - left - 8
    top = max((b.p90 for b in bands), default=0.0) or 1.0
    slot = plot_w / len(bands)

    def y_of(value: float) -> float:
        return top_pad + plot_h - max(0.0, value) / top * plot_h

    parts = [_open(title, width, height)]
    for fraction in (0.0, 0.5, 1.0):
        y = y_of(top * fraction)
        parts.append(
            f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
            f"{escape(money(top * fraction))}</text>"
        )
    for i, band in enumerate(bands):
        x = left + i * slot
        cx = x + slot / 2
        bar_w = min(44.0, slot * 0.55)
        y50 = y_of(band.p50)
        parts.append(
            f'<rect x="{cx - bar_w / 2:.1f}" y="{y50:.1f}" width="{bar_w:.1f}" height="{top_pad + plot_h - y50:.1f}" '
            f'rx="3" class="bar"><title>{escape(band.label)}: P10 {escape(money(band.p10))}, '
            f"P50 {escape(money(band.p50))}, P90 {escape(money(band.p90))}</title></rect>"
            f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y_of(band.p90):.1f}" y2="{y_of(band.p10):.1f}" class="whisker"/>'
            f'<line x1="{cx - 6:.1f}" x2="{cx + 6:.1f}" y1="{y_of(band.p90):.1f}" y2="{y_of(band.p90):.1f}" '
            'class="whisker"/>'
            f'<line x1="{cx - 6:.1f}" x2="{cx + 6:.1f}" y1="{y_of(band.p10):.1f}" y2="{y_of(band.p10):.1f}" '
            'class="whisker"/>'
            f'<text x="{cx:.1f}" y="{height - 8}" text-anchor="middle" class="axis">{escape(band.label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def sparkline(title: str, values: Sequence[float], *, width: int = 240, height: int = 48, top: float = 100.0) -> str:
    """A score's history, oldest to newest, on a fixed 0-``top`` scale."""
    if len(values) < 2:
        return ""
    step = (width - 8) / (len(values) - 1)
    points = " ".join(
        f"{4 + i * step:.1f},{height - 4 - max(0.0, min(top, v)) / top * (height - 8):.1f}"
        for i, v in enumerate(values)
    )
    last_x = 4 + (len(values) - 1) * step
    last_y = height - 4 - max(0.0, min(top, values[-1])) / top * (height - 8)
    return (
        _open(title, width, height)
        + f'<polyline points="{points}" class="spark"/>'
        + f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="3" class="spark-dot"/></svg>'
    )


@dataclass(frozen=True)
class SeriesPoint:
    label: str  # the day
    value: float
    expected: float | None = None  # the detector's baseline for a judged day
    flagged: bool = False


def series_chart(title: str, points: Sequence[SeriesPoint], *, width: int = 480, height: int = 140) -> str:
    """A metric's daily values as a line, the baseline of the judged days as a dashed line (a
    dash at the level of a single judged day), flagged days as red dots."""
    if len(points) < 2:
        return _open(title, width, 40) + '<text x="0" y="24" class="muted">Not enough days to draw</text></svg>'
    left, bottom, top_pad, right = 44, 20, 10, 8
    plot_w, plot_h = width - left - right, height - bottom - top_pad
    top = max([p.value for p in points] + [p.expected or 0.0 for p in points]) or 1.0
    step = plot_w / (len(points) - 1)

    def x_of(i: int) -> float:
        return left + i * step

    def y_of(value: float) -> float:
        return top_pad + plot_h - max(0.0, value) / top * plot_h

    parts = [_open(title, width, height)]
    for fraction in (0.0, 1.0):
        y = y_of(top * fraction)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
            f"{escape(money(top * fraction))}</text>"
        )
    line = " ".join(f"{x_of(i):.1f},{y_of(p.value):.1f}" for i, p in enumerate(points))
    parts.append(f'<polyline points="{line}" class="spark"/>')
    judged = [(i, p) for i, p in enumerate(points) if p.expected is not None]
    if judged:
        first, last = judged[0][0], judged[-1][0]
        span: list[tuple[float, float | None]] = [(float(i), p.expected) for i, p in judged]
        if first == last:  # one judged day: a short dash at its baseline
            i, expected = span[0]
            span = [(i - 0.5, expected), (i + 0.5 if i + 0.5 <= len(points) - 1 else i, expected)]
        baseline = " ".join(f"{x_of(0) + i * step:.1f},{y_of(v or 0.0):.1f}" for i, v in span)
        parts.append(f'<polyline points="{baseline}" class="baseline"/>')
    for i, p in enumerate(points):
        if p.flagged:
            parts.append(
                f'<circle cx="{x_of(i):.1f}" cy="{y_of(p.value):.1f}" r="4" class="flagged">'
                f"<title>{escape(p.label)}: {escape(money(p.value))} flagged</title></circle>"
            )
    parts.append(
        f'<text x="{left}" y="{height - 4}" class="axis">{escape(points[0].label)}</text>'
        f'<text x="{width - right}" y="{height - 4}" text-anchor="end" class="axis">{escape(points[-1].label)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
