"""lobwife's cron jobs (the ``/jobs`` routes).

The answers are upstream lobwife's: every job of the jobs file is listed (also before its first
run), and ``trigger``, ``enable`` and ``disable`` answer ``{"message": "Job NAME triggered"}``
(200), ``Job NAME is already running`` (409) or ``Unknown job: NAME`` (404). Their error
answers carry ``message`` beside lobstore's ``error`` and ``code``, because upstream's
dashboard shows ``message``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from bottle import HTTPResponse

from ...errors import LobstoreError
from ...store import Store, Transaction
from .handlers import Handlers
from .wire import json_response, only, read_json, read_query
from .writes import outside_transaction

log = logging.getLogger(__name__)

def with_message(handler: Callable[..., HTTPResponse]) -> Callable[..., HTTPResponse]:
    """Upstream's clients read ``message`` from every answer of these routes, errors included."""

    @functools.wraps(handler)
    def call(*args: Any, **kwargs: Any) -> HTTPResponse:
        try:
            return handler(*args, **kwargs)
        except LobstoreError as exc:
            exc.details.setdefault("message", exc.message)
            raise

    return call


def jobs_by_name(store: Store) -> dict[str, Any]:
    """Every job's state keyed by name: ``GET /api/jobs``, and ``jobs`` in ``/api/status``."""
    return {name: job.to_dict() for name, job in store.jobs.list().items()}


class JobApi(Handlers):
    """lobwife's cron job state (the ``/jobs`` routes)."""

    def list_jobs(self) -> HTTPResponse:
        read_query(())
        return json_response(jobs_by_name(self.store))

    def get_job(self, name: str) -> HTTPResponse:
        read_query(())
        return json_response(self.store.jobs.get(name).to_detail())

    def record_run(self, db: Store | Transaction, name: str) -> HTTPResponse:
        return json_response(db.jobs.record_run(name, **read_json(self.max_body)).to_detail(), 201)

    @with_message
    def enable_job(self, db: Store | Transaction, name: str) -> HTTPResponse:
        only(read_json(self.max_body, required=False), (), "enabling a job")
        job = db.jobs.enable(name)
        return json_response({"message": f"Job {job.name} enabled", **job.to_detail()})

    @with_message
    def disable_job(self, db: Store | Transaction, name: str) -> HTTPResponse:
        only(read_json(self.max_body, required=False), (), "disabling a job")
        job = db.jobs.disable(name)
        return json_response({"message": f"Job {job.name} disabled", **job.to_detail()})

    @outside_transaction
    @with_message
    def trigger_job(self, name: str) -> HTTPResponse:
        """Outside the request's transaction: the trigger is a write of its own that the
        scheduler takes (here or in the replica that runs the schedule), and a job must never
        start while the write lock is held. Repeating it while the job runs answers 409."""
        only(read_json(self.max_body, required=False), (), "a job trigger")
        self.store.jobs.trigger(name)
        return json_response({"message": f"Job {name} triggered"})
