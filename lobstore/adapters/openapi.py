"""The OpenAPI 3 document of the lobwife API, served at /api/openapi.json.

Written by hand so it reads as documentation; tests keep it true: every route of the app must
appear here (and nothing else), and the task schemas list exactly the fields the library takes.
"""

from __future__ import annotations

import copy
from typing import Any

from .. import __version__
from ..models import PRIORITIES
from ..status import STATUSES

PREFIXES = ("/api", "/api/v1")

_TIME = {"type": "string", "format": "date-time", "example": "2026-02-16T12:00:00Z"}
_TEXT = {"type": "string"}
_NULLABLE_TEXT = {"type": "string", "nullable": True}
_NULLABLE_TIME = {**_TIME, "nullable": True}
_STATUS = {"type": "string", "enum": list(STATUSES)}

# The fields a caller may set, as the library's cleaners accept them.
TASK_FIELDS: dict[str, dict[str, Any]] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 500},
    "slug": _NULLABLE_TEXT,
    "type": {"type": "string", "pattern": "^[a-z][a-z0-9_.-]{0,63}$", "example": "swe"},
    "status": {**_STATUS, "description": "moves follow the status machine unless force is true"},
    "priority": {"type": "string", "enum": list(PRIORITIES)},
    "model": _NULLABLE_TEXT,
    "assigned_to": _NULLABLE_TEXT,
    "repos": {"type": "array", "items": {"type": "string", "example": "minsley/unity"}, "maxItems": 100},
    "description": _NULLABLE_TEXT,
    "discord_thread_id": _NULLABLE_TEXT,
    "estimate_minutes": {"type": "integer", "minimum": 0, "maximum": 100000, "nullable": True},
    "requires_qa": {"type": "boolean"},
    "workflow": _NULLABLE_TEXT,
    "tags": {"type": "array", "items": _TEXT, "maxItems": 100},
    "vault_path": _NULLABLE_TEXT,
    "queued_at": _NULLABLE_TIME,
    "assigned_at": _NULLABLE_TIME,
    "completed_at": _NULLABLE_TIME,
}
CREATE_ONLY_FIELDS: dict[str, dict[str, Any]] = {
    "legacy_id": {**_NULLABLE_TEXT, "description": "the old vault id, for imports"},
    "metadata": {"type": "object", "description": "keys without a column of their own (imports)"},
    "created_at": _NULLABLE_TIME,
    "updated_at": _NULLABLE_TIME,
    "actor": {**_NULLABLE_TEXT, "description": "who is creating it, for the event trail"},
}
UPDATE_OPTIONS: dict[str, dict[str, Any]] = {
    "actor": {**_NULLABLE_TEXT, "description": "who is making the change, for the event trail"},
    "reason": _NULLABLE_TEXT,
    "force": {"type": "boolean", "description": "allow a move the status machine refuses; recorded"},
    "expected_version": {"type": "integer", "minimum": 1,
                         "description": "refuse (409) if the task is no longer at this version"},
}

SCHEMAS: dict[str, Any] = {
    "SyncStatus": {
        "type": "object",
        "properties": {
            "enabled": {"type": "boolean", "description": "false when serve runs without a vault"},
            "vault": _NULLABLE_TEXT,
            "interval": {"type": "number", "description": "seconds between cycles"},
            "running": {"type": "boolean"},
            "last_cycle": {"type": "object", "nullable": True, "properties": {
                "time": _TIME, "started_at": _TIME, "full": {"type": "boolean"},
                "commit": _NULLABLE_TEXT, "files_changed": {"type": "integer"},
                "tasks_changed": {"type": "integer"}, "pushed": {"type": "boolean"},
                "took_remote": {"type": "boolean"}, "skipped": {"type": "array", "items": _TEXT},
                "error": _NULLABLE_TEXT,
            }},
        },
    },
    "Task": {
        "type": "object",
        "required": ["id", "task_id", "name", "status", "type", "priority", "version"],
        "properties": {
            "id": {"type": "integer", "example": 42},
            "task_id": {"type": "string", "example": "T42"},
            **TASK_FIELDS,
            "legacy_id": _NULLABLE_TEXT,
            "created_at": _TIME,
            "updated_at": _TIME,
            "version": {"type": "integer", "minimum": 1},
            # Read-only: the task's token broker registration (null when never registered).
            "broker_repos": {"type": "array", "items": _TEXT, "nullable": True},
            "broker_status": {"type": "string", "enum": ["active", "deregistered", "expired"], "nullable": True},
            "broker_registered_at": _NULLABLE_TIME,
            "token_count": {"type": "integer", "minimum": 0, "description": "tokens handed out to it"},
            "metadata": {"type": "object", "description": "keys without a column of their own"},
        },
    },
    "TaskCreate": {
        "type": "object", "required": ["name"], "additionalProperties": False,
        "properties": {**TASK_FIELDS, **CREATE_ONLY_FIELDS},
    },
    "TaskUpdate": {
        "type": "object", "additionalProperties": False, "minProperties": 1,
        "properties": {**TASK_FIELDS, **UPDATE_OPTIONS},
    },
    "TaskUpdated": {
        "type": "object", "required": ["updated", "task"],
        "properties": {
            "updated": {"type": "array", "items": _TEXT, "description": "the fields that changed"},
            "task": {"$ref": "#/components/schemas/Task"},
        },
    },
    "TaskCancel": {
        "type": "object", "additionalProperties": False,
        "properties": {"actor": _NULLABLE_TEXT, "reason": _NULLABLE_TEXT},
    },
    "Event": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "task_id": {"type": "string", "example": "T42"},
            "event_type": {"type": "string", "example": "note"},
            "detail": _NULLABLE_TEXT,
            "actor": _NULLABLE_TEXT,
            "data": {"type": "object"},
            "created_at": _TIME,
        },
    },
    "EventCreate": {
        "type": "object", "required": ["event_type"], "additionalProperties": False,
        "properties": {
            "event_type": {"type": "string", "pattern": "^[a-z][a-z0-9_.-]{0,63}$",
                           "description": "spawned, started, completed, note, ... (not the store's own types)"},
            "detail": _NULLABLE_TEXT,
            "actor": _NULLABLE_TEXT,
            "data": {"type": "object", "nullable": True},
        },
    },
    "Error": {
        "type": "object", "required": ["error", "code"],
        "properties": {
            "error": {"type": "string", "description": "what went wrong, for a person"},
            "code": {"type": "string", "example": "invalid"},
            "field": {"type": "string", "description": "the field at fault (422)"},
            "allowed": {"type": "array", "items": _TEXT, "description": "allowed status moves (409)"},
        },
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "error"]},
            "version": _TEXT,
            "uptime": {"type": "number", "description": "seconds since the server started"},
            "db": {"type": "object", "properties": {
                "ok": {"type": "boolean"}, "backend": _TEXT,
                "schema_version": {"type": "integer"}, "tasks": {"type": "integer"},
            }},
        },
    },
}


WRITE_METHODS = ("post", "patch", "delete")
IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$", "example": "5f0c6f0e-3b7a-4d3e-9f51-1d2b8c9e7a10"},
    "description": (
        "Makes the write safe to repeat: the first request with a key is processed and its answer kept "
        "for 24 hours; a repeat with the same key, method, path and body gets that answer (with "
        "`Idempotent-Replayed: true`) and the work is not done again. The same key with a different "
        "body is a 422 (`idempotency_key_reused`). A refused request (4xx) is not kept: its repeat is "
        "tried again. /api and /api/v1 share keys."
    ),
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(description: str, schema: dict[str, Any], **headers: str) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": _json(schema)}
    if headers:
        out["headers"] = {name: {"description": text, "schema": _TEXT} for name, text in headers.items()}
    return out


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "malformed request (broken JSON, bad Content-Length)",
        404: "no such task",
        409: "conflict: a refused status move, a stale version, a duplicate legacy id",
        413: "body too large",
        415: "body is not application/json",
        422: "invalid or unknown field; `field` names it",
        503: "the database does not answer, or the part asked for is not configured",
    }
    return {str(s): {"description": reasons[s], "content": _json(_ref("Error"))} for s in statuses}


_REF = {"name": "ref", "in": "path", "required": True, "description": "42, T42 or a legacy id",
        "schema": _TEXT}
_BODY_ERRORS = (400, 413, 415, 422)


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or _TEXT}


def _api_paths() -> dict[str, Any]:
    """The paths under one prefix, written once."""
    many = {"type": "array", "items": _TEXT}
    return {
        "/tasks": {
            "post": {
                "summary": "Create a task", "operationId": "createTask",
                "requestBody": {"required": True, "content": _json(_ref("TaskCreate"))},
                "responses": {"201": _ok("the task", _ref("Task"), Location="its URL", ETag="its version"),
                              **_errors(*_BODY_ERRORS, 409)},
            },
            "get": {
                "summary": "List tasks, oldest first", "operationId": "listTasks",
                "parameters": [
                    _query("status", "repeat or comma-separate for several", many),
                    _query("type", "repeat or comma-separate for several", many),
                    _query("assigned_to", "repeat or comma-separate for several", many),
                    _query("priority", "repeat or comma-separate for several", many),
                    _query("repo", "owner/repo among the task's repos"),
                    _query("created_since", "inclusive", _TIME), _query("created_until", "exclusive", _TIME),
                    _query("updated_since", "inclusive", _TIME), _query("updated_until", "exclusive", _TIME),
                    _query("limit", "page size, 1-1000 (default 50)", {"type": "integer"}),
                    _query("after", "the last id of the previous page (see the Link header)"),
                    _query("order", "asc (default) or desc", {"type": "string", "enum": ["asc", "desc"]}),
                ],
                "responses": {"200": _ok("a page of tasks", {"type": "array", "items": _ref("Task")},
                                         Link='the next page: <...?after=N>; rel="next"'),
                              **_errors(400, 422)},
            },
        },
        "/tasks/{ref}": {
            "parameters": [_REF],
            "get": {"summary": "One task", "operationId": "getTask",
                    "responses": {"200": _ok("the task", _ref("Task"), ETag="its version"), **_errors(404, 422)}},
            "patch": {
                "summary": "Update a task", "operationId": "updateTask",
                "parameters": [{"name": "If-Match", "in": "header", "required": False, "schema": _TEXT,
                                "description": "the task's ETag: refuse (409) if it changed since"}],
                "requestBody": {"required": True, "content": _json(_ref("TaskUpdate"))},
                "responses": {"200": _ok("what changed and the task after", _ref("TaskUpdated"), ETag="new version"),
                              **_errors(*_BODY_ERRORS, 404, 409)},
            },
            "delete": {
                "summary": "Cancel a task (409 if it has ended)", "operationId": "cancelTask",
                "requestBody": {"required": False, "content": _json(_ref("TaskCancel"))},
                "responses": {"200": _ok("the cancelled task", _ref("Task")),
                              **_errors(*_BODY_ERRORS, 404, 409)},
            },
        },
        "/tasks/{ref}/events": {
            "parameters": [_REF],
            "get": {
                "summary": "A task's history, oldest first", "operationId": "listTaskEvents",
                "parameters": [_query("after", "only events with a higher id", {"type": "integer"}),
                               _query("limit", "at most this many (1-1000)", {"type": "integer"})],
                "responses": {"200": _ok("the events", {"type": "array", "items": _ref("Event")}),
                              **_errors(400, 404, 422)},
            },
            "post": {
                "summary": "Log an event on a task", "operationId": "addTaskEvent",
                "requestBody": {"required": True, "content": _json(_ref("EventCreate"))},
                "responses": {"201": _ok("the event", _ref("Event")), **_errors(*_BODY_ERRORS, 404)},
            },
        },
        "/sync": {
            "get": {"summary": "The vault sync and its last cycle", "operationId": "syncStatus",
                    "responses": {"200": _ok("sync state", _ref("SyncStatus")), **_errors(400)}},
        },
        "/sync/trigger": {
            "post": {"summary": "Run a vault sync cycle soon", "operationId": "syncTrigger",
                     "responses": {"202": _ok("accepted", {"type": "object", "properties": {
                                       "status": _TEXT, "detail": _TEXT}}),
                                   **_errors(400, 413, 415, 503)}},
        },
        "/openapi.json": {
            "get": {"summary": "This document", "operationId": "openapi",
                    "responses": {"200": _ok("OpenAPI 3", {"type": "object"})}},
        },
    }


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for prefix in PREFIXES:
        for path, item in _api_paths().items():
            item = copy.deepcopy(item)
            for method in WRITE_METHODS:  # every write takes the header, as the app's every write does
                if method in item:
                    item[method].setdefault("parameters", []).append(
                        {"$ref": "#/components/parameters/IdempotencyKey"})
            if prefix != PREFIXES[0]:  # the alias: same operations, ids kept unique
                for operation in item.values():
                    if isinstance(operation, dict) and "operationId" in operation:
                        operation["operationId"] += "V1"
                        operation["summary"] += f" (alias of {PREFIXES[0]}{path})"
            paths[prefix + path] = item
    paths["/health"] = {
        "get": {"summary": "Liveness and database state", "operationId": "health",
                "responses": {"200": _ok("healthy", _ref("Health")),
                              "503": _ok("the database does not answer", _ref("Health"))}},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "lobwife API (lobstore)",
            "version": __version__,
            "description": "The state store of the lob agent fleet. Every route answers under "
                           "/api and /api/v1. Errors are JSON {error, code, ...}. Every POST, "
                           "PATCH and DELETE takes an Idempotency-Key header.",
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS, "parameters": {"IdempotencyKey": IDEMPOTENCY_KEY}},
    }
