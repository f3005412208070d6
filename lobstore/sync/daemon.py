"""The sync daemon: a cycle every ``interval`` seconds, and soon after significant events.

It watches the event feed (cheap: one indexed query, at once when a change is announced by any
replica — :mod:`lobstore.notify` — and every ``poll`` seconds as a fallback) for creations,
completions and failures, and debounces them: a cycle runs once the feed has been quiet for
``debounce`` seconds, or ``max_delay`` after the first event at the latest, so a burst of fifty
changes makes one commit. Watching the feed rather than hooking the store's writes means it
sees writes from every process (the API, cron scripts, ``lobstore tasks``).

    daemon = SyncDaemon(store, "/data/vault")
    daemon.start(); ...; daemon.trigger(); daemon.last_cycle; ...; daemon.stop()
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import status as st
from ..models import TaskEvent
from ..services import BackgroundService
from ..store import Store
from .cycle import CycleResult, VaultSync

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 300.0
SIGNIFICANT_STATUSES = frozenset({st.COMPLETED, st.FAILED})


def is_significant(event: TaskEvent) -> bool:
    """Creation, completion or failure: worth a cycle before the next periodic one."""
    if event.event_type in ("created", "completed", "failed"):
        return True
    change = (event.data or {}).get("changes", {}).get("status") if isinstance(event.data, dict) else None
    return isinstance(change, dict) and change.get("new") in SIGNIFICANT_STATUSES


class Debouncer:
    """When a burst of events is due for a cycle; pure, so it is tested with a fake clock."""

    def __init__(self, quiet: float, max_delay: float) -> None:
        self.quiet = quiet
        self.max_delay = max(max_delay, quiet)
        self._first: float | None = None
        self._last: float | None = None

    def note(self, now: float) -> None:
        if self._first is None:
            self._first = now
        self._last = now

    def due_at(self) -> float | None:
        if self._first is None or self._last is None:
            return None
        return min(self._last + self.quiet, self._first + self.max_delay)

    def due(self, now: float) -> bool:
        due_at = self.due_at()
        return due_at is not None and now >= due_at

    def reset(self) -> None:
        self._first = self._last = None


class SyncDaemon(BackgroundService):
    """Runs :class:`VaultSync` cycles on a background thread (the lifecycle is
    :class:`~lobstore.services.BackgroundService`'s).

    ``start()`` / ``stop()``; ``trigger()`` asks for a cycle soon (``POST /api/sync/trigger``);
    ``last_cycle`` is the last cycle's result as a dict (``GET /api/sync``), None before the first.
    Other keyword arguments go to :class:`VaultSync` (author, message, remote, tasks_dir, ...).
    """

    name = "vault sync"
    duty = "vault-sync"  # one process per database commits to the vault, whatever its checkout

    def __init__(
        self,
        store: Store,
        vault: str | os.PathLike[str],
        *,
        interval: float = DEFAULT_INTERVAL,
        debounce: float = 5.0,
        max_delay: float = 60.0,
        poll: float = 1.0,
        retry_delay: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        **sync_options: Any,
    ) -> None:
        super().__init__(interval=interval, retry_delay=retry_delay, poll=poll, clock=clock)
        self.sync = VaultSync(store, vault, **sync_options)  # checks the vault now: errors at start-up
        self.store = store
        self._debouncer = Debouncer(debounce, max_delay)
        self._last: CycleResult | None = None
        self._watch_cursor = 0
        self._first = True
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def cycles(self) -> int:
        return self.passes

    @property
    def last_cycle(self) -> dict[str, Any] | None:
        last = self._last
        return None if last is None else last.to_dict()

    def status(self) -> dict[str, Any]:
        """What ``GET /api/sync`` shows. Before this process's first cycle, the last cycle is
        the one recorded in the database (perhaps by a `lobstore sync --watch` elsewhere)."""
        last = self.last_cycle
        if last is None:
            last = self.store.sync_state.get(self.sync.key).last_cycle or None
        return {"enabled": True, "vault": self.sync.key, "interval": self.interval,
                "running": self.running, "duty_held": self.on_duty, "last_cycle": last}

    def describe(self) -> dict[str, Any]:
        return {"vault": self.sync.key, "interval": self.interval}

    def run_once(self, *, full: bool | None = None) -> CycleResult:
        """One cycle on the caller's thread (``lobstore sync --once``)."""
        result = self.sync.run_cycle(full=full)
        self._last = result
        return result

    # -- the service ---------------------------------------------------------------------------
    def on_start(self) -> None:
        self._watch_cursor = self.store.events.latest_id()
        self._first = True
        if self._unsubscribe is None:
            # A change committed by any replica wakes the watch at once; `poll` stays the fallback.
            self._unsubscribe = self.store.changes.subscribe(self.wake)

    def stop(self, timeout: float | None = None) -> bool:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        return super().stop(timeout)

    def on_duty_acquired(self) -> None:
        # Taking over from a holder that ended: the feed cursor is the stored one (VaultSync
        # reads it), and a full reconcile first mends whatever the last holder left half done.
        self._first = True

    def run_pass(self) -> CycleResult:
        self._debouncer.reset()
        full, self._first = (True if self._first else None), False  # the first cycle: a full reconcile
        return self.run_once(full=full)

    def failed(self, result: CycleResult) -> str | None:
        return result.error

    def due_at(self, scheduled: float) -> float:
        return min(scheduled, self._debouncer.due_at() or scheduled)

    def idle(self) -> None:
        """Note significant events that arrived since the last look."""
        try:
            events: Iterable[TaskEvent] = self.store.events.feed(after=self._watch_cursor, limit=1000)
        except Exception as exc:  # noqa: BLE001 - the next poll tries again
            log.warning("sync daemon could not read the event feed: %s", exc)
            return
        for event in events:
            self._watch_cursor = event.id
            if is_significant(event):
                self._debouncer.note(self._clock())
