"""API credentials over HTTP (the ``/credentials`` routes, admin only): what
``lobstore credentials`` does, for a dashboard or an operator without database access."""

from __future__ import annotations

from bottle import HTTPResponse

from ...store import Store, Transaction
from .auth import current_principal
from .handlers import Handlers
from .wire import flag, json_response, only, read_json, read_query, single
from .writes import keep_secret

CREATE_FIELDS = ("name", "scopes", "expires_at")


class CredentialApi(Handlers):
    def list_credentials(self) -> HTTPResponse:
        params = read_query(("all", "tasks"))
        options = {name: flag(single(params, name), name) for name in params}
        found = self.store.credentials.list(include_revoked=options.get("all", False),
                                            include_tasks=options.get("tasks", False))
        return json_response([c.to_dict() for c in found])

    def create_credential(self, db: Store | Transaction) -> HTTPResponse:
        fields = only(read_json(self.max_body), CREATE_FIELDS, "a credential")
        issued = db.credentials.create(fields.get("name"), scopes=fields.get("scopes"),
                                       expires_at=fields.get("expires_at"),
                                       created_by=current_principal().name or "http")
        return keep_secret(json_response(issued.to_dict(), 201), ("secret",))

    def revoke_credential(self, db: Store | Transaction, name: str) -> HTTPResponse:
        only(read_json(self.max_body, required=False), (), "a revocation")
        return json_response([c.to_dict() for c in db.credentials.revoke(name)])
