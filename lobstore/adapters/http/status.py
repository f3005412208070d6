"""/health and /api/status: what probes, ``lobmob verify`` and lobwife's dashboard read.

Both carry every field lobwife's answers had (``uptime``, ``jobs_running``, ``broker``,
``db.task_count``, ``db.size_bytes``; ``jobs`` in /api/status), plus lobstore's own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from bottle import HTTPResponse

from ... import __version__
from ...credentials import ADMIN, READ
from ...duties import identity
from ...errors import LobstoreError
from ...store import Store
from ...work import holding
from .auth import current_principal
from .handlers import Handlers
from .jobs import jobs_by_name
from .wire import json_response, private_error, read_query

log = logging.getLogger(__name__)

# Kubernetes probes /health every few seconds; counting every task and audit row on each probe
# costs a full count (12 ms at a million tasks, more on PostgreSQL) for figures nobody needs to
# the second. So the counts and the database size are a short cache: computed at most once per
# STATS_TTL seconds and shown with their age. Whether the database answers is still checked on
# every probe (one read of the schema version).
STATS_TTL = 30.0
LOCATIONS = ("url", "path")  # where the database lives: /health shows them to admin only


def no_duties() -> dict[str, Any]:
    """An app without background services (tests, an embedding program) holds no duty."""
    return {"replica": identity(), "held": [], "standby": []}


class CachedStats:
    """The database's counts and size, recomputed at most every ``ttl`` seconds; concurrent
    probes wait for one computation instead of each running the counts."""

    def __init__(self, store: Store, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self._lock = threading.Lock()
        self._value: dict[str, Any] | None = None
        self._taken = 0.0

    def get(self) -> tuple[dict[str, Any], float]:
        """The figures and their age in seconds. Raises the store's error when they cannot be
        computed (the next call tries again)."""
        with holding(self._lock):  # one probe counts while the others wait (without a work turn)
            now = time.monotonic()
            if self._value is None or now - self._taken >= self.ttl:
                self._value = {
                    "task_count": self.store.tasks.count(),
                    "size_bytes": self.store.size_bytes(),
                    "broker": self.store.broker.summary(),
                }
                self._taken = now
            return self._value, round(now - self._taken, 3)


class StatusApi(Handlers):
    def __init__(self, store: Store, *, max_body: int, started: float, stats_ttl: float = STATS_TTL,
                 duties: Callable[[], dict[str, Any]] | None = None) -> None:
        super().__init__(store, max_body=max_body)
        self.started = started
        self.stats = CachedStats(store, stats_ttl)
        self.duties = duties or no_duties

    def health(self) -> HTTPResponse:
        """200 while the database answers (503 when it does not, so a readiness probe takes the
        pod out of service). Query parameters are ignored, as probes may add their own.

        Anyone sees the status, the version and whether the database answers; the rest needs
        the read scope, and where the database lives (its URL, its file) admin."""
        db: dict[str, Any]
        broker: dict[str, Any] = {}
        jobs_running = 0
        try:
            figures, age = self.stats.get()
            jobs_running = len(self.store.jobs.running())
            db = {"ok": True, **self.store.describe(), "task_count": figures["task_count"],
                  "tasks": figures["task_count"], "size_bytes": figures["size_bytes"], "counted_seconds_ago": age}
            broker = figures["broker"]
        except LobstoreError as exc:
            # The driver's words go to the log, with the id the answer gives.
            db = {"ok": False, "backend": self.store.backend.name, "error": private_error(exc, 503)["error"]}
        status = 200 if db["ok"] else 503
        principal = current_principal()
        if not principal.allows(READ):
            return json_response({"status": "ok" if db["ok"] else "error", "version": __version__,
                                  "db": {"ok": db["ok"]}}, status)
        if not principal.allows(ADMIN):
            db = {key: value for key, value in db.items() if key not in LOCATIONS}
        body = {
            "status": "ok" if db["ok"] else "error",
            "version": __version__,
            "uptime": self.uptime(),
            "jobs_running": jobs_running,
            "broker": self.broker(broker),
            "duties": self.duties(),
            "changes": self.store.changes.status(),
            "db": db,
        }
        return json_response(body, status)

    def status(self) -> HTTPResponse:
        """lobwife's dashboard data: uptime, every job's state and the broker's summary."""
        read_query(())
        figures, _ = self.stats.get()
        return json_response({"status": "ok", "uptime": self.uptime(), "jobs": jobs_by_name(self.store),
                              "broker": self.broker(figures["broker"]), "duties": self.duties()})

    # -- parts ------------------------------------------------------------------------------------
    def uptime(self) -> float:
        """Seconds since the server started (lobwife showed the host's monotonic clock)."""
        return round(time.monotonic() - self.started, 3)

    def broker(self, counts: dict[str, Any]) -> dict[str, Any]:
        """lobwife's broker summary: whether tokens can be minted, the App id, and the counts."""
        provider = self.store.token_provider
        app_id = getattr(provider, "app_id", None)
        return {
            "enabled": provider is not None,
            "app_id": str(app_id) if app_id is not None else None,
            "active_tasks": counts.get("active_tasks", 0),
            "total_tokens_issued": counts.get("total_tokens_issued", 0),
            "audit_entries": counts.get("audit_entries", 0),
        }
