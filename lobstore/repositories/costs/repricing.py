"""Re-pricing: cost events that were priced from the table, recomputed with the table as it is
now (a price corrected, or added, after the fact).

Only events the store costed itself are touched — ``computed`` ones and ``uncosted`` ones (no
price then; one may exist now); a cost the caller reported stays as reported. Each changed
event keeps the price row that costed it (``price_id``). The hourly rollups and the budgets'
spend move by the same delta in the same transaction, and the run is recorded (who, when, the
price rows used, counts, old and new totals). Running it again changes nothing: it is
idempotent. A dry run answers the same figures and writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ...clock import utcnow
from ...errors import ValidationError
from ...models import RepriceDay, RepriceResult
from ...pricing import compute_cost_micro
from ...schema import cost_events, cost_reprice_runs, cost_rollups
from ...validation import boolean, clean_fields, text, timestamp, with_positional
from ..base import Repository
from ..budgets import charge_budgets
from .common import NUMBERS, TOKEN_FIELDS, floor_hour
from .prices import PRICES_OF, PriceBook, price_from_row

log = logging.getLogger(__name__)

REPRICE_CLEANERS = {
    "model": text(200, required=True).require().doc("the model whose events to re-price"),
    "since": timestamp.require().doc("from (inclusive), by the events' time"),
    "until": timestamp.doc("to (exclusive; default now)"),
    "dry_run": boolean.doc("true: answer what would change and write nothing"),
    "actor": text(200).doc("who re-prices"),
}
TABLE_PRICED = ("computed", "uncosted")  # never "reported": the caller's cost stands
PAGE = 5000
_UPDATE = (sa.update(cost_events).where(cost_events.c.id == sa.bindparam("event_id"))
           .values(cost_micro=sa.bindparam("new_cost"), cost_source=sa.bindparam("new_source"),
                   price_id=sa.bindparam("new_price")))


class CostRepricing(Repository):
    def reprice(self, model: str | None = None, /, **fields: Any) -> RepriceResult:
        """Recompute ``model``'s table-priced events of ``[since, until)`` at the prices in the
        table now. Fields: model, since (required), until (default now), dry_run, actor."""
        values = clean_fields(with_positional(fields, model=model), REPRICE_CLEANERS, "a re-pricing")
        start, end = values["since"], values.get("until") or utcnow() + timedelta(seconds=1)
        if start >= end:
            raise ValidationError("since must be before until", field="since")
        model, dry_run = values["model"], values.get("dry_run", False)
        scope = self._scope.reading() if dry_run else self._scope.writing()
        with scope as conn:
            book = PriceBook(price_from_row(r) for r in conn.execute(PRICES_OF, {"models": [model]}))
            days: dict[str, dict[str, int]] = {}
            rollup: dict[datetime, dict[str, int]] = {}
            changes: list[dict[str, Any]] = []
            charges: list[dict[str, Any]] = []
            used: set[int] = set()
            for row in _table_priced(conn, model, start, end, lock=not dry_run):
                price = book.at(model, row.created_at)
                new_cost = None if price is None else compute_cost_micro(
                    tuple(getattr(row, name) for name in TOKEN_FIELDS), price.per_mtok)
                new_price = None if price is None else price.id
                if new_price is not None:
                    used.add(new_price)
                day = days.setdefault(row.created_at.strftime("%Y-%m-%d"), dict.fromkeys(
                    ("events", "changed_events", "old_micro", "new_micro"), 0))
                day["events"] += 1
                day["old_micro"] += row.cost_micro or 0
                day["new_micro"] += new_cost or 0
                if (new_cost, new_price) == (row.cost_micro, row.price_id):
                    continue
                day["changed_events"] += 1
                changes.append({"event_id": row.id, "new_cost": new_cost, "new_price": new_price,
                                "new_source": "uncosted" if new_cost is None else "computed"})
                delta = (new_cost or 0) - (row.cost_micro or 0)
                hour = rollup.setdefault(floor_hour(row.created_at), dict.fromkeys(NUMBERS, 0))
                hour["cost_micro"] += delta
                hour["costed_events"] += (new_cost is not None) - (row.cost_micro is not None)
                charges.append({"task_id": row.task_id, "model": model, "agent": row.agent,
                                "cost_micro": delta, "created_at": row.created_at})
            totals = {name: sum(day[name] for day in days.values())
                      for name in ("events", "changed_events", "old_micro", "new_micro")}
            result = RepriceResult(
                model=model, since=start, until=end, dry_run=dry_run, price_ids=tuple(sorted(used)),
                days=tuple(RepriceDay(day=d, model=model, **sums) for d, sums in sorted(days.items())),
                actor=values.get("actor"), **totals)
            if dry_run:
                return result
            if changes:
                conn.execute(_UPDATE, changes)
                self._ctx.backend.accumulate(conn, cost_rollups, [
                    {"hour": hour, "model": model, **sums} for hour, sums in sorted(rollup.items())])
                charge_budgets(conn, self._ctx, charges)
            now = utcnow()
            run = {"model": model, "since": start, "until": end, "actor": values.get("actor"), "created_at": now,
                   "price_ids": list(result.price_ids), **totals}
            run_id = conn.execute(sa.insert(cost_reprice_runs), run).inserted_primary_key[0]
        log.info("re-priced %s from %s to %s: %d of %d events changed, %+d micro-dollars (run %d, by %s)",
                 model, start, end, totals["changed_events"], totals["events"],
                 totals["new_micro"] - totals["old_micro"], run_id, values.get("actor"))
        return RepriceResult(**{**result.__dict__, "run_id": run_id, "created_at": now})

    def reprice_runs(self, limit: int = 100) -> list[RepriceResult]:
        """The recorded re-pricing runs, newest first (without their days)."""
        with self._scope.reading() as conn:
            rows = conn.execute(sa.select(cost_reprice_runs).order_by(cost_reprice_runs.c.id.desc()).limit(limit))
            return [RepriceResult(
                run_id=r.id, model=r.model, since=r.since, until=r.until, dry_run=False, actor=r.actor,
                created_at=r.created_at, price_ids=tuple(r.price_ids), events=r.events,
                changed_events=r.changed_events, old_micro=r.old_micro, new_micro=r.new_micro) for r in rows]


def _table_priced(conn: sa.Connection, model: str, start: datetime, end: datetime, *,
                  lock: bool) -> Iterator[sa.Row]:
    """The model's table-priced events of [start, end), page by page in id order; ``lock``: for
    update, so a second re-pricing at once (PostgreSQL) waits and then reads the new costs
    instead of applying the same change again."""
    after = 0
    while True:
        query = (
            sa.select(cost_events.c.id, cost_events.c.task_id, cost_events.c.agent, cost_events.c.created_at,
                      cost_events.c.cost_micro, cost_events.c.price_id, *(cost_events.c[n] for n in TOKEN_FIELDS))
            .where(cost_events.c.model == model, cost_events.c.created_at >= start, cost_events.c.created_at < end,
                   cost_events.c.cost_source.in_(TABLE_PRICED), cost_events.c.id > after)
            .order_by(cost_events.c.id).limit(PAGE)
        )
        rows = conn.execute(query.with_for_update() if lock else query).all()
        yield from rows
        if len(rows) < PAGE:
            return
        after = rows[-1].id
