"""The OpenAPI 3 document of the lobwife API, served at /api/openapi.json.

The paths and answers are written by hand so they read as documentation. What a request may
send is not: each request body's schema is derived from the table of Fields of the library
call it makes (``object_schema(CREATE_CLEANERS)`` and so on), the task list's query parameters
from :data:`lobstore.filters.TASK_FILTERS`, and every enum from the constant the code checks
against. Tests keep the rest true: every route of the app appears here, and nothing else.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from .. import __version__
from ..credentials import SCOPES
from ..filters import MANY, TASK_FILTERS
from ..models import (
    BUDGET_PERIODS,
    BUDGET_SCOPES,
    BUDGET_STATES,
    BUDGET_THRESHOLDS,
    COST_SOURCES,
    FINDING_STATUSES,
    SEVERITIES,
)
from ..repositories.audits import FINDING_CLEANERS, RUN_CLEANERS as AUDIT_RUN_CLEANERS
from ..repositories.audits import UPDATE_CLEANERS as FINDING_UPDATE_CLEANERS
from ..repositories.broker import (
    AUDIT_ACTIONS,
    DEREGISTER_CLEANERS,
    REGISTER_CLEANERS,
    REGISTRATION_SCHEMA,
    REGISTRATION_STATUSES,
    SERVICE_TOKEN_REQUEST,
    TASK_FIELD_CLEANERS,
    TOKEN_REQUEST,
)
from ..repositories.costs import EVENT_CLEANERS as COST_EVENT_CLEANERS
from ..repositories.budgets import BUDGET_CLEANERS
from ..repositories.costs import GROUPINGS, PERIODS, PRICE_CLEANERS, REPRICE_CLEANERS
from ..repositories.credentials import CREATE_CLEANERS as CREDENTIAL_CLEANERS
from ..repositories.events import EVENT_CLEANERS
from ..repositories.jobs import CONCURRENCY, RUN_CLEANERS as JOB_RUN_CLEANERS
from ..repositories.jobs import RUN_STATUSES
from ..repositories.leases import CLAIM_CLEANERS, HEARTBEAT_CLEANERS
from ..repositories.tasks import CANCEL_CLEANERS, CREATE_CLEANERS, LIST_ORDERS, TASK_FIELDS, UPDATE_REQUEST
from ..validation import TIME_SCHEMA, enum_schema, object_schema, schema_of

PREFIXES = ("/api", "/api/v1")

_TIME = TIME_SCHEMA
_TEXT = {"type": "string"}
_NULLABLE_TEXT = {"type": "string", "nullable": True}
_NULLABLE_TIME = {**_TIME, "nullable": True}
_REGISTRATION_STATUS = enum_schema(REGISTRATION_STATUSES, nullable=True)


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, Any] = {
    "SyncStatus": {
        "type": "object",
        "properties": {
            "enabled": {"type": "boolean", "description": "false when serve runs without a vault"},
            "vault": _NULLABLE_TEXT,
            "interval": {"type": "number", "description": "seconds between cycles"},
            "running": {"type": "boolean"},
            "duty_held": {"type": "boolean", "description": "this replica runs the vault sync (holds the vault-sync "
                                                           "duty); false: another replica does, this one stands by"},
            "last_sync": {**_NULLABLE_TIME, "description": "when a cycle last brought the vault up to date"},
            "last_cycle": {"type": "object", "nullable": True, "properties": {
                "time": _TIME, "started_at": _TIME, "full": {"type": "boolean"},
                "commit": _NULLABLE_TEXT, "files_changed": {"type": "integer"},
                "tasks_changed": {"type": "integer"}, "pushed": {"type": "boolean"},
                "took_remote": {"type": "boolean"}, "skipped": {"type": "array", "items": _TEXT},
                "error": _NULLABLE_TEXT,
                "status": {"type": "string", "enum": ["ok", "conflict", "error"],
                           "description": "conflict: an uncommitted edit in the vault was kept as a copy"},
                "conflicts": {"type": "array", "items": _TEXT,
                              "description": "copies (NAME.conflict.md) of uncommitted edits the remote contradicted"},
            }},
        },
    },
    "Task": {
        "type": "object",
        "required": ["id", "task_id", "name", "status", "type", "priority", "version"],
        "properties": {
            "id": {"type": "integer", "example": 42},
            "task_id": {"type": "string", "example": "T42"},
            **{name: schema_of(cleaner) for name, cleaner in TASK_FIELDS.items()},
            "legacy_id": _NULLABLE_TEXT,
            "created_at": _TIME,
            "updated_at": _TIME,
            "version": {"type": "integer", "minimum": 1},
            # Read-only: the task's token broker registration (null when never registered).
            "broker_repos": {"type": "array", "items": _TEXT, "nullable": True},
            "broker_status": _REGISTRATION_STATUS,
            "broker_registered_at": _NULLABLE_TIME,
            "token_count": {"type": "integer", "minimum": 0, "description": "tokens handed out to it"},
            "metadata": {"type": "object", "description": "keys without a column of their own"},
            # Read-only: the lifecycle clock's (README, "The lifecycle clock").
            "attempts": {"type": "integer", "minimum": 0, "description": "how often it became active (claims)"},
            "lease_expires_at": {**_NULLABLE_TIME, "description": "when the sweep takes an active task "
                                 "back unless its assignee shows a sign of life"},
            "timeout_warned_at": {**_NULLABLE_TIME, "description": "the timeout warning of this attempt"},
        },
    },
    "TaskCreate": object_schema(CREATE_CLEANERS),
    # A PATCH: the task's fields and the update's options, and the task's broker fields.
    "TaskUpdate": object_schema({**UPDATE_REQUEST, **TASK_FIELD_CLEANERS}, minProperties=1),
    "TaskUpdated": {
        "type": "object", "required": ["id", "task_id", "updated", "task"],
        "properties": {
            "id": {"type": "integer", "example": 42},
            "task_id": {"type": "string", "example": "T42"},
            "updated": {"type": "array", "items": _TEXT, "description": "the fields that changed"},
            "task": {"$ref": "#/components/schemas/Task"},
        },
    },
    "TaskCancel": object_schema(CANCEL_CLEANERS),
    "FeedEvent": {
        "description": "An event of the change feed: the Event's fields, its task's ref (null for an event of "
                       "no task: cost, audit_finding, a fleet budget_alert) and the status it moved the task "
                       "to (null if none)",
        "allOf": [{"$ref": "#/components/schemas/Event"},
                  {"type": "object", "properties": {"task": {"type": "string", "nullable": True},
                                                    "status": {"type": "string", "nullable": True}}}],
    },
    "Event": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "task_id": {"type": "string", "nullable": True, "example": "T42",
                        "description": "the task's ref; null for a feed event of no task"},
            "event_type": {"type": "string", "example": "note"},
            "detail": _NULLABLE_TEXT,
            "actor": _NULLABLE_TEXT,
            "data": {"type": "object"},
            "created_at": _TIME,
        },
    },
    "EventLogged": {
        "allOf": [_ref("Event"), {"type": "object", "properties": {
            "status": {"type": "string", "enum": ["logged"], "description": "lobwife's answer"}}}],
    },
    "EventCreate": object_schema(EVENT_CLEANERS),
    "Claim": object_schema(CLAIM_CLEANERS),
    "Heartbeat": object_schema(HEARTBEAT_CLEANERS),
    "Error": {
        "type": "object", "required": ["error", "code"],
        "properties": {
            "error": {"type": "string", "description": "what went wrong, for a person"},
            "code": {"type": "string", "example": "invalid"},
            "field": {"type": "string", "description": "the field at fault (422)"},
            "allowed": {"type": "array", "items": _TEXT, "description": "allowed status moves (409)"},
            "index": {"type": "integer", "description": "the bad item of a batch, from 0 (422)"},
            "reason": {"type": "string", "description": "why a token was refused (403: not_registered, "
                       "deregistered, expired, terminal) or GitHub's short reason (503)"},
            "upstream_status": {"type": "integer", "nullable": True,
                                "description": "GitHub's HTTP status (503; null when unreachable)"},
            "message": {"type": "string", "description": "the job routes: the error again, as upstream "
                        "lobwife's clients read it (\"Job NAME is already running\", \"Unknown job: NAME\")"},
        },
    },
    "BrokerSummary": {
        "type": "object",
        "properties": {
            "enabled": {"type": "boolean", "description": "a GitHub App is configured: tokens can be minted"},
            "app_id": {**_NULLABLE_TEXT, "description": "the GitHub App's id"},
            "active_tasks": {"type": "integer", "description": "active registrations"},
            "total_tokens_issued": {"type": "integer", "description": "tokens handed out to registrations"},
            "audit_entries": {"type": "integer"},
        },
    },
    "Duties": {
        "type": "object",
        "description": "the duties (work one replica per database does) this replica holds or stands by for",
        "properties": {
            "replica": {**_TEXT, "description": "this process: pid N on host"},
            "held": {"type": "array", "items": _TEXT, "description": "vault-sync, broker-expiry, jobs, backups, ..."},
            "standby": {"type": "array", "items": _TEXT,
                        "description": "duties another replica holds; this one takes over if it ends"},
        },
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "error"]},
            "version": _TEXT,
            "uptime": {"type": "number", "description": "seconds since the server started"},
            "jobs_running": {"type": "integer", "description": "jobs the attached job runner is running"},
            "broker": _ref("BrokerSummary"),
            "duties": _ref("Duties"),
            "changes": {"type": "object", "description": "how this replica hears of changes committed by others",
                        "properties": {"via": {**_TEXT, "description": "LISTEN/NOTIFY, polling, in-process"},
                                       "listening": {"type": "boolean"}}},
            "db": {"type": "object", "properties": {
                "ok": {"type": "boolean"}, "backend": _TEXT, "url": _TEXT, "path": _NULLABLE_TEXT,
                "schema_version": {"type": "integer"},
                "task_count": {"type": "integer"}, "tasks": {"type": "integer", "description": "task_count again"},
                "size_bytes": {"type": "integer"},
                "counted_seconds_ago": {"type": "number",
                                        "description": "counts and size are recomputed at most every 30 s"},
                "error": {"type": "string", "description": "why the database does not answer (503)"},
            }},
        },
    },
    "Status": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok"]},
            "uptime": {"type": "number"},
            "jobs": {"type": "object", "additionalProperties": _ref("Job")},
            "broker": _ref("BrokerSummary"),
            "duties": _ref("Duties"),
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
        "tried again. /api and /api/v1 share keys where a route means the same under both."
    ),
}


BEARER_SCHEME: dict[str, Any] = {
    "type": "http", "scheme": "bearer",
    "description": (
        "An API credential: `Authorization: Bearer <secret>` (lbs_… from `lobstore credentials create`, or "
        "a lobster's lbt_… task credential). Each operation's `x-scope` names the scope it needs: read, "
        "write, broker or admin (admin implies all; write and broker imply read); `public` needs none. "
        "A task credential may use the operations marked `x-task-credential`, for its own task only. "
        "A server started with `--auth off` asks for nothing."
    ),
}
_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_AUTH_ERRORS = {
    "401": {"description": "no credential, or an unknown, revoked or expired one", "content": _ERROR_BODY},
    "403": {"description": "the credential lacks the scope, or acts for another task", "content": _ERROR_BODY},
    "429": {"description": "too many bad credentials from this address: see Retry-After", "content": _ERROR_BODY},
}


def _secure(paths: dict[str, Any], access: Mapping[tuple[str, str], Any]) -> None:
    """Who may call each operation, from the app's access table."""
    for path, item in paths.items():
        rule = re.sub(r"\{(\w+)\}", r"<\1>", path)
        for method, operation in item.items():
            if method == "parameters":
                continue
            entry = access.get((method.upper(), rule))
            if entry is None:
                continue
            operation["x-scope"] = entry.scope
            if entry.scope == "public":
                operation["security"] = []
                continue
            operation["security"] = [{"bearer": []}]
            if entry.task is not None:
                operation["x-task-credential"] = (
                    f"allowed for the task named by {'the path' if entry.task == 'ref' else 'the body: ' + entry.task}"
                )
            for status, answer in _AUTH_ERRORS.items():
                operation["responses"].setdefault(status, answer)


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: dict[str, Any], **headers: str) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": _json(schema)}
    if headers:
        out["headers"] = {name: {"description": text, "schema": _TEXT} for name, text in headers.items()}
    return out


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "malformed request (broken JSON, bad Content-Length)",
        403: "no token: the task is not registered, was deregistered, has expired or has ended",
        404: "not found (the task, job, audit finding or registration named)",
        409: "conflict: a refused status move, a stale version, a duplicate legacy id",
        413: "body too large",
        415: "body is not application/json",
        422: "invalid or unknown field; `field` names it",
        503: "the database does not answer, or the part asked for is not configured or failing",
    }
    return {str(s): {"description": reasons[s], "content": _json(_ref("Error"))} for s in statuses}


_INT = {"type": "integer", "minimum": 0}
_USD = {"type": "number", "description": "US dollars"}
_NULLABLE_USD = {**_USD, "nullable": True}
_PER_MTOK = {"type": "number", "description": "USD per million tokens ($3 is 3, not 0.000003)"}
_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
_TOTALS = {
    "cost_usd": _USD,
    **{name: _INT for name in _TOKENS},
    "events": _INT,
    "uncosted_events": {**_INT, "description": "events with no reported cost and no price"},
}
_GROUP = {"type": "object", "properties": {
    "key": {**_NULLABLE_TEXT, "description": "the group: a model, T42, an agent, a task type or a day"},
    **_TOTALS}}
_SEVERITY = enum_schema(SEVERITIES)
_FINDING_STATUS = enum_schema(FINDING_STATUSES)
_JOB_STATUS = enum_schema(RUN_STATUSES)
_REPOS = {"type": "array", "items": {"type": "string", "example": "minsley/lobmob"}, "maxItems": 100}

# Costs, audits, the token broker and cron jobs. The request bodies are the library's tables.
_AUDIT_RUN = object_schema(AUDIT_RUN_CLEANERS)
_AUDIT_RUN["properties"]["findings"]["items"] = _ref("FindingCreate")  # the same schema, named
FLEET_SCHEMAS: dict[str, Any] = {
    "CostEventCreate": object_schema(COST_EVENT_CLEANERS),
    "CostEvent": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "task_id": {**_NULLABLE_TEXT, "example": "T42"},
            "model": _TEXT,
            "agent": _NULLABLE_TEXT,
            **{name: _INT for name in _TOKENS},
            "cost_usd": {**_NULLABLE_USD, "description": "null when uncosted"},
            "cost_source": enum_schema(COST_SOURCES),
            "uncosted": {"type": "boolean"},
            "price_id": {"type": "integer", "nullable": True, "description": "the price used when computed"},
            "request_id": _NULLABLE_TEXT,
            "created_at": _TIME,
        },
    },
    "CostSummary": {
        "type": "object",
        "properties": {
            "since": {**_TIME, "description": "inclusive"},
            "until": {**_TIME, "description": "exclusive"},
            "group_by": enum_schema(GROUPINGS, nullable=True),
            **_TOTALS,
            "groups": {"type": "array", "items": _GROUP},
            "pruned_before": {**_NULLABLE_TIME, "description": "raw events before it were pruned: the sums "
                                                                "there come from the rollups (exact, by whole hours)"},
        },
    },
    "TaskCosts": {
        "type": "object",
        "properties": {"task_id": {"type": "string", "example": "T42"}, **_TOTALS,
                       "models": {"type": "array", "items": _GROUP, "description": "by model"}},
    },
    "Price": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "model": _TEXT, "effective_from": _TIME,
            "input_usd_per_mtok": _PER_MTOK, "output_usd_per_mtok": _PER_MTOK,
            "cache_read_usd_per_mtok": _PER_MTOK, "cache_write_usd_per_mtok": _PER_MTOK,
            "actor": _NULLABLE_TEXT, "created_at": _TIME,
        },
    },
    "PriceCreate": object_schema(PRICE_CLEANERS),
    "Reprice": object_schema(REPRICE_CLEANERS),
    "RepriceResult": {
        "type": "object",
        "properties": {
            "run_id": {"type": "integer", "nullable": True, "description": "none for a dry run"},
            "model": _TEXT, "since": _TIME, "until": _TIME, "dry_run": {"type": "boolean"},
            "actor": _NULLABLE_TEXT, "created_at": _NULLABLE_TIME,
            "price_ids": {"type": "array", "items": {"type": "integer"}, "description": "the price rows used"},
            "events": {"type": "integer", "description": "table-priced events in the range"},
            "changed_events": {"type": "integer"},
            "old_cost_usd": {"type": "number"}, "new_cost_usd": {"type": "number"}, "delta_usd": {"type": "number"},
            "days": {"type": "array", "description": "per UTC day and model", "items": {
                "type": "object", "properties": {
                    "day": {"type": "string", "example": "2026-02-15"}, "model": _TEXT,
                    "events": {"type": "integer"}, "changed_events": {"type": "integer"},
                    "old_cost_usd": {"type": "number"}, "new_cost_usd": {"type": "number"},
                    "delta_usd": {"type": "number"}}}},
        },
    },
    "BudgetCreate": object_schema(BUDGET_CLEANERS),
    "Budget": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "scope": enum_schema(BUDGET_SCOPES), "target": _NULLABLE_TEXT,
            "period": enum_schema(BUDGET_PERIODS), "limit_usd": {"type": "number"}, "hard": {"type": "boolean"},
            "actor": _NULLABLE_TEXT, "created_at": _TIME, "removed_at": _NULLABLE_TIME,
            "period_start": {**_NULLABLE_TIME, "description": "the current period's start (UTC)"},
            "spent_usd": {"type": "number", "description": "spent in the current period"},
            "state": enum_schema(BUDGET_STATES),
        },
    },
    "BudgetAlert": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "budget_id": {"type": "integer"}, "period_start": _TIME,
            "threshold": {"type": "integer", "enum": list(BUDGET_THRESHOLDS), "description": "per cent"},
            "spent_usd": {"type": "number"}, "limit_usd": {"type": "number"}, "created_at": _TIME,
        },
    },
    "TaskBudget": {
        "type": "object",
        "properties": {
            "task_id": {"type": "string", "example": "T42"},
            "state": {**enum_schema(BUDGET_STATES), "description": "exhausted: a hard budget is spent; stop"},
            "budgets": {"type": "array", "items": _ref("Budget")},
        },
    },
    "FindingCreate": object_schema(FINDING_CLEANERS),
    "AuditRun": _AUDIT_RUN,
    "AuditFinding": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "audit_type": _TEXT, "severity": _SEVERITY, "title": _TEXT,
            "detail": _NULLABLE_TEXT, "target": _NULLABLE_TEXT, "fingerprint": _TEXT,
            "status": _FINDING_STATUS, "occurrences": {"type": "integer", "minimum": 1},
            "run_id": _NULLABLE_TEXT, "first_seen_at": _TIME, "last_seen_at": _TIME,
            "resolved_at": _NULLABLE_TIME, "resolution": _NULLABLE_TEXT, "resolved_by": _NULLABLE_TEXT,
            "fix_task_id": {**_NULLABLE_TEXT, "example": "T43", "description": "the fix task of a critical finding"},
        },
    },
    "AuditRunResult": {
        "type": "object",
        "properties": {
            "audit_type": _TEXT, "run_id": _NULLABLE_TEXT,
            **{name: {"type": "array", "items": _ref("AuditFinding")}
               for name in ("created", "updated", "resolved")},
            "tasks": {"type": "array", "items": _ref("Task"), "description": "fix tasks made"},
        },
    },
    "FindingUpdate": object_schema(FINDING_UPDATE_CLEANERS),
    "RegistrationCreate": object_schema(REGISTER_CLEANERS),
    "Deregistration": object_schema(DEREGISTER_CLEANERS),
    "Registration": {
        "type": "object",
        "properties": {
            "task_id": {"type": "string", "example": "T42",
                        "description": "the task's ref, or a standalone registration's name"},
            "repos": _REPOS,
            "lobster_type": _NULLABLE_TEXT, "registered_at": _TIME, "expires_at": _TIME,
            "status": {**REGISTRATION_SCHEMA,
                       "description": "registered in the answer to a registration"},
            "token_count": _INT,
            "standalone": {"type": "boolean", "description": "kept under a name that matches no task"},
            "task": {**_NULLABLE_TEXT, "description": "(registration by name) the task reached, null if standalone"},
            "task_token": {"type": "string", "description": "in the answer to a registration made with a "
                           "broker-scope credential: a task credential for the lobster (shown once)"},
            "task_token_expires_at": _TIME,
        },
    },
    "Registrations": {
        "type": "object", "additionalProperties": _ref("Registration"),
        "description": "registrations keyed by what they are known by (a task's ref or a standalone name)",
    },
    "Removal": {
        "type": "object",
        "properties": {"status": {"type": "string", "enum": ["removed"]},
                       "task_id": {"type": "string", "description": "the id as given"},
                       "ended": {"type": "array", "items": _ref("Registration"),
                                 "description": "the registrations this ended (none is not an error)"}},
    },
    "ServiceTokenRequest": object_schema(SERVICE_TOKEN_REQUEST),
    "TokenRequest": object_schema(TOKEN_REQUEST),
    "Token": {
        "type": "object", "properties": {"token": _TEXT, "expires_at": _TIME},
    },
    "TokenAuditEntry": {
        "type": "object",
        "properties": {
            "timestamp": _TIME, "task_id": {"type": "string", "example": "T42"}, "repos": _REPOS,
            "action": enum_schema(AUDIT_ACTIONS),
            "credential": {**_NULLABLE_TEXT, "description": "the API credential that asked (null: none)"},
        },
    },
    "CredentialCreate": object_schema(CREDENTIAL_CLEANERS),
    "Credential": {
        "type": "object",
        "properties": {
            "name": _TEXT, "scopes": {"type": "array", "items": enum_schema(SCOPES)},
            "task_id": {**_NULLABLE_TEXT, "description": "a task credential's task (T42)"},
            "created_by": _NULLABLE_TEXT, "created_at": _TIME, "expires_at": _NULLABLE_TIME,
            "last_used_at": {**_NULLABLE_TIME, "description": "written at most once a minute"},
            "revoked_at": _NULLABLE_TIME,
            "secret": {"type": "string", "description": "only in the answer that made it"},
        },
    },
    "Job": {
        "type": "object",
        "description": "upstream lobwife's fields (description ... next_run), then lobstore's",
        "properties": {
            "description": _NULLABLE_TEXT, "schedule": {**_NULLABLE_TEXT, "description": "5-field cron, UTC"},
            "enabled": {"type": "boolean"},
            "running": {"type": "boolean", "description": "a run is in progress"},
            "last_run": {**_NULLABLE_TIME, "description": "when the last run started"},
            "last_status": {**_JOB_STATUS, "nullable": True},
            "last_duration": {"type": "number", "nullable": True, "description": "seconds"},
            "run_count": _INT, "fail_count": {**_INT, "description": "runs that did not succeed"},
            "next_run": {**_NULLABLE_TIME, "description": "the next planned slot; null when disabled"},
            "script": {**_NULLABLE_TEXT, "description": "upstream's name for command"},
            "command": {**_NULLABLE_TEXT, "description": "what runs, as one line; null: an outside runner's job"},
            "concurrency": enum_schema(CONCURRENCY, nullable=True),
            "timeout": {"type": "number", "nullable": True, "description": "seconds"},
            "last_output": {**_NULLABLE_TEXT, "description": "stdout and stderr: the last 200 lines, marked when cut"},
            "last_exit_code": {"type": "integer", "nullable": True, "description": "negative: killed by that signal"},
            "skip_count": {**_INT, "description": "slots and triggers skipped while the job still ran (forbid)"},
            "last_skipped_at": _NULLABLE_TIME,
            "running_since": {**_NULLABLE_TIME, "description": "the start of the run in progress"},
        },
    },
    "JobDetail": {"allOf": [_ref("Job"), {"type": "object", "properties": {"name": _TEXT}}]},
    "JobMessage": {
        "type": "object", "required": ["message"],
        "properties": {"message": {"type": "string", "example": "Job task-manager triggered"}},
    },
    "JobRun": object_schema(JOB_RUN_CLEANERS),
}


_REF = {"name": "ref", "in": "path", "required": True, "description": "42, T42 or a legacy id",
        "schema": _TEXT}
_BODY_ERRORS = (400, 413, 415, 422)


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or _TEXT}


def _filter_parameters() -> list[dict[str, Any]]:
    """GET /tasks's filters, from the filter table."""
    out = []
    for name, cleaner in TASK_FILTERS.items():
        schema = {key: value for key, value in schema_of(cleaner).items() if key not in ("description", "nullable")}
        if name in MANY:
            out.append(_query(name, f"{cleaner.description}: repeat or comma-separate for several",
                              {"type": "array", "items": schema}))
        else:
            out.append(_query(name, cleaner.description, schema))
    return out


def _api_paths() -> dict[str, Any]:
    """The paths under one prefix, written once."""
    return {
        "/tasks": {
            "post": {
                "summary": "Create a task", "operationId": "createTask",
                "requestBody": {"required": True, "content": _json(_ref("TaskCreate"))},
                "responses": {"201": _ok("the task", _ref("Task"), Location="its URL", ETag="its version"),
                              **_errors(*_BODY_ERRORS, 409)},
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
        },
        "/tasks/claim": {
            "post": {
                "summary": "Claim the best queued task (priority, then oldest)", "operationId": "claimTask",
                "requestBody": {"required": True, "content": _json(_ref("Claim"))},
                "responses": {"200": _ok("the task, now active and assigned, with its lease", _ref("Task"),
                                         ETag="its version"),
                              "204": {"description": "no task is queued (of the types asked for)"},
                              **_errors(*_BODY_ERRORS)},
            },
        },
        "/tasks/{ref}/heartbeat": {
            "parameters": [_REF],
            "post": {
                "summary": "Extend an active task's lease", "operationId": "heartbeatTask",
                "requestBody": {"required": False, "content": _json(_ref("Heartbeat"))},
                "responses": {"200": _ok("the task with its new lease", _ref("Task"), ETag="its version"),
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
                "responses": {"201": _ok("the event", _ref("EventLogged")), **_errors(*_BODY_ERRORS, 404)},
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
        "/status": {
            "get": {"summary": "Uptime, every job's state and the token broker's summary (lobwife's dashboard)",
                    "operationId": "status", "responses": {"200": _ok("status", _ref("Status")), **_errors(422)}},
        },
    }


_NAME = {"name": "name", "in": "path", "required": True, "description": "the job's name", "schema": _TEXT}
_PAGE = [_query("limit", "page size, 1-1000 (default 100)", {"type": "integer"}),
         _query("after", "the last id of the previous page (see the Link header)", {"type": "integer"})]
_NEXT = {"Link": 'the next page: <...?after=N>; rel="next"'}
_NO_BODY = {"required": False, "content": _json({"type": "object", "maxProperties": 0})}


def _fleet_paths() -> dict[str, Any]:
    """Costs, audits, the token broker and cron jobs, under one prefix."""
    since = _query("since", "inclusive", _TIME)
    until = _query("until", "exclusive", _TIME)
    job = lambda summary, op, ok, *errors: {  # noqa: E731 - the enable/disable/trigger trio
        "post": {"summary": summary, "operationId": op, "requestBody": _NO_BODY,
                 "responses": {**ok, **_errors(400, 404, 413, 415, 422, *errors)}},
    }
    return {
        "/costs": {
            "post": {
                "summary": "Record a cost event, or a batch of up to 1,000 (all or none)",
                "operationId": "recordCosts",
                "requestBody": {"required": True, "content": _json({"oneOf": [
                    _ref("CostEventCreate"),
                    {"type": "array", "items": _ref("CostEventCreate"), "minItems": 1, "maxItems": 1000},
                ]})},
                "responses": {
                    "201": _ok("the stored event (or events, in order)",
                               {"oneOf": [_ref("CostEvent"), {"type": "array", "items": _ref("CostEvent")}]}),
                    "200": _ok("every request_id was stored before: the first events",
                               {"oneOf": [_ref("CostEvent"), {"type": "array", "items": _ref("CostEvent")}]}),
                    **_errors(*_BODY_ERRORS),
                },
            },
            "get": {
                "summary": "Cost events, in id order", "operationId": "listCosts",
                "parameters": [_query("task_id", "42, T42 or a legacy id"), _query("model", "one model"),
                               _query("agent", "one agent"), since, until, *_PAGE],
                "responses": {"200": _ok("a page of events", {"type": "array", "items": _ref("CostEvent")}, **_NEXT),
                              **_errors(400, 404, 422)},
            },
        },
        "/costs/summary": {
            "get": {
                "summary": "Totals over a range, overall and per group", "operationId": "costSummary",
                "parameters": [
                    since, until,
                    _query("period", "the last day, week (7 days) or month (30 days) up to until",
                           enum_schema(PERIODS)),
                    _query("group_by", "one grouping", enum_schema(GROUPINGS)),
                    _query("task_id", "only this task's events"), _query("model", "only this model"),
                    _query("agent", "only this agent"),
                ],
                "responses": {"200": _ok("the totals", _ref("CostSummary")), **_errors(400, 404, 422)},
            },
        },
        "/costs/prices": {
            "get": {
                "summary": "Prices in effect now (or at a time), or their whole history",
                "operationId": "listPrices",
                "parameters": [_query("model", "one model"), _query("at", "in effect at this time", _TIME),
                               _query("history", "true: every price ever set", {"type": "boolean"})],
                "responses": {"200": _ok("prices by model", {"type": "array", "items": _ref("Price")}),
                              **_errors(400, 422)},
            },
            "post": {
                "summary": "Set a model's price from a date on", "operationId": "setPrice",
                "requestBody": {"required": True, "content": _json(_ref("PriceCreate"))},
                "responses": {"201": _ok("the price", _ref("Price")), **_errors(*_BODY_ERRORS, 409)},
            },
        },
        "/costs/reprice": {
            "post": {
                "summary": "Re-price a model's table-priced events at the prices now (dry_run: write nothing)",
                "operationId": "repriceCosts",
                "requestBody": {"required": True, "content": _json(_ref("Reprice"))},
                "responses": {"200": _ok("old and new totals per day; the run", _ref("RepriceResult")),
                              **_errors(*_BODY_ERRORS)},
            },
        },
        "/budgets": {
            "get": {
                "summary": "Budgets, each with its spend in the current period", "operationId": "listBudgets",
                "parameters": [_query("include_removed", "true: the removed ones too", {"type": "boolean"})],
                "responses": {"200": _ok("budgets", {"type": "array", "items": _ref("Budget")}), **_errors(400, 422)},
            },
            "post": {
                "summary": "Set a budget (advisory, or hard)", "operationId": "createBudget",
                "requestBody": {"required": True, "content": _json(_ref("BudgetCreate"))},
                "responses": {"201": _ok("the budget", _ref("Budget")), **_errors(*_BODY_ERRORS, 404)},
            },
        },
        "/budgets/alerts": {
            "get": {
                "summary": "The budget alert feed: 80 % and 100 % crossings, once per budget period",
                "operationId": "listBudgetAlerts",
                "parameters": [_query("budget_id", "one budget", {"type": "integer"}), *_PAGE],
                "responses": {"200": _ok("a page of alerts", {"type": "array", "items": _ref("BudgetAlert")},
                                         **_NEXT), **_errors(400, 422)},
            },
        },
        "/budgets/{budget_id}": {
            "parameters": [{"name": "budget_id", "in": "path", "required": True, "schema": {"type": "integer"},
                            "description": "the budget's id"}],
            "delete": {"summary": "Remove a budget (kept, with its alerts, as removed)", "operationId": "removeBudget",
                       "responses": {"200": _ok("the removed budget", _ref("Budget")), **_errors(400, 404, 422)}},
        },
        "/tasks/{ref}/budget": {
            "parameters": [_REF],
            "get": {"summary": "May the task go on spending? Its budgets and their state", "operationId": "taskBudget",
                    "responses": {"200": _ok("the task's budget", _ref("TaskBudget")), **_errors(400, 404, 422)}},
        },
        "/tasks/{ref}/costs": {
            "parameters": [_REF],
            "get": {"summary": "One task's cost totals, split by model", "operationId": "taskCosts",
                    "responses": {"200": _ok("the totals", _ref("TaskCosts")), **_errors(400, 404, 422)}},
        },
        "/audits": {
            "post": {
                "summary": "Submit one audit run's findings (deduplicated by fingerprint)",
                "operationId": "submitAudit",
                "requestBody": {"required": True, "content": _json(_ref("AuditRun"))},
                "responses": {"200": _ok("what was created, updated and resolved, and the fix tasks made",
                                         _ref("AuditRunResult")), **_errors(*_BODY_ERRORS)},
            },
            "get": {
                "summary": "Audit findings, every status unless asked", "operationId": "listAudits",
                "parameters": [_query("audit_type", "one type"),
                               _query("severity", "one severity", _SEVERITY),
                               _query("status", "one status", _FINDING_STATUS),
                               _query("since", "last seen at or after", _TIME),
                               _query("until", "last seen before", _TIME), *_PAGE],
                "responses": {"200": _ok("a page of findings", {"type": "array", "items": _ref("AuditFinding")},
                                         **_NEXT), **_errors(400, 422)},
            },
        },
        "/audits/{finding_id}": {
            "parameters": [{"name": "finding_id", "in": "path", "required": True, "schema": {"type": "integer"},
                            "description": "the finding's id"}],
            "patch": {
                "summary": "Resolve, ignore or re-open a finding", "operationId": "updateAudit",
                "requestBody": {"required": True, "content": _json(_ref("FindingUpdate"))},
                "responses": {"200": _ok("the finding", _ref("AuditFinding")), **_errors(*_BODY_ERRORS, 404, 409)},
            },
        },
        "/tasks/{ref}/register": {
            "parameters": [_REF],
            "delete": {
                "summary": "Deregister the task", "operationId": "deregisterTask",
                "requestBody": {"required": False, "content": _json(_ref("Deregistration"))},
                "responses": {"200": _ok("the ended registration", _ref("Registration")),
                              **_errors(*_BODY_ERRORS, 404)},
            },
        },
        "/service-token": {
            "post": {
                "summary": "A GitHub token for a fleet service (lobboss, lobsigliere, lobwife's cron jobs)",
                "operationId": "issueServiceToken",
                "requestBody": {"required": True, "content": _json(_ref("ServiceTokenRequest"))},
                "responses": {"200": _ok("the token (for every repository of the App installation unless the "
                                         "service policy says otherwise)", _ref("Token")),
                              **_errors(*_BODY_ERRORS, 403, 503)},
            },
        },
        "/token": {
            "post": {
                "summary": "A GitHub token for a registered task's repos (reused until 5 min before expiry)",
                "operationId": "issueToken",
                "requestBody": {"required": True, "content": _json(_ref("TokenRequest"))},
                "responses": {"200": _ok("the token", _ref("Token")), **_errors(*_BODY_ERRORS, 403, 409, 503)},
            },
        },
        "/token/audit": {
            "get": {
                "summary": "The token audit trail, oldest first", "operationId": "tokenAudit",
                "parameters": [_query("task_id", "only this task's entries"),
                               _query("limit", "the newest N (1-1000, default 500)", {"type": "integer"})],
                "responses": {"200": _ok("entries", {"type": "array", "items": _ref("TokenAuditEntry")}),
                              **_errors(400, 404, 422)},
            },
        },
        "/jobs": {
            "get": {"summary": "Every job keyed by name: the jobs file's (in its order, also never run) and "
                               "those outside runners record", "operationId": "listJobs",
                    "responses": {"200": _ok("jobs by name", {"type": "object",
                                                              "additionalProperties": _ref("Job")}),
                                  **_errors(400, 422)}},
        },
        "/jobs/{name}": {
            "parameters": [_NAME],
            "get": {"summary": "One job", "operationId": "getJob",
                    "responses": {"200": _ok("the job", _ref("JobDetail")), **_errors(400, 404, 422)}},
        },
        "/jobs/{name}/runs": {
            "parameters": [_NAME],
            "post": {
                "summary": "Record a run an outside runner finished (a new name makes the job known)",
                "operationId": "recordJobRun",
                "requestBody": {"required": True, "content": _json(_ref("JobRun"))},
                "responses": {"201": _ok("the job after the run", _ref("JobDetail")), **_errors(*_BODY_ERRORS)},
            },
        },
        "/jobs/{name}/enable": {"parameters": [_NAME], **job(
            "Enable a job and plan its next slot", "enableJob",
            {"200": _ok("\"Job NAME enabled\" and the job", {"allOf": [_ref("JobMessage"), _ref("JobDetail")]})})},
        "/jobs/{name}/disable": {"parameters": [_NAME], **job(
            "Disable a job: no slot runs until it is enabled (a trigger still does)", "disableJob",
            {"200": _ok("\"Job NAME disabled\" and the job", {"allOf": [_ref("JobMessage"), _ref("JobDetail")]})})},
        "/jobs/{name}/trigger": {"parameters": [_NAME], **job(
            "Run a job now (in the process that runs the schedule); also when disabled", "triggerJob",
            {"200": _ok("\"Job NAME triggered\"", _ref("JobMessage"))}, 409, 503)},
        "/credentials": {
            "get": {
                "summary": "API credentials (never their secrets)", "operationId": "listCredentials",
                "parameters": [_query("all", "include revoked ones", {"type": "boolean"}),
                               _query("tasks", "include task credentials", {"type": "boolean"})],
                "responses": {"200": _ok("credentials", {"type": "array", "items": _ref("Credential")}),
                              **_errors(400, 422)},
            },
            "post": {
                "summary": "Make a credential; its secret is in this answer only", "operationId": "createCredential",
                "requestBody": {"required": True, "content": _json(_ref("CredentialCreate"))},
                "responses": {"201": _ok("the credential and its secret", _ref("Credential")),
                              **_errors(*_BODY_ERRORS, 409)},
            },
        },
        "/credentials/{name}": {
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": _TEXT,
                            "description": "a credential's name, or task:T42 for every credential of T42"}],
            "delete": {
                "summary": "Revoke a credential at once", "operationId": "revokeCredential",
                "requestBody": _NO_BODY,
                "responses": {"200": _ok("what was revoked", {"type": "array", "items": _ref("Credential")}),
                              **_errors(*_BODY_ERRORS, 404)},
            },
        },
    }


_REGISTER = {"required": True, "content": _json(_ref("RegistrationCreate"))}


_FEED_FILTERS = [
    _query("task", "only this task's events (events of no task are left out)"),
    _query("type", "only these event types (comma-separated)"),
    _query("status", "only events that moved a task to these statuses (comma-separated)"),
]


_HTML = {"200": {"description": "the page", "content": {"text/html": {"schema": _TEXT}}}}
_FORM = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}
_KEY = {"$ref": "#/components/parameters/IdempotencyKey"}


def _dashboard_paths() -> dict[str, Any]:
    """The web dashboard's pages (HTML) and its admin forms."""
    pages = {"/": "Overview", "/ui/tasks": "Tasks (filters, keyset pages)", "/ui/tasks/{ref}": "One task",
             "/ui/costs": "Costs", "/ui/audits": "Open audit findings", "/ui/jobs": "Cron jobs",
             "/ui/broker": "Token broker"}
    paths: dict[str, Any] = {
        path: {"get": {"summary": f"Dashboard: {title}", "operationId": "ui" + title.split()[0].title().replace(":", ""),
                       "responses": {**_HTML, **_errors(404, 422)}}}
        for path, title in pages.items()}
    paths["/ui/tasks/{ref}"]["parameters"] = [_REF]
    paths["/ui/tasks/{ref}"]["get"]["operationId"] = "uiTask"
    paths["/ui/audits/{finding_id}"] = {"post": {
        "summary": "Dashboard form: resolve or ignore a finding (action=resolve|ignore, resolution)",
        "operationId": "uiAuditAction", "requestBody": _FORM,
        "parameters": [{"name": "finding_id", "in": "path", "required": True, "schema": {"type": "integer"}}, _KEY],
        "responses": {"303": {"description": "back to the audits page"}, **_errors(403, 404, 422)}}}
    paths["/ui/jobs/{name}/{action}"] = {"post": {
        "summary": "Dashboard form: trigger, enable or disable a job", "operationId": "uiJobAction",
        "parameters": [_NAME, {"name": "action", "in": "path", "required": True,
                               "schema": {"type": "string", "enum": ["trigger", "enable", "disable"]}}, _KEY],
        "responses": {"303": {"description": "back to the jobs page"}, **_errors(403, 404, 422, 503)}}}
    return paths


def _v1_paths() -> dict[str, Any]:
    """Operations only /api/v1 has: the task list and cancel, and registering a task."""
    return {
        "/tasks": {
            "get": {
                "summary": "List tasks, newest first (100 unless asked, as lobwife)", "operationId": "listTasks",
                "parameters": [
                    *_filter_parameters(),
                    _query("limit", "page size, 1-1000 (default 100)", {"type": "integer"}),
                    _query("after", "the last id of the previous page (see the Link header)"),
                    _query("order", "desc (default: newest first) or asc", enum_schema(LIST_ORDERS)),
                ],
                "responses": {"200": _ok("a page of tasks", {"type": "array", "items": _ref("Task")},
                                         Link='the next page: <...?after=N>; rel="next"'),
                              **_errors(400, 422)},
            },
        },
        "/tasks/{ref}": {
            "delete": {
                "summary": "Cancel a task (409 if it has ended) and end its registration",
                "operationId": "cancelTask",
                "requestBody": {"required": False, "content": _json(_ref("TaskCancel"))},
                "responses": {"200": _ok("the cancelled task", _ref("Task")),
                              **_errors(*_BODY_ERRORS, 404, 409)},
            },
        },
        "/events": {
            "get": {
                "summary": "The change feed: every task's events after a cursor, in id order; with wait, a long poll",
                "operationId": "pollEvents",
                "parameters": [
                    _query("after", "the last id seen (the answer's last_id; default 0)", {"type": "integer"}),
                    _query("wait", "seconds (0-60) to wait for an event when there is none yet", {"type": "integer"}),
                    _query("limit", "at most this many (1-1000, default 100)", {"type": "integer"}),
                    *_FEED_FILTERS,
                ],
                "responses": {"200": _ok("the events and the cursor to ask again with", {
                    "type": "object", "properties": {"events": {"type": "array", "items": _ref("FeedEvent")},
                                                     "last_id": {"type": "integer"}}}),
                              **_errors(400, 404, 422, 503)},
            },
        },
        "/events/stream": {
            "get": {
                "summary": "The change feed as Server-Sent Events (id: the event id, event: its type, data: its "
                           "JSON); resume with Last-Event-ID; a comment every 15 s",
                "operationId": "streamEvents",
                "parameters": [
                    {"name": "Last-Event-ID", "in": "header", "required": False, "schema": _TEXT,
                     "description": "resume after this id (wins over after)"},
                    _query("after", "start after this id (default: from now on)", {"type": "integer"}),
                    *_FEED_FILTERS,
                ],
                "responses": {"200": {"description": "an endless stream of events",
                                      "content": {"text/event-stream": {"schema": _TEXT}}},
                              **_errors(400, 404, 422, 503)},
            },
        },
        "/tasks/{ref}/register": {
            "post": {
                "summary": "Register the task with the token broker (again: renew)", "operationId": "registerTask",
                "requestBody": _REGISTER,
                "responses": {"200": _ok("the registration, status \"registered\"", _ref("Registration")),
                              **_errors(*_BODY_ERRORS, 404, 409)},
            },
        },
    }


def _unversioned_paths() -> dict[str, Any]:
    """Operations only the unversioned /api has: the token broker's routes as lobwife had them."""
    return {
        "/tasks": {
            "get": {
                "summary": "Token broker registrations keyed by name, newest first (lobwife's GET /api/tasks)",
                "operationId": "listRegistrations",
                "parameters": [_query("status", "only these", enum_schema(REGISTRATION_STATUSES)),
                               _query("limit", "at most this many, 1-1000 (default 500)", {"type": "integer"})],
                "responses": {"200": _ok("registrations", _ref("Registrations")), **_errors(400, 422)},
            },
        },
        "/tasks/{ref}": {
            "delete": {
                "summary": "End what was registered under the id (the task itself is untouched)",
                "operationId": "deregisterByName",
                "requestBody": {"required": False, "content": _json(_ref("Deregistration"))},
                "responses": {"200": _ok("always removed, with what was ended", _ref("Removal")),
                              **_errors(*_BODY_ERRORS)},
            },
        },
        "/tasks/{ref}/register": {
            "post": {
                "summary": "Register what the id names (a task's ref, legacy id, slug or name), or keep a "
                           "standalone registration under it", "operationId": "registerByName",
                "requestBody": _REGISTER,
                "responses": {"200": _ok("the registration, status \"registered\", task_id as given",
                                         _ref("Registration")), **_errors(*_BODY_ERRORS, 409)},
            },
        },
    }


def _merged(*parts: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for part in parts:
        for path, item in copy.deepcopy(part).items():
            paths.setdefault(path, {}).update(item)
    return paths


def openapi_document(access: Mapping[tuple[str, str], Any] | None = None) -> dict[str, Any]:
    """The document; ``access`` (the app's access table: (METHOD, rule) -> rule with ``scope``)
    adds who may call each operation: ``security`` and ``x-scope``."""
    shared = _merged(_api_paths(), _fleet_paths())
    only = {"/api": _unversioned_paths(), "/api/v1": _v1_paths()}
    paths: dict[str, Any] = {}
    for prefix in PREFIXES:
        for path, item in _merged(shared, only[prefix]).items():
            for method in WRITE_METHODS:  # every write takes the header, as the app's every write does
                if method in item:
                    item[method].setdefault("parameters", []).append(
                        {"$ref": "#/components/parameters/IdempotencyKey"})
            if prefix != PREFIXES[0]:  # the alias: same operations, ids kept unique
                for method, operation in item.items():
                    if method in shared.get(path, {}) and method != "parameters":
                        operation["operationId"] += "V1"
                        operation["summary"] += f" (alias of {PREFIXES[0]}{path})"
            if "parameters" not in item and "{ref}" in path:
                item["parameters"] = [_REF]
            paths[prefix + path] = item
    paths["/health"] = {
        "get": {"summary": "Liveness and database state (details with read, locations with admin)",
                "operationId": "health",
                "responses": {"200": _ok("healthy", _ref("Health")),
                              "503": _ok("the database does not answer", _ref("Health"))}},
    }
    paths["/metrics"] = {
        "get": {"summary": "Prometheus metrics (text exposition format)", "operationId": "metrics",
                "responses": {"200": {"description": "the metrics",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}}}},
    }
    paths.update(_dashboard_paths())
    _secure(paths, access or {})
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "lobwife API (lobstore)",
            "version": __version__,
            "description": "The state store of the lob agent fleet, answering as lobwife did. /api/v1 is the "
                           "task API; under the unversioned /api the token broker's routes keep lobwife's "
                           "meaning (GET /api/tasks lists registrations, DELETE /api/tasks/{id} deregisters, "
                           "POST /api/tasks/{id}/register falls back to a standalone registration); every other "
                           "route answers under both. Errors are JSON {error, code, ...}. Every POST, PATCH and "
                           "DELETE takes an Idempotency-Key header.",
        },
        "paths": paths,
        "components": {"schemas": {**SCHEMAS, **FLEET_SCHEMAS}, "parameters": {"IdempotencyKey": IDEMPOTENCY_KEY},
                       "securitySchemes": {"bearer": BEARER_SCHEME}},
    }
