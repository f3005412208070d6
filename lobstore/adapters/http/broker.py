"""The token broker: registrations, tokens and its audit trail."""

from __future__ import annotations

import logging

from bottle import HTTPResponse

from ...repositories.broker import REGISTER_CLEANERS, TOKEN_REQUEST
from ...store import Store, Transaction
from ...validation import clean_fields
from .handlers import Handlers
from .wire import MissingFieldError, json_response, only, read_json, read_query, single, whole_number
from .writes import outside_transaction

log = logging.getLogger(__name__)


class BrokerApi(Handlers):
    """The token broker: registrations, tokens and its audit trail."""

    def register(self, db: Store | Transaction, ref: str) -> HTTPResponse:
        # Checked here, not only by the library: register() also takes a ttl, which no request may set.
        fields = only(read_json(self.max_body), tuple(REGISTER_CLEANERS), "a registration")
        if fields.get("repos") in (None, []):  # today's callers get a 400 for this, not a 422
            raise MissingFieldError('repos is required: the owner/repo names the task may access, '
                                    'e.g. ["minsley/lobmob"]', field="repos")
        registration = db.broker.register(ref, **fields)
        return json_response({**registration.to_dict(), "status": "registered"})

    def deregister(self, db: Store | Transaction, ref: str) -> HTTPResponse:
        return json_response(db.broker.deregister(ref, **read_json(self.max_body, required=False)).to_dict())

    @outside_transaction
    def issue_token(self) -> HTTPResponse:
        """Through the store, never inside the request's transaction: GitHub may take seconds,
        and an answer holding a token must not be stored anywhere (idempotency included). A
        repeat is safe: the broker hands out the task's cached token."""
        fields = clean_fields(read_json(self.max_body), TOKEN_REQUEST, "a token request")
        token = self.store.broker.issue_token(fields.pop("task_id"), **fields)
        return json_response(token.to_dict(), headers={"Cache-Control": "no-store"})

    def token_audit(self) -> HTTPResponse:
        params = read_query(("task_id", "limit"))
        task = single(params, "task_id") if "task_id" in params else None
        options = {"limit": whole_number(single(params, "limit"), "limit")} if "limit" in params else {}
        entries = self.store.broker.audit(task or None, **options)
        return json_response([entry.to_dict() for entry in entries])
