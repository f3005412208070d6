"""The broker's expiry sweep: marks registrations past their time ``expired``, every minute.

A token is refused for an expired registration whether or not the sweep has run (the broker
checks the time itself); the sweep makes the expiry visible — the task's ``broker_status``,
a ``registration_expired`` audit row and a task event — soon after it happens, as lobwife's
own loop did. ``lobstore serve`` runs one beside the API.

    sweep = ExpirySweep(store); sweep.start(); ...; sweep.stop()
"""

from __future__ import annotations

import logging

from ..models import BrokerRegistration
from ..services import BackgroundService
from ..store import Store

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 60.0
ACTOR = "broker_expiry"


class ExpirySweep(BackgroundService):
    """Calls ``store.broker.expire()`` on a background thread: at start (registrations may have
    expired while the server was down), then every ``interval`` seconds until ``stop()``."""

    name = "broker expiry sweep"
    duty = "broker-expiry"

    def __init__(self, store: Store, *, interval: float = DEFAULT_INTERVAL, actor: str = ACTOR) -> None:
        super().__init__(interval=interval)
        self.store = store
        self.actor = actor

    def run_pass(self) -> list[BrokerRegistration]:
        return self.store.broker.expire(actor=self.actor)

    def sweep(self) -> list[BrokerRegistration]:
        """One pass on the caller's thread. A failure is logged, never raised: the next pass
        tries again, and a database that is down must not end the server."""
        return self.run_now() or []
