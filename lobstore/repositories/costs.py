"""LLM cost events, the price table they are costed from, and the sums people ask for.

An event's cost is the one the Agent SDK reported, or else computed at the price in effect at
the event's time (the event keeps which price), or else — no price for that model then — the
event is stored with its tokens and flagged uncosted. A ``request_id`` is unique: posting the
same event again returns the one stored the first time and counts nothing twice.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import replace
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..clock import utcnow
from ..errors import ConflictError, NotFoundError, ValidationError
from ..models import CostEvent, CostSummary, CostTotals, ModelPrice, TaskCosts
from ..pricing import CACHE_READ_RATIO, CACHE_WRITE_RATIO, compute_cost_micro, price_to_micro, scaled, usd_to_micro
from ..schema import cost_events, cost_rollups, model_prices, tasks
from ..validation import MAX_INT, batch, clean_fields, integer, item_of_batch, text, timestamp
from .base import Repository, task_ids, task_row
from .events import check_cursor, check_limit

log = logging.getLogger(__name__)

MAX_BATCH = 1000
PERIODS: dict[str, timedelta] = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30)}
GROUPINGS: tuple[str, ...] = ("model", "task", "agent", "task_type", "day")
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def _tokens(value: Any) -> int:
    return integer(0, MAX_INT)(value) or 0


def _task_ref(value: Any) -> int | str | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and value.strip() and len(value) <= 200:
        return value
    raise ValueError(f"must name a task (42, \"T42\" or a legacy id), got {value!r}")


EVENT_CLEANERS = {
    "task_id": _task_ref,  # resolved against the database
    "model": text(200, required=True),
    "agent": text(200),
    **{name: _tokens for name in TOKEN_FIELDS},
    "cost_usd": lambda value: None if value is None else usd_to_micro(value),
    "request_id": text(200),
    "created_at": timestamp,
}
PRICE_CLEANERS = {
    "model": text(200, required=True),
    "input_usd_per_mtok": price_to_micro,
    "output_usd_per_mtok": price_to_micro,
    "cache_read_usd_per_mtok": lambda value: None if value is None else price_to_micro(value),
    "cache_write_usd_per_mtok": lambda value: None if value is None else price_to_micro(value),
    "effective_from": timestamp,
    "actor": text(200),
}

# Built once, values bound per call: compiled once and served from SQLAlchemy's cache.
_BY_REQUEST_ID = sa.select(cost_events).where(cost_events.c.request_id.in_(sa.bindparam("ids", expanding=True)))
_PRICES_OF = (
    sa.select(model_prices)
    .where(model_prices.c.model.in_(sa.bindparam("models", expanding=True)))
    .order_by(model_prices.c.model, model_prices.c.effective_from)
)
_INSERT_PRICE = sa.insert(model_prices)
_SUMS = (
    sa.func.sum(cost_events.c.cost_micro),
    sa.func.sum(cost_events.c.input_tokens),
    sa.func.sum(cost_events.c.output_tokens),
    sa.func.sum(cost_events.c.cache_read_tokens),
    sa.func.sum(cost_events.c.cache_write_tokens),
    sa.func.count(),
    sa.func.count(cost_events.c.cost_micro),
)


_ROLLUP_SUMS = (
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


def hourly_sums(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """New event rows added up per (hour, model): what their insert adds to cost_rollups.
    Sorted, so concurrent writers on PostgreSQL lock rollup rows in the same order."""
    sums: dict[tuple[datetime, str], dict[str, int]] = {}
    for row in rows:
        acc = sums.setdefault((floor_hour(row["created_at"]), row["model"]),
                              dict.fromkeys(("cost_micro", *TOKEN_FIELDS, "events", "costed_events"), 0))
        acc["cost_micro"] += row["cost_micro"] or 0
        for name in TOKEN_FIELDS:
            acc[name] += row[name]
        acc["events"] += 1
        acc["costed_events"] += row["cost_micro"] is not None
    return [{"hour": hour, "model": model, **acc} for (hour, model), acc in sorted(sums.items())]


def clean_event(fields: Mapping[str, Any]) -> dict[str, Any]:
    """One cost event's fields, checked. ``task`` is accepted for ``task_id`` (the library's
    spelling beside the JSON one)."""
    fields = dict(fields)
    if "task" in fields:
        if fields.get("task_id") is not None:
            raise ValidationError("give the task as task_id or task, not both", field="task")
        fields["task_id"] = fields.pop("task")
    values = clean_fields(fields, EVENT_CLEANERS, "a cost event")
    if "model" not in values:
        raise ValidationError("model is required", field="model")
    return values


def _sum_row(row: Sequence[Any], key: str | None = None) -> CostTotals:
    cost, inp, out, c_read, c_write, events, costed = (int(v or 0) for v in row)
    return CostTotals(cost, inp, out, c_read, c_write, events, events - costed, key=key)


class PriceBook:
    """The price history of some models, to cost many events without a query each."""

    def __init__(self, prices: Iterable[ModelPrice]) -> None:
        self._by_model: dict[str, list[ModelPrice]] = {}
        for price in prices:  # ordered by model, effective_from
            self._by_model.setdefault(price.model, []).append(price)
        self._starts = {m: [p.effective_from for p in ps] for m, ps in self._by_model.items()}

    def at(self, model: str, when: datetime) -> ModelPrice | None:
        """The price in effect at ``when``: the latest that took effect at or before it."""
        starts = self._starts.get(model)
        if not starts:
            return None
        position = bisect.bisect_right(starts, when)
        return self._by_model[model][position - 1] if position else None


def price_from_row(row: sa.Row) -> ModelPrice:
    return ModelPrice(**row._mapping)


class CostRepository(Repository):
    # -- recording ----------------------------------------------------------------------------
    # self (and set_price's model) positional-only: a JSON field of that name is then an
    # unknown field, not a clash with the parameter.
    def record(self, /, **fields: Any) -> CostEvent:
        """Store one cost event and return it (with its ``id`` and cost).

        Fields: task_id (or task: 42, "T42" or a legacy id; optional), model (required), agent,
        input_tokens, output_tokens, cache_read_tokens, cache_write_tokens (default 0),
        cost_usd (as reported by the Agent SDK; computed from the price table when absent),
        request_id (unique: a repeat returns the first event, ``duplicate=True``), created_at
        (the call's time, default now). Bad input raises ValidationError naming the field.
        """
        return self._store([clean_event(fields)])[0]

    def record_many(self, events: Sequence[Mapping[str, Any]]) -> list[CostEvent]:
        """Store up to 1,000 events in one transaction: all of them, or — if any is invalid —
        none, with a ValidationError giving the bad one's ``index`` (from 0) and ``field``."""
        cleaned = []
        for index, fields in enumerate(batch(events, "cost event", MAX_BATCH, name="events")):
            with item_of_batch(index, "cost event"):
                cleaned.append(clean_event(fields))
        return self._store(cleaned, batched=True)

    def _store(self, events: list[dict[str, Any]], batched: bool = False) -> list[CostEvent]:
        now = utcnow()
        request_ids = [e["request_id"] for e in events if e.get("request_id") is not None]
        with self._scope.writing() as conn:
            task_ids = self._resolve_tasks(conn, events, batched)
            models = sorted({e["model"] for e in events})
            book = PriceBook(price_from_row(r) for r in conn.execute(_PRICES_OF, {"models": models}))
            if not request_ids:
                stored, rows, plan = self._plan(conn, events, task_ids, book, now, [])
                ids = self._insert(conn, rows)
            else:
                # Another transaction may store one of these request_ids between our look and
                # our insert (PostgreSQL runs writers side by side): then look again and answer
                # with its event, instead of failing on the unique index.
                for attempt in range(2):
                    stored, rows, plan = self._plan(conn, events, task_ids, book, now, request_ids)
                    try:
                        with conn.begin_nested():
                            ids = self._insert(conn, rows)
                        break
                    except sa.exc.IntegrityError:
                        if attempt:
                            raise
        new = [self._event({"id": row_id, **row}) for row_id, row in zip(ids, rows)]
        return [
            stored[value] if kind == "stored" else new[value] if kind == "new" else replace(new[value], duplicate=True)
            for kind, value in plan
        ]

    def _plan(self, conn: sa.Connection, events: list[dict[str, Any]], task_ids: list[int | None],
              book: PriceBook, now: datetime, request_ids: list[str]) -> tuple[dict[str, CostEvent], list[dict[str, Any]], list[tuple[str, Any]]]:
        """The events already stored (by request_id), the rows to insert, and per event what
        answers it: ("new", i) new row i, ("again", i) a repeat of new row i in this batch,
        ("stored", request_id) an event stored before."""
        stored: dict[str, CostEvent] = {}
        if request_ids:
            for row in conn.execute(_BY_REQUEST_ID, {"ids": request_ids}):
                stored[row.request_id] = self._event(row._mapping, duplicate=True)
        rows: list[dict[str, Any]] = []
        plan: list[tuple[str, Any]] = []
        new_row_of: dict[str, int] = {}
        for event, task_id in zip(events, task_ids):
            request_id = event.get("request_id")
            if request_id in stored:
                plan.append(("stored", request_id))
            elif request_id in new_row_of:
                plan.append(("again", new_row_of[request_id]))
            else:
                if request_id is not None:
                    new_row_of[request_id] = len(rows)
                plan.append(("new", len(rows)))
                rows.append(self._row(event, task_id, book, now))
        return stored, rows, plan

    def _insert(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> list[int]:
        """The new events and what they add to the hourly rollups; their ids."""
        ids = self._ctx.backend.insert_many(conn, cost_events, rows) if rows else []
        self._ctx.backend.accumulate(conn, cost_rollups, hourly_sums(rows))
        return ids

    def _resolve_tasks(self, conn: sa.Connection, events: list[dict[str, Any]], batched: bool) -> list[int | None]:
        refs = [event.get("task_id") for event in events]
        wanted = {ref for ref in refs if ref is not None}
        found = task_ids(conn, wanted, self._ctx) if wanted else {}
        for index, ref in enumerate(refs):
            if ref is not None and ref not in found:
                error = ValidationError(f"task_id: no task {ref!r} in this store", field="task_id")
                if not batched:
                    raise error
                with item_of_batch(index, "cost event"):
                    raise error
        return [None if ref is None else found[ref] for ref in refs]

    def _row(self, event: Mapping[str, Any], task_id: int | None, book: PriceBook, now: datetime) -> dict[str, Any]:
        created_at = event.get("created_at") or now
        tokens = tuple(event.get(name, 0) for name in TOKEN_FIELDS)
        cost, source, price_id = event.get("cost_usd"), "reported", None
        if cost is None:
            price = book.at(event["model"], created_at)
            if price is None:
                source = "uncosted"
            else:
                cost, source, price_id = compute_cost_micro(tokens, price.per_mtok), "computed", price.id
        return {
            "task_id": task_id,
            "model": event["model"],
            "agent": event.get("agent"),
            **dict(zip(TOKEN_FIELDS, tokens)),
            "cost_micro": cost,
            "cost_source": source,
            "price_id": price_id,
            "request_id": event.get("request_id"),
            "created_at": created_at,
        }

    def _event(self, values: Mapping[str, Any], duplicate: bool = False) -> CostEvent:
        task_id = values["task_id"]
        return CostEvent(
            task_ref=None if task_id is None else self._ctx.ref(task_id),
            duplicate=duplicate,
            **{key: values[key] for key in _EVENT_COLUMNS},
        )

    # -- reading --------------------------------------------------------------------------------
    def get(self, event_id: int) -> CostEvent:
        event_id = check_cursor(event_id, "id")
        with self._scope.reading() as conn:
            row = conn.execute(sa.select(cost_events).where(cost_events.c.id == event_id)).first()
        if row is None:
            raise NotFoundError(f"no cost event {event_id}")
        return self._event(row._mapping)

    def list(
        self,
        *,
        task: object = None,
        model: str | None = None,
        agent: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[CostEvent]:
        """Cost events in id order (``since`` inclusive, ``until`` exclusive; the next page
        starts ``after`` the last id seen), at most ``limit`` (1-1000)."""
        limit = check_limit(limit)
        after = check_cursor(after)
        with self._scope.reading() as conn:
            query = sa.select(cost_events).where(*self._filters(
                conn, task=task, model=model, agent=agent, since=_bound("since", since), until=_bound("until", until)))
            if after is not None:
                query = query.where(cost_events.c.id > after)
            rows = conn.execute(query.order_by(cost_events.c.id).limit(limit)).all()
        return [self._event(row._mapping) for row in rows]

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
        end = _bound("until", until) or utcnow() + timedelta(seconds=1)
        start = _bound("since", since) or end - PERIODS[period or "day"]
        if start >= end:
            raise ValidationError("since must be before until", field="since")
        with self._scope.reading() as conn:
            if task is None and agent is None and group_by in (None, "model", "day"):
                sums = self._sum_with_rollups(conn, start, end, group_by, model)
            else:
                sums = self._sum_events(conn, start, end, group_by, task=task, model=model, agent=agent)
        if group_by is None:
            return CostSummary(since=start, until=end, group_by=None, totals=sums.get(None, CostTotals()))
        groups = [replace(totals, key=self._key_text(group_by, key)) for key, totals in sums.items()]
        if group_by == "day":
            groups.sort(key=lambda g: g.key or "")
        else:
            groups.sort(key=lambda g: (-g.cost_micro, -g.events, g.key is None, g.key or ""))
        totals = sum(groups, CostTotals())
        return CostSummary(since=start, until=end, group_by=group_by, totals=totals, groups=tuple(groups))

    def latest_id(self) -> int:
        """The newest cost event id (0 when there is none): a follower's starting point."""
        with self._scope.reading() as conn:
            return conn.execute(sa.select(sa.func.max(cost_events.c.id))).scalar() or 0

    def last_event_at(self) -> datetime | None:
        """When the newest cost event happened (by its time, not its id: imports back-fill)."""
        with self._scope.reading() as conn:
            return conn.execute(sa.select(sa.func.max(cost_events.c.created_at))).scalar()

    def tasks_costed_after(self, after: int) -> set[int]:
        """The ids of tasks with a cost event newer than event id ``after``."""
        after = check_cursor(after) or 0
        with self._scope.reading() as conn:
            return set(conn.execute(
                sa.select(cost_events.c.task_id).distinct()
                .where(cost_events.c.id > after, cost_events.c.task_id.is_not(None))
            ).scalars())

    def cost_by_task(self, task_ids: Iterable[int]) -> dict[int, int]:
        """Cost so far (micro-dollars) of each task in ``task_ids``; 0 for a task with none.
        One query per 500 tasks, from the task index alone."""
        wanted = sorted(set(task_ids))
        totals = dict.fromkeys(wanted, 0)
        with self._scope.reading() as conn:
            for start in range(0, len(wanted), 500):
                rows = conn.execute(
                    sa.select(cost_events.c.task_id, sa.func.sum(cost_events.c.cost_micro))
                    .where(cost_events.c.task_id.in_(wanted[start:start + 500]))
                    .group_by(cost_events.c.task_id)
                )
                totals.update({task_id: int(total or 0) for task_id, total in rows})
        return totals

    def _sum_events(self, conn: sa.Connection, start: datetime, end: datetime, group_by: str | None,
                    **filters: Any) -> dict[Any, CostTotals]:
        """Sums over the events of [start, end), per group key (None: one overall total)."""
        conditions = self._filters(conn, since=start, until=end, **filters)
        key = self._group_key(group_by)
        query = sa.select(*(() if key is None else (key,)), *_SUMS).where(*conditions)
        if group_by == "task_type":
            query = query.select_from(cost_events.outerjoin(tasks, tasks.c.id == cost_events.c.task_id))
        if key is None:
            return {None: _sum_row(conn.execute(query).one())}
        return {row[0]: _sum_row(row[1:]) for row in conn.execute(query.group_by(key))}

    def _sum_with_rollups(self, conn: sa.Connection, start: datetime, end: datetime, group_by: str | None,
                          model: str | None) -> dict[Any, CostTotals]:
        """The same sums, the whole hours read from cost_rollups and only the partial hours at
        either end from the events: a month is ~720 rollup rows per model, not every event."""
        first, last = ceil_hour(start), floor_hour(end)
        if first >= last:
            return self._sum_events(conn, start, end, group_by, task=None, model=model, agent=None)
        parts = [self._sum_events(conn, a, b, group_by, task=None, model=model, agent=None)
                 for a, b in ((start, first), (last, end)) if a < b]
        key = {None: None, "model": cost_rollups.c.model,
               "day": self._ctx.backend.day_bucket(cost_rollups.c.hour)}[group_by]
        query = sa.select(*(() if key is None else (key,)), *_ROLLUP_SUMS).where(
            cost_rollups.c.hour >= first, cost_rollups.c.hour < last)
        if model is not None:
            query = query.where(cost_rollups.c.model == _clean_filter("model", model))
        if key is None:
            parts.append({None: _sum_row(conn.execute(query).one())})
        else:
            parts.append({row[0]: _sum_row(row[1:]) for row in conn.execute(query.group_by(key))})
        merged: dict[Any, CostTotals] = {}
        for part in parts:
            for group, totals in part.items():
                merged[group] = merged.get(group, CostTotals()) + totals
        return merged

    def for_task(self, task: object) -> TaskCosts:
        """One task's totals, and its split by model (``/task cost T42``)."""
        with self._scope.reading() as conn:
            task_id = task_row(conn, task, self._ctx).id
            rows = conn.execute(
                sa.select(cost_events.c.model, *_SUMS)
                .where(cost_events.c.task_id == sa.bindparam("task_id"))
                .group_by(cost_events.c.model),
                {"task_id": task_id},
            ).all()
        models = sorted((_sum_row(row[1:], key=row[0]) for row in rows), key=lambda g: (-g.cost_micro, g.key))
        return TaskCosts(task_id=task_id, task_ref=self._ctx.ref(task_id),
                         totals=sum(models, CostTotals()), models=tuple(models))

    def _filters(self, conn: sa.Connection, *, task: object, model: str | None, agent: str | None,
                 since: datetime | None, until: datetime | None) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = []
        if task is not None:
            conditions.append(cost_events.c.task_id == task_row(conn, task, self._ctx).id)
        for name, value in (("model", model), ("agent", agent)):
            if value is not None:
                conditions.append(cost_events.c[name] == _clean_filter(name, value))
        if since is not None:
            conditions.append(cost_events.c.created_at >= since)
        if until is not None:
            conditions.append(cost_events.c.created_at < until)
        return conditions

    def _group_key(self, group_by: str | None) -> sa.ColumnElement[Any] | None:
        if group_by is None:
            return None
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

    # -- prices ---------------------------------------------------------------------------------
    def prices(self, model: str | None = None) -> list[ModelPrice]:
        """Every price (or one model's), by model and then by the date it took effect."""
        query = sa.select(model_prices).order_by(model_prices.c.model, model_prices.c.effective_from)
        if model is not None:
            query = query.where(model_prices.c.model == model)
        with self._scope.reading() as conn:
            return [price_from_row(row) for row in conn.execute(query)]

    def current_prices(self, at: datetime | str | None = None) -> list[ModelPrice]:
        """For each model, the price in effect at ``at`` (default now)."""
        when = _bound("at", at) or utcnow()
        history = self.prices()
        book = PriceBook(history)
        found = (book.at(model, when) for model in sorted({p.model for p in history}))
        return [price for price in found if price is not None]

    def set_price(self, model: str, /, **fields: Any) -> ModelPrice:
        """Add a price for ``model`` in USD per million tokens, in effect from
        ``effective_from`` (default now) on.

        Fields: input_usd_per_mtok and output_usd_per_mtok (required), cache_read_usd_per_mtok
        and cache_write_usd_per_mtok (default 0.1 and 1.25 times the input price: Anthropic's
        ratios), effective_from, actor. A price that looks per token ($0.000003) is refused.
        Events already stored keep the cost they were given.
        """
        values = clean_fields({"model": model, **fields}, PRICE_CLEANERS, "a price")
        for name in ("input_usd_per_mtok", "output_usd_per_mtok"):
            if values.get(name) is None:
                raise ValidationError(f"{name} is required (USD per million tokens)", field=name)
        now = utcnow()
        row = {
            "model": values["model"],
            "effective_from": values.get("effective_from") or now,
            "input_micro_per_mtok": values["input_usd_per_mtok"],
            "output_micro_per_mtok": values["output_usd_per_mtok"],
            "cache_read_micro_per_mtok": _or(values.get("cache_read_usd_per_mtok"),
                                             scaled(values["input_usd_per_mtok"], CACHE_READ_RATIO)),
            "cache_write_micro_per_mtok": _or(values.get("cache_write_usd_per_mtok"),
                                              scaled(values["input_usd_per_mtok"], CACHE_WRITE_RATIO)),
            "actor": values.get("actor"),
            "created_at": now,
        }
        with self._scope.writing() as conn:
            clash = conn.execute(
                sa.select(model_prices.c.id).where(
                    model_prices.c.model == row["model"], model_prices.c.effective_from == row["effective_from"])
            ).scalar()
            if clash is not None:
                raise ConflictError(
                    f"{row['model']} already has a price from {row['effective_from']:%Y-%m-%dT%H:%M:%SZ} "
                    f"(price {clash}); give another effective_from", price_id=clash)
            price_id = conn.execute(_INSERT_PRICE, row).inserted_primary_key[0]
        log.info("price of %s from %s set by %s", row["model"], row["effective_from"], row["actor"])
        return ModelPrice(id=price_id, **row)


_EVENT_COLUMNS = [c.name for c in cost_events.columns]


def _clean_filter(name: str, value: Any) -> str:
    return clean_fields({name: value}, {name: text(200, required=True)}, "a cost filter")[name]


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _bound(name: str, value: Any) -> datetime | None:
    return clean_fields({name: value}, {name: timestamp}, "a cost filter")[name]
