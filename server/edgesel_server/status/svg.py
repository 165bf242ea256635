"""Inline SVG charts, written by hand: a time-series line chart, a bar chart over time, 100 % stacked bars.

Each function returns one `<svg>` element as a string, with every text escaped, no script and no external
reference, so the page works from a file, offline and under a strict Content-Security-Policy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

# Tableau 10: distinct, readable on white, colour-blind friendlier than the default rainbow.
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)  # fmt: skip
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 12, 26, 34
MAX_MARKERS = 80  # beyond this many points a line shows no dots (they would merge)


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float | None]]  # (unix time, value); None: no value in that sample
    color: str


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _fmt(v: float) -> str:
    """A coordinate: short, and never `nan`/`inf` (callers keep values finite)."""
    return f"{v:.1f}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    scale = max(abs(lo), abs(hi))
    if scale < 1e-200:  # zero, or so close that the steps below would underflow
        lo, hi, scale = 0.0, 0.0, 0.0
    if hi - lo <= scale * 1e-9:  # one value (or a range below float resolution): show around it
        half = 0.05 * scale if scale > 0 else 0.05
        lo, hi = lo - half, hi + half
    raw = (hi - lo) / max(1, count - 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * (1 - 1e-12))
    first, last = math.floor(lo / step), math.ceil(hi / step)
    # k * step may round past lo or short of hi by an ulp: widen by one step then.
    if first * step > lo:
        first -= 1
    if last * step < hi:
        last += 1
    # Multiples of the step, computed each from its index (no drift from repeated addition).
    return [k * step for k in range(first, last + 1)]


def _tick_label(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t))


def _open(width: int, height: int, kind: str, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{escape(kind)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f"<title>{escape(title)}</title>",
        f'<text x="{MARGIN_LEFT}" y="16" class="chart-title">{escape(title)}</text>',
    ]


def _empty(width: int, height: int, kind: str, title: str, message: str) -> str:
    parts = _open(width, height, kind, title)
    parts.append(
        f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" class="chart-empty">'
        f"{escape(message)}</text>"
    )
    return "".join(parts) + "</svg>"


class _Frame:
    """Axes and the mapping from data to pixels."""

    def __init__(self, width: int, height: int, t0: float, t1: float, y_ticks: list[float]) -> None:
        self.width, self.height = width, height
        self.t0, self.t1 = t0, t1 if t1 > t0 else t0 + 1.0
        self.y0, self.y1 = y_ticks[0], y_ticks[-1] if y_ticks[-1] > y_ticks[0] else y_ticks[0] + 1.0
        self.y_ticks = y_ticks
        self.left, self.right = MARGIN_LEFT, width - MARGIN_RIGHT
        self.top, self.bottom = MARGIN_TOP, height - MARGIN_BOTTOM

    def x(self, t: float) -> float:
        return self.left + (t - self.t0) / (self.t1 - self.t0) * (self.right - self.left)

    def y(self, v: float) -> float:
        return self.bottom - (v - self.y0) / (self.y1 - self.y0) * (self.bottom - self.top)

    def axes(self, y_label: str) -> list[str]:
        out = ['<g class="axes" font-size="11">']
        for v in self.y_ticks:
            y = _fmt(self.y(v))
            out.append(f'<line x1="{self.left}" x2="{self.right}" y1="{y}" y2="{y}" class="grid"/>')
            out.append(
                f'<text x="{self.left - 6}" y="{y}" text-anchor="end" dominant-baseline="middle">'
                f"{escape(_tick_label(v))}</text>"
            )
        n = 4
        for i in range(n + 1):
            t = self.t0 + (self.t1 - self.t0) * i / n
            anchor = "start" if i == 0 else "end" if i == n else "middle"
            out.append(
                f'<text x="{_fmt(self.x(t))}" y="{self.bottom + 16}" text-anchor="{anchor}">'
                f"{escape(_clock(t))}</text>"
            )
        out.append(
            f'<line x1="{self.left}" x2="{self.right}" y1="{self.bottom}" y2="{self.bottom}" class="axis"/>'
            f'<line x1="{self.left}" x2="{self.left}" y1="{self.top}" y2="{self.bottom}" class="axis"/>'
            f'<text x="12" y="{(self.top + self.bottom) / 2:.0f}" text-anchor="middle" '
            f'transform="rotate(-90 12 {(self.top + self.bottom) / 2:.0f})">{escape(y_label)}</text>'
            f'<text x="{self.right}" y="{self.height - 4}" text-anchor="end">time (UTC)</text></g>'
        )
        return out


def _legend(names: Sequence[tuple[str, str]], right: float, y: float) -> list[str]:
    """Colour keys in one row ending at `right` (the title takes the left of the same row)."""
    widths = [24 + 7 * len(name) for name, _ in names]
    x = right - sum(widths)
    out = ['<g class="legend" font-size="11">']
    for (name, c), w in zip(names, widths, strict=True):
        out.append(f'<rect x="{_fmt(x)}" y="{_fmt(y - 9)}" width="10" height="10" fill="{escape(c)}"/>')
        out.append(f'<text x="{_fmt(x + 14)}" y="{_fmt(y)}">{escape(name)}</text>')
        x += w
    out.append("</g>")
    return out


def _segments(points: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """Runs of consecutive points with a value: a sample without one breaks the line."""
    runs: list[list[tuple[float, float]]] = [[]]
    for t, v in points:
        if v is None or not math.isfinite(v):
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((t, v))
    return [r for r in runs if r]


def line_chart(
    series: Sequence[Series],
    *,
    kind: str,
    title: str,
    y_label: str,
    span: tuple[float, float],
    width: int = 640,
    height: int = 220,
    empty: str = "no samples yet",
) -> str:
    """Lines over time; `span` is the time range of the x axis."""
    values = [v for s in series for _, v in s.points if v is not None and math.isfinite(v)]
    if not values:
        return _empty(width, height, kind, title, empty)
    frame = _Frame(width, height, span[0], span[1], nice_ticks(min(values), max(values)))
    parts = _open(width, height, kind, title)
    parts += frame.axes(y_label)
    for s in series:
        dots = len(s.points) <= MAX_MARKERS
        for run in _segments(s.points):
            xy = " ".join(f"{_fmt(frame.x(t))},{_fmt(frame.y(v))}" for t, v in run)
            parts.append(
                f'<polyline class="series" data-series="{escape(s.name)}" fill="none" '
                f'stroke="{escape(s.color)}" stroke-width="2" points="{xy}"/>'
            )
            if dots or len(run) == 1:
                fill = escape(s.color)
                parts += [
                    f'<circle cx="{_fmt(frame.x(t))}" cy="{_fmt(frame.y(v))}" r="2.5" fill="{fill}"/>'
                    for t, v in run
                ]
    parts += _legend([(s.name, s.color) for s in series], width - MARGIN_RIGHT, 16)
    return "".join(parts) + "</svg>"


def bar_chart(
    bars: Sequence[tuple[float, float, float]],
    *,
    kind: str,
    title: str,
    y_label: str,
    span: tuple[float, float],
    fill: str = PALETTE[2],
    width: int = 640,
    height: int = 180,
    empty: str = "no samples yet",
) -> str:
    """One bar per (start, end, value) interval, over time."""
    if not bars:
        return _empty(width, height, kind, title, empty)
    top = max(v for _, _, v in bars)
    frame = _Frame(width, height, span[0], span[1], nice_ticks(0.0, max(top, 1.0)))
    parts = _open(width, height, kind, title)
    parts += frame.axes(y_label)
    for start, end, v in bars:
        if v <= 0:
            continue
        x0, x1 = frame.x(start), frame.x(end)
        y = frame.y(v)
        parts.append(
            f'<rect class="bar" x="{_fmt(x0)}" y="{_fmt(y)}" width="{_fmt(max(1.0, x1 - x0 - 1))}" '
            f'height="{_fmt(frame.bottom - y)}" fill="{escape(fill)}"><title>{escape(_clock(start))}: '
            f"{escape(_tick_label(v))}</title></rect>"
        )
    return "".join(parts) + "</svg>"


def stacked_shares(
    rows: Mapping[str, Mapping[str, int]],
    colors: Mapping[str, str],
    *,
    kind: str,
    title: str,
    width: int = 640,
    empty: str = "no decisions yet",
) -> str:
    """One 100 % bar per row label (a device class), split by segment (a model) in proportion to counts."""
    rows = {label: seg for label, seg in rows.items() if sum(seg.values()) > 0}
    bar_h, gap, label_w = 22, 8, 120
    height = MARGIN_TOP + len(rows) * (bar_h + gap) + 30
    if not rows:
        return _empty(width, 90, kind, title, empty)
    parts = _open(width, height, kind, title)
    left, right = label_w, width - MARGIN_RIGHT - 50
    y = MARGIN_TOP + 4
    for label, segments in sorted(rows.items()):
        total = sum(segments.values())
        parts.append(
            f'<g class="share-row" data-row="{escape(label)}">'
            f'<text x="{label_w - 6}" y="{y + bar_h / 2:.0f}" text-anchor="end" dominant-baseline="middle" '
            f'font-size="12">{escape(label)}</text>'
        )
        x = float(left)
        for seg, n in sorted(segments.items(), key=lambda kv: (-kv[1], kv[0])):
            w = (right - left) * n / total
            share = 100.0 * n / total
            parts.append(
                f'<rect class="share" x="{_fmt(x)}" y="{y}" width="{_fmt(w)}" height="{bar_h}" '
                f'fill="{escape(colors.get(seg, PALETTE[-1]))}"><title>{escape(seg)}: {n} ({share:.1f} %)'
                "</title></rect>"
            )
            if w > 34:
                parts.append(
                    f'<text x="{_fmt(x + w / 2)}" y="{y + bar_h / 2:.0f}" text-anchor="middle" '
                    f'dominant-baseline="middle" font-size="11" fill="#fff">{share:.0f}%</text>'
                )
            x += w
        parts.append(
            f'<text x="{right + 6}" y="{y + bar_h / 2:.0f}" dominant-baseline="middle" font-size="11">'
            f"n={total}</text></g>"
        )
        y += bar_h + gap
    models = sorted({m for seg in rows.values() for m in seg})
    parts += _legend([(m, colors.get(m, PALETTE[-1])) for m in models], right, height - 10)
    return "".join(parts) + "</svg>"
