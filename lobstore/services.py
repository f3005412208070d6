"""One lifecycle for every background service of ``lobstore serve``.

A service does one *pass* of work now and then: the vault sync renders a cycle, the broker's
expiry sweep marks old registrations, and so on. :class:`BackgroundService` owns the thread and
the timing, so each service only says what a pass is (:meth:`~BackgroundService.run_pass`):

- ``start()`` runs the first pass at once (work may have piled up while the server was down),
  then one every ``interval`` seconds; after a failed pass, the next comes after
  ``retry_delay``.
- ``trigger()`` asks for a pass as soon as the current one (if any) is done.
- ``stop(timeout)`` ends the wait between passes at once; a pass in progress finishes. It
  answers whether the thread ended within the deadline.
- ``health()`` says whether it runs, when the last pass ended, how long it took and its error.

Between passes a service may watch for reasons to run sooner: with ``poll`` set, ``idle()`` is
called every ``poll`` seconds (outside the service's lock), and ``due_at()`` may bring the next
pass forward (the sync daemon debounces the event feed this way).

A pass that raises is logged with its traceback and never ends the thread: the next pass tries
again, and a database that is down must not end the server.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .clock import to_iso, utcnow

log = logging.getLogger(__name__)


class BackgroundService(ABC):
    """A thread that runs :meth:`run_pass` at start, every ``interval`` seconds and on
    :meth:`trigger`, until :meth:`stop`."""

    name = "background service"

    def __init__(
        self,
        *,
        interval: float,
        retry_delay: float | None = None,
        poll: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"the interval of {self.name} must be above 0 seconds, got {interval!r}")
        if poll is not None and not poll > 0:
            raise ValueError(f"the poll of {self.name} must be above 0 seconds, got {poll!r}")
        self.interval = interval
        self.retry_delay = interval if retry_delay is None else min(retry_delay, interval)
        self.poll = poll
        self._clock = clock
        self._wake = threading.Condition()
        self._one_pass = threading.Lock()  # a pass on the thread and one asked for by run_now take turns
        self._triggered = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.passes = 0
        self.last_pass_at: datetime | None = None
        self.last_duration: float | None = None
        self.last_error: str | None = None

    # -- what a service defines ---------------------------------------------------------------
    @abstractmethod
    def run_pass(self) -> Any:
        """One pass of work, on the service's thread. Raise (or return a result whose
        :meth:`failed` is true) when it did not succeed: the next pass then comes sooner."""

    def failed(self, result: Any) -> str | None:
        """The error of a pass that returned instead of raising (None: it succeeded)."""
        return None

    def idle(self) -> None:
        """Called every ``poll`` seconds between passes, outside the lock (watch a feed)."""

    def due_at(self, scheduled: float) -> float:
        """When the next pass is due, given the regular schedule (override to run sooner)."""
        return scheduled

    def on_start(self) -> None:
        """Called on the caller's thread by :meth:`start`, before the thread starts."""

    def describe(self) -> dict[str, Any]:
        """Extra fields for :meth:`health` (the interval, a vault path, ...)."""
        return {}

    # -- the lifecycle ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        with self._wake:
            self._stopping = False
        self.on_start()
        self._thread = threading.Thread(target=self._loop, name=f"lobstore-{self.name}".replace(" ", "-"), daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop after the pass in progress (if any); no new pass starts. True when the thread
        ended within ``timeout`` seconds (None: wait as long as it takes)."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s did not stop within %.1f s; its pass is still running", self.name, timeout or 0)
                return False
        self._thread = None
        return True

    def trigger(self) -> None:
        """Run a pass as soon as the current one (if any) is done."""
        with self._wake:
            self._triggered = True
            self._wake.notify_all()

    def health(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "running": self.running,
            "passes": self.passes,
            "last_pass_at": to_iso(self.last_pass_at) if self.last_pass_at else None,
            "last_duration": self.last_duration,
            "last_error": self.last_error,
            **self.describe(),
        }

    def run_now(self) -> Any:
        """One pass on the caller's thread, recorded like the thread's own (after the thread's
        pass in progress, if any: passes never overlap); failures are logged and returned as
        None."""
        with self._one_pass:
            began = self._clock()
            try:
                result = self.run_pass()
                error = self.failed(result)
            except Exception as exc:  # noqa: BLE001 - logged with its traceback; the loop carries on
                log.exception("%s failed; trying again in %.0f s", self.name, self.retry_delay)
                result, error = None, f"{type(exc).__name__}: {exc}"
            self.passes += 1
            self.last_pass_at = utcnow()
            self.last_duration = round(self._clock() - began, 3)
            self.last_error = error
        return result

    # -- the thread ---------------------------------------------------------------------------
    def _loop(self) -> None:
        scheduled = self._clock()  # the first pass right away
        while True:
            with self._wake:
                if self._stopping:
                    return
                now = self._clock()
                due = self.due_at(scheduled)
                ready = self._triggered or now >= due
                if ready:
                    self._triggered = False
                else:
                    self._wake.wait(due - now if self.poll is None else min(self.poll, due - now))
            if not ready:
                if self.poll is not None and not self._stopping:
                    self.idle()
                continue
            self.run_now()
            scheduled = self._clock() + (self.interval if self.last_error is None else self.retry_delay)
