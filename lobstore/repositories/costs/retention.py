"""Retention: raw cost events older than a horizon pruned, their numbers kept.

The hourly rollups per model are never pruned. Before a batch of events is deleted, its numbers
are added to ``cost_archive`` per hour, model, task and agent in the same transaction, so every
summary — by day, model, task, agent or task type — adds the same before and after (to the
hour: a range that starts or ends inside a pruned hour counts that hour's events only when it
holds the whole hour). Batches are sized to hold SQLite's one write lock for about
``target_hold`` seconds each, so writers wait at most that long.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ...clock import utcnow
from ...schema import cost_archive, cost_events, cost_prune_runs
from ..base import Repository
from .common import TOKEN_FIELDS, add_up, floor_hour

log = logging.getLogger(__name__)

NO_TASK, NO_AGENT = 0, ""  # what stands for "none" in cost_archive's key
TARGET_HOLD = 0.04  # seconds a batch should hold the write lock: a commit's fsync can take as long again
FIRST_BATCH, MIN_BATCH, MAX_BATCH_ROWS = 200, 20, 20_000
_OLDEST = (
    sa.select(cost_events.c.id, cost_events.c.task_id, cost_events.c.model, cost_events.c.agent,
              cost_events.c.created_at, cost_events.c.cost_micro, *(cost_events.c[n] for n in TOKEN_FIELDS))
    .where(cost_events.c.created_at < sa.bindparam("before"))
    .order_by(cost_events.c.created_at)  # the covering created_at index: no sort of every old row
    .limit(sa.bindparam("batch"))
    # Two prunes at once (PostgreSQL) take different rows, so no event is archived twice;
    # SQLite's write lock already runs them one after the other.
    .with_for_update(skip_locked=True)
)


@dataclass
class PruneProgress:
    """What pruning raw cost events did (or, in a dry run, would do)."""

    horizon: datetime
    events: int = 0
    batches: int = 0
    longest_hold_ms: float = 0.0
    run_id: int | None = None


def archive_sums(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Event rows added up per (hour, model, task, agent): what their prune adds to cost_archive."""
    def key_of(row: Mapping[str, Any]) -> tuple[Any, ...]:
        return floor_hour(row["created_at"]), row["model"], row["task_id"] or NO_TASK, row["agent"] or NO_AGENT
    return [{"hour": h, "model": m, "task_id": t, "agent": a, **acc} for (h, m, t, a), acc in add_up(rows, key_of)]


class CostRetention(Repository):
    def pruned_before(self) -> datetime | None:
        """The horizon of the latest prune: raw events before it may be gone (None: never pruned)."""
        with self._scope.reading() as conn:
            return conn.execute(sa.select(sa.func.max(cost_prune_runs.c.horizon))).scalar()

    def count_prunable(self, before: datetime) -> int:
        with self._scope.reading() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(cost_events)
                                .where(cost_events.c.created_at < before)).scalar_one()

    def prune_events(self, before: datetime, *, actor: str | None = None, target_hold: float = TARGET_HOLD,
                     on_batch: Callable[[PruneProgress], None] | None = None) -> PruneProgress:
        """Delete the raw cost events older than ``before`` (an hour boundary) in batches, each
        batch's numbers added to cost_archive in its own transaction. The run is recorded
        first, so a summary says it reaches pruned time while the prune goes on."""
        horizon = floor_hour(before)
        progress = PruneProgress(horizon=horizon)
        with self._scope.writing() as conn:
            progress.run_id = conn.execute(sa.insert(cost_prune_runs), {
                "horizon": horizon, "actor": actor, "started_at": utcnow(), "finished_at": None, "events": 0,
                "batches": 0, "longest_hold_ms": 0.0, "idempotency_keys": 0, "token_audit_rows": 0,
            }).inserted_primary_key[0]
        batch = FIRST_BATCH
        while True:
            with self._scope.writing() as conn:
                started = time.perf_counter()
                rows = [row._mapping for row in conn.execute(_OLDEST, {"before": horizon, "batch": batch})]
                if rows:
                    self._ctx.backend.accumulate(conn, cost_archive, archive_sums(rows))
                    conn.execute(sa.delete(cost_events).where(cost_events.c.id.in_([row["id"] for row in rows])))
            held = time.perf_counter() - started  # from the first statement to the commit
            if not rows:
                break
            progress.events += len(rows)
            progress.batches += 1
            progress.longest_hold_ms = max(progress.longest_hold_ms, held * 1000)
            if on_batch is not None:
                on_batch(progress)
            # Let go as long as we held (at least 10 ms): writers of other processes, sleeping in
            # SQLite's busy handler, find the lock free instead of waiting out the whole prune.
            time.sleep(max(held, 0.01))
            # Aim each batch at the target hold: the rows one costs vary with the machine and its load.
            scale = target_hold / max(held, 1e-4)
            batch = max(MIN_BATCH, min(MAX_BATCH_ROWS, int(batch * min(1.5, max(0.25, scale)))))
        self.record_prune(progress)
        log.info("pruned %d cost events before %s in %d batches (longest write-lock hold %.1f ms)",
                 progress.events, horizon, progress.batches, progress.longest_hold_ms)
        return progress

    def record_prune(self, progress: PruneProgress, *, idempotency_keys: int = 0, token_audit_rows: int = 0) -> None:
        with self._scope.writing() as conn:
            conn.execute(sa.update(cost_prune_runs).where(cost_prune_runs.c.id == progress.run_id).values(
                finished_at=utcnow(), events=progress.events, batches=progress.batches,
                longest_hold_ms=progress.longest_hold_ms, idempotency_keys=idempotency_keys,
                token_audit_rows=token_audit_rows))
