"""What the cost modules share: the token fields, time bounds and filters, and rows as
events."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ...models import CostTotals
from ...schema import cost_events, cost_rollups
from ...validation import clean_fields, text, timestamp

TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


SUMS = (
    sa.func.sum(cost_events.c.cost_micro),
    sa.func.sum(cost_events.c.input_tokens),
    sa.func.sum(cost_events.c.output_tokens),
    sa.func.sum(cost_events.c.cache_read_tokens),
    sa.func.sum(cost_events.c.cache_write_tokens),
    sa.func.count(),
    sa.func.count(cost_events.c.cost_micro),
)


ROLLUP_SUMS = (
    sa.func.sum(cost_rollups.c.cost_micro),
    sa.func.sum(cost_rollups.c.input_tokens),
    sa.func.sum(cost_rollups.c.output_tokens),
    sa.func.sum(cost_rollups.c.cache_read_tokens),
    sa.func.sum(cost_rollups.c.cache_write_tokens),
    sa.func.sum(cost_rollups.c.events),
    sa.func.sum(cost_rollups.c.costed_events),
)
HOUR = timedelta(hours=1)


def floor_hour(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def ceil_hour(when: datetime) -> datetime:
    floor = floor_hour(when)
    return floor if floor == when else floor + HOUR


NUMBERS = ("cost_micro", *TOKEN_FIELDS, "events", "costed_events")  # the columns of a sum table


def add_up(rows: Iterable[Mapping[str, Any]], key_of: Callable[[Mapping[str, Any]], tuple[Any, ...]]
           ) -> list[tuple[tuple[Any, ...], dict[str, int]]]:
    """Event rows added up per key (cost, tokens, events, costed events), sorted by key, so
    concurrent writers on PostgreSQL lock the sum rows in the same order."""
    sums: dict[tuple[Any, ...], dict[str, int]] = {}
    for row in rows:
        acc = sums.setdefault(key_of(row), dict.fromkeys(NUMBERS, 0))
        acc["cost_micro"] += row["cost_micro"] or 0
        for name in TOKEN_FIELDS:
            acc[name] += row[name]
        acc["events"] += 1
        acc["costed_events"] += row["cost_micro"] is not None
    return sorted(sums.items())


def hourly_sums(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """New event rows added up per (hour, model): what their insert adds to cost_rollups."""
    return [{"hour": hour, "model": model, **acc}
            for (hour, model), acc in add_up(rows, lambda row: (floor_hour(row["created_at"]), row["model"]))]


def sum_row(row: Sequence[Any], key: str | None = None) -> CostTotals:
    cost, inp, out, c_read, c_write, events, costed = (int(v or 0) for v in row)
    return CostTotals(cost, inp, out, c_read, c_write, events, events - costed, key=key)


EVENT_COLUMNS = [c.name for c in cost_events.columns]


def clean_filter(name: str, value: Any) -> str:
    return clean_fields({name: value}, {name: text(200, required=True)}, "a cost filter")[name]


def bound(name: str, value: Any) -> datetime | None:
    return clean_fields({name: value}, {name: timestamp}, "a cost filter")[name]

