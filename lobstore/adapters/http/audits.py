"""Audit findings (the ``/audits`` routes)."""

from __future__ import annotations

import logging

from bottle import HTTPResponse

from ...store import Store, Transaction
from .handlers import Handlers
from .wire import json_response, next_page, paging, path_id, read_json, read_query, single

log = logging.getLogger(__name__)

LIBRARY_PAGE = 100  # the library's default page of cost events and audit findings
AUDIT_LIST = ("audit_type", "severity", "status", "since", "until", "after", "limit")


class AuditApi(Handlers):
    """Audit findings (the ``/audits`` routes)."""

    def submit_audit(self, db: Store | Transaction) -> HTTPResponse:
        result = db.audits.submit(**read_json(self.max_body))
        return json_response(result.to_dict())

    def list_findings(self) -> HTTPResponse:
        params = read_query(AUDIT_LIST)
        filters = {name: single(params, name) for name in params if name not in ("after", "limit")}
        after, limit = paging(params, LIBRARY_PAGE)
        findings = self.store.audits.list(after=after, limit=limit, **filters)
        return json_response([f.to_dict() for f in findings], headers=next_page(params, findings, limit))

    def update_finding(self, db: Store | Transaction, finding_id: str) -> HTTPResponse:
        finding = db.audits.update(path_id(finding_id, "audit finding"), **read_json(self.max_body))
        return json_response(finding.to_dict())
