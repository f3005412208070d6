"""The token broker: registrations, tokens (for tasks and services) and its audit trail.

Under the unversioned ``/api`` the broker's routes mean what they meant to lobwife:
``GET /api/tasks`` lists registrations keyed by name, ``DELETE /api/tasks/{id}`` ends a
registration (the task is untouched) and ``POST /api/tasks/{id}/register`` registers whatever
the id names, or keeps a standalone registration under it. ``/api/v1/tasks/{ref}/register``
registers a task, which must exist.
"""

from __future__ import annotations

import logging
from typing import Any

from bottle import HTTPResponse

from ...credentials import ADMIN, BROKER
from ...models import BrokerRegistration
from ...repositories.broker import DEREGISTER_CLEANERS, REGISTER_CLEANERS, SERVICE_TOKEN_REQUEST, TOKEN_REQUEST
from ...repositories.broker.registrations import DEFAULT_LIST_LIMIT
from ...store import Store, Transaction
from ...validation import clean_fields
from .auth import Principal, current_principal
from .handlers import Handlers
from .wire import MissingFieldError, json_response, only, read_json, read_query, single, whole_number
from .writes import keep_secret, outside_transaction

log = logging.getLogger(__name__)

REGISTRATION_LIST = ("status", "limit")
NO_STORE = {"Cache-Control": "no-store"}  # an answer holding a token is kept by no cache


class BrokerApi(Handlers):
    """The token broker: registrations, tokens and its audit trail."""

    # -- registrations ------------------------------------------------------------------------
    def register(self, db: Store | Transaction, ref: str) -> HTTPResponse:
        """``/api/v1/tasks/{ref}/register``: the task must exist (404). When a credential with
        the broker scope asked, the answer also carries a ``task_token`` (see :meth:`_answer`)."""
        principal = current_principal()
        registration = db.broker.register(ref, **self._registration_fields(), **_asked_by(principal))
        return self._answer(db, principal, registration, {"status": "registered"})

    def register_by_name(self, db: Store | Transaction, ref: str) -> HTTPResponse:
        """``/api/tasks/{id}/register``, lobwife's way: the task the id names (ref, legacy id,
        slug or name), else a standalone registration under the id. The answer names the id
        as it was given (``task_id``) and the task it reached (``task``, null when standalone)."""
        principal = current_principal()
        registration = db.broker.register_by_name(ref, **self._registration_fields(), **_asked_by(principal))
        return self._answer(db, principal, registration, {"status": "registered", "task_id": ref,
                                                          "task": registration.task_ref})

    def deregister(self, db: Store | Transaction, ref: str) -> HTTPResponse:
        registration = db.broker.deregister(ref, credential_id=current_principal().credential_id,
                                            **self._deregistration_fields())
        return json_response(registration.to_dict())

    def deregister_by_name(self, db: Store | Transaction, ref: str) -> HTTPResponse:
        """``DELETE /api/tasks/{id}``: end what was registered under the id (the task itself
        carries on). Always "removed", as lobwife answered, with what was ended."""
        ended = db.broker.deregister_by_name(ref, credential_id=current_principal().credential_id,
                                             **self._deregistration_fields())
        return json_response({"status": "removed", "task_id": ref, "ended": [r.to_dict() for r in ended]})

    def registrations(self) -> HTTPResponse:
        """``GET /api/tasks``: registrations keyed by what they are known by (a task's ref or a
        standalone name), newest first, with lobwife's fields (repos, lobster_type,
        registered_at, status, token_count) and lobstore's."""
        params = read_query(REGISTRATION_LIST)
        status = single(params, "status") if "status" in params else None
        limit = whole_number(single(params, "limit"), "limit") if "limit" in params else DEFAULT_LIST_LIMIT
        listed: dict[str, Any] = {}
        for registration in self.store.broker.list(status=status, limit=limit):
            # A standalone "T99" made before task 99 existed shares its key: the newer one shows.
            listed.setdefault(registration.key, registration.to_dict())
        return json_response(listed)

    # -- tokens ---------------------------------------------------------------------------------
    @outside_transaction
    def issue_token(self) -> HTTPResponse:
        """Through the store, never inside the request's transaction: GitHub may take seconds,
        and an answer holding a token must not be stored anywhere (idempotency included). A
        repeat is safe: the broker hands out the task's cached token."""
        fields = only(read_json(self.max_body), tuple(TOKEN_REQUEST), "a token request")
        if fields.get("task_id") in (None, ""):  # lobwife's callers get a 400 for this
            raise MissingFieldError("task_id is required: the task the token is for (T42)", field="task_id")
        fields = clean_fields(fields, TOKEN_REQUEST, "a token request")
        principal = current_principal()
        token = self.store.broker.issue_token(fields.pop("task_id"), credential_id=principal.credential_id,
                                              only_task=principal.task_id, **fields)
        return json_response(token.to_dict(), headers=NO_STORE)

    @outside_transaction
    def service_token(self) -> HTTPResponse:
        """``POST /api/v1/service-token {"service"}``: a token for a fleet service (lobboss,
        lobsigliere, lobwife's cron jobs); which services may ask for which repositories is the
        broker policy's (with auth required, only an admin credential gets here). Outside the
        transaction, as for a task's token."""
        fields = only(read_json(self.max_body), tuple(SERVICE_TOKEN_REQUEST), "a service token request")
        service = fields.get("service")
        if service is None or (isinstance(service, str) and not service.strip()):
            raise MissingFieldError('service is required: the service asking, e.g. {"service": "lobboss"}',
                                    field="service")
        token = self.store.broker.issue_service_token(service.strip() if isinstance(service, str) else service,
                                                      credential_id=current_principal().credential_id)
        return json_response(token.to_dict(), headers=NO_STORE)

    def token_audit(self) -> HTTPResponse:
        params = read_query(("task_id", "limit"))
        task = single(params, "task_id") if "task_id" in params else None
        options = {"limit": whole_number(single(params, "limit"), "limit")} if "limit" in params else {}
        entries = self.store.broker.audit(task or None, **options)
        return json_response([entry.to_dict() for entry in entries])

    # -- helpers ----------------------------------------------------------------------------------
    def _answer(self, db: Store | Transaction, principal: Principal, registration: BrokerRegistration,
                extra: dict[str, Any]) -> HTTPResponse:
        """The registration's answer. A task registered by a credential with the broker scope
        gets a task credential for its lobster, in this answer only: ``task_token`` (a
        standalone registration has no task to bind one to)."""
        answer = {**registration.to_dict(), **extra}
        if registration.task_id is None or not principal.authenticated or principal.task_id is not None \
                or not principal.allows(BROKER):
            return json_response(answer)
        issued = db.credentials.create_for_task(registration.task_id, created_by=principal.name)
        answer.update(task_token=issued.secret, task_token_expires_at=answer["expires_at"])
        return keep_secret(json_response(answer), ("task_token",))

    def _deregistration_fields(self) -> dict[str, Any]:
        # Refused here by name: the library's deregister also takes who asked, which no request
        # may set.
        return only(read_json(self.max_body, required=False), tuple(DEREGISTER_CLEANERS), "a deregistration")

    def _registration_fields(self) -> dict[str, Any]:
        # Checked here, not only by the library: register() also takes a ttl, which no request may set.
        fields = only(read_json(self.max_body), tuple(REGISTER_CLEANERS), "a registration")
        if fields.get("repos") in (None, []):  # today's callers get a 400 for this, not a 422
            raise MissingFieldError('repos is required: the owner/repo names the task may access, '
                                    'e.g. ["minsley/lobmob"]', field="repos")
        return fields


def _asked_by(principal: Principal) -> dict[str, Any]:
    """Who registers: for the audit, and whether it may move a task's tokens to other repos."""
    return {"credential_id": principal.credential_id, "may_change_repos": principal.allows(ADMIN)}
