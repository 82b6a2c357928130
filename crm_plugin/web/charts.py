"""Server-rendered SVG charts for the CRM pages: no JavaScript, no CDN, readable offline.

Every function takes plain numbers and returns safe SVG markup with a <title> and an
aria-label, so screen readers get a sentence instead of a drawing.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from crm_plugin.formatting import day, money

# Colour-blind-safe palette (Okabe-Ito), one per model family / series.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]


@dataclass(frozen=True)
class Series:
    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str = ""
    dashed: bool = False
    points: bool = False


@dataclass
class _Frame:
    width: int
    height: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    left: int = 46
    right: int = 20
    top: int = 12
    bottom: int = 34
    parts: list[str] = field(default_factory=list)

    def px(self, x: float) -> float:
        lo, hi = self.x_range
        span = (hi - lo) or 1.0
        return self.left + (x - lo) / span * (self.width - self.left - self.right)

    def py(self, y: float) -> float:
        lo, hi = self.y_range
        span = (hi - lo) or 1.0
        return self.height - self.bottom - (y - lo) / span * (self.height - self.top - self.bottom)


def _finite_pairs(xs: Sequence, ys: Sequence) -> list[tuple[float, float]]:
    pairs = []
    for x, y in zip(xs or [], ys or []):
        try:
            fx, fy = float(x), float(y)
        except (TypeError, ValueError):
            continue
        if math.isfinite(fx) and math.isfinite(fy):
            pairs.append((fx, fy))
    return pairs


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    first = math.ceil(lo / step) * step
    ticks, value = [], first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _tick_label(value: float, percent: bool) -> str:
    if percent:
        return f"{value * 100:.0f}%"
    if abs(value) >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.1f}"


def _svg(frame: _Frame, title: str, body: list[str], css_class: str = "chart") -> SafeString:
    label = escape(title)
    return mark_safe(
        f'<svg class="{css_class}" viewBox="0 0 {frame.width} {frame.height}" role="img" aria-label="{label}" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg"><title>{label}</title>'
        + "".join(body) + "</svg>"
    )


def _axes(frame: _Frame, *, x_label: str, y_label: str, x_percent: bool, y_percent: bool,
          x_ticks: list[tuple[float, str]] | None = None, y_format: Callable[[float], str] | None = None,
          y_tick_count: int = 4, tick_offset: int = 0) -> list[str]:
    out = []
    for y in _nice_ticks(*frame.y_range, count=y_tick_count):
        py = frame.py(y)
        text = y_format(y) if y_format else _tick_label(y, y_percent)
        out.append(f'<line class="grid" x1="{frame.left}" x2="{frame.width - frame.right}" y1="{_fmt(py)}" y2="{_fmt(py)}"/>')
        out.append(f'<text class="tick" x="{frame.left - 5}" y="{_fmt(py + 3.5)}" text-anchor="end">{text}</text>')
    ticks = x_ticks if x_ticks is not None else [(x, _tick_label(x, x_percent)) for x in _nice_ticks(*frame.x_range, count=5)]
    for index, (x, text) in enumerate(ticks):
        px = frame.px(x)
        # Long date labels at the ends would be clipped by the viewBox: align them inwards.
        anchor = "middle"
        if x_ticks is not None and index == 0:
            anchor = "start"
        elif x_ticks is not None and index == len(ticks) - 1:
            anchor = "end"
        out.append(f'<line class="grid" x1="{_fmt(px)}" x2="{_fmt(px)}" y1="{frame.top}" y2="{frame.height - frame.bottom}"/>')
        out.append(f'<text class="tick" x="{_fmt(px)}" y="{frame.height - frame.bottom + tick_offset + 14}" text-anchor="{anchor}">{escape(text)}</text>')
    base = frame.height - frame.bottom
    out.append(f'<line class="axis" x1="{frame.left}" x2="{frame.width - frame.right}" y1="{base}" y2="{base}"/>')
    out.append(f'<line class="axis" x1="{frame.left}" x2="{frame.left}" y1="{frame.top}" y2="{base}"/>')
    if x_label:
        out.append(f'<text class="axis-label" x="{(frame.left + frame.width - frame.right) / 2:.0f}" y="{frame.height - 4}" text-anchor="middle">{escape(x_label)}</text>')
    if y_label:
        cy = (frame.top + base) / 2
        out.append(f'<text class="axis-label" transform="translate(11 {cy:.0f}) rotate(-90)" text-anchor="middle">{escape(y_label)}</text>')
    return out


def _polyline(frame: _Frame, pairs: list[tuple[float, float]], color: str, *, dashed: bool = False,
              css_class: str = "line") -> str:
    points = " ".join(f"{_fmt(frame.px(x))},{_fmt(frame.py(y))}" for x, y in pairs)
    dash = ' stroke-dasharray="5 4"' if dashed else ""
    return f'<polyline class="{css_class}" fill="none" stroke="{color}"{dash} points="{points}"/>'


def _legend(series: Sequence[Series], colors: list[str]) -> SafeString:
    items = "".join(
        f'<li><span class="swatch" style="background:{c}"></span>{escape(s.name)}</li>'
        for s, c in zip(series, colors)
    )
    return mark_safe(f'<ul class="legend">{items}</ul>')


def line_chart(
    series: Sequence[Series], *, title: str, x_label: str = "", y_label: str = "",
    x_range: tuple[float, float] = (0.0, 1.0), y_range: tuple[float, float] | None = (0.0, 1.0),
    x_percent: bool = True, y_percent: bool = True, diagonal: bool = False,
    reference_y: float | None = None, width: int = 360, height: int = 260,
) -> SafeString:
    """A multi-series line chart (ROC, PR, calibration, lift). Empty series are skipped."""
    drawn = [(s, _finite_pairs(s.xs, s.ys)) for s in series]
    drawn = [(s, p) for s, p in drawn if p]
    if not drawn:
        return empty_chart(title, width=width, height=height)
    if y_range is None:
        top = max(y for _, p in drawn for _, y in p)
        y_range = (0.0, max(1.0, math.ceil(top * 1.1 * 2) / 2))
    frame = _Frame(width, height, x_range, y_range)
    body = _axes(frame, x_label=x_label, y_label=y_label, x_percent=x_percent, y_percent=y_percent)
    if diagonal:
        lo = max(x_range[0], y_range[0])
        hi = min(x_range[1], y_range[1])
        body.append(_polyline(frame, [(lo, lo), (hi, hi)], "#9aa3ad", dashed=True, css_class="ref"))
    if reference_y is not None:
        body.append(_polyline(frame, [(x_range[0], reference_y), (x_range[1], reference_y)], "#9aa3ad", dashed=True, css_class="ref"))
    colors = []
    for index, (s, pairs) in enumerate(drawn):
        color = s.color or PALETTE[index % len(PALETTE)]
        colors.append(color)
        body.append(_polyline(frame, pairs, color, dashed=s.dashed))
        if s.points:
            body.extend(f'<circle cx="{_fmt(frame.px(x))}" cy="{_fmt(frame.py(y))}" r="2.5" fill="{color}"/>' for x, y in pairs)
    legend = _legend([s for s, _ in drawn], colors) if len(drawn) > 1 else mark_safe("")
    return mark_safe(f'<figure class="chart-box">{_svg(frame, title, body)}{legend}</figure>')


def histogram(
    edges: Sequence[float], counts_by_series: Sequence[tuple[str, Sequence[float]]], *, title: str,
    x_label: str = "Predicted churn probability", y_label: str = "Share of customers",
    width: int = 360, height: int = 260,
) -> SafeString:
    """Score distributions as step outlines (one per family), normalised to shares so families compare."""
    edges = [float(e) for e in (edges or [])]
    usable = []
    for name, counts in counts_by_series:
        counts = [float(c) for c in (counts or [])]
        total = sum(counts)
        if len(counts) == len(edges) - 1 and total > 0:
            usable.append((name, [c / total for c in counts]))
    if not usable:
        return empty_chart(title, width=width, height=height)
    top = max(max(shares) for _, shares in usable)
    frame = _Frame(width, height, (edges[0], edges[-1]), (0.0, top * 1.1 or 1.0))
    body = _axes(frame, x_label=x_label, y_label=y_label, x_percent=True, y_percent=True)
    colors = []
    for index, (name, shares) in enumerate(usable):
        color = PALETTE[index % len(PALETTE)]
        colors.append(color)
        pairs = [(edges[0], 0.0)]
        for i, share in enumerate(shares):
            pairs += [(edges[i], share), (edges[i + 1], share)]
        pairs.append((edges[-1], 0.0))
        if len(usable) == 1:
            points = " ".join(f"{_fmt(frame.px(x))},{_fmt(frame.py(y))}" for x, y in pairs)
            body.append(f'<polygon points="{points}" fill="{color}" fill-opacity="0.25" stroke="none"/>')
        body.append(_polyline(frame, pairs, color))
    series = [Series(name, [], []) for name, _ in usable]
    legend = _legend(series, colors) if len(usable) > 1 else mark_safe("")
    return mark_safe(f'<figure class="chart-box">{_svg(frame, title, body)}{legend}</figure>')


@dataclass(frozen=True)
class Marker:
    """Something that happened to the customer, drawn on the score chart's time axis."""

    when: datetime
    kind: str  # a key of MARKER_KINDS
    label: str = ""  # alerts and actions: "Alert sent: sharp rise", "Call — retained" (the date is added)
    count: int = 1  # orders: how many that day
    amount: float | Decimal | None = None  # orders: their total


# kind -> (legend name, plural, colour, shape); lanes under the time axis in this order.
MARKER_KINDS = {
    "order": ("Order", "orders", PALETTE[2], "circle"),
    "alert": ("Alert", "alerts", PALETTE[1], "triangle"),
    "action": ("Action logged", "actions", PALETTE[3], "diamond"),
}
MARKER_LANE = 12  # px between lanes
# Markers of one kind within this many pixels of a mark's first one merge into it (its tooltip
# lists them): hundreds of orders become at most one mark per this many pixels. Drawn at the middle
# of what they stand for, two marks are then at least half this apart: 2 * MARKER_RADIUS, no overlap.
MARKER_MIN_GAP = 14
MARKER_RADIUS = 3.5
MARKER_LIST_MAX = 4  # a merged mark names this many, then "…"


def score_history_span(points: Sequence[tuple[datetime, float]]) -> tuple[datetime, datetime] | None:
    """The time axis of `score_history_chart`: first to last score, at least a week wide (None: no scores)."""
    if not points:
        return None
    times = sorted(p[0] for p in points)
    lo, hi = times[0], times[-1]
    if (hi - lo).total_seconds() < 86400:
        lo, hi = lo - timedelta(days=3), hi + timedelta(days=3)
    return lo, hi


def _shape(shape: str, x: float, y: float, size: float, color: str) -> str:
    if shape == "circle":
        return f'<circle cx="{_fmt(x)}" cy="{_fmt(y)}" r="{_fmt(size)}" fill="{color}"/>'
    if shape == "triangle":
        d = f"M{_fmt(x)},{_fmt(y - size * 1.1)} L{_fmt(x + size)},{_fmt(y + size * .8)} L{_fmt(x - size)},{_fmt(y + size * .8)}Z"
    else:  # diamond
        d = f"M{_fmt(x)},{_fmt(y - size * 1.15)} L{_fmt(x + size)},{_fmt(y)} L{_fmt(x)},{_fmt(y + size * 1.15)} L{_fmt(x - size)},{_fmt(y)}Z"
    return f'<path d="{d}" fill="{color}"/>'


def _when(first: datetime, last: datetime) -> str:
    a, b = day(first), day(last)
    return f"on {a}" if a == b else f"from {a} to {b}"


def _money_exact(value) -> str:
    number = float(value)
    return money(number, digits=0 if number.is_integer() else 2)


def _marker_text(kind: str, group: list[Marker]) -> str:
    """The tooltip of one mark, which may stand for several markers of one kind."""
    when = _when(group[0].when, group[-1].when)
    if kind == "order":
        n = sum(m.count for m in group)
        amounts = [m.amount for m in group if m.amount is not None]
        total = f" {_money_exact(sum(float(a) for a in amounts))}" if amounts else ""
        return f"Order{total} {when}" if n == 1 else f"{n} orders,{total} {when}"
    if len(group) == 1:
        return f"{group[0].label} {when}"
    names = "; ".join(m.label for m in group[:MARKER_LIST_MAX]) + ("; …" if len(group) > MARKER_LIST_MAX else "")
    return f"{len(group)} {MARKER_KINDS[kind][1]} {when}: {names}"


def _marker_groups(frame: _Frame, markers: Sequence[Marker]) -> dict[str, list[list[Marker]]]:
    """Markers inside the time axis by kind, oldest first, neighbours closer than MARKER_MIN_GAP merged."""
    lo, hi = frame.x_range
    groups: dict[str, list[list[Marker]]] = {}
    for kind in MARKER_KINDS:
        inside = sorted((m for m in markers if m.kind == kind and lo <= m.when.timestamp() <= hi), key=lambda m: m.when)
        merged: list[list[Marker]] = []
        for m in inside:
            if merged and frame.px(m.when.timestamp()) - frame.px(merged[-1][0].when.timestamp()) < MARKER_MIN_GAP:
                merged[-1].append(m)
            else:
                merged.append([m])
        if merged:
            groups[kind] = merged
    return groups


def _marker_key(groups: dict[str, list[list[Marker]]]) -> SafeString:
    """The legend: the score line, then each kind of marker with its shape and how many there are."""
    items = [f'<li><span class="swatch" style="background:{PALETTE[0]}"></span>Churn probability</li>']
    for kind, merged in groups.items():
        name, plural, color, shape = MARKER_KINDS[kind]
        n = sum(m.count if kind == "order" else 1 for group in merged for m in group)
        icon = f'<svg class="mark-key" width="12" height="12" viewBox="0 0 12 12" aria-hidden="true">{_shape(shape, 6, 6, 4, color)}</svg>'
        items.append(f"<li>{icon}{escape(name if n == 1 else plural.capitalize())} ({n})</li>")
    return mark_safe(f'<ul class="legend chart-key">{"".join(items)}</ul>')


def score_history_chart(
    points: Sequence[tuple[datetime, float]], *, high: float, medium: float, title: str = "Churn probability over time",
    width: int = 640, height: int = 220, markers: Sequence[Marker] = (),
) -> SafeString:
    """A customer's probability over time with the medium/high band thresholds shaded, and what
    happened (orders, alerts, logged actions) marked in lanes under the time axis, each mark with
    its tooltip and a dotted guide up through the chart for alerts and actions."""
    points = sorted(points)
    span = score_history_span(points)
    if span is None:
        return empty_chart("No scores yet", width=width, height=height)
    lo, hi = span[0].timestamp(), span[1].timestamp()
    probe = _Frame(width, height, (lo, hi), (0.0, 1.0))
    groups = _marker_groups(probe, markers)
    lanes = len(groups)
    height += lanes * MARKER_LANE
    frame = _Frame(width, height, (lo, hi), (0.0, 1.0), bottom=26 + lanes * MARKER_LANE)
    base = frame.height - frame.bottom
    body = [
        f'<rect class="band-high" x="{frame.left}" y="{_fmt(frame.py(1.0))}" width="{frame.width - frame.left - frame.right}" '
        f'height="{_fmt(frame.py(high) - frame.py(1.0))}"/>',
        f'<rect class="band-medium" x="{frame.left}" y="{_fmt(frame.py(high))}" width="{frame.width - frame.left - frame.right}" '
        f'height="{_fmt(frame.py(medium) - frame.py(high))}"/>',
    ]
    count = 5 if width >= 480 else 3
    step = (hi - lo) / (count - 1)
    # The pages' one date format (crm_plugin.formatting.day).
    ticks = [(lo + i * step, day(datetime.fromtimestamp(lo + i * step, tz=points[0][0].tzinfo)))
             for i in range(count)]
    body += _axes(frame, x_label="", y_label="", x_percent=False, y_percent=True, x_ticks=ticks,
                  tick_offset=lanes * MARKER_LANE)
    marks = []
    for lane, (kind, merged) in enumerate(groups.items()):
        _, _, color, shape = MARKER_KINDS[kind]
        y = base + 8 + lane * MARKER_LANE
        for group in merged:
            x = (frame.px(group[0].when.timestamp()) + frame.px(group[-1].when.timestamp())) / 2
            if kind != "order":
                body.append(f'<line class="mark-guide" stroke="{color}" x1="{_fmt(x)}" x2="{_fmt(x)}" '
                            f'y1="{frame.top}" y2="{_fmt(base)}"/>')
            many = " many" if len(group) > 1 or group[0].count > 1 else ""
            marks.append(f'<g class="mark mark-{kind}{many}"><title>{escape(_marker_text(kind, group))}</title>'
                         f'{_shape(shape, x, y, MARKER_RADIUS, color)}</g>')
    pairs = [(p[0].timestamp(), float(p[1])) for p in points]
    body.append(_polyline(frame, pairs, PALETTE[0]))
    for (x, y), (when, _) in zip(pairs, points):
        body.append(
            f'<circle cx="{_fmt(frame.px(x))}" cy="{_fmt(frame.py(y))}" r="3" fill="{PALETTE[0]}">'
            f'<title>{day(when)}: {y * 100:.0f}%</title></circle>'
        )
    body += marks
    summary = (f"{title}: from {points[0][1] * 100:.0f}% on {day(points[0][0])} to {points[-1][1] * 100:.0f}% "
               f"on {day(points[-1][0])}")
    if groups:
        counts = [(sum(m.count if kind == "order" else 1 for g in merged for m in g), kind) for kind, merged in groups.items()]
        summary += "; marked: " + ", ".join(f"{n} {MARKER_KINDS[kind][0].lower() if n == 1 else MARKER_KINDS[kind][1]}"
                                            for n, kind in counts)
    svg = _svg(frame, summary, body, css_class="chart chart-wide")
    if not groups:
        return svg
    return mark_safe(f'<figure class="chart-box">{svg}{_marker_key(groups)}</figure>')


def sparkline(values: Sequence[float], *, width: int = 72, height: int = 20) -> SafeString:
    """A tiny trend line, oldest to newest, 0..1 on a fixed scale so rows compare."""
    values = [float(v) for v in values if v is not None]
    if len(values) < 2:
        return mark_safe("")
    step = (width - 4) / (len(values) - 1)
    coords = [(2 + i * step, 2 + (1 - v) * (height - 4)) for i, v in enumerate(values)]
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    rising = values[-1] - values[0]
    css = "up" if rising > 0.01 else "down" if rising < -0.01 else "flat"
    label = f"trend over {len(values)} scores: {values[0] * 100:.0f}% to {values[-1] * 100:.0f}%"
    lx, ly = coords[-1]
    return mark_safe(
        f'<svg class="spark spark-{css}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{label}"><title>{label}</title><polyline fill="none" points="{points}"/>'
        f'<circle cx="{lx:.1f}" cy="{ly:.1f}" r="2"/></svg>'
    )


def empty_chart(title: str, *, width: int = 360, height: int = 260) -> SafeString:
    label = escape(title)
    return mark_safe(
        f'<figure class="chart-box"><svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{label}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{label}</title><rect class="empty" x="1" y="1" width="{width - 2}" '
        f'height="{height - 2}" rx="6"/><text class="tick" x="{width / 2:.0f}" y="{height / 2:.0f}" '
        f'text-anchor="middle">No data</text></svg></figure>'
    )


def _money_tick(value: float) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 10_000:
        return f"{value / 1_000:.0f}k"
    if abs(value) >= 1_000:
        return f"{value / 1_000:.1f}k"
    return f"{value:.0f}"


def profit_curve_chart(
    thresholds: Sequence[float], profits: Sequence[float], *, chosen: float, in_use: float | None,
    title: str = "Expected profit by alert threshold", width: int = 640, height: int = 240,
) -> SafeString:
    """Expected profit against the alert threshold, with the most profitable line and the one in use marked."""
    pairs = _finite_pairs(thresholds, profits)
    if not pairs:
        return empty_chart(title, width=width, height=height)
    low = min(0.0, min(y for _, y in pairs))
    high = max(0.0, max(y for _, y in pairs))
    if high - low < 1e-9:
        high = low + 1.0
    pad = (high - low) * 0.08
    frame = _Frame(width, height, (0.0, 1.0), (low - (pad if low < 0 else 0), high + pad), left=52, bottom=34)
    body = _axes(frame, x_label="Alert everyone with churn probability at least", y_label="", x_percent=True,
                 y_percent=False, y_format=_money_tick, y_tick_count=6)
    zero = frame.py(0.0)
    body.append(f'<line class="ref" stroke="#9aa3ad" x1="{frame.left}" x2="{frame.width - frame.right}" '
                f'y1="{_fmt(zero)}" y2="{_fmt(zero)}"/>')
    body.append(_polyline(frame, pairs, PALETTE[0]))
    markers = [(chosen, PALETTE[2], False, "most profitable")]
    if in_use is not None:
        markers.append((in_use, PALETTE[1], True, "in use"))
    by_x = dict(pairs)
    for x, color, dashed, _ in markers:
        px = _fmt(frame.px(x))
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        body.append(f'<line class="marker" stroke="{color}" stroke-width="2"{dash} x1="{px}" x2="{px}" '
                    f'y1="{frame.top}" y2="{frame.height - frame.bottom}"/>')
        if round(x, 2) in by_x:
            body.append(f'<circle cx="{px}" cy="{_fmt(frame.py(by_x[round(x, 2)]))}" r="3.5" fill="{color}"/>')
    summary = f"{title}: most profitable at {chosen * 100:.0f}%"
    if in_use is not None:
        summary += f", in use {in_use * 100:.0f}%"
    legend = _legend([Series(f"{name} ({x * 100:.0f}%)", [], []) for x, _, _, name in markers],
                     [color for _, color, _, _ in markers])
    return mark_safe(f'<figure class="chart-box">{_svg(frame, summary, body, css_class="chart chart-wide")}{legend}</figure>')


def weekly_counts_chart(
    weeks: Sequence[str], series: Sequence[Series], *, title: str = "Week by week",
    width: int = 640, height: int = 220, label_every: int = 1,
) -> SafeString:
    """Counts per week (oldest first) as one line per series, each week labelled by `weeks`; on a
    narrow chart every `label_every`-th week is labelled, always including the latest."""
    n = len(weeks)
    values = [[float(v) for v in s.ys] for s in series]
    if not n or not any(any(vs) for vs in values):
        return empty_chart(f"{title}: nothing yet", width=width, height=height)
    top = max(max(vs) for vs in values)
    # At least 0-4 so a quiet period gets whole-number ticks instead of 0.5 steps.
    frame = _Frame(width, height, (0.0, float(max(n - 1, 1))), (0.0, float(max(4, math.ceil(top * 1.1)))),
                   left=36, right=16, bottom=26)
    ticks = [(float(i), weeks[i]) for i in range(n) if (n - 1 - i) % max(label_every, 1) == 0]
    body = _axes(frame, x_label="", y_label="", x_percent=False, y_percent=False, x_ticks=ticks)
    colors = []
    for index, (s, vs) in enumerate(zip(series, values)):
        color = s.color or PALETTE[index % len(PALETTE)]
        colors.append(color)
        pairs = [(float(i), v) for i, v in enumerate(vs)]
        body.append(_polyline(frame, pairs, color))
        body.extend(
            f'<circle cx="{_fmt(frame.px(x))}" cy="{_fmt(frame.py(y))}" r="2.5" fill="{color}">'
            f'<title>{escape(weeks[int(x)])}: {y:.0f} {escape(s.name.lower())}</title></circle>'
            for x, y in pairs
        )
    totals = ", ".join(f"{s.name.lower()} {sum(vs):.0f}" for s, vs in zip(series, values))
    summary = f"{title}, {n} weeks from {weeks[0]} to {weeks[-1]}: {totals}"
    legend = _legend(series, colors)
    return mark_safe(f'<figure class="chart-box">{_svg(frame, summary, body, css_class="chart chart-wide")}{legend}</figure>')
