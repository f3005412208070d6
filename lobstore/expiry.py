"""The broker's expiry sweep: marks registrations past their time ``expired``, every minute.

A token is refused for an expired registration whether or not the sweep has run (the broker
checks the time itself); the sweep makes the expiry visible — the task's ``broker_status``,
a ``registration_expired`` audit row and a task event — soon after it happens, as lobwife's
own loop did. ``lobstore serve`` runs one beside the API.

    sweep = ExpirySweep(store); sweep.start(); ...; sweep.stop()
"""

from __future__ import annotations

import logging
import threading

from .models import BrokerRegistration
from .store import Store

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 60.0
ACTOR = "broker_expiry"


class ExpirySweep:
    """Calls ``store.broker.expire()`` on a background thread: at start (registrations may have
    expired while the server was down), then every ``interval`` seconds until ``stop()``."""

    name = "broker expiry sweep"

    def __init__(self, store: Store, *, interval: float = DEFAULT_INTERVAL, actor: str = ACTOR) -> None:
        if not interval > 0:
            raise ValueError(f"the sweep interval must be above 0 seconds, got {interval!r}")
        self.store = store
        self.interval = interval
        self.actor = actor
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="lobstore-expiry", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop now: the wait between sweeps ends at once (a sweep in progress finishes)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def sweep(self) -> list[BrokerRegistration]:
        """One pass on the caller's thread. A failure is logged, never raised: the next pass
        tries again, and a database that is down must not end the server."""
        try:
            return self.store.broker.expire(actor=self.actor)
        except Exception:  # noqa: BLE001 - logged with its traceback; the loop carries on
            log.exception("the broker expiry sweep failed; trying again in %.0f s", self.interval)
            return []

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.sweep()
            self._stopping.wait(self.interval)
