"""Audit findings (the ``/audits`` routes)."""

from __future__ import annotations

import logging

from bottle import HTTPResponse

from ...errors import ValidationError
from ...store import Store, Transaction
from .handlers import Handlers
from .wire import json_response, next_page, only, paging, path_id, read_json, read_query, single

log = logging.getLogger(__name__)

LIBRARY_PAGE = 100  # the library's default page of cost events and audit findings
AUDIT_LIST = ("audit_type", "severity", "status", "since", "until", "after", "limit")
AUDIT_RUN_FIELDS = ("audit_type", "findings", "run_id", "close_missing", "actor")
AUDIT_UPDATE_FIELDS = ("status", "resolution", "actor")


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
