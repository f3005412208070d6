"""Budgets: spending limits per task, task type, model, agent or the whole fleet, per UTC day,
week, month or in total.

A budget's spend is counted in the cost-ingest transaction (:func:`charge_budgets`): the
events' costs are added to the budget's row for their period (``budget_spend``), which
PostgreSQL locks until the transaction ends, so racing writers take turns and each sees the sum
with the others' costs in it. The transaction that takes a sum across 80 % or 100 % of the limit
writes the alert; the unique key of ``budget_alerts`` makes it once per budget period whatever
happens. An alert is a row of the budget alert feed, an audit finding (type ``budget``: warning
at 80 %, critical at 100 %) and, for a task budget, an event on the task. Ingest never refuses:
the money is spent; a hard budget makes the task's budget answer ``exhausted`` instead.

A budget counts the spend of its current period from when it is made (the events already
stored in that period are added then), and every cost recorded after.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from ..clock import to_iso, utcnow
from ..errors import NotFoundError, ValidationError
from ..models import BUDGET_PERIODS, BUDGET_SCOPES, BUDGET_THRESHOLDS, Budget, BudgetAlert, TaskBudget
from ..pricing import micro_to_usd, usd_to_micro
from ..schema import UTCDateTime, budget_alerts, budget_spend, budgets, cost_archive, cost_events, tasks
from ..validation import boolean, choice, clean_fields, field, text
from .base import ConnectionScope, Repository, StoreContext, task_row
from .events import check_cursor, check_limit, insert_event

log = logging.getLogger(__name__)

MAX_BUDGET_USD = Decimal(100_000_000)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # the one period of a "total" budget
TARGETED = ("task_type", "model", "agent")  # scopes whose target is a name


def _limit(value: Any) -> int:
    micro = usd_to_micro(value, maximum=MAX_BUDGET_USD)
    if micro == 0:
        raise ValueError("must be more than $0")
    return micro


BUDGET_CLEANERS = {
    "scope": choice(BUDGET_SCOPES).require().doc("what the limit is on"),
    "target": text(200).doc("the task (T42) of a task budget; the task type, model or agent of theirs; "
                            "none for the fleet"),
    "period": choice(BUDGET_PERIODS).require().doc("a UTC day, week (from Monday), month, or total"),
    "limit_usd": field(_limit, {"type": "number", "minimum": 0, "exclusiveMinimum": True}, "the limit in US dollars").require(),
    "hard": boolean.doc("true: the task's budget answers exhausted at 100 % (default: advisory)"),
    "actor": text(200).doc("who set it"),
}
REMOVE_CLEANERS = {"actor": text(200)}

_LIVE = sa.select(budgets).where(budgets.c.removed_at.is_(None)).order_by(budgets.c.id)
_INSERT = sa.insert(budgets)


def period_start(period: str, when: datetime) -> datetime:
    """The start of the UTC period holding ``when``: midnight, Monday's midnight, the 1st."""
    if period == "total":
        return EPOCH
    day = when.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def period_end(period: str, start: datetime) -> datetime | None:
    if period == "total":
        return None
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    return (start + timedelta(days=32)).replace(day=1)


def describe(budget: Budget) -> str:
    """In words, for findings and events: "task T42", "model claude-opus-4-6", "the fleet"."""
    if budget.scope == "fleet":
        return "the fleet"
    what = budget.task_ref if budget.scope == "task" else budget.target
    return f"{budget.scope.replace('_', ' ')} {what}"


class BudgetRepository(Repository):
    """``store.budgets``: set, list and remove budgets; the alert feed; a task's budget."""

    def create(self, /, **fields: Any) -> Budget:
        """A new budget. Fields: scope (task, task_type, model, agent, fleet), target (the task
        for a task budget, the name for task_type / model / agent, none for the fleet), period
        (day, week, month, total), limit_usd, hard (default false: advisory), actor."""
        values = clean_fields(fields, BUDGET_CLEANERS, "a budget")
        scope, target = values["scope"], values.get("target")
        if scope == "fleet" and target is not None:
            raise ValidationError("a fleet budget has no target", field="target")
        if scope != "fleet" and target is None:
            raise ValidationError(f"a {scope} budget needs a target (the {scope.replace('_', ' ')})", field="target")
        now = utcnow()
        with self._scope.writing() as conn:
            task_id = task_row(conn, target, self._ctx).id if scope == "task" else None
            row = {
                "scope": scope, "target": None if scope in ("task", "fleet") else target, "task_id": task_id,
                "period": values["period"], "limit_micro": values["limit_usd"], "hard": values.get("hard", False),
                "actor": values.get("actor"), "created_at": now, "removed_at": None,
            }
            budget_id = conn.execute(_INSERT, row).inserted_primary_key[0]
            budget = self._budget({"id": budget_id, **row})
            start = period_start(budget.period, now)
            spent = _spent_so_far(conn, budget, start)
            if spent:
                conn.execute(sa.insert(budget_spend), {"budget_id": budget_id, "period_start": start,
                                                       "spent_micro": spent, "limit_micro": budget.limit_micro})
                _alert_crossings(conn, self._ctx, budget, start, 0, spent)
        log.info("budget %d set: %s per %s, $%s (%s)", budget_id, describe(budget), budget.period,
                 micro_to_usd(budget.limit_micro), "hard" if budget.hard else "advisory")
        return _with_spend(budget, start, spent)

    def list(self, *, include_removed: bool = False) -> list[Budget]:
        """Every live budget (and the removed ones too with ``include_removed``), each with what
        it has spent in its current period."""
        query = sa.select(budgets).order_by(budgets.c.id)
        if not include_removed:
            query = query.where(budgets.c.removed_at.is_(None))
        with self._scope.reading() as conn:
            found = [self._budget(row._mapping) for row in conn.execute(query)]
            return self._current(conn, found)

    def get(self, budget_id: int) -> Budget:
        budget_id = check_cursor(budget_id, "id")
        with self._scope.reading() as conn:
            row = conn.execute(sa.select(budgets).where(budgets.c.id == budget_id)).first()
            if row is None:
                raise NotFoundError(f"no budget {budget_id}")
            return self._current(conn, [self._budget(row._mapping)])[0]

    def remove(self, budget_id: int, /, **fields: Any) -> Budget:
        """Stop a budget (it is kept, with its alerts, as removed)."""
        budget_id = check_cursor(budget_id, "id")
        values = clean_fields(fields, REMOVE_CLEANERS, "a budget removal")
        with self._scope.writing() as conn:
            done = conn.execute(sa.update(budgets).where(budgets.c.id == budget_id, budgets.c.removed_at.is_(None))
                                .values(removed_at=utcnow()))
            if done.rowcount != 1:
                raise NotFoundError(f"no live budget {budget_id}")
            row = conn.execute(sa.select(budgets).where(budgets.c.id == budget_id)).one()
        log.info("budget %d removed by %s", budget_id, values.get("actor"))
        return self._budget(row._mapping)

    def alerts(self, *, after: int = 0, limit: int = 100, budget_id: int | None = None) -> list[BudgetAlert]:
        """The budget alert feed: crossings of 80 % and 100 % in id order, after ``after``."""
        after = check_cursor(after) or 0
        limit = check_limit(limit)
        query = sa.select(budget_alerts).where(budget_alerts.c.id > after)
        if budget_id is not None:
            query = query.where(budget_alerts.c.budget_id == check_cursor(budget_id, "budget_id"))
        with self._scope.reading() as conn:
            rows = conn.execute(query.order_by(budget_alerts.c.id).limit(limit))
            return [BudgetAlert(**row._mapping) for row in rows]

    def for_task(self, task: object) -> TaskBudget:
        """The budgets that bound a task (its own, its type's, the fleet's) with their spend now:
        ``state`` is exhausted when a hard one is spent, so the lobster stops before its next call."""
        with self._scope.reading() as conn:
            row = task_row(conn, task, self._ctx)
            query = _LIVE.where(sa.or_(
                sa.and_(budgets.c.scope == "task", budgets.c.task_id == row.id),
                sa.and_(budgets.c.scope == "task_type", budgets.c.target == row.type),
                budgets.c.scope == "fleet",
            ))
            found = self._current(conn, [self._budget(r._mapping) for r in conn.execute(query)])
        return TaskBudget(task_id=row.id, task_ref=self._ctx.ref(row.id), budgets=tuple(found))

    def _current(self, conn: sa.Connection, found: Sequence[Budget]) -> list[Budget]:
        """Each budget with the spend of its period now."""
        now = utcnow()
        starts = {budget.id: period_start(budget.period, now) for budget in found}
        spent: dict[tuple[int, datetime], int] = {}
        if starts:
            rows = conn.execute(sa.select(budget_spend).where(
                budget_spend.c.budget_id.in_(list(starts)), budget_spend.c.period_start.in_(set(starts.values()))))
            spent = {(r.budget_id, r.period_start): r.spent_micro for r in rows}
        return [_with_spend(b, starts[b.id], spent.get((b.id, starts[b.id]), 0)) for b in found]

    def _budget(self, values: Mapping[str, Any]) -> Budget:
        return budget_from_row(values, self._ctx)


def budget_from_row(values: Mapping[str, Any], ctx: StoreContext) -> Budget:
    task_id = values["task_id"]
    return Budget(
        id=values["id"], scope=values["scope"], period=values["period"], limit_micro=values["limit_micro"],
        hard=bool(values["hard"]), created_at=values["created_at"], target=values["target"],
        task_id=task_id, task_ref=None if task_id is None else ctx.ref(task_id), actor=values["actor"],
        removed_at=values["removed_at"],
    )


def _with_spend(budget: Budget, start: datetime, spent: int) -> Budget:
    return replace(budget, period_start=start, spent_micro=spent)


def _spent_so_far(conn: sa.Connection, budget: Budget, start: datetime) -> int:
    """What the events already stored in the period from ``start`` cost, in the budget's scope."""
    total = 0
    # The raw events, and the pruned ones' numbers (whole hours: a period starts on one).
    for table, when in ((cost_events, cost_events.c.created_at), (cost_archive, cost_archive.c.hour)):
        query = sa.select(sa.func.sum(table.c.cost_micro)).where(when >= start)
        if budget.scope == "task":
            query = query.where(table.c.task_id == budget.task_id)
        elif budget.scope == "task_type":
            query = query.where(table.c.task_id.in_(sa.select(tasks.c.id).where(tasks.c.type == budget.target)))
        elif budget.scope in ("model", "agent"):
            query = query.where(table.c[budget.scope] == budget.target)
        total += int(conn.execute(query).scalar() or 0)
    return total


# -- at ingest --------------------------------------------------------------------------------
_B = budgets.c
# One event's charge in one statement: every live budget it falls under gets its cost added to
# the row of the period holding the event (the period starts are given, one per period kind).
_CHARGE_ONE = sa.select(
    _B.id,
    sa.case({period: sa.bindparam(period, type_=UTCDateTime) for period in BUDGET_PERIODS}, value=_B.period),
    sa.bindparam("cost", type_=sa.BigInteger),
    _B.limit_micro,
).where(
    _B.removed_at.is_(None),
    sa.or_(
        _B.scope == "fleet",
        sa.and_(_B.scope == "model", _B.target == sa.bindparam("model")),
        sa.and_(_B.scope == "agent", _B.target == sa.bindparam("agent")),
        sa.and_(_B.scope == "task", _B.task_id == sa.bindparam("task_id")),
        sa.and_(_B.scope == "task_type", _B.target == sa.select(tasks.c.type)
                .where(tasks.c.id == sa.bindparam("task_id")).scalar_subquery()),
    ),
).order_by(_B.id)  # PostgreSQL locks the spend rows in one order: no deadlock
_SPENT = ("spent_micro",)


def charge_budgets(conn: sa.Connection, ctx: StoreContext, rows: Iterable[Mapping[str, Any]]) -> None:
    """Add new cost events' costs to the live budgets they fall under, in the caller's
    (ingest) transaction, and write the alerts of the crossings they cause. Each spend row is
    locked (PostgreSQL) from the addition to the commit, so racing writers take turns and each
    sees the sum with the others' costs in it."""
    costed = [row for row in rows if row["cost_micro"]]
    if len(costed) == 1:  # a lobster's post: one statement, budgets or none
        row = costed[0]
        when = row["created_at"]
        params = {**{period: period_start(period, when) for period in BUDGET_PERIODS}, "cost": row["cost_micro"],
                  "model": row["model"], "agent": row["agent"], "task_id": row["task_id"]}
        charged = ctx.backend.accumulate_from_select(conn, budget_spend, _CHARGE_ONE, params, add=_SPENT)
        _alert(conn, ctx, [(r, row["cost_micro"]) for r in charged])
        return
    if not costed:
        return
    live = [row._mapping for row in conn.execute(_LIVE)]
    if not live:
        return
    types: dict[int, str] = {}
    if any(b["scope"] == "task_type" for b in live):
        wanted = sorted({row["task_id"] for row in costed if row["task_id"] is not None})
        if wanted:
            types = dict(conn.execute(sa.select(tasks.c.id, tasks.c.type).where(tasks.c.id.in_(wanted))).all())
    limits = {b["id"]: b["limit_micro"] for b in live}
    deltas: dict[tuple[int, datetime], int] = {}
    for row in costed:
        for budget in live:
            if _applies(budget, row, types):
                key = (budget["id"], period_start(budget["period"], row["created_at"]))
                deltas[key] = deltas.get(key, 0) + row["cost_micro"]
    # Sorted: concurrent writers on PostgreSQL lock the spend rows in one order (no deadlock).
    ordered = sorted(deltas.items())
    charged = ctx.backend.accumulate_returning(conn, budget_spend, [
        {"budget_id": budget_id, "period_start": start, "spent_micro": delta, "limit_micro": limits[budget_id]}
        for (budget_id, start), delta in ordered], add=_SPENT)
    _alert(conn, ctx, [(r, delta) for r, (_, delta) in zip(charged, ordered)])


def _alert(conn: sa.Connection, ctx: StoreContext, charged: list[tuple[Any, int]]) -> None:
    """The crossings among spend rows just charged (each with the amount added)."""
    for spend, delta in charged:
        before, after = spend.spent_micro - delta, spend.spent_micro
        if any(before * 100 < spend.limit_micro * t <= after * 100 for t in BUDGET_THRESHOLDS):
            row = conn.execute(sa.select(budgets).where(_B.id == spend.budget_id)).one()
            _alert_crossings(conn, ctx, budget_from_row(row._mapping, ctx), spend.period_start, before, after)


def _applies(budget: Mapping[str, Any], row: Mapping[str, Any], types: Mapping[int, str]) -> bool:
    scope = budget["scope"]
    if scope == "fleet":
        return True
    if scope == "task":
        return row["task_id"] == budget["task_id"]
    if scope == "task_type":
        return row["task_id"] is not None and types.get(row["task_id"]) == budget["target"]
    return row[scope] == budget["target"]


def _alert_crossings(conn: sa.Connection, ctx: StoreContext, budget: Budget, start: datetime,
                     before: int, after: int) -> None:
    """The alerts of the thresholds crossed going from ``before`` to ``after`` spent. The
    spend row is locked by this transaction, so only one writer sees a given crossing; the
    unique key of budget_alerts holds even so (a budget made over its limit, a re-price)."""
    for threshold in BUDGET_THRESHOLDS:
        mark = budget.limit_micro * threshold
        if not before * 100 < mark <= after * 100:
            continue
        alert = {"budget_id": budget.id, "period_start": start, "threshold": threshold, "spent_micro": after,
                 "limit_micro": budget.limit_micro, "created_at": utcnow()}
        if ctx.backend.insert_if_absent(conn, budget_alerts, alert):
            _announce(conn, ctx, budget, alert)


def _announce(conn: sa.Connection, ctx: StoreContext, budget: Budget, alert: Mapping[str, Any]) -> None:
    """An alert as an audit finding and a ``budget_alert`` event (on the task, for a task budget)."""
    from .audits import AuditRepository  # audits reach tasks, which reach costs: import late

    threshold, start = alert["threshold"], alert["period_start"]
    period = "in total" if budget.period == "total" else f"in the {budget.period} from {to_iso(start)}"
    title = (f"Budget {budget.id} of {describe(budget)} at {threshold} %: ${micro_to_usd(alert['spent_micro'])} "
             f"of ${micro_to_usd(budget.limit_micro)} {period}")
    finding = {"severity": "critical" if threshold >= 100 else "warning", "title": title,
               "target": describe(budget), "fingerprint": f"budget-{budget.id}-{to_iso(start)}-{threshold}"}
    if budget.hard and threshold >= 100:
        finding["detail"] = "A hard budget: the task's budget answers exhausted until the period ends."
    AuditRepository(ConnectionScope(ctx.backend, conn), ctx).submit("budget", [finding], actor="lobstore")
    # On the task's trail for a task budget; a feed event of no task for any other budget.
    insert_event(conn, ctx, budget.task_id, "budget_alert", detail=title, actor="lobstore", data={
        "budget_id": budget.id, "scope": budget.scope, "target": budget.task_ref or budget.target,
        "threshold": threshold, "period_start": to_iso(start),
        "spent_usd": micro_to_usd(alert["spent_micro"]), "limit_usd": micro_to_usd(budget.limit_micro),
        "hard": budget.hard})
    log.warning("%s", title)
