"""Small line charts drawn on the server as inline SVG: no chart library, no script, and
nothing for the browser to fetch (the pages must work on a network without internet)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Colour-blind-safe palette (Okabe-Ito), one colour per modality.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 40


@dataclass(frozen=True)
class Series:
    """One line: its name and a value (or None: no data) per day."""

    name: str
    median: Mapping[date, float | None]
    p90: Mapping[date, float | None]


def _nice_ceiling(value: float) -> float:
    """The smallest round number (1, 1.2, 1.6, 2, 3, 4, 6, 8 times a power of ten) at or
    above ``value``: the top of the axis, with four round ticks below it."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 1.2, 1.6, 2, 3, 4, 6, 8, 10):
        if value <= step * power * (1 + 1e-9):
            return float(step * power)
    return float(10 * power)


def line_chart(
    *, title: str, days: Sequence[date], series: Sequence[Series], unit: str = "min"
) -> SafeString:
    """Median (solid) and 90th percentile (dashed) per day, one colour per series."""
    values = [
        v for s in series for d in days for v in (s.median.get(d), s.p90.get(d)) if v is not None
    ]
    top = _nice_ceiling(max(values)) if values else 1.0
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * (i + 0.5) / len(days) if days else 0)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    out = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for k in range(5):
        tick = top * k / 4
        yy = y(tick)
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end">'
            f"{tick:g}</text>"
        )
    out.append(
        f'<text class="axis" x="12" y="{TOP + plot_h / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {TOP + plot_h / 2:.0f})">{escape(unit)}</text>'
    )
    label_every = max(1, math.ceil(len(days) / 10))
    for i, d in enumerate(days):
        if i % label_every == 0:
            out.append(
                f'<text class="axis" x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 18}" '
                f'text-anchor="middle">{d:%d %b}</text>'
            )
    for n, s in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        for values_by_day, dash in ((s.median, ""), (s.p90, ' stroke-dasharray="6 4"')):
            points = [
                (x(i), y(value))
                for i, d in enumerate(days)
                if (value := values_by_day.get(d)) is not None
            ]
            if len(points) > 1:
                path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
                out.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2.5"{dash} '
                    f'points="{path}"/>'
                )
            for px, py in points:
                out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{colour}"/>')
    if not values:
        out.append(
            f'<text class="axis" x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h / 2:.0f}" '
            'text-anchor="middle">No figures in this period</text>'
        )
    out.append("</svg>")
    return mark_safe("".join(out))  # noqa: S308 - every text in it is escaped above


def legend_colours(names: Sequence[str]) -> list[tuple[str, str]]:
    return [(name, PALETTE[n % len(PALETTE)]) for n, name in enumerate(names)]
