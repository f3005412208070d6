"""What the sweep does with one active task at a given time: a pure function of the task, the
time and the settings, so every rule is tested with a fake clock and applied under a row lock.

In order, for an ``active`` task without ``review_pr`` (a task in review never times out):

1. Its lease expired (no claim renewal, heartbeat or write by the assignee in time): the
   assignee is gone. Re-queued when it was assigned less than ``requeue_window_minutes`` ago
   and has attempts left; otherwise ``failed``, with an investigation task.
2. It was assigned ``fail`` minutes ago or more (2 × estimate, 90 without): ``failed``, with
   an investigation task.
3. It was assigned ``warn`` minutes ago or more (estimate + 15, 45 without) and was not warned
   in this attempt: a ``timeout_warning`` event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .. import status as st
from ..clock import to_iso
from ..models import Task
from .settings import LifecycleSettings

SWEEP_EVENT_TYPES = ("requeued", "orphaned", "timeout_failure", "timeout_warning")  # what its decisions write

REQUEUE, FAIL, WARN = "requeue", "fail", "warn"


@dataclass(frozen=True)
class Decision:
    action: str  # requeue, fail or warn
    event_type: str  # the event that records it: requeued, orphaned, timeout_failure, timeout_warning
    reason: str  # the event's detail: why, with the numbers


def decide(task: Task, now: datetime, settings: LifecycleSettings) -> Decision | None:
    if task.status != st.ACTIVE or task.review_pr:
        return None
    minutes = (now - task.assigned_at).total_seconds() / 60 if task.assigned_at else None
    who = task.assigned_to or "its assignee"
    lease = task.lease_expires_at
    if lease is not None and lease <= now:
        limit = task.max_attempts or settings.max_attempts
        gone = f"the lease of {who} expired at {to_iso(lease)}"
        age = f"assigned {minutes:.0f} min ago" if minutes is not None else "with no assignment time"
        if minutes is not None and minutes < settings.requeue_window_minutes and task.attempts < limit:
            return Decision(REQUEUE, "requeued", f"{gone}, {age} (attempt {task.attempts} of {limit}): re-queued")
        why = (f"attempt {task.attempts} of {limit}" if task.attempts >= limit
               else f"not re-queued after {settings.requeue_window_minutes:g} min")
        return Decision(FAIL, "orphaned", f"{gone}, {age} ({why}): failed")
    if minutes is None:
        return None
    warn, fail = settings.thresholds(task.estimate_minutes)
    estimate = f"estimate {task.estimate_minutes} min" if task.estimate_minutes else "no estimate"
    if minutes >= fail:
        return Decision(FAIL, "timeout_failure", f"active {minutes:.0f} min, over the limit of {fail:g} min "
                                                 f"({estimate}), not in review: failed")
    if minutes >= warn and task.timeout_warned_at is None:
        return Decision(WARN, "timeout_warning", f"active {minutes:.0f} min, past the warning at {warn:g} min "
                                                 f"({estimate}); the limit is {fail:g} min")
    return None
