"""The charts' geometry: numbers in, plain shapes out; the markup is in
``templates/charts.html``.

Granted entries per hour (stacked by zone), the gates by hour heat map and
the horizontal bars are drawn at a fixed width in SVG units; the page
scales them. Colours are safe for colour-blind readers: zones take Paul
Tol's "muted" scheme (grey for the rest), the heat map viridis, light to
dark.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from ...core.venue_view import NO_ZONE
from .clock import Clock

ZONE_COLOURS = (
    "#332288",
    "#88CCEE",
    "#44AA99",
    "#117733",
    "#999933",
    "#DDCC77",
    "#CC6677",
    "#882255",
    "#AA4499",
)
OTHER_COLOUR = "#BBBBBB"
HEAT_COLOURS = ("#FDE725", "#90D743", "#35B779", "#21918C", "#31688E", "#443983", "#440154")
EMPTY_CELL = "#F2F2F2"
_CONTINUOUS_HOURS = 96  # longer spans show only the hours that have entries


def thousands(value: int | float) -> str:
    """A count as the page writes it: 12,345."""
    return f"{value:,}"


def hour_axes(
    hourly: Iterable[tuple[str, str | None, str, int]], clock: Clock
) -> tuple[
    list[tuple[str, datetime]],
    list[tuple[str, str, list[int]]],
    dict[str, str],
    dict[tuple[str, str], dict[int, int]],
]:
    """From granted entries per (UTC hour, zone, gate): the hours on the x
    axis (label, hour), the zone series (name, colour, entries per hour), the
    zone colours and the gate grid ((zone, gate): {hour index: entries})."""
    by_hour: dict[datetime, list[tuple[str, str, int]]] = defaultdict(list)
    for key, zone, gate, n in hourly:
        hour = clock.hour(key)
        if hour is not None:
            by_hour[hour].append((zone or NO_ZONE, gate, n))
    if not by_hour:
        return [], [], {}, {}
    first, last = min(by_hour), max(by_hour)
    if (last - first) <= timedelta(hours=_CONTINUOUS_HOURS):
        span = [
            first + timedelta(hours=i)
            for i in range(int((last - first).total_seconds() // 3600) + 1)
        ]
    else:
        span = sorted(by_hour)
    hours: list[tuple[str, datetime]] = []
    previous_day = None
    for hour in span:
        local = hour.astimezone(clock.zone)
        day = local.strftime("%a %d %b")
        hours.append((local.strftime("%H:%M") + ("\n" + day if day != previous_day else ""), hour))
        previous_day = day
    index = {hour: i for i, (_, hour) in enumerate(hours)}

    zone_totals: Counter[str] = Counter()
    per_zone: dict[str, list[int]] = defaultdict(lambda: [0] * len(hours))
    grid: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for hour, items in by_hour.items():
        i = index[hour]
        for zone, gate, n in items:
            zone_totals[zone] += n
            per_zone[zone][i] += n
            cell = grid[(zone, gate)]
            cell[i] = cell.get(i, 0) + n
    ranked = sorted(zone_totals, key=lambda z: (-zone_totals[z], z))
    shown, rest = ranked[: len(ZONE_COLOURS)], ranked[len(ZONE_COLOURS) :]
    if len(rest) == 1:
        shown, rest = ranked, []
    colours = {
        z: ZONE_COLOURS[i] if i < len(ZONE_COLOURS) else OTHER_COLOUR for i, z in enumerate(shown)
    }
    series = [(z, colours[z], per_zone[z]) for z in shown]
    if rest:
        other = [sum(per_zone[z][i] for z in rest) for i in range(len(hours))]
        series.append((f"{len(rest)} other zones", OTHER_COLOUR, other))
        colours.update((z, OTHER_COLOUR) for z in rest)
    return hours, series, colours, dict(grid)


def _nice_step(top: float, ticks: int = 5) -> float:
    """A whole step of 1, 2 or 5 times a power of ten that puts about
    ``ticks`` grid lines up to ``top``."""
    raw = max(top, 1) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):  # counts: ticks stay whole numbers
        if raw <= m * power:
            return max(1.0, m * power)
    return 10 * power


def _axis_labels(labels: Sequence[str], x_of: Callable[[int], float], y: float) -> list[Any]:
    """Tick labels along the x axis: every few hours, and each new day."""
    every = max(1, math.ceil(len(labels) / 24))
    out = []
    for i, text in enumerate(labels):
        if i % every == 0 or "\n" in text:
            lines = (text if i % every == 0 else text.split("\n", 1)[1]).split("\n")
            out.append({"x": x_of(i), "y": y, "lines": lines})
    return out


def stacked_bars(
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[int]]],
    *,
    y_label: str,
    label: str,
) -> dict[str, Any]:
    """One bar per label, each stacked from the series (name, colour, values)."""
    width, height = 1100, 340
    left, right, top, bottom = 64, 16, 14, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(s[2][i] for s in series) for i in range(len(labels))]
    step = _nice_step(max(totals, default=0))
    y_max = step * math.ceil(max(max(totals, default=0), 1) / step)
    slot = plot_w / max(len(labels), 1)
    bar = min(56.0, max(1.0, slot * 0.78))
    grid = []
    tick = 0.0
    while tick <= y_max + 1e-9:
        grid.append({"y": top + plot_h - tick / y_max * plot_h, "text": thousands(int(tick))})
        tick += step
    bars = []
    for i, text in enumerate(labels):
        x = left + i * slot + (slot - bar) / 2
        base: float = top + plot_h
        for name, colour, values in series:
            v = values[i]
            if not v:
                continue
            h = v / y_max * plot_h
            base -= h
            title = f"{text.split(chr(10))[0]} {name}: {thousands(v)}"
            bars.append({"x": x, "y": base, "w": bar, "h": h, "colour": colour, "title": title})
    return {
        "width": width,
        "height": height,
        "label": label,
        "y_label": y_label,
        "y_label_at": (16, round(top + plot_h / 2)),
        "left": left,
        "right": width - right,
        "base": top + plot_h,
        "grid": grid,
        "bars": bars,
        "ticks": _axis_labels(labels, lambda i: left + i * slot + slot / 2, top + plot_h + 16),
    }


def heatmap(grid: dict[tuple[str, str], dict[int, int]], labels: Sequence[str]) -> dict[str, Any]:
    """Gates (rows, grouped by zone) by hours (columns); darker is busier."""
    rows = sorted(grid, key=lambda zg: (zg[0], zg[1]))
    peak = max((n for cells in grid.values() for n in cells.values()), default=1)
    width = 1100
    left, right, top = 230, 70, 8
    cell_h = 18
    plot_w: float = width - left - right
    cell_w = min(64.0, plot_w / max(len(labels), 1))
    plot_w = cell_w * len(labels)
    height = top + cell_h * len(rows) + 46
    bounds = [math.ceil(peak * (i + 1) / len(HEAT_COLOURS)) for i in range(len(HEAT_COLOURS))]
    out_rows, cells = [], []
    for r, (zone, gate) in enumerate(rows):
        y = top + r * cell_h
        name = f"{gate} ({zone})"
        row = grid[(zone, gate)]
        out_rows.append(
            {
                "y": y,
                "name": name,
                "short": name if len(name) <= 34 else name[:33] + "\u2026",
                "total": thousands(sum(row.values())),
            }
        )
        for c in range(len(labels)):
            n = row.get(c, 0)
            if n:
                level = min(len(HEAT_COLOURS) - 1, bisect.bisect_left(bounds, n))
                colour = HEAT_COLOURS[level]
            else:
                level, colour = -1, EMPTY_CELL
            cells.append(
                {
                    "x": left + c * cell_w,
                    "y": y,
                    "w": max(cell_w - 1, 0.5),
                    "h": cell_h - 1,
                    "colour": colour,
                    "title": f"{gate} {labels[c].split(chr(10))[0]}: {thousands(n)}",
                    "text": str(n) if n and cell_w >= 26 else None,
                    "ink": "#FFFFFF" if level >= 3 else "#000000",
                    "cx": left + c * cell_w + cell_w / 2,
                }
            )
    keys, low = [], 1
    for colour, high in zip(HEAT_COLOURS, bounds, strict=True):
        if high >= low:
            text = f"{thousands(low)}\u2013{thousands(high)}" if high > low else thousands(low)
            keys.append((text, colour))
        low = high + 1
    base = top + cell_h * len(rows)
    return {
        "width": width,
        "height": height,
        "left": left,
        "total_x": left + plot_w + 6,
        "rows": out_rows,
        "cells": cells,
        "legend": [("none", EMPTY_CELL), *keys],
        "ticks": _axis_labels(labels, lambda c: left + c * cell_w + cell_w / 2, base + 14),
    }


def hbars(items: Sequence[tuple[str, int, str]], *, label: str) -> dict[str, Any]:
    """One horizontal bar per (name, count, colour), the longest full width."""
    width = 1100
    left, right, row_h = 330, 90, 26
    plot_w = width - left - right
    peak = max((n for _, n, _ in items), default=1) or 1
    rows = []
    for i, (name, n, colour) in enumerate(items):
        w = max(2.0, n / peak * plot_w)
        rows.append(
            {
                "y": 5 + i * row_h,
                "name": name,
                "short": name if len(name) <= 48 else name[:47] + "\u2026",
                "w": w,
                "h": row_h - 6,
                "n": thousands(n),
                "colour": colour,
            }
        )
    return {
        "width": width,
        "height": row_h * len(items) + 10,
        "label": label,
        "left": left,
        "rows": rows,
    }
