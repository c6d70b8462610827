"""Small inline-SVG charts (bars, lines, histograms) written by hand: the report needs no plotting library,
no JavaScript and no network. Each chart is one ``<svg class="plot" data-plot=ID>`` element with a title.
"""

from __future__ import annotations

import math
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
W, H = 640, 300  # drawing size; the CSS scales charts to the page width
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 30, 60


def _ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """Round tick values covering [lo, hi] (whole numbers only when ``integer``: epochs, processes)."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1, round(step))
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(int(math.ceil((hi - start) / step)) + 1)]


def _num(v: float) -> str:
    a = abs(v)
    if a == 0:
        return "0"
    return f"{v:.3g}" if a < 1000 else f"{v:,.0f}"


class _Frame:
    """Axes for one chart: maps data to pixels and draws grid, ticks and labels."""

    def __init__(self, xlo: float, xhi: float, ylo: float, yhi: float, xint: bool = False):
        self.xt = _ticks(xlo, xhi, integer=xint)
        self.yt = _ticks(ylo, yhi)
        self.x0, self.x1 = self.xt[0], self.xt[-1]
        self.y0, self.y1 = self.yt[0], self.yt[-1]

    def x(self, v: float) -> float:
        return LEFT + (v - self.x0) / ((self.x1 - self.x0) or 1) * (W - LEFT - RIGHT)

    def y(self, v: float) -> float:
        return H - BOTTOM - (v - self.y0) / ((self.y1 - self.y0) or 1) * (H - TOP - BOTTOM)

    def axes(self, xlabel: str, ylabel: str, xticks: bool = True) -> list[str]:
        out = []
        for t in self.yt:
            y = self.y(t)
            out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                       f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_num(t)}</text>')
        if xticks:
            for t in self.xt:
                x = self.x(t)
                out.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{_num(t)}</text>')
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{H - BOTTOM}" y2="{H - BOTTOM}" class="axis"/>'
                   f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{H - BOTTOM}" class="axis"/>')
        out.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 8}" text-anchor="middle">{escape(xlabel)}</text>')
        out.append(f'<text transform="translate(14,{(TOP + H - BOTTOM) / 2}) rotate(-90)" '
                   f'text-anchor="middle">{escape(ylabel)}</text>')
        return out


class _LogFrame(_Frame):
    """A frame whose y axis is logarithmic (decades), for values spanning orders of magnitude (latencies)."""

    def __init__(self, ylo: float, yhi: float):
        a, b = math.floor(math.log10(ylo)), math.ceil(math.log10(yhi))
        self.xt, self.yt = [0.0, 1.0], [10.0 ** k for k in range(a, max(b, a + 1) + 1)]
        self.x0, self.x1, self.y0, self.y1 = 0.0, 1.0, self.yt[0], self.yt[-1]

    def y(self, v: float) -> float:
        lo, hi = math.log10(self.y0), math.log10(self.y1)
        return H - BOTTOM - (math.log10(max(v, self.y0)) - lo) / (hi - lo) * (H - TOP - BOTTOM)


def _title(title: str, width: int = 80) -> list[str]:
    """The title on one line, or two when long (SVG text does not wrap by itself)."""
    if len(title) <= width:
        return [f'<text x="{W / 2}" y="18" text-anchor="middle" class="ttl">{escape(title)}</text>']
    cut = title.rfind(" ", 0, width)
    cut = cut if cut > 0 else width
    first, second = title[:cut], title[cut:].strip()
    if len(second) > width:
        second = second[:width - 3] + "..."
    return [f'<text x="{W / 2}" y="12" text-anchor="middle" class="ttl">{escape(first)}</text>',
            f'<text x="{W / 2}" y="26" text-anchor="middle" class="ttl">{escape(second)}</text>']


MAX_LEGEND = 12  # more entries would make the chart taller than a screen: the rest are counted


def _svg(plot_id: str, title: str, body: list[str], legend: list[tuple[str, str]] = ()) -> str:
    legend = list(legend)
    if len(legend) > MAX_LEGEND:
        legend = legend[:MAX_LEGEND - 1] + [(f"... and {len(legend) - MAX_LEGEND + 1} more", "#ffffff")]
    extra = 18 * len(legend)
    parts = [f'<svg class="plot" data-plot="{escape(plot_id)}" viewBox="0 0 {W} {H + extra}" role="img" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
             *_title(title), *body]
    for i, (name, color) in enumerate(legend):
        y = H + 4 + 18 * i
        parts.append(f'<rect x="{LEFT}" y="{y}" width="12" height="12" fill="{color}"/>'
                     f'<text x="{LEFT + 18}" y="{y + 11}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bars(plot_id: str, title: str, labels: list[str], values: list[float | None], ylabel: str,
         spans: list[tuple[float, float] | None] | None = None, categories: bool = False,
         hline: tuple[float, str] | None = None, colors: list[str | None] | None = None, log: bool = False) -> str:
    """Vertical bars, one per label, with optional min-max whiskers, an optional dashed horizontal line (a
    bound) and optional colours per bar; ``log``: a logarithmic value axis (all values positive). Long labels
    go in a numbered legend; with ``categories`` the (short) labels are written under the bars instead."""
    spans = spans or [None] * len(values)
    shown = [v for v in values if v is not None] + [hi for s in spans if s for hi in s[1:]] + (
        [hline[0]] if hline else [])
    top = max(shown + [0.0])
    if log and shown and min(shown) > 0:
        f: _Frame = _LogFrame(min(shown), top)
        ylabel += " (log scale)"
    else:
        f = _Frame(0, 1, 0, top or 1.0)
    n = max(1, len(values))
    slot = (W - LEFT - RIGHT) / n
    body = f.axes("", ylabel, xticks=False)
    legend = []
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        color = (colors[i] if colors and colors[i] else None) or (PALETTE[0] if categories else PALETTE[i % len(PALETTE)])
        if not categories:
            legend.append((f"{i + 1}: {label}", color))
        x = LEFT + i * slot + slot * 0.15
        tick = escape(label) if categories else str(i + 1)
        body.append(f'<text x="{x + slot * 0.35:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{tick}</text>')
        if v is None:
            body.append(f'<text x="{x + slot * 0.35:.1f}" y="{H - BOTTOM - 6}" text-anchor="middle">n/a</text>')
            continue
        y = f.y(v)
        body.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
                    f'height="{H - BOTTOM - y:.1f}" fill="{color}"><title>{escape(label)}: {_num(v)}</title></rect>'
                    f'<text x="{x + slot * 0.35:.1f}" y="{y - 4:.1f}" text-anchor="middle">{_num(v)}</text>')
        if spans[i]:
            lo, hi = spans[i]
            cx = x + slot * 0.35
            body.append(f'<line class="whisker" x1="{cx:.1f}" x2="{cx:.1f}" y1="{f.y(lo):.1f}" y2="{f.y(hi):.1f}"/>')
    if hline:  # its label goes under the chart: over the bars it would cover their values
        body += _hline(f, hline[0], "")
        legend.append((f"dashed line: {hline[1]}", "#b42318"))
    return _svg(plot_id, title, body, legend)


def _hline(f: _Frame, value: float, label: str) -> list[str]:
    y = f.y(value)
    text = f'<text x="{W - RIGHT - 4}" y="{y - 4:.1f}" text-anchor="end">{escape(label)}</text>' if label else ""
    return [f'<line class="target" x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>{text}']


def lines(plot_id: str, title: str, series: list[tuple[str, list[tuple[float, float]]]], xlabel: str,
          ylabel: str, hline: tuple[float, str] | None = None, ylo: float | None = None,
          marks: list[tuple[float, float, str]] = ()) -> str:
    """One polyline (with point markers) per series; an optional dashed horizontal line (a target) and
    labelled rings on chosen points (where a target was reached)."""
    pts = [p for _, s in series for p in s]
    ys = [y for _, y in pts] + ([hline[0]] if hline else [])
    xs = [x for x, _ in pts] or [0.0, 1.0]
    xint = all(float(x).is_integer() for x in xs)
    f = _Frame(min(xs + [0.0]), max(xs), min(ys) if ylo is None else ylo, max(ys or [1.0]), xint=xint)
    body = f.axes(xlabel, ylabel)
    if hline:
        body += _hline(f, *hline)
    legend = []
    for i, (name, s) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        legend.append((name, color))
        path = " ".join(f"{f.x(x):.1f},{f.y(y):.1f}" for x, y in s)
        body.append(f'<polyline class="series" points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        body += [f'<circle cx="{f.x(x):.1f}" cy="{f.y(y):.1f}" r="3" fill="{color}"/>' for x, y in s]
    for j, (x, y, label) in enumerate(marks):
        cx, cy = f.x(x), f.y(y)
        right = cx < LEFT + (W - LEFT - RIGHT) * 0.6
        ty = min(H - BOTTOM - 6, max(TOP + 12, cy + (16 if j % 2 else -10)))
        body.append(f'<circle class="reached" cx="{cx:.1f}" cy="{cy:.1f}" r="7" fill="none" stroke="#b42318" '
                    f'stroke-width="2"/><text x="{cx + 10 if right else cx - 10:.1f}" y="{ty:.1f}" '
                    f'text-anchor="{"start" if right else "end"}">{escape(label)}</text>')
    return _svg(plot_id, title, body, legend)


def histogram(plot_id: str, title: str, values: list[float], xlabel: str, bins: int = 40,
              marks: list[tuple[float, str]] = (), upto: float | None = None) -> str:
    """A histogram of ``values`` with vertical marks (percentiles, a bound); with ``upto`` the axis ends there
    and the values above it are counted in the title instead of squeezing the rest into one bin."""
    lo, hi = min(values), max(values)
    above = 0
    if upto is not None and lo < upto < hi:
        above, hi = sum(1 for v in values if v > upto), upto
        title += f" ({above} above {_num(upto)} not drawn)"
    width = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values:
        if v <= hi:
            counts[min(bins - 1, int((v - lo) / width))] += 1
    f = _Frame(lo, hi if hi > lo else lo + width, 0, max(counts))
    body = f.axes(xlabel, "queries")
    for i, c in enumerate(counts):
        x0, x1 = f.x(lo + i * width), f.x(lo + (i + 1) * width)
        body.append(f'<rect class="bar" x="{x0:.1f}" y="{f.y(c):.1f}" width="{max(0.5, x1 - x0 - 0.5):.1f}" '
                    f'height="{H - BOTTOM - f.y(c):.1f}" fill="{PALETTE[0]}"/>')
    for j, (v, name) in enumerate(marks):
        if not lo <= v <= hi:
            continue
        x = f.x(v)
        body.append(f'<line class="target" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{H - BOTTOM}"/>'
                    f'<text x="{x + 3 if x < W * 0.7 else x - 3:.1f}" y="{TOP + 12 + 12 * (j % 4)}" '
                    f'text-anchor="{"start" if x < W * 0.7 else "end"}">{escape(name)}</text>')
    return _svg(plot_id, title, body)
