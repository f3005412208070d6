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
- ``add_listener(callback)`` hears about every pass (result, error, seconds): the metrics.

Between passes a service may watch for reasons to run sooner: with ``poll`` set, ``idle()`` is
called every ``poll`` seconds (outside the service's lock), and ``due_at()`` may bring the next
pass forward (the sync daemon debounces the event feed this way).

A pass that raises is logged with its traceback and never ends the thread: the next pass tries
again, and a database that is down must not end the server.

**Duties.** Work that one process per database must do, however many ``lobstore serve`` run on
it, opts in with one line: a ``duty = "name"`` class attribute (or ``duty=`` given to the
constructor: a name or a :class:`~lobstore.duties.Duty`). The service then runs its passes only
while it holds that duty lock (:mod:`lobstore.duties`, made from ``self.store``): a standby
process tries to take the duty every ``takeover`` seconds and, once it has it, runs a pass at
once (:meth:`~BackgroundService.on_duty_acquired` first, for taking-over work). The holder
checks the duty before each pass and every ``takeover`` seconds between them, so ``health()``
says the truth; ``stop()`` releases it, so a standby takes over at once.
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
from .config import DEFAULT_TAKEOVER
from .duties import Duty, DutyGate, DutyState, duty_for
from .threads import background_thread

log = logging.getLogger(__name__)


class BackgroundService(ABC):
    """A thread that runs :meth:`run_pass` at start, every ``interval`` seconds and on
    :meth:`trigger`, until :meth:`stop`."""

    name = "background service"
    duty: str | None = None  # the duty lock guarding the passes (None: every process runs them)
    takeover = DEFAULT_TAKEOVER  # seconds between a standby's tries to take the duty

    def __init__(
        self,
        *,
        interval: float,
        retry_delay: float | None = None,
        poll: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        duty: Duty | str | None = None,
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
        self._listeners: list[Callable[[BackgroundService, Any, str | None, float], None]] = []
        self._duty_lock = duty if isinstance(duty, Duty) else None
        if isinstance(duty, str):
            self.duty = duty
        elif isinstance(duty, Duty):
            self.duty = duty.name
        self.gate: DutyGate | None = None  # made at start (the subclass sets self.store first)
        self._duty_check_at = 0.0

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

    def on_duty_acquired(self) -> None:
        """Called (on the service's thread) when this process takes the duty, before the pass
        that follows: work a holder that ended may have left half done."""

    # -- the lifecycle ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def on_duty(self) -> bool:
        """Whether this process may run the passes now: it holds the duty, or there is none."""
        return self.duty is None or (self.gate is not None and self.gate.holding)

    @property
    def standing_by(self) -> bool:
        """Whether another process holds the duty, as last seen (False before the first look:
        a service just started has not asked yet)."""
        return self.gate is not None and self.gate.polled and not self.gate.holding

    def start(self) -> None:
        if self.running:
            return
        with self._wake:
            self._stopping = False
        self._make_gate()
        self.on_start()
        self._thread = background_thread(self._loop, name=f"lobstore-{self.name}".replace(" ", "-"))
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop after the pass in progress (if any); no new pass starts; then let the duty go.
        True when the thread ended within ``timeout`` seconds (None: wait as long as it takes)."""
        ended = self.stop_thread(timeout)
        if ended:
            self.release_duty()
        return ended

    def stop_thread(self, timeout: float | None = None) -> bool:
        """:meth:`stop` without releasing the duty, for a service with more to end first (it
        calls :meth:`release_duty` after)."""
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

    def release_duty(self) -> None:
        """Let the duty go, so a standby takes over at once (``stop`` does it)."""
        if self.gate is not None:
            with self._one_pass:
                self.gate.release()

    def wake(self) -> None:
        """End the wait between passes now (``idle()`` runs, a due pass starts): a change
        notification calls it."""
        with self._wake:
            self._wake.notify_all()

    def trigger(self) -> None:
        """Run a pass as soon as the current one (if any) is done."""
        with self._wake:
            self._triggered = True
            self._wake.notify_all()

    def health(self) -> dict[str, Any]:
        duty = {} if self.duty is None else {"duty": self.duty, "duty_held": self.on_duty}
        return {
            "name": self.name,
            "running": self.running,
            **duty,
            "passes": self.passes,
            "last_pass_at": to_iso(self.last_pass_at) if self.last_pass_at else None,
            "last_duration": self.last_duration,
            "last_error": self.last_error,
            **self.describe(),
        }

    def add_listener(self, listener: Callable[[BackgroundService, Any, str | None, float], None]) -> None:
        """Call ``listener(service, result, error, seconds)`` after every pass (the metrics)."""
        self._listeners.append(listener)

    def run_now(self) -> Any:
        """One pass on the caller's thread, recorded like the thread's own (after the thread's
        pass in progress, if any: passes never overlap); failures are logged and returned as
        None. Listeners hear of every pass."""
        with self._one_pass:
            if not self._poll_duty():
                return None  # another process holds the duty: it runs the pass
            began = self._clock()
            try:
                result = self.run_pass()
                error = self.failed(result)
            except Exception as exc:  # noqa: BLE001 - logged with its traceback; the loop carries on
                log.exception("%s failed; trying again in %.0f s", self.name, self.retry_delay)
                result, error = None, f"{type(exc).__name__}: {exc}"
            self.passes += 1
            self.last_pass_at = utcnow()
            seconds = self._clock() - began
            self.last_duration = round(seconds, 3)
            self.last_error = error
        for listener in self._listeners:
            try:
                listener(self, result, error, seconds)
            except Exception:  # noqa: BLE001 - a watcher must never stop the service
                log.exception("a listener of %s failed", self.name)
        return result

    # -- the duty -----------------------------------------------------------------------------
    def _make_gate(self) -> None:
        if self.duty is not None and self.gate is None:
            lock = self._duty_lock or duty_for(getattr(self, "store"), self.duty)
            self.gate = DutyGate(lock, f"the {self.name}")

    def _poll_duty(self) -> bool:
        """Take or check the duty (under the pass lock); True while this process holds it."""
        self._make_gate()
        if self.gate is None:
            return True
        self._duty_check_at = self._clock() + self.takeover
        state = self.gate.poll()
        if state is DutyState.ACQUIRED:
            self.on_duty_acquired()
        return state in (DutyState.ACQUIRED, DutyState.HELD)

    def _duty_check_due(self) -> bool:
        """Between passes, every ``takeover`` s: True when this process just took the duty."""
        if self.gate is None or self._clock() < self._duty_check_at:
            return False
        with self._one_pass:
            was = self.gate.holding
            return self._poll_duty() and not was

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
                    waits = [due - now]
                    if self.poll is not None:
                        waits.append(self.poll)
                    if self.gate is not None:
                        waits.append(max(0.0, self._duty_check_at - now))
                    self._wake.wait(min(waits))
            if not ready:
                if self._stopping:
                    continue
                if self._duty_check_due():
                    scheduled = self._clock()  # just took the duty over: a pass now
                    continue
                if self.poll is not None and self.on_duty:
                    self.idle()
                continue
            self.run_now()
            if not self.on_duty:
                scheduled = self._clock() + self.takeover  # standing by: try the duty again then
            else:
                scheduled = self._clock() + (self.interval if self.last_error is None else self.retry_delay)
