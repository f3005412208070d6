"""A small inline SVG of daily spend per model: no chart library, nothing fetched at run time."""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape
from typing import Any

from ...pricing import micro_to_usd

WIDTH, HEIGHT, PAD = 720, 200, 30
COLORS = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")


def daily_chart(days: list[tuple[Any, tuple[Any, ...]]], since: datetime, count: int) -> dict[str, Any]:
    """Stacked bars, one per day, a colour per model: the SVG markup and its legend."""
    by_day = {str(total.key): models for total, models in days}
    models: list[str] = []
    for _, split in days:
        models += [m.key for m in split if m.key not in models]
    colour = {model: COLORS[i % len(COLORS)] for i, model in enumerate(models)}
    top = max((total.cost_micro for total, _ in days), default=0) or 1
    bar = (WIDTH - 2 * PAD) / count
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="daily spend per model, {count} days" class="chart">',
             f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>',
             f'<text x="2" y="{PAD - 8}" font-size="11">${micro_to_usd(top):,.2f}</text>']
    for i in range(count):
        day = (since + timedelta(days=i)).date().isoformat()
        x, y = PAD + i * bar, HEIGHT - PAD
        for model in by_day.get(day, ()):
            height = (model.cost_micro or 0) / top * (HEIGHT - 2 * PAD)
            y -= height
            parts.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{height:.1f}" '
                         f'fill="{colour[model.key]}"><title>{escape(day)} {escape(str(model.key))}: '
                         f'${micro_to_usd(model.cost_micro or 0):,.2f}</title></rect>')
        if i % 5 == 0:
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 10}" font-size="10">{day[5:]}</text>')
    parts.append("</svg>")
    return {"svg": "".join(parts), "legend": [(m, colour[m]) for m in models]}
