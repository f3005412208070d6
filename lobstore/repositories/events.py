"""The task event trail: append-only, and its global id order is the change feed."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..clock import utcnow
from ..errors import ValidationError
from ..models import TaskEvent
from ..notify import mark_changed
from ..schema import task_events
from ..validation import clean_fields, identifier, json_object, text, with_positional
from .base import Repository, StoreContext, task_row
from .leases import extend_by_assignee

# Written only by the store itself, so the trail can be trusted to mean what it says.
STORE_EVENT_TYPES = frozenset({
    "created", "updated", "cancelled", "reopened",
    "broker_registered", "broker_deregistered", "token_issued", "claimed", "budget_alert",
    "cost", "audit_finding",
})

EVENT_CLEANERS = {
    "event_type": identifier("event type").require().doc(
        "spawned, started, completed, note, ... (not the store's own types)"),
    "detail": text(10_000).doc("what happened, for people"),
    "actor": text(200).doc("who logs it"),
    "data": json_object.doc("anything else, as a JSON object"),
}
MAX_PAGE = 1000
MAX_ID = 2**63 - 1  # ids are bigint: a larger cursor must be bad input, not a database error
# Built once: values go in as parameters, so SQLAlchemy compiles the statement once and caches it.
_INSERT_EVENT = sa.insert(task_events)


def insert_event(
    conn: sa.Connection,
    ctx: StoreContext,
    task_id: int | None,
    event_type: str,
    *,
    detail: str | None = None,
    actor: str | None = None,
    data: dict[str, Any] | None = None,
) -> TaskEvent:
    """Append one event in the caller's transaction (``task_id`` None: a feed event of no task)."""
    row = {
        "task_id": task_id,
        "event_type": event_type,
        "detail": detail,
        "actor": actor,
        "data": data or {},
        "created_at": utcnow(),
    }
    event_id = conn.execute(_INSERT_EVENT, row).inserted_primary_key[0]
    mark_changed(conn)  # followers of the feed (in every replica) wake at commit
    return TaskEvent(id=event_id, task_ref=_ref(ctx, task_id), **row)


def insert_events(conn: sa.Connection, ctx: StoreContext, events: list[dict[str, Any]]) -> list[int]:
    """Append several events (task_id, event_type, detail, actor, data) in the caller's
    transaction with one statement: a cost ingest announces many tasks at once."""
    if not events:
        return []
    now = utcnow()
    rows = [{"detail": None, "actor": None, "data": {}, "created_at": now, **event} for event in events]
    ids = ctx.backend.insert_many(conn, task_events, rows)
    mark_changed(conn)
    return ids


def event_from_row(row: sa.Row, ctx: StoreContext) -> TaskEvent:
    values = row._asdict()
    return TaskEvent(task_ref=_ref(ctx, values["task_id"]), **values)


def _ref(ctx: StoreContext, task_id: int | None) -> str | None:
    return None if task_id is None else ctx.ref(task_id)


def check_limit(limit: int | None, default: int = 100) -> int:
    if limit is None:
        return default
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"limit must be a whole number from 1 to {MAX_PAGE}, got {limit!r}", field="limit")
    return limit


def check_cursor(after: int | None, name: str = "after") -> int | None:
    if after is None:
        return None
    if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= MAX_ID:
        raise ValidationError(f"{name} must be an id (a whole number from 0 to 2^63-1), got {after!r}", field=name)
    return after


class EventRepository(Repository):
    def add(self, task: object, event_type: str | None = None, /, **fields: Any) -> TaskEvent:
        """Log a client event (``spawned``, ``started``, ``note``, …) on a task's trail:
        ``add("T42", "note", detail=..., actor=..., data={...})``. Fields: event_type (here or
        positional), detail, actor, data (:data:`EVENT_CLEANERS`)."""
        values = clean_fields(with_positional(fields, event_type=event_type), EVENT_CLEANERS, "an event")
        if values["event_type"] in STORE_EVENT_TYPES:
            raise ValidationError(
                f"event type {values['event_type']!r} is written by the store itself; clients may not post "
                f"{', '.join(sorted(STORE_EVENT_TYPES))}",
                field="event_type",
            )
        with self._scope.writing() as conn:
            row = task_row(conn, task, self._ctx)
            extend_by_assignee(conn, self._ctx, row, values.get("actor"))  # the assignee is alive
            return insert_event(conn, self._ctx, row.id, **values)

    def for_task(self, task: object, *, after: int | None = None, limit: int | None = None) -> list[TaskEvent]:
        """A task's history, oldest first."""
        after = check_cursor(after)
        with self._scope.reading() as conn:
            task_id = task_row(conn, task, self._ctx).id
            query = sa.select(task_events).where(task_events.c.task_id == task_id)
            if after is not None:
                query = query.where(task_events.c.id > after)
            query = query.order_by(task_events.c.id)
            if limit is not None:
                query = query.limit(check_limit(limit))
            return [event_from_row(row, self._ctx) for row in conn.execute(query)]

    def feed(self, after: int = 0, limit: int = 100) -> list[TaskEvent]:
        """Every task's events with an id above ``after``, in id order: the change feed.

        A follower keeps the last id it saw and asks again with it. On SQLite (one writer)
        ids become visible in order. On PostgreSQL two transactions can commit out of id
        order, so a follower may see id N+1 before N: followers that must see everything
        (the vault sync) also reconcile in full from time to time.
        """
        after = check_cursor(after) or 0
        limit = check_limit(limit)
        with self._scope.reading() as conn:
            query = (
                sa.select(task_events)
                .where(task_events.c.id > after)
                .order_by(task_events.c.id)
                .limit(limit)
            )
            return [event_from_row(row, self._ctx) for row in conn.execute(query)]

    def latest_id(self) -> int:
        """The newest event id (0 when there is none): where a new follower starts."""
        with self._scope.reading() as conn:
            return conn.execute(sa.select(sa.func.max(task_events.c.id))).scalar() or 0

    def open_writes(self) -> Any:
        """A marker of the write transactions open now, for :meth:`writes_finished` (None where
        ids commit in id order): how a follower learns that a gap in the ids is for good."""
        with self._scope.reading() as conn:
            return self._ctx.backend.open_writes(conn)

    def writes_finished(self, marker: Any) -> bool:
        """Whether every write transaction open at ``marker`` has ended (committed or not)."""
        if marker is None:
            return True
        with self._scope.reading() as conn:
            return self._ctx.backend.writes_finished(conn, marker)
