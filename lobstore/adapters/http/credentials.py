"""API credentials over HTTP (the ``/credentials`` routes, admin only): what
``lobstore credentials`` does, for a dashboard or an operator without database access."""

from __future__ import annotations

from bottle import HTTPResponse

from ...repositories.credentials import CREATE_CLEANERS
from ...store import Store, Transaction
from .auth import current_principal
from .handlers import Handlers
from .wire import flag, json_response, only, read_json, read_query, single
from .writes import keep_secret


class CredentialApi(Handlers):
    def list_credentials(self) -> HTTPResponse:
        params = read_query(("all", "tasks"))
        options = {name: flag(single(params, name), name) for name in params}
        found = self.store.credentials.list(include_revoked=options.get("all", False),
                                            include_tasks=options.get("tasks", False))
        return json_response([c.to_dict() for c in found])

    def create_credential(self, db: Store | Transaction) -> HTTPResponse:
        # Checked here by name: create() also takes who made it, which no request may set.
        fields = only(read_json(self.max_body), tuple(CREATE_CLEANERS), "a credential")
        issued = db.credentials.create(created_by=current_principal().name or "http", **fields)
        return keep_secret(json_response(issued.to_dict(), 201), ("secret",))

    def revoke_credential(self, db: Store | Transaction, name: str) -> HTTPResponse:
        only(read_json(self.max_body, required=False), (), "a revocation")
        return json_response([c.to_dict() for c in db.credentials.revoke(name)])
