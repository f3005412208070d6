"""The routes of the fleet's other state: costs and prices, audit findings, the token broker
and cron jobs."""

from __future__ import annotations

import logging

from bottle import HTTPResponse

from ...errors import ValidationError
from ...store import Store, Transaction
from .tasks import CANCEL_FIELDS
from .wire import (
    MissingFieldError,
    flag,
    json_response,
    next_page,
    only,
    path_id,
    paging,
    read_json,
    read_query,
    renamed,
    single,
    whole_number,
)
from .writes import outside_transaction

log = logging.getLogger(__name__)

LIBRARY_PAGE = 100  # the library's default page of cost events and audit findings
COST_LIST = ("task_id", "model", "agent", "since", "until", "after", "limit")
COST_SUMMARY = ("since", "until", "period", "group_by", "task_id", "model", "agent")
PRICE_QUERY = ("model", "at", "history")
AUDIT_LIST = ("audit_type", "severity", "status", "since", "until", "after", "limit")
AUDIT_RUN_FIELDS = ("audit_type", "findings", "run_id", "close_missing", "actor")
AUDIT_UPDATE_FIELDS = ("status", "resolution", "actor")
REGISTER_FIELDS = ("repos", "lobster_type", "actor")
TOKEN_FIELDS = ("task_id", "actor")
JOB_RUN_FIELDS = ("status", "duration", "output", "finished_at")


class Handlers:
    """What the route groups below share: the store and the body size limit."""

    def __init__(self, store: Store, *, max_body: int) -> None:
        self.store = store
        self.max_body = max_body


class CostApi(Handlers):
    """Cost events, their sums and the prices (the ``/costs`` routes)."""

    def record_costs(self, db: Store | Transaction) -> HTTPResponse:
        """One event (an object) or a batch (an array of up to 1,000, all or none). A repeated
        ``request_id`` answers with the event stored the first time: 200 instead of 201."""
        body = read_json(self.max_body, batch=True)
        if isinstance(body, list):
            events = db.costs.record_many(body)
            fresh = any(not event.duplicate for event in events)
            return json_response([event.to_dict() for event in events], 201 if fresh else 200)
        event = db.costs.record(**body)  # the library names an unknown field
        return json_response(event.to_dict(), 200 if event.duplicate else 201)

    def list_costs(self) -> HTTPResponse:
        params = read_query(COST_LIST)
        filters = renamed({name: single(params, name) for name in params if name not in ("after", "limit")})
        after, limit = paging(params, LIBRARY_PAGE)
        events = self.store.costs.list(after=after, limit=limit, **filters)
        return json_response([e.to_dict() for e in events], headers=next_page(params, events, limit))

    def summary(self) -> HTTPResponse:
        params = read_query(COST_SUMMARY)
        filters = renamed({name: single(params, name) for name in params})
        return json_response(self.store.costs.summary(**filters).to_dict())

    def task_costs(self, ref: str) -> HTTPResponse:
        read_query(())
        return json_response(self.store.costs.for_task(ref).to_dict())

    def list_prices(self) -> HTTPResponse:
        """The prices in effect now (or ``at`` a time); ``history=true``: every price ever set."""
        params = read_query(PRICE_QUERY)
        model = single(params, "model") if "model" in params else None
        if "history" in params and flag(single(params, "history"), "history"):
            if "at" in params:
                raise ValidationError("give at or history=true, not both", field="at")
            prices = self.store.costs.prices(model)
        else:
            at = single(params, "at") if "at" in params else None
            prices = [p for p in self.store.costs.current_prices(at) if model is None or p.model == model]
        return json_response([price.to_dict() for price in prices])

    def set_price(self, db: Store | Transaction) -> HTTPResponse:
        fields = read_json(self.max_body)
        price = db.costs.set_price(fields.pop("model", None), **fields)  # the library names an unknown field
        return json_response(price.to_dict(), 201)


class AuditApi(Handlers):
    """Audit findings (the ``/audits`` routes)."""

    def submit_audit(self, db: Store | Transaction) -> HTTPResponse:
        fields = only(read_json(self.max_body), AUDIT_RUN_FIELDS, "an audit run")
        for name in ("audit_type", "findings"):
            if fields.get(name) is None:
                hint = " (a list; empty for a clean run)" if name == "findings" else ""
                raise ValidationError(f"{name} is required{hint}", field=name)
        result = db.audits.submit(fields.pop("audit_type"), fields.pop("findings"), **fields)
        return json_response(result.to_dict())

    def list_findings(self) -> HTTPResponse:
        params = read_query(AUDIT_LIST)
        filters = {name: single(params, name) for name in params if name not in ("after", "limit")}
        after, limit = paging(params, LIBRARY_PAGE)
        findings = self.store.audits.list(after=after, limit=limit, **filters)
        return json_response([f.to_dict() for f in findings], headers=next_page(params, findings, limit))

    def update_finding(self, db: Store | Transaction, finding_id: str) -> HTTPResponse:
        fields = only(read_json(self.max_body), AUDIT_UPDATE_FIELDS, "a finding update")
        if fields.get("status") is None:
            raise ValidationError("status is required: resolved, ignored or open", field="status")
        finding = db.audits.update(path_id(finding_id, "audit finding"), **fields)
        return json_response(finding.to_dict())


class BrokerApi(Handlers):
    """The token broker: registrations, tokens and its audit trail."""

    def register(self, db: Store | Transaction, ref: str) -> HTTPResponse:
        fields = only(read_json(self.max_body), REGISTER_FIELDS, "a registration")
        if fields.get("repos") in (None, []):  # today's callers get a 400 for this, not a 422
            raise MissingFieldError('repos is required: the owner/repo names the task may access, '
                                    'e.g. ["minsley/lobmob"]', field="repos")
        registration = db.broker.register(ref, **fields)
        return json_response({**registration.to_dict(), "status": "registered"})

    def deregister(self, db: Store | Transaction, ref: str) -> HTTPResponse:
        fields = only(read_json(self.max_body, required=False), CANCEL_FIELDS, "a deregistration")
        return json_response(db.broker.deregister(ref, **fields).to_dict())

    @outside_transaction
    def issue_token(self) -> HTTPResponse:
        """Through the store, never inside the request's transaction: GitHub may take seconds,
        and an answer holding a token must not be stored anywhere (idempotency included). A
        repeat is safe: the broker hands out the task's cached token."""
        fields = only(read_json(self.max_body), TOKEN_FIELDS, "a token request")
        if fields.get("task_id") is None:
            raise ValidationError("task_id is required: the task the token is for (T42)", field="task_id")
        token = self.store.broker.issue_token(fields["task_id"], actor=fields.get("actor"))
        return json_response(token.to_dict(), headers={"Cache-Control": "no-store"})

    def token_audit(self) -> HTTPResponse:
        params = read_query(("task_id", "limit"))
        task = single(params, "task_id") if "task_id" in params else None
        options = {"limit": whole_number(single(params, "limit"), "limit")} if "limit" in params else {}
        entries = self.store.broker.audit(task or None, **options)
        return json_response([entry.to_dict() for entry in entries])


class JobApi(Handlers):
    """lobwife's cron job state (the ``/jobs`` routes)."""

    def list_jobs(self) -> HTTPResponse:
        read_query(())
        return json_response({name: job.to_dict() for name, job in self.store.jobs.list().items()})

    def get_job(self, name: str) -> HTTPResponse:
        read_query(())
        return json_response(self.store.jobs.get(name).to_detail())

    def record_run(self, db: Store | Transaction, name: str) -> HTTPResponse:
        fields = only(read_json(self.max_body), JOB_RUN_FIELDS, "a job run")
        if fields.get("status") is None:
            raise ValidationError("status is required: success, failed, timeout or error", field="status")
        return json_response(db.jobs.record_run(name, **fields).to_detail(), 201)

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
