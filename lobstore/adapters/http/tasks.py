"""The task, event, vault sync and service routes."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from bottle import HTTPResponse, request

from ... import __version__
from ...credentials import ADMIN, READ
from ...errors import LobstoreError, NotConfiguredError, ValidationError
from ...store import Store, Transaction
from ..openapi import openapi_document
from .auth import current_principal
from .scopes import ROUTE_ACCESS
from .wire import (
    DEFAULT_PAGE,
    current_prefix,
    etag,
    if_match_version,
    json_response,
    next_page,
    only,
    private_error,
    read_json,
    read_query,
    single,
    whole_number,
)
from .writes import outside_transaction

log = logging.getLogger(__name__)

LIST_MANY = ("status", "type", "assigned_to", "priority")  # may repeat, or be comma-separated
LIST_ONE = ("repo", "created_since", "created_until", "updated_since", "updated_until", "order", "after")
CANCEL_FIELDS = ("actor", "reason")
EVENT_FIELDS = ("event_type", "detail", "actor", "data")
LOCATIONS = ("url", "path")  # where the database lives: /health shows them to admin only


class SyncControl(Protocol):
    """What the API needs of a running vault sync (lobstore.sync.SyncDaemon)."""

    def status(self) -> dict[str, Any]: ...
    def trigger(self) -> None: ...


class TaskApi:
    """The handlers. Each reads the request, makes one library call and shapes the answer."""

    def __init__(self, store: Store, *, max_body: int, started: float, sync: SyncControl | None) -> None:
        self.store = store
        self.sync = sync
        self.max_body = max_body
        self.started = started
        self._openapi = json_response(openapi_document(ROUTE_ACCESS)).body

    # -- tasks ------------------------------------------------------------------------------
    def create_task(self, db: Transaction) -> HTTPResponse:
        task = db.tasks.create(**read_json(self.max_body))
        location = f"{request.script_name.rstrip('/')}{current_prefix()}/tasks/{task.ref}"
        return json_response(task.to_dict(), 201, {"Location": location, "ETag": etag(task)})

    def list_tasks(self) -> HTTPResponse:
        params = read_query(LIST_MANY + LIST_ONE + ("limit",))
        filters: dict[str, Any] = {
            name: [v for value in params[name] for v in value.split(",")]
            for name in LIST_MANY if name in params
        }
        filters.update({name: single(params, name) for name in LIST_ONE if name in params})
        limit = whole_number(single(params, "limit"), "limit") if "limit" in params else DEFAULT_PAGE
        tasks = self.store.tasks.list(limit=limit, **filters)
        return json_response([t.to_dict() for t in tasks], headers=next_page(params, tasks, limit))

    def get_task(self, ref: str) -> HTTPResponse:
        read_query(())
        task = self.store.tasks.get(ref)
        return json_response(task.to_dict(), headers={"ETag": etag(task)})

    def update_task(self, db: Transaction, ref: str) -> HTTPResponse:
        fields = read_json(self.max_body)
        expected = if_match_version(ref, db)
        if expected is not None:
            if fields.setdefault("expected_version", expected) != expected:
                raise ValidationError(
                    f"expected_version {fields['expected_version']!r} disagrees with If-Match "
                    f"(version {expected}): give one of them", field="expected_version",
                )
        result = db.tasks.update(ref, **fields)
        body = {"updated": list(result.updated), "task": result.task.to_dict()}
        return json_response(body, headers={"ETag": etag(result.task)})

    def cancel_task(self, db: Transaction, ref: str) -> HTTPResponse:
        fields = only(read_json(self.max_body, required=False), CANCEL_FIELDS, "a cancellation")
        task = db.tasks.cancel(ref, **fields)
        return json_response(task.to_dict(), headers={"ETag": etag(task)})

    # -- events -----------------------------------------------------------------------------
    def list_events(self, ref: str) -> HTTPResponse:
        params = read_query(("after", "limit"))
        options = {name: whole_number(single(params, name), name) for name in params}
        return json_response([e.to_dict() for e in self.store.events.for_task(ref, **options)])

    def add_event(self, db: Transaction, ref: str) -> HTTPResponse:
        fields = only(read_json(self.max_body), EVENT_FIELDS, "an event")
        if "event_type" not in fields:
            raise ValidationError("event_type is required (e.g. spawned, started, note)", field="event_type")
        event = db.events.add(ref, **fields)
        return json_response(event.to_dict(), 201)

    # -- vault sync -------------------------------------------------------------------------
    def sync_status(self) -> HTTPResponse:
        read_query(())
        if self.sync is None:
            return json_response({"enabled": False, "vault": None, "running": False, "last_cycle": None})
        state = self.sync.status()
        if not current_principal().allows(ADMIN):
            # Where the vault lives, and a failed cycle's git message (which may name remotes
            # and paths), are for administrators.
            state = {**state, "vault": None}
            if (state.get("last_cycle") or {}).get("error"):
                state["last_cycle"] = {**state["last_cycle"], "error": "the last cycle failed; an admin "
                                       "credential shows why (or see the server log)"}
        return json_response(state)

    @outside_transaction
    def sync_trigger(self) -> HTTPResponse:
        only(read_json(self.max_body, required=False), (), "a sync trigger")
        if self.sync is None:
            raise NotConfiguredError(
                "no vault sync runs in this server: start `lobstore serve` with --vault PATH "
                "(or $LOBSTORE_VAULT)"
            )
        self.sync.trigger()
        return json_response({"status": "triggered", "detail": "a sync cycle runs soon; see GET /api/sync"}, 202)

    # -- service ----------------------------------------------------------------------------
    def openapi(self) -> HTTPResponse:
        return HTTPResponse(self._openapi, 200, {"Content-Type": "application/json"})

    def health(self) -> HTTPResponse:
        """Status, version and whether the database answers for anyone; the rest (uptime,
        backend, counts) with the read scope; where the database lives only with admin."""
        uptime = round(time.monotonic() - self.started, 3)
        try:
            db = {"ok": True, **self.store.describe(), "tasks": self.store.tasks.count()}
        except LobstoreError as exc:
            db = {"ok": False, "backend": self.store.backend.name, "error": private_error(exc, 503)["error"]}
        status = 200 if db["ok"] else 503
        body = {"status": "ok" if db["ok"] else "error", "version": __version__, "uptime": uptime, "db": db}
        principal = current_principal()
        if not principal.allows(READ):
            return json_response({"status": body["status"], "version": __version__, "db": {"ok": db["ok"]}}, status)
        if not principal.allows(ADMIN):
            body["db"] = {key: value for key, value in db.items() if key not in LOCATIONS}
        return json_response(body, status)
