"""The sums people ask for: totals over a range, per model, task, agent, task type or day,
reading the hourly rollups for whole hours."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ...clock import utcnow
from ...errors import ValidationError
from ...models import CostSummary, CostTotals, TaskCosts
from ...schema import cost_archive, cost_events, cost_prune_runs, cost_rollups, tasks
from ..base import Repository, task_row
from .common import (
    HOUR,
    NUMBERS,
    ROLLUP_SUMS,
    SUMS,
    bound,
    ceil_hour,
    clean_filter,
    floor_hour,
    sum_row,
)
from .retention import NO_AGENT, NO_TASK

_PRUNED_BEFORE = sa.select(sa.func.max(cost_prune_runs.c.horizon))
PERIODS: dict[str, timedelta] = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30)}
GROUPINGS: tuple[str, ...] = ("model", "task", "agent", "task_type", "day")
Grouping = str | tuple[str, ...] | None  # one grouping, several (keys are tuples), or none


class CostSummaries(Repository):
    def summary(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        period: str | None = None,
        group_by: str | None = None,
        task: object = None,
        model: str | None = None,
        agent: str | None = None,
    ) -> CostSummary:
        """Totals of cost, tokens and events over ``[since, until)``, overall and per group.

        ``period`` (day, week, month: 24 h, 7 days, 30 days) ends at ``until``; without
        ``since`` the period is a day. ``until`` defaults to the end of the current second, so
        an event just recorded is counted. ``group_by``: model, task, agent, task_type or day
        (UTC). Groups by day come in date order, the others most expensive first.
        """
        if period is not None and since is not None:
            raise ValidationError("give either period or since, not both", field="period")
        if period is not None and period not in PERIODS:
            raise ValidationError(f"period must be one of {', '.join(PERIODS)}, got {period!r}", field="period")
        if group_by is not None and group_by not in GROUPINGS:
            raise ValidationError(
                f"group_by must be one of {', '.join(GROUPINGS)}, got {group_by!r}", field="group_by")
        end = bound("until", until) or utcnow() + timedelta(seconds=1)
        start = bound("since", since) or end - PERIODS[period or "day"]
        if start >= end:
            raise ValidationError("since must be before until", field="since")
        with self._scope.reading() as conn:
            horizon = _horizon(conn)
            if task is None and agent is None and group_by in (None, "model", "day"):
                sums = self._sum_with_rollups(conn, start, end, group_by, model)
            else:
                sums = self._sum_events(conn, start, end, group_by, task=task, model=model, agent=agent)
        pruned = horizon if horizon is not None and start < horizon else None
        if group_by is None:
            return CostSummary(since=start, until=end, group_by=None, totals=sums.get(None, CostTotals()),
                               pruned_before=pruned)
        groups = _ordered(group_by, [replace(totals, key=self._key_text(group_by, key)) for key, totals in sums.items()])
        totals = sum(groups, CostTotals())
        return CostSummary(since=start, until=end, group_by=group_by, totals=totals, groups=tuple(groups),
                           pruned_before=pruned)

    def daily_by_model(
        self, *, since: datetime | str, until: datetime | str,
    ) -> list[tuple[CostTotals, tuple[CostTotals, ...]]]:
        """Each UTC day of ``[since, until)`` with events: the day's totals (keyed by the date)
        and its split by model (most expensive first), in date order. One read, where a
        summary per day would be one each (the vault's cost page shows 30 days)."""
        start, end = bound("since", since), bound("until", until)
        if start is None or end is None or start >= end:
            raise ValidationError("since must be before until", field="since")
        with self._scope.reading() as conn:
            sums = self._sum_with_rollups(conn, start, end, ("day", "model"), None)
        days: dict[str, list[CostTotals]] = {}
        for (day, model), totals in sums.items():
            days.setdefault(str(day), []).append(replace(totals, key=model))
        return [
            (replace(sum(models, CostTotals()), key=day), tuple(_ordered("model", models)))
            for day, models in sorted(days.items())
        ]

    def recent_leaders(self, group_by: str, *, events: int = 10_000, limit: int = 20) -> tuple[CostTotals, ...]:
        """The most expensive groups (task, agent or model) among the newest ``events`` cost
        events: a read bounded by their number (a primary key range), however large the table
        (the dashboard's top tasks and agents; no rollup keeps them)."""
        if group_by not in ("task", "agent", "model"):
            raise ValidationError(f"group_by must be task, agent or model, got {group_by!r}", field="group_by")
        key = self._group_key(group_by)
        with self._scope.reading() as conn:
            newest = conn.execute(sa.select(sa.func.max(cost_events.c.id))).scalar() or 0
            query = (sa.select(key, *SUMS).where(cost_events.c.id > newest - events).group_by(key)
                     .order_by(sa.func.coalesce(SUMS[0], 0).desc(), SUMS[5].desc()).limit(limit))
            groups = [replace(sum_row(row[1:]), key=self._key_text(group_by, row[0])) for row in conn.execute(query)]
        return tuple(_ordered(group_by, groups))

    def _sum_events(self, conn: sa.Connection, start: datetime, end: datetime, group_by: Grouping,
                    **filters: Any) -> dict[Any, CostTotals]:
        """Sums over the events of [start, end), per group key (None: one overall total; a
        tuple of groupings: keyed by a tuple of values), with the pruned events' archived
        numbers of the whole hours in the range."""
        conditions = self._filters(conn, since=start, until=end, **filters)
        keys = [self._group_key(name) for name in _names(group_by)]
        query = sa.select(*keys, *SUMS).where(*conditions)
        if "task_type" in _names(group_by):
            query = query.select_from(cost_events.outerjoin(tasks, tasks.c.id == cost_events.c.task_id))
        sums = _sums_by(conn, query, keys)
        horizon = _horizon(conn)
        if horizon is None or start >= horizon or end - start < HOUR:
            return sums
        return _merged([sums, self._sum_archive(conn, start, end, group_by, **filters)])

    def _sum_archive(self, conn: sa.Connection, start: datetime, end: datetime, group_by: Grouping, *,
                     task: object, model: str | None, agent: str | None) -> dict[Any, CostTotals]:
        """The archived numbers of pruned events, for the whole hours inside [start, end)."""
        a = cost_archive.c
        conditions = [a.hour >= ceil_hour(start), a.hour <= end - HOUR]
        if task is not None:
            conditions.append(a.task_id == task_row(conn, task, self._ctx).id)
        for name, value in (("model", model), ("agent", agent)):
            if value is not None:
                conditions.append(a[name] == clean_filter(name, value))
        archive_keys = {
            "model": a.model, "agent": sa.func.nullif(a.agent, NO_AGENT), "task": sa.func.nullif(a.task_id, NO_TASK),
            "task_type": tasks.c.type, "day": self._ctx.backend.day_bucket(a.hour),
        }
        keys = [archive_keys[name] for name in _names(group_by)]
        query = sa.select(*keys, *(sa.func.sum(a[n]) for n in NUMBERS)).where(*conditions)
        if "task_type" in _names(group_by):
            query = query.select_from(cost_archive.outerjoin(tasks, tasks.c.id == a.task_id))
        return _sums_by(conn, query, keys)

    def _sum_with_rollups(self, conn: sa.Connection, start: datetime, end: datetime, group_by: Grouping,
                          model: str | None) -> dict[Any, CostTotals]:
        """The same sums, the whole hours read from cost_rollups and only the partial hours at
        either end from the events: a month is ~720 rollup rows per model, not every event."""
        first, last = ceil_hour(start), floor_hour(end)
        if first >= last:
            return self._sum_events(conn, start, end, group_by, task=None, model=model, agent=None)
        parts = [self._sum_events(conn, a, b, group_by, task=None, model=model, agent=None)
                 for a, b in ((start, first), (last, end)) if a < b]
        rollup_keys = {"model": cost_rollups.c.model, "day": self._ctx.backend.day_bucket(cost_rollups.c.hour)}
        keys = [rollup_keys[name] for name in _names(group_by)]
        query = sa.select(*keys, *ROLLUP_SUMS).where(cost_rollups.c.hour >= first, cost_rollups.c.hour < last)
        if model is not None:
            query = query.where(cost_rollups.c.model == clean_filter("model", model))
        parts.append(_sums_by(conn, query, keys))
        return _merged(parts)

    def for_task(self, task: object) -> TaskCosts:
        """One task's totals, and its split by model (``/task cost T42``)."""
        with self._scope.reading() as conn:
            task_id = task_row(conn, task, self._ctx).id
            rows = conn.execute(
                sa.select(cost_events.c.model, *SUMS)
                .where(cost_events.c.task_id == sa.bindparam("task_id"))
                .group_by(cost_events.c.model),
                {"task_id": task_id},
            ).all()
            sums = {row[0]: sum_row(row[1:], key=row[0]) for row in rows}
            if _horizon(conn) is not None:
                archived = conn.execute(
                    sa.select(cost_archive.c.model, *(sa.func.sum(cost_archive.c[n]) for n in NUMBERS))
                    .where(cost_archive.c.task_id == task_id).group_by(cost_archive.c.model)).all()
                sums = _merged([sums, {row[0]: sum_row(row[1:], key=row[0]) for row in archived}])
        models = sorted(sums.values(), key=lambda g: (-g.cost_micro, g.key))
        return TaskCosts(task_id=task_id, task_ref=self._ctx.ref(task_id),
                         totals=sum(models, CostTotals()), models=tuple(models))

    def _filters(self, conn: sa.Connection, *, task: object, model: str | None, agent: str | None,
                 since: datetime | None, until: datetime | None) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = []
        if task is not None:
            conditions.append(cost_events.c.task_id == task_row(conn, task, self._ctx).id)
        for name, value in (("model", model), ("agent", agent)):
            if value is not None:
                conditions.append(cost_events.c[name] == clean_filter(name, value))
        if since is not None:
            conditions.append(cost_events.c.created_at >= since)
        if until is not None:
            conditions.append(cost_events.c.created_at < until)
        return conditions

    def _group_key(self, group_by: str) -> sa.ColumnElement[Any]:
        return {
            "model": cost_events.c.model,
            "agent": cost_events.c.agent,
            "task": cost_events.c.task_id,
            "task_type": tasks.c.type,
            "day": self._ctx.backend.day_bucket(cost_events.c.created_at),
        }[group_by]

    def _key_text(self, group_by: str, value: Any) -> str | None:
        if value is None:
            return None
        return self._ctx.ref(value) if group_by == "task" else str(value)


def _horizon(conn: sa.Connection) -> datetime | None:
    """Raw events before this were pruned (their numbers are in cost_archive); None: never."""
    return conn.execute(_PRUNED_BEFORE).scalar()


def _merged(parts: list[dict[Any, CostTotals]]) -> dict[Any, CostTotals]:
    merged: dict[Any, CostTotals] = {}
    for part in parts:
        for group, totals in part.items():
            merged[group] = replace(merged.get(group, CostTotals()) + totals, key=totals.key)
    return merged


def _names(group_by: Grouping) -> tuple[str, ...]:
    return () if group_by is None else (group_by,) if isinstance(group_by, str) else group_by


def _sums_by(conn: sa.Connection, query: sa.Select[Any], keys: list[sa.ColumnElement[Any]]) -> dict[Any, CostTotals]:
    """Run a query of ``keys`` then the sums: totals per key value (a tuple of values for
    several keys; None for no key: one overall total)."""
    if not keys:
        return {None: sum_row(conn.execute(query).one())}
    n = len(keys)
    return {(row[0] if n == 1 else tuple(row[:n])): sum_row(row[n:]) for row in conn.execute(query.group_by(*keys))}


def _ordered(group_by: str, groups: list[CostTotals]) -> list[CostTotals]:
    """Days in date order; any other grouping most expensive first."""
    if group_by == "day":
        return sorted(groups, key=lambda g: g.key or "")
    return sorted(groups, key=lambda g: (-g.cost_micro, -g.events, g.key is None, g.key or ""))
