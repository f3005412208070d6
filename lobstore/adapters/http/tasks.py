"""The task, event, vault sync and OpenAPI routes.

The task routes keep lobwife's ``/api/v1`` answers (a superset of their fields): the list is
newest first, 100 by default; a PATCH may set the task's broker fields too; a logged event
says ``"status": "logged"``.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from bottle import HTTPResponse, request

from ...credentials import ADMIN, BROKER
from ...errors import ForbiddenError, NotConfiguredError, ValidationError
from ...filters import TASK_FILTERS, TaskFilter
from ...repositories.broker import BROKER_FIELDS
from ...repositories.tasks import UPDATE_OPTION_CLEANERS, check_version
from ...store import Store, Transaction
from ...validation import clean_fields
from ..openapi import openapi_document
from .auth import current_principal
from .scopes import ROUTE_ACCESS
from .wire import (
    current_prefix,
    encoded_json_response,
    etag,
    if_match_version,
    json_response,
    next_page,
    only,
    read_json,
    read_query,
    single,
    version_etag,
    whole_number,
)
from .writes import outside_transaction

log = logging.getLogger(__name__)

# GET /tasks: the task filters (lobstore.filters), then the page. lobwife listed tasks newest
# first, 100 unless asked (its poller reads the first page only).
LIST_PAGE = ("limit", "after", "order")
TASK_PAGE = 100
TASK_ORDER = "desc"


class SyncControl(Protocol):
    """What the API needs of a running vault sync (lobstore.sync.SyncDaemon)."""

    def status(self) -> dict[str, Any]: ...
    def trigger(self) -> None: ...


class TaskApi:
    """The handlers. Each reads the request, makes one library call and shapes the answer."""

    def __init__(self, store: Store, *, max_body: int, sync: SyncControl | None) -> None:
        self.store = store
        self.sync = sync
        self.max_body = max_body
        self._openapi = json_response(openapi_document(ROUTE_ACCESS)).body

    # -- tasks ------------------------------------------------------------------------------
    def create_task(self, db: Transaction) -> HTTPResponse:
        task = db.tasks.create(**read_json(self.max_body))
        location = f"{request.script_name.rstrip('/')}{current_prefix()}/tasks/{task.ref}"
        return json_response(task.to_dict(), 201, {"Location": location, "ETag": etag(task)})

    def list_tasks(self) -> HTTPResponse:
        params = read_query((*TASK_FILTERS, *LIST_PAGE))
        page: dict[str, Any] = {name: single(params, name) for name in ("after", "order") if name in params}
        page.setdefault("order", TASK_ORDER)
        limit = whole_number(single(params, "limit"), "limit") if "limit" in params else TASK_PAGE
        found = self.store.tasks.list_json(TaskFilter.from_query(params), limit=limit, **page)
        return encoded_json_response(found.body, headers=next_page(params, found.ids, limit))

    def get_task(self, ref: str) -> HTTPResponse:
        read_query(())
        found = self.store.tasks.get_json(ref)
        return encoded_json_response(found.body, headers={"ETag": version_etag(found.versions[0])})

    def update_task(self, db: Transaction, ref: str) -> HTTPResponse:
        fields = read_json(self.max_body)
        expected = if_match_version(ref, db)
        if expected is not None:
            if fields.setdefault("expected_version", expected) != expected:
                raise ValidationError(
                    f"expected_version {fields['expected_version']!r} disagrees with If-Match "
                    f"(version {expected}): give one of them", field="expected_version",
                )
        # The broker fields (lobwife's clients register a task this way) change the task's
        # registration, in the same transaction as the rest: a refusal of either undoes both.
        broker = {name: fields.pop(name) for name in BROKER_FIELDS if name in fields}
        principal = current_principal()
        if broker and not principal.allows(BROKER):
            raise ForbiddenError(
                f"setting {', '.join(sorted(broker))} registers the task with the token broker: that needs the "
                f"broker scope", field=sorted(broker)[0], scope=BROKER,
            )
        if broker and not set(fields) - set(UPDATE_OPTION_CLEANERS):
            options = clean_fields(fields, UPDATE_OPTION_CLEANERS, "a task update")
            task, updated = db.tasks.get(ref), []
            check_version(task, options.get("expected_version"))
        else:
            result = db.tasks.update(ref, **fields)
            task, updated = result.task, list(result.updated)
        if broker:
            updated += db.broker.update_task_fields(
                task.id, actor=fields.get("actor"), reason=fields.get("reason"),
                credential_id=principal.credential_id, may_change_repos=principal.allows(ADMIN), **broker)
            task = db.tasks.get(task.id)
        body = {"id": task.id, "task_id": task.ref, "updated": updated, "task": task.to_dict()}
        return json_response(body, headers={"ETag": etag(task)})

    def cancel_task(self, db: Transaction, ref: str) -> HTTPResponse:
        task = db.tasks.cancel(ref, **read_json(self.max_body, required=False))
        return json_response(task.to_dict(), headers={"ETag": etag(task)})

    # -- the lifecycle clock ----------------------------------------------------------------
    def claim_task(self, db: Transaction) -> HTTPResponse:
        task = db.tasks.claim(**read_json(self.max_body))
        if task is None:
            return HTTPResponse(status=204)
        return json_response(task.to_dict(), headers={"ETag": etag(task)})

    def heartbeat_task(self, db: Transaction, ref: str) -> HTTPResponse:
        task = db.tasks.heartbeat(ref, **read_json(self.max_body, required=False))
        return json_response(task.to_dict(), headers={"ETag": etag(task)})

    # -- events -----------------------------------------------------------------------------
    def list_events(self, ref: str) -> HTTPResponse:
        params = read_query(("after", "limit"))
        options = {name: whole_number(single(params, name), name) for name in params}
        return json_response([e.to_dict() for e in self.store.events.for_task(ref, **options)])

    def add_event(self, db: Transaction, ref: str) -> HTTPResponse:
        event = db.events.add(ref, **read_json(self.max_body))
        return json_response({**event.to_dict(), "status": "logged"}, 201)

    # -- vault sync -------------------------------------------------------------------------
    def sync_status(self) -> HTTPResponse:
        read_query(())
        state = self.sync.status() if self.sync is not None else {
            "enabled": False, "vault": None, "running": False, "last_cycle": None}
        # lobwife's `last_sync`: when the vault was last brought up to date (null before that).
        last = state.get("last_cycle") or {}
        state = {**state, "last_sync": None if last.get("error") else last.get("time")}
        if not current_principal().allows(ADMIN):
            # Where the vault lives, and a failed cycle's git message (which may name remotes
            # and paths), are for administrators.
            state["vault"] = None
            if last.get("error"):
                state["last_cycle"] = {**last, "error": "the last cycle failed; an admin credential shows why "
                                       "(or see the server log)"}
        return json_response(state)

    @outside_transaction
    def sync_trigger(self) -> HTTPResponse:
        only(read_json(self.max_body, required=False), (), "a sync trigger")
        if self.sync is None:
            raise NotConfiguredError(
                "no vault sync runs in this server: start `lobstore serve` with --vault PATH "
                "(or $LOBSTORE_VAULT)"
            )
        if getattr(self.sync, "standing_by", False):
            # Another replica holds the vault-sync duty: it follows the feed (woken by NOTIFY).
            return json_response({"status": "standby", "detail": "another replica runs the vault sync (the vault-sync "
                                  "duty, see GET /health): it commits changes soon after they are made"}, 202)
        self.sync.trigger()
        return json_response({"status": "triggered", "detail": "a sync cycle runs soon; see GET /api/sync"}, 202)

    # -- service ----------------------------------------------------------------------------
    def openapi(self) -> HTTPResponse:
        return HTTPResponse(self._openapi, 200, {"Content-Type": "application/json"})
