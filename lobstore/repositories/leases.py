"""The lifecycle clock's SQL on tasks: claims, leases, and the sweep's moves.

A claim takes the best queued task — priority, then oldest — in one write transaction: on
PostgreSQL the row is read ``FOR UPDATE SKIP LOCKED``, so concurrent claimers each take a
different row without waiting on each other; on SQLite the write lock (``BEGIN IMMEDIATE``)
makes claims take turns. Either way a task is claimed once.

A lease is the time the assignee is trusted without a sign of life: a claim, a heartbeat or
any write to the task by its assignee (``actor`` = ``assigned_to``) moves it forward. A lease
is not part of the task's version (a heartbeat changes no field a lobster edits, so it never
makes the lobster's own ``expected_version`` stale) and writes no event.

Times come from the database's clock (``backend.database_now``), or from the fake clock a test
sets with ``store.set_clock``: writers' clocks never decide.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .. import status as st
from ..clock import normalize, to_iso
from ..errors import ConflictError, ValidationError
from ..lifecycle.rules import FAIL, REQUEUE, WARN, Decision
from ..models import PRIORITIES, Task
from ..schema import tasks
from ..validation import MAX_INT, clean_fields, identifier, integer, string_list, text
from .base import TASK_SELECT, StoreContext

if TYPE_CHECKING:
    from .tasks import TaskRepository

SWEEP_ACTOR = "lobstore-sweep"
LEASE_SECONDS = integer(1, MAX_INT).doc("how long the lease lasts without a heartbeat (default: the server's, 300)")
CLAIM_CLEANERS = {
    "lobster": text(200, required=True).require().doc("who claims: becomes the task's assigned_to"),
    "types": string_list(identifier("task type")).doc("only tasks of these types (default: any type)"),
    "lease_seconds": LEASE_SECONDS,
    "actor": text(200).doc("who claims, for the event trail (default: the lobster)"),
}
HEARTBEAT_CLEANERS = {
    "lobster": text(200).doc("the assignee; a 409 if the task is no longer assigned to it"),
    "lease_seconds": LEASE_SECONDS,
}

# critical first, low last; then the oldest, then the lowest id.
_RANK = sa.case({name: rank for rank, name in enumerate(reversed(PRIORITIES))}, value=tasks.c.priority,
                else_=len(PRIORITIES))
_BEST = sa.select(tasks.c.id).where(tasks.c.status == st.QUEUED).order_by(_RANK, tasks.c.created_at, tasks.c.id)
_OF_TYPES = tasks.c.type.in_(sa.bindparam("types", expanding=True))
_CLAIMS: dict[tuple[bool, str], sa.Select[Any]] = {}


def _claim_query(typed: bool, backend: Any) -> sa.Select[Any]:
    """The best queued task, its row locked: PostgreSQL skips rows another claim holds (SQLite
    ignores FOR UPDATE: its write lock serializes claims) and reads its clock in the same
    statement. The best id is found on tasks alone; the answer's join comes after."""
    key = (typed, backend.name)
    if key not in _CLAIMS:
        best = (_BEST.where(_OF_TYPES) if typed else _BEST).limit(1).with_for_update(skip_locked=True)
        # The outer lock (already ours) reads the row's latest version, not the statement's snapshot.
        query = TASK_SELECT.where(tasks.c.id == best.scalar_subquery()).with_for_update(of=tasks)
        now = backend.now_column()
        _CLAIMS[key] = query.add_columns(now.label("database_now")) if now is not None else query
    return _CLAIMS[key]
_EXTEND_LEASE = sa.update(tasks).where(
    tasks.c.id == sa.bindparam("match_id"), tasks.c.status == st.ACTIVE,
).values(lease_expires_at=sa.bindparam("until"))
_SWEEPABLE = TASK_SELECT.where(tasks.c.status == st.ACTIVE, tasks.c.review_pr.is_(None)).order_by(tasks.c.id)


def lease_now(conn: sa.Connection, ctx: StoreContext, read: datetime | None = None) -> datetime:
    """The lifecycle clock's time: a test's fake clock, else the database's (``read`` with a
    row already, else asked for)."""
    clock = ctx.attachments.clock
    if clock is not None:
        return normalize(clock())
    return normalize(read) if read is not None else ctx.backend.database_now(conn)


def lease_length(ctx: StoreContext, seconds: int | None) -> timedelta:
    settings = ctx.attachments.lifecycle
    if seconds is None:
        return timedelta(seconds=settings.lease_seconds)
    if seconds > settings.max_lease_seconds:
        raise ValidationError(f"lease_seconds must be at most {settings.max_lease_seconds} (this server's "
                              f"max_lease_seconds), got {seconds}", field="lease_seconds")
    return timedelta(seconds=seconds)


def extend_by_assignee(conn: sa.Connection, ctx: StoreContext, task: Any, actor: str | None) -> datetime | None:
    """A write by the task's assignee is a sign of life: its lease runs from now again (never
    shorter than it was). Answers the new expiry, or None when nothing changed."""
    if task.status != st.ACTIVE or not actor or actor != task.assigned_to or task.lease_expires_at is None:
        return None
    until = max(task.lease_expires_at, lease_now(conn, ctx) + lease_length(ctx, None))
    if until != task.lease_expires_at:
        conn.execute(_EXTEND_LEASE, {"match_id": task.id, "until": until})
    return until


def entering_active(conn: sa.Connection, ctx: StoreContext, attempts: int, given: Any) -> dict[str, Any]:
    """What a move into ``active`` implies for the clock (unless the caller set it): assigned
    now, a lease of the default length, one more attempt, no warning yet in this attempt."""
    if {"assigned_at", "lease_expires_at", "attempts", "timeout_warned_at"} <= set(given):
        return {}  # a claim sets them all
    now = lease_now(conn, ctx)
    implied = {"assigned_at": now, "lease_expires_at": now + lease_length(ctx, None),
               "attempts": attempts + 1, "timeout_warned_at": None}
    return {key: value for key, value in implied.items() if key not in given}


LEAVING_ACTIVE = {"lease_expires_at": None, "timeout_warned_at": None}
# The clock's own bookkeeping: in the event's changes, not in an update's "updated" list (the
# fields the caller changed, or its status move implied, as lobwife answered).
CLOCK_FIELDS = frozenset({"attempts", "lease_expires_at", "timeout_warned_at"})


class TaskLeases:
    """Claims, heartbeats and the sweep's moves: part of ``store.tasks``."""

    _ctx: StoreContext

    def now(self: TaskRepository) -> datetime:
        """The lifecycle clock's time (the database's, or a test's fake clock)."""
        with self._scope.reading() as conn:
            return lease_now(conn, self._ctx)

    def claim(self: TaskRepository, /, **fields: Any) -> Task | None:
        """Take the best queued task — highest priority, then oldest — for ``lobster``: it
        becomes ``active``, assigned to the lobster now, with a lease of ``lease_seconds`` (the
        server's default unless given) and one more attempt. None when no task is queued (of
        ``types``, when given). Fields: :data:`CLAIM_CLEANERS`."""
        values = clean_fields(fields, CLAIM_CLEANERS, "a claim")
        lobster, types = values["lobster"], values.get("types")
        lease = lease_length(self._ctx, values.get("lease_seconds"))
        with self._scope.writing() as conn:
            row = conn.execute(_claim_query(bool(types), self._ctx.backend), {"types": types} if types else {}).first()
            if row is None:
                return None
            found = dict(row._mapping)
            now = lease_now(conn, self._ctx, found.pop("database_now", None))
            current = self._task(found)
            changes = {"status": st.ACTIVE, "assigned_to": lobster, "assigned_at": now,
                       "lease_expires_at": now + lease, "attempts": current.attempts + 1, "timeout_warned_at": None}
            return self._apply(conn, current, changes, actor=values.get("actor") or lobster, event_type="claimed",
                               reason=f"claimed by {lobster}, lease until {to_iso(now + lease)}").task

    def heartbeat(self: TaskRepository, task: object, /, **fields: Any) -> Task:
        """Extend the lease of an active task by ``lease_seconds`` from now (default: the
        server's lease). A task that is not active, or (given ``lobster``) is assigned to
        another lobster, is a ConflictError: the lobster lost it and should stop."""
        values = clean_fields(fields, HEARTBEAT_CLEANERS, "a heartbeat")
        lease = lease_length(self._ctx, values.get("lease_seconds"))
        with self._scope.writing() as conn:
            current = self._locked(conn, task)
            lobster = values.get("lobster")
            if current.status != st.ACTIVE:
                raise ConflictError(f"{current.ref} is {current.status}, not active: no lease to extend; stop working "
                                    f"on it", task_id=current.ref, status=current.status)
            if lobster is not None and lobster != current.assigned_to:
                raise ConflictError(f"{current.ref} is assigned to {current.assigned_to!r}, not {lobster!r}: stop "
                                    f"working on it", task_id=current.ref, assigned_to=current.assigned_to)
            until = lease_now(conn, self._ctx) + lease
            conn.execute(_EXTEND_LEASE, {"match_id": current.id, "until": until})
        return current.changed(lease_expires_at=until)

    # -- the sweep's side (lobstore.lifecycle.sweep orchestrates) -----------------------------
    def sweepable(self: TaskRepository) -> list[Task]:
        """The active tasks not in review: the ones the sweep looks at."""
        with self._scope.reading() as conn:
            return [self._task(row) for row in conn.execute(_SWEEPABLE)]

    def lock(self: TaskRepository, task: object) -> Task:
        """The task as it is now, locked until the transaction ends (use in store.transaction())."""
        with self._scope.writing() as conn:
            return self._locked(conn, task)

    def settle(self: TaskRepository, task: object, decision: Decision, now: datetime, *,
               investigation: Task | None = None) -> Task:
        """Apply a sweep decision (lobstore.lifecycle.rules) with its reason as the event: re-queue,
        fail (linking the investigation task), or record the timeout warning."""
        with self._scope.writing() as conn:
            current = self._locked(conn, task)
            if decision.action == REQUEUE:
                changes: dict[str, Any] = {"status": st.QUEUED}
            elif decision.action == FAIL:
                changes = {"status": st.FAILED}
                if investigation is not None:
                    changes["metadata"] = {**current.metadata, "investigation": investigation.ref}
            elif decision.action == WARN:
                changes = {"timeout_warned_at": now}
            else:
                raise ValueError(f"unknown sweep action {decision.action!r}")
            return self._apply(conn, current, changes, actor=SWEEP_ACTOR, reason=decision.reason,
                               event_type=decision.event_type).task
