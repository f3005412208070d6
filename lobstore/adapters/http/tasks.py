"""The task, event, vault sync and service routes."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from bottle import HTTPResponse, request

from ... import __version__
from ...errors import LobstoreError, NotConfiguredError, ValidationError
from ...filters import TASK_FILTERS, TaskFilter
from ...store import Store, Transaction
from ..openapi import openapi_document
from .wire import (
    DEFAULT_PAGE,
    current_prefix,
    etag,
    if_match_version,
    json_response,
    next_page,
    only,
    read_json,
    read_query,
    single,
    whole_number,
)
from .writes import outside_transaction

log = logging.getLogger(__name__)

# GET /tasks: the task filters (lobstore.filters), then the page.
LIST_PAGE = ("limit", "after", "order")


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
        self._openapi = json_response(openapi_document()).body

    # -- tasks ------------------------------------------------------------------------------
    def create_task(self, db: Transaction) -> HTTPResponse:
        task = db.tasks.create(**read_json(self.max_body))
        location = f"{request.script_name.rstrip('/')}{current_prefix()}/tasks/{task.ref}"
        return json_response(task.to_dict(), 201, {"Location": location, "ETag": etag(task)})

    def list_tasks(self) -> HTTPResponse:
        params = read_query((*TASK_FILTERS, *LIST_PAGE))
        page: dict[str, Any] = {name: single(params, name) for name in ("after", "order") if name in params}
        limit = whole_number(single(params, "limit"), "limit") if "limit" in params else DEFAULT_PAGE
        tasks = self.store.tasks.list(TaskFilter.from_query(params), limit=limit, **page)
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
        task = db.tasks.cancel(ref, **read_json(self.max_body, required=False))
        return json_response(task.to_dict(), headers={"ETag": etag(task)})

    # -- events -----------------------------------------------------------------------------
    def list_events(self, ref: str) -> HTTPResponse:
        params = read_query(("after", "limit"))
        options = {name: whole_number(single(params, name), name) for name in params}
        return json_response([e.to_dict() for e in self.store.events.for_task(ref, **options)])

    def add_event(self, db: Transaction, ref: str) -> HTTPResponse:
        event = db.events.add(ref, **read_json(self.max_body))
        return json_response(event.to_dict(), 201)

    # -- vault sync -------------------------------------------------------------------------
    def sync_status(self) -> HTTPResponse:
        read_query(())
        if self.sync is None:
            return json_response({"enabled": False, "vault": None, "running": False, "last_cycle": None})
        return json_response(self.sync.status())

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
        uptime = round(time.monotonic() - self.started, 3)
        try:
            db = {"ok": True, **self.store.describe(), "tasks": self.store.tasks.count()}
        except LobstoreError as exc:
            log.warning("health check: the database does not answer: %s", exc)
            db = {"ok": False, "backend": self.store.backend.name, "error": exc.message}
        body = {"status": "ok" if db["ok"] else "error", "version": __version__, "uptime": uptime, "db": db}
        return json_response(body, 200 if db["ok"] else 503)
