"""/health and /api/status: what probes, ``lobmob verify`` and lobwife's dashboard read.

Both carry every field lobwife's answers had (``uptime``, ``jobs_running``, ``broker``,
``db.task_count``, ``db.size_bytes``; ``jobs`` in /api/status), plus lobstore's own.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from bottle import HTTPResponse

from ... import __version__
from ...errors import LobstoreError
from ...store import Store
from .handlers import Handlers
from .jobs import jobs_by_name
from .wire import json_response, read_query

log = logging.getLogger(__name__)

# Kubernetes probes /health every few seconds; counting every task and audit row on each probe
# costs a full count (12 ms at a million tasks, more on PostgreSQL) for figures nobody needs to
# the second. So the counts and the database size are a short cache: computed at most once per
# STATS_TTL seconds and shown with their age. Whether the database answers is still checked on
# every probe (one read of the schema version).
STATS_TTL = 30.0


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
        with self._lock:
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
    def __init__(self, store: Store, *, max_body: int, started: float, stats_ttl: float = STATS_TTL) -> None:
        super().__init__(store, max_body=max_body)
        self.started = started
        self.stats = CachedStats(store, stats_ttl)

    def health(self) -> HTTPResponse:
        """200 while the database answers (503 when it does not, so a readiness probe takes the
        pod out of service). Query parameters are ignored, as probes may add their own."""
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
            log.warning("health check: the database does not answer: %s", exc)
            db = {"ok": False, "backend": self.store.backend.name, "error": exc.message}
        body = {
            "status": "ok" if db["ok"] else "error",
            "version": __version__,
            "uptime": self.uptime(),
            "jobs_running": jobs_running,
            "broker": self.broker(broker),
            "db": db,
        }
        return json_response(body, 200 if db["ok"] else 503)

    def status(self) -> HTTPResponse:
        """lobwife's dashboard data: uptime, every job's state and the broker's summary."""
        read_query(())
        figures, _ = self.stats.get()
        return json_response({"status": "ok", "uptime": self.uptime(), "jobs": jobs_by_name(self.store),
                              "broker": self.broker(figures["broker"])})

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
