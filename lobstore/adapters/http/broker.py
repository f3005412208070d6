"""The token broker: registrations, tokens and its audit trail."""

from __future__ import annotations

import logging

from bottle import HTTPResponse

from ...credentials import ADMIN, BROKER
from ...errors import ValidationError
from ...store import Store, Transaction
from .auth import current_principal
from .handlers import Handlers
from .tasks import CANCEL_FIELDS
from .wire import MissingFieldError, json_response, only, read_json, read_query, single, whole_number
from .writes import keep_secret, outside_transaction

log = logging.getLogger(__name__)

REGISTER_FIELDS = ("repos", "lobster_type", "actor")
TOKEN_FIELDS = ("task_id", "actor")


class BrokerApi(Handlers):
    """The token broker: registrations, tokens and its audit trail."""

    def register(self, db: Store | Transaction, ref: str) -> HTTPResponse:
        """Register; when a credential with the broker scope asked, the answer also carries a
        ``task_token``: a task credential for the lobster that works this task (shown once)."""
        fields = only(read_json(self.max_body), REGISTER_FIELDS, "a registration")
        if fields.get("repos") in (None, []):  # today's callers get a 400 for this, not a 422
            raise MissingFieldError('repos is required: the owner/repo names the task may access, '
                                    'e.g. ["minsley/lobmob"]', field="repos")
        principal = current_principal()
        registration = db.broker.register(ref, credential_id=principal.credential_id,
                                          may_change_repos=principal.allows(ADMIN), **fields)
        answer = {**registration.to_dict(), "status": "registered"}
        if principal.authenticated and principal.task_id is None and principal.allows(BROKER):
            issued = db.credentials.create_for_task(registration.task_id, created_by=principal.name)
            answer.update(task_token=issued.secret, task_token_expires_at=answer["expires_at"])
            return keep_secret(json_response(answer), ("task_token",))
        return json_response(answer)

    def deregister(self, db: Store | Transaction, ref: str) -> HTTPResponse:
        fields = only(read_json(self.max_body, required=False), CANCEL_FIELDS, "a deregistration")
        registration = db.broker.deregister(ref, credential_id=current_principal().credential_id, **fields)
        return json_response(registration.to_dict())

    @outside_transaction
    def issue_token(self) -> HTTPResponse:
        """Through the store, never inside the request's transaction: GitHub may take seconds,
        and an answer holding a token must not be stored anywhere (idempotency included). A
        repeat is safe: the broker hands out the task's cached token."""
        fields = only(read_json(self.max_body), TOKEN_FIELDS, "a token request")
        if fields.get("task_id") is None:
            raise ValidationError("task_id is required: the task the token is for (T42)", field="task_id")
        token = self.store.broker.issue_token(fields["task_id"], actor=fields.get("actor"),
                                              credential_id=current_principal().credential_id)
        return json_response(token.to_dict(), headers={"Cache-Control": "no-store"})

    def token_audit(self) -> HTTPResponse:
        params = read_query(("task_id", "limit"))
        task = single(params, "task_id") if "task_id" in params else None
        options = {"limit": whole_number(single(params, "limit"), "limit")} if "limit" in params else {}
        entries = self.store.broker.audit(task or None, **options)
        return json_response([entry.to_dict() for entry in entries])
