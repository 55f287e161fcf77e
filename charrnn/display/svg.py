"""Inline SVG charts for the HTML page: the loss curves with the learning rate on a second
axis, and a histogram. Plain strings, no script; every label passes through ``esc``.

Coordinates are in the SVG's own units (its viewBox); the page scales the picture to its
column. Lines differ by dash pattern as well as by color, so a black-and-white print keeps
them apart.
"""

from __future__ import annotations

import math
from html import escape

MAX_POINTS = 1500  # points per line: a longer history is thinned to every k-th point
FONT = 'font-family="system-ui, sans-serif"'
COLORS = {"train": "#1f5fa8", "val": "#c2410c", "lr": "#6b7280", "best": "#111827",
          "grid": "#e5e7eb", "axis": "#374151", "bar": "#4b6fa8"}


def esc(value) -> str:
    return escape(str(value), quote=True)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values (1, 2 or 5 times a power of ten apart) spanning lo..hi."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [k * step for k in range(first, math.floor(hi / step + 1e-9) + 1)]


def tick_label(value: float, ticks: list[float]) -> str:
    """A tick's label with just the decimals that tell the ticks apart; tiny rates as 2e-03."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(value) or 1.0
    if 0 < step < 1e-2:
        return "0" if value == 0 else f"{value:.0e}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{value:,.{decimals}f}"


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """At most MAX_POINTS of the points: every k-th, and always the last."""
    if len(points) <= MAX_POINTS:
        return points
    k = math.ceil(len(points) / MAX_POINTS)
    return points[::k] + ([points[-1]] if (len(points) - 1) % k else [])


def _finite(points) -> list[tuple[float, float]]:
    return [(x, y) for x, y in points if y is not None and math.isfinite(y)]


class _Frame:
    """The plot area of a chart and the mapping of data to SVG coordinates."""

    def __init__(self, width, height, left, right, top, bottom, xs, ys):
        self.x0, self.x1 = left, width - right
        self.y0, self.y1 = height - bottom, top  # y grows downwards in SVG
        self.xlo, self.xhi = min(xs), max(xs)
        self.ylo, self.yhi = min(ys), max(ys)
        if self.xhi == self.xlo:
            self.xlo, self.xhi = self.xlo - 1, self.xhi + 1
        if self.yhi - self.ylo < 1e-12:
            self.ylo, self.yhi = self.ylo - 0.5, self.yhi + 0.5

    def x(self, v: float) -> float:
        return self.x0 + (v - self.xlo) / (self.xhi - self.xlo) * (self.x1 - self.x0)

    def y(self, v: float) -> float:
        return self.y0 + (v - self.ylo) / (self.yhi - self.ylo) * (self.y1 - self.y0)


def _polyline(frame: _Frame, points, y=None, **attrs) -> str:
    to_y = y or frame.y
    coords = " ".join(f"{frame.x(a):.1f},{to_y(b):.1f}" for a, b in points)
    extra = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<polyline fill="none" points="{coords}" {extra}/>'


def _loss_axes(f: _Frame, ticks: list[float], steps: list[float]) -> list[str]:
    """The grid, the left (loss) axis with its ticks, and the step axis."""
    out = []
    for t in ticks:
        y = f.y(t)
        out.append(f'<line x1="{f.x0}" x2="{f.x1}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="{COLORS["grid"]}"/>')
        out.append(f'<text x="{f.x0 - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f'{esc(tick_label(t, ticks))}</text>')
    for s in steps:
        x = f.x(s)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{f.y0}" y2="{f.y0 + 5}" '
                   f'stroke="{COLORS["axis"]}"/>')
        out.append(f'<text x="{x:.1f}" y="{f.y0 + 18}" text-anchor="middle">'
                   f'{esc(tick_label(s, steps))}</text>')
    out.append(f'<path d="M{f.x0},{f.y1}V{f.y0}H{f.x1}" fill="none" stroke="{COLORS["axis"]}"/>')
    return out


def _rate_axis(f: _Frame, rates: list[tuple[float, float]]) -> tuple[list[str], object]:
    """The right axis (learning rate, from 0) and the rate's y mapping."""
    top = max(r for _, r in rates)
    top = top if top > 0 else 1.0
    ticks = nice_ticks(0.0, top, 4)
    scale_top = max(top, ticks[-1])

    def y(v: float) -> float:
        return f.y0 + v / scale_top * (f.y1 - f.y0)

    out = [f'<path d="M{f.x1},{f.y1}V{f.y0}" stroke="{COLORS["lr"]}"/>']
    for t in ticks:
        out.append(f'<line x1="{f.x1}" x2="{f.x1 + 5}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
                   f'stroke="{COLORS["lr"]}"/>')
        out.append(f'<text x="{f.x1 + 8}" y="{y(t) + 4:.1f}" fill="{COLORS["lr"]}">'
                   f'{esc(tick_label(t, ticks))}</text>')
    return out, y


def loss_chart(history: list[dict], best: dict | None, width: int = 960,
               height: int = 360) -> str:
    """Training and validation loss (left axis, nats/char) and the learning rate (right axis)
    over the steps; the best validation point (``best``: {"step", "loss"}) circled and named.
    An empty string when no loss was recorded."""
    train = _thin(_finite((r["step"], r.get("train_loss")) for r in history))
    val = _thin(_finite((r["step"], r.get("val_loss")) for r in history))
    rates = _thin(_finite((r["step"], r.get("lr")) for r in history))
    if not train and not val:
        return ""
    ys = [y for _, y in train + val]
    f = _Frame(width, height, 64, 78 if rates else 20, 16, 56, [x for x, _ in train + val], ys)
    ticks = nice_ticks(f.ylo, f.yhi, 6)
    f.ylo, f.yhi = min(f.ylo, ticks[0]), max(f.yhi, ticks[-1])
    parts = _loss_axes(f, ticks, nice_ticks(f.xlo, f.xhi, 8))
    legend = [("training loss", COLORS["train"], ""), ("validation loss", COLORS["val"], "6 3")]
    if rates:
        axis, rate_y = _rate_axis(f, rates)
        parts += axis
        parts.append(_polyline(f, rates, rate_y, stroke=COLORS["lr"], stroke_width="1.5",
                               stroke_dasharray="2 3"))
        legend.append(("learning rate (right axis)", COLORS["lr"], "2 3"))
        parts.append(f'<text transform="translate({width - 8},{(f.y0 + f.y1) / 2:.0f}) '
                     f'rotate(90)" text-anchor="middle" fill="{COLORS["lr"]}">learning rate'
                     '</text>')
    if train:
        parts.append(_polyline(f, train, stroke=COLORS["train"], stroke_width="2"))
    if val:
        parts.append(_polyline(f, val, stroke=COLORS["val"], stroke_width="2",
                               stroke_dasharray="6 3"))
        parts += [f'<circle cx="{f.x(a):.1f}" cy="{f.y(b):.1f}" r="2.5" fill="{COLORS["val"]}"/>'
                  for a, b in val]
    if best and best.get("loss") is not None and best.get("step") is not None:
        bx, by = f.x(best["step"]), f.y(best["loss"])
        anchor = "end" if bx > (f.x0 + f.x1) / 2 else "start"
        dx = -10 if anchor == "end" else 10
        parts.append(f'<circle class="best" cx="{bx:.1f}" cy="{by:.1f}" r="7" fill="none" '
                     f'stroke="{COLORS["best"]}" stroke-width="2"/>')
        parts.append(f'<text x="{bx + dx:.1f}" y="{by - 12:.1f}" text-anchor="{anchor}" '
                     f'font-weight="bold">best {best["loss"]:.4f} at step {best["step"]:,}'
                     '</text>')
    parts.append(f'<text x="{(f.x0 + f.x1) / 2:.0f}" y="{height - 22}" '
                 'text-anchor="middle">step</text>')
    parts.append(f'<text transform="translate(14,{(f.y0 + f.y1) / 2:.0f}) rotate(-90)" '
                 'text-anchor="middle">loss (nats/char)</text>')
    x = f.x0
    for name, color, dash in legend:
        parts.append(f'<line x1="{x}" x2="{x + 28}" y1="{height - 6}" y2="{height - 6}" '
                     f'stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>')
        parts.append(f'<text x="{x + 34}" y="{height - 2}">{esc(name)}</text>')
        x += 40 + 7 * len(name)
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" {FONT} '
            'font-size="13" aria-label="loss over the training steps">' + "".join(parts)
            + "</svg>")


def histogram(counts: list[int], lo: float, hi: float, width: int = 260,
              height: int = 96) -> str:
    """Bars of ``counts`` over equal bins from lo to hi, the two ends labelled, a tick at 0
    when 0 lies inside, away from the ends; an empty string without bins."""
    if not counts:
        return ""
    top = max(counts) or 1
    left, right, base, room = 4, 4, height - 18, height - 24
    bar = (width - left - right) / len(counts)
    rects = [f'<rect x="{left + k * bar:.1f}" y="{base - c / top * room:.1f}" '
             f'width="{max(bar - 0.6, 0.4):.1f}" height="{c / top * room:.1f}"/>'
             for k, c in enumerate(counts) if c]
    labels = [f'<text x="{left}" y="{height - 4}">{esc(f"{lo:.3g}")}</text>',
              f'<text x="{width - right}" y="{height - 4}" text-anchor="end">'
              f'{esc(f"{hi:.3g}")}</text>']
    x = left + (0 - lo) / (hi - lo) * (width - left - right) if lo < 0 < hi else None
    if x is not None and left + 36 < x < width - right - 36:  # not over the end labels
        labels.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}" '
                      f'stroke="{COLORS["axis"]}"/><text x="{x:.1f}" y="{height - 4}" '
                      'text-anchor="middle">0</text>')
    return (f'<svg class="hist" viewBox="0 0 {width} {height}" role="img" {FONT} '
            f'font-size="10" aria-label="histogram of the values">'
            f'<g fill="{COLORS["bar"]}">' + "".join(rects) + "</g>"
            f'<line x1="{left}" x2="{width - right}" y1="{base}" y2="{base}" '
            f'stroke="{COLORS["axis"]}"/>' + "".join(labels) + "</svg>")
