"""The sweep: one pass of the lifecycle clock over the active tasks.

Each task the rules (:mod:`.rules`) pick is decided again in a transaction of its own, with the
task's row locked and the clock read inside it: two sweeps at once (two ``lobstore serve`` on
one PostgreSQL database, or `lobstore sweep` beside a server) take turns on the row, and the
second finds the move already made. A failure and its investigation task are one transaction,
so a task fails with exactly one investigation, however often and wherever the sweep runs.
Nothing is remembered outside the database: a restart forgets nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..models import Task
from ..repositories.leases import SWEEP_ACTOR
from ..store import Store, Transaction
from .settings import LifecycleSettings
from .rules import FAIL, Decision, decide

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepMove:
    task_id: str
    action: str  # requeue, fail, warn
    event_type: str
    reason: str
    investigation: str | None = None  # the investigation task's ref, for a failure

    def to_dict(self) -> dict[str, str | None]:
        return {"task_id": self.task_id, "action": self.action, "event_type": self.event_type,
                "reason": self.reason, "investigation": self.investigation}


def sweep(store: Store) -> list[SweepMove]:
    """Decide every active task not in review once; answer the moves made (in task order)."""
    settings = store.lifecycle
    now = store.tasks.now()
    moves = []
    for task in store.tasks.sweepable():
        if decide(task, now, settings) is not None:  # only then lock the row and decide for real
            move = _settle(store, task)
            if move is not None:
                moves.append(move)
                log.info("lifecycle sweep: %s %s: %s", move.task_id, move.event_type, move.reason)
    return moves


def _settle(store: Store, task: Task) -> SweepMove | None:
    with store.transaction() as tx:
        current = tx.tasks.lock(task.id)
        now = tx.tasks.now()
        decision = decide(current, now, store.lifecycle)
        if decision is None:  # another sweep, a heartbeat or the lobster got there first
            return None
        investigation = _investigation(tx, current, decision, store.lifecycle) if decision.action == FAIL else None
        tx.tasks.settle(current.id, decision, now, investigation=investigation)
    return SweepMove(current.ref, decision.action, decision.event_type, decision.reason,
                     investigation.ref if investigation else None)


def _investigation(tx: Transaction, failed: Task, decision: Decision, settings: LifecycleSettings) -> Task:
    """The investigation task for lobsigliere (as upstream's task manager made one): find out
    why the lobster did not finish, and fix that rather than the task."""
    lobster = failed.assigned_to or "nobody"
    body = (
        f"Task {failed.ref} ({failed.name}; type {failed.type}) was assigned to {lobster} and failed "
        f"automatically.\n\nWhy: {decision.reason}\n\n"
        f"Find out why the lobster did not complete its workflow: read {failed.ref}'s event trail, the "
        f"lobster's branch and work log, and the {failed.type} prompt and checks. Fix the cause in the "
        f"fleet (prompts, checks, the task runner), not the failed task itself."
    )
    return tx.tasks.create(
        name=f"Investigate failed task: {failed.ref}", type=settings.investigation_type,
        priority=settings.investigation_priority, description=body, tags=["investigation", "reliability"],
        metadata={"investigates": failed.ref}, actor=SWEEP_ACTOR,
    )
