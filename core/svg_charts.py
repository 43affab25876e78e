"""Small line charts as inline SVG, rendered on the server (no script, nothing fetched).

`line_chart` draws a few series over a fixed time window: a line per series, a point
per sample with its value as a tooltip (<title>), the y scale from zero to the largest
value, and a legend with each series' latest value.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

# Colour-blind friendly (Okabe-Ito), in the order series are drawn.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000")
WIDTH, HEIGHT = 560, 170
LEFT, RIGHT, TOP, BOTTOM = 52, 8, 8, 22
TICK_EVERY = timedelta(minutes=15)


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[datetime, float]]


def format_value(value: float, unit: str = "") -> str:
    """A short reading of a value: 3, 2.5, 0.042, 1.2k; seconds as ms below one."""
    if unit == "s" and 0 < abs(value) < 1:
        return f"{value * 1000:.3g} ms"
    if abs(value) >= 1000:
        text = f"{value / 1000:.3g}k"
    elif value == int(value):
        text = str(int(value))
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".rstrip() if unit else text


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5):
        if step * power >= value:
            return step * power
    return 10 * power


def line_chart(
    *, title: str, series: Sequence[Series], start: datetime, end: datetime, unit: str = ""
) -> SafeString:
    """An <svg> of the series between start and end (aware datetimes), titled."""
    span = max((end - start).total_seconds(), 1.0)
    top_value = _nice_ceiling(max((v for s in series for _, v in s.points), default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: datetime) -> str:
        return f"{LEFT + plot_w * min(max((at - start).total_seconds() / span, 0.0), 1.0):.1f}"

    def y(value: float) -> str:
        return f"{TOP + plot_h * (1 - min(max(value / top_value, 0.0), 1.0)):.1f}"

    parts = [
        format_html(
            '<svg xmlns="http://www.w3.org/2000/svg" class="ops-chart" role="img" '
            'viewBox="0 0 {} {}" width="{}" height="{}" aria-label="{}"><title>{}</title>',
            WIDTH,
            HEIGHT,
            WIDTH,
            HEIGHT,
            title,
            title,
        )
    ]
    # Grid: zero, half and the top of the scale; a time tick every 15 minutes.
    for fraction in (0.0, 0.5, 1.0):
        level = y(top_value * fraction)
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#ddd"/>'
                '<text x="{}" y="{}" font-size="10" text-anchor="end" fill="#666">{}</text>',
                LEFT,
                WIDTH - RIGHT,
                level,
                level,
                LEFT - 4,
                f"{float(level) + 3:.1f}",
                format_value(top_value * fraction, unit),
            )
        )
    tick = start.replace(second=0, microsecond=0)
    tick += timedelta(minutes=-tick.minute % 15)
    while tick <= end:
        parts.append(
            format_html(
                '<text x="{}" y="{}" font-size="10" text-anchor="middle" fill="#666">{}</text>',
                x(tick),
                HEIGHT - 6,
                tick.strftime("%H:%M"),
            )
        )
        tick += TICK_EVERY
    for index, line in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        coordinates = " ".join(f"{x(at)},{y(value)}" for at, value in line.points)
        group = [format_html('<g class="ops-series" data-series="{}">', line.name)]
        if len(line.points) > 1:
            group.append(
                format_html(
                    '<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>',
                    colour,
                    coordinates,
                )
            )
        for at, value in line.points:
            group.append(
                format_html(
                    '<circle cx="{}" cy="{}" r="2" fill="{}"><title>{} {}: {}</title></circle>',
                    x(at),
                    y(value),
                    colour,
                    line.name,
                    at.strftime("%H:%M"),
                    format_value(value, unit),
                )
            )
        group.append(mark_safe("</g>"))  # noqa: S308 (a constant)
        parts.extend(group)
    parts.append(mark_safe("</svg>"))  # noqa: S308 (a constant)
    chart = mark_safe("".join(parts))  # noqa: S308 (every part is escaped above)
    legend = [
        format_html(
            '<li><span style="color:{}">&#9632;</span> {}: {}</li>',
            PALETTE[index % len(PALETTE)],
            line.name,
            format_value(line.points[-1][1], unit) if line.points else "no data",
        )
        for index, line in enumerate(series)
    ]
    if not series:
        legend = [mark_safe("<li>No data in this window.</li>")]  # noqa: S308 (a constant)
    return format_html(
        '<figure class="ops-figure"><figcaption>{}</figcaption>{}'
        '<ul class="ops-legend">{}</ul></figure>',
        title,
        chart,
        mark_safe("".join(legend)),  # noqa: S308 (each item escaped)
    )
