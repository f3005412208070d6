"""Recording cost events: checked, costed from the price table when the caller gave no cost,
added to the hourly rollups in the same transaction, and read back."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ...clock import utcnow
from ...errors import NotFoundError, ValidationError
from ...models import CostEvent
from ...pricing import compute_cost_micro, micro_to_usd, usd_to_micro
from ...schema import cost_archive, cost_events, cost_rollups
from ...validation import (
    MAX_INT,
    batch,
    clean_fields,
    field,
    integer,
    item_of_batch,
    nullable,
    task_ref,
    text,
    timestamp,
)
from ..base import Repository, StoreContext, task_ids
from ..budgets import charge_budgets
from ..events import check_cursor, check_limit, insert_events
from .common import EVENT_COLUMNS, TOKEN_FIELDS, bound, hourly_sums
from .prices import PRICES_OF, PriceBook, price_from_row

log = logging.getLogger(__name__)

MAX_BATCH = 1000


def _tokens(value: Any) -> int:
    return integer(0, MAX_INT)(value) or 0


TOKENS = field(_tokens, {"type": "integer", "minimum": 0, "maximum": MAX_INT, "default": 0})


EVENT_CLEANERS = {
    "task_id": nullable(task_ref).doc("the task (none for lobboss's own calls)"),  # resolved against the database
    "task": nullable(task_ref).doc("the same as task_id (the library's spelling)"),
    "model": text(200, required=True).require().doc("e.g. claude-opus-4-6"),
    "agent": text(200).doc("who made the call, e.g. lobster-swe-t42"),
    **{name: TOKENS for name in TOKEN_FIELDS},
    "cost_usd": field(lambda value: None if value is None else usd_to_micro(value),
                      {"type": "number", "nullable": True},
                      "US dollars, as the Agent SDK reported it; computed from the prices when absent"),
    "request_id": text(200).doc("unique: a repeat answers with the first event"),
    "created_at": timestamp.doc("when the call was made (default now)"),
}
# Built once, values bound per call: compiled once and served from SQLAlchemy's cache.
_BY_REQUEST_ID = sa.select(cost_events).where(cost_events.c.request_id.in_(sa.bindparam("ids", expanding=True)))


def clean_event(fields: Mapping[str, Any]) -> dict[str, Any]:
    """One cost event's fields, checked. ``task`` is accepted for ``task_id`` (the library's
    spelling beside the JSON one)."""
    if "task" in fields and fields.get("task_id") is not None:
        raise ValidationError("give the task as task_id or task, not both", field="task")
    values = clean_fields(fields, EVENT_CLEANERS, "a cost event")
    if "task" in values:
        values["task_id"] = values.pop("task")
    return values



class CostRecording(Repository):
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
            book = PriceBook(price_from_row(r) for r in conn.execute(PRICES_OF, {"models": models}))
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
        announce_costs(conn, self._ctx, rows)
        charge_budgets(conn, self._ctx, rows)
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
            **{key: values[key] for key in EVENT_COLUMNS},
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
                conn, task=task, model=model, agent=agent, since=bound("since", since), until=bound("until", until)))
            if after is not None:
                query = query.where(cost_events.c.id > after)
            rows = conn.execute(query.order_by(cost_events.c.id).limit(limit)).all()
        return [self._event(row._mapping) for row in rows]

    def latest_id(self) -> int:
        """The newest cost event id (0 when there is none): a follower's starting point."""
        with self._scope.reading() as conn:
            return conn.execute(sa.select(sa.func.max(cost_events.c.id))).scalar() or 0

    def last_event_at(self) -> datetime | None:
        """When the newest cost event happened (by its time, not its id: imports back-fill);
        the hour of the newest rollup when every raw event was pruned."""
        with self._scope.reading() as conn:
            newest = conn.execute(sa.select(sa.func.max(cost_events.c.created_at))).scalar()
            return newest or conn.execute(sa.select(sa.func.max(cost_rollups.c.hour))).scalar()

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
                archived = conn.execute(  # pruned events' numbers (an empty table until a prune)
                    sa.select(cost_archive.c.task_id, sa.func.sum(cost_archive.c.cost_micro))
                    .where(cost_archive.c.task_id.in_(wanted[start:start + 500]))
                    .group_by(cost_archive.c.task_id)
                )
                for task_id, total in archived:
                    totals[task_id] += int(total or 0)
        return totals



def announce_costs(conn: sa.Connection, ctx: StoreContext, rows: Sequence[Mapping[str, Any]]) -> None:
    """One ``cost`` feed event per task (and one for the costs of no task) per ingest, all in
    one statement: the feed hears of spend without an event per LLM call, so ingest stays fast."""
    by_task: dict[int | None, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_task.setdefault(row["task_id"], []).append(row)
    events = []
    for task_id, costs in by_task.items():
        costed = [row["cost_micro"] for row in costs if row["cost_micro"] is not None]
        usd, count = micro_to_usd(sum(costed)), len(costs)
        events.append({"task_id": task_id, "event_type": "cost", "actor": "lobstore",
                       "detail": f"{count} cost event{'s' if count != 1 else ''}: ${usd}", "data": {
                           "task": None if task_id is None else ctx.ref(task_id), "count": count, "usd": usd,
                           "uncosted": count - len(costed), "models": sorted({row["model"] for row in costs})}})
    insert_events(conn, ctx, events)
