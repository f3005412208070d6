"""Following the change feed without a gap or a repeat: what the event stream, the long poll
and the dashboard's live updates share.

The feed is the task event trail in id order (``EventRepository.feed``); a follower keeps one
number, the last id it passed. Where ids commit out of order (PostgreSQL), id 11 can be visible
while id 10 is still in an open transaction, and a follower that moved to 11 would never see 10.
The vault sync copes by looking back a window and rendering again (harmless there); a stream
must deliver each event once, so :class:`FeedFollower` never moves past a hole in the ids until
the hole is known to be for good: it waits until every write transaction that was open when the
hole was seen has ended, then reads once more. A hole that is still there then is a rolled-back
insert and is skipped. The cursor alone is thus a complete resume point, across restarts too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .models import TaskEvent
from .store import Store

PAGE = 500  # events read per query
GAP_GRACE = 0.1  # seconds before a hole's open writes are asked for (an id is drawn a moment before its writer has a transaction id)
GAP_POLL = 0.05  # how soon a follower stuck behind a hole looks again
IDLE_POLL = 15.0  # the longest wait without a look (the signal also wakes it to poll where it cannot hear every process)


def new_status(event: TaskEvent) -> str | None:
    """The status an event moved its task to (None: the event did not change the status)."""
    if event.event_type == "created":
        return event.data.get("status")
    change = (event.data.get("changes") or {}).get("status")
    return change.get("new") if isinstance(change, dict) else None


def feed_item(event: TaskEvent) -> dict[str, Any]:
    """An event as the feed sends it: the event's JSON, its task's ref and the new status."""
    return {**event.to_dict(), "task": event.task_ref, "status": new_status(event)}


@dataclass(frozen=True)
class FeedFilter:
    """Which events a follower wants (None: all): one task, some event types, some new statuses."""

    task_id: int | None = None
    types: frozenset[str] | None = None
    statuses: frozenset[str] | None = None

    def matches(self, event: TaskEvent) -> bool:
        if self.task_id is not None and event.task_id != self.task_id:
            return False
        if self.types is not None and event.event_type not in self.types:
            return False
        return self.statuses is None or new_status(event) in self.statuses


@dataclass
class _Hole:
    start: int  # the first missing id
    seen: float  # monotonic time it was first seen
    marker: Any = None  # the write transactions open then (asked after GAP_GRACE)
    ended: bool = False  # they have all ended: one more read decides


@dataclass
class FeedFollower:
    """Reads the feed after ``cursor`` in id order, never past an id that may still commit."""

    store: Store
    cursor: int
    wanted: FeedFilter = field(default_factory=FeedFilter)
    _hole: _Hole | None = None

    @property
    def held_back(self) -> bool:
        """Whether the follower waits for a hole in the ids to fill or to prove permanent."""
        return self._hole is not None

    def read(self, limit: int = PAGE) -> tuple[list[TaskEvent], bool]:
        """The next events that match (the cursor moves past those that do not), and whether
        more may be there at once (a full page was read)."""
        events = self.store.events.feed(after=self.cursor, limit=limit)
        in_order = self.store.backend.commits_in_id_order
        passed: list[TaskEvent] = []
        for event in events:
            if event.id != self.cursor + 1 and not in_order and not self._hole_is_permanent(self.cursor + 1):
                return passed, False
            self._hole = None
            self.cursor = event.id
            if self.wanted.matches(event):
                passed.append(event)
        return passed, len(events) == limit

    def _hole_is_permanent(self, start: int) -> bool:
        hole, now = self._hole, time.monotonic()
        if hole is None or hole.start != start:
            self._hole = _Hole(start, now)
        elif hole.ended:
            return True  # read again after every writer that could fill it had ended: still empty
        elif hole.marker is None:
            if now - hole.seen >= GAP_GRACE:
                hole.marker = self.store.events.open_writes()
        elif self.store.events.writes_finished(hole.marker):
            hole.ended = True
        return False

    def wait(self, seconds: float, *, limit: int | None = None,
             stopping: Callable[[], bool] = lambda: False) -> list[TaskEvent]:
        """Matching events (at most ``limit``) as soon as there are some, or [] after
        ``seconds`` (or when the store's change signal closes, or ``stopping()`` says so)."""
        signal = self.store.backend.changes
        deadline = time.monotonic() + seconds
        while True:
            seen = signal.generation  # before the read: a commit after it wakes the wait below
            events, more = self.read() if limit is None else self.read(limit)
            if events:
                return events
            left = deadline - time.monotonic()
            if left <= 0 or signal.closed or stopping():
                return []
            if not more:
                signal.wait(min(left, GAP_POLL if self.held_back else IDLE_POLL), since=seen)

