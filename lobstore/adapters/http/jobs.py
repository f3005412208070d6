"""lobwife's cron jobs (the ``/jobs`` routes)."""

from __future__ import annotations

import logging

from bottle import HTTPResponse

from ...store import Store, Transaction
from .handlers import Handlers
from .wire import json_response, only, read_json, read_query
from .writes import outside_transaction

log = logging.getLogger(__name__)

class JobApi(Handlers):
    """lobwife's cron job state (the ``/jobs`` routes)."""

    def list_jobs(self) -> HTTPResponse:
        read_query(())
        return json_response({name: job.to_dict() for name, job in self.store.jobs.list().items()})

    def get_job(self, name: str) -> HTTPResponse:
        read_query(())
        return json_response(self.store.jobs.get(name).to_detail())

    def record_run(self, db: Store | Transaction, name: str) -> HTTPResponse:
        return json_response(db.jobs.record_run(name, **read_json(self.max_body)).to_detail(), 201)

    def enable_job(self, db: Store | Transaction, name: str) -> HTTPResponse:
        only(read_json(self.max_body, required=False), (), "enabling a job")
        return json_response(db.jobs.enable(name).to_detail())

    def disable_job(self, db: Store | Transaction, name: str) -> HTTPResponse:
        only(read_json(self.max_body, required=False), (), "disabling a job")
        return json_response(db.jobs.disable(name).to_detail())

    @outside_transaction
    def trigger_job(self, name: str) -> HTTPResponse:
        """Outside the request's transaction: starting a job is a side effect no rollback can
        take back, and the runner must not be called while the write lock is held."""
        only(read_json(self.max_body, required=False), (), "a job trigger")
        self.store.jobs.trigger(name)
        return json_response({"status": "triggered", "job": name}, 202)
