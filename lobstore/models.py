"""Plain value objects returned by the store. They hold data only; the store does the work."""

from __future__ import annotations

import operator
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import datetime
from typing import Any
from collections.abc import Collection

from .clock import to_iso
from .pricing import micro_to_usd

PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "critical")


@dataclass(frozen=True)
class Task:
    id: int
    ref: str  # public reference such as "T42"
    name: str
    status: str
    type: str
    priority: str
    created_at: datetime
    updated_at: datetime
    version: int
    slug: str | None = None
    model: str | None = None
    assigned_to: str | None = None
    repos: tuple[str, ...] = ()
    description: str | None = None
    discord_thread_id: str | None = None
    estimate_minutes: int | None = None
    requires_qa: bool = False
    workflow: str | None = None
    tags: tuple[str, ...] = ()
    legacy_id: str | None = None
    vault_path: str | None = None
    queued_at: datetime | None = None
    assigned_at: datetime | None = None
    completed_at: datetime | None = None
    # The token broker's registration, read with the task (None when it was never registered).
    broker_repos: tuple[str, ...] | None = None
    broker_status: str | None = None
    broker_registered_at: datetime | None = None
    token_count: int = 0
    # The lifecycle clock (lobstore.lifecycle): claims made, the limit, the lease, review, warning.
    attempts: int = 0
    max_attempts: int | None = None
    lease_expires_at: datetime | None = None
    review_pr: str | None = None
    timeout_warned_at: datetime | None = None
    # Keys without a column of their own, e.g. an imported task file's other frontmatter keys.
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)
    # Columns of the tasks table this class does not name: a field added with the schema, a
    # migration and the field table alone (CONTRIBUTING.md). Read as attributes
    # (``task.new_field``) and listed by to_dict like the others.
    extra: dict[str, Any] = field(default_factory=dict, hash=False, repr=False)

    def __getattr__(self, name: str) -> Any:
        # Only called when the normal lookup fails: a column in ``extra``, or truly nothing.
        extra = self.__dict__.get("extra")
        if extra and name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @classmethod
    def of(cls, **values: Any) -> Task:
        """A task from its columns' values; the columns this class does not name go to extra."""
        return cls.from_columns(values, values.keys() - _DECLARED)

    @classmethod
    def from_columns(cls, values: dict[str, Any], others: Collection[str] = ()) -> Task:
        """:meth:`of` for a dict it may keep (``values`` becomes the task's), where the caller
        knows which keys are not fields (``others``, the same for every row of a query)."""
        extra = {str(name): values.pop(name) for name in others} if others else {}
        if not _REQUIRED <= values.keys():
            return cls(**values, extra=extra)  # the dataclass names what is missing
        # A whole row: fill the fields at once. The frozen dataclass's __init__ sets them one
        # object.__setattr__ at a time, a fifth of what a list of 50 tasks costs.
        task = object.__new__(cls)
        task.__dict__.update(_DEFAULTS, metadata={}, extra=extra)
        task.__dict__.update(values)
        return task

    def changed(self, **values: Any) -> Task:
        """This task with ``values`` in place (named fields and extra columns alike)."""
        extra = {name: values.pop(name) for name in list(values) if name not in _DECLARED}
        if extra:
            values["extra"] = {**self.extra, **extra}
        return replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form every client sees: ``id`` is the number, ``task_id`` the ref."""
        # A list of 50 tasks calls this 50 times: read the fields at once (in their order, with
        # plain str keys), then convert the few that JSON cannot take as they are.
        out: dict[str, Any] = {"id": self.id, "task_id": self.ref}
        out.update(zip(_TASK_FIELDS, _read_fields(self.__dict__)))
        for name in _TIME_FIELDS:
            if (value := out[name]) is not None:
                out[name] = to_iso(value)
        for name in _TUPLE_FIELDS:
            if (value := out[name]) is not None:
                out[name] = list(value)
        if self.extra:  # columns this class does not name
            out.update({str(name): to_iso(value) if isinstance(value, datetime) else value
                        for name, value in self.extra.items()})
        return out


_DECLARED = frozenset(f.name for f in fields(Task))
TASK_FIELD_NAMES = _DECLARED  # what a row's column must be named to be a field, not extra
_TASK_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Task) if f.name not in ("id", "ref", "extra"))
_read_fields = operator.itemgetter(*_TASK_FIELDS)
_REQUIRED = frozenset(f.name for f in fields(Task) if f.default is MISSING and f.default_factory is MISSING)
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Task) if f.default is not MISSING}
_TIME_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Task) if "datetime" in str(f.type))
_TUPLE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Task) if "tuple" in str(f.type))
# For readers that write the JSON form straight from rows (repositories/task_json.py): the
# fields after id and task_id in to_dict's order, which of them are times, and the JSON form of
# each default (what to_dict shows for a field a row does not have).
TASK_JSON_FIELDS = _TASK_FIELDS
TIME_FIELDS = _TIME_FIELDS
TASK_JSON_DEFAULTS: dict[str, Any] = {
    name: list(value) if isinstance(value, tuple) else value
    for name, value in ({name: None for name in _TASK_FIELDS} | _DEFAULTS | {"metadata": {}}).items()
}



@dataclass(frozen=True)
class TaskEvent:
    """One event of the trail. ``task_id``/``task_ref`` are None for a feed event of no task
    (``cost`` without a task, ``audit_finding``, a fleet ``budget_alert``)."""

    id: int
    task_id: int | None
    task_ref: str | None
    event_type: str
    created_at: datetime
    detail: str | None = None
    actor: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task_id": self.task_ref,
            "event_type": self.event_type,
            "detail": self.detail,
            "actor": self.actor,
            "data": self.data,
            "created_at": to_iso(self.created_at),
        }


@dataclass(frozen=True)
class TaskUpdate:
    """What :meth:`TaskRepository.update` did: the task after the change and the fields changed."""

    task: Task
    updated: tuple[str, ...]


# -- costs -----------------------------------------------------------------------------------
COST_SOURCES: tuple[str, ...] = ("reported", "computed", "uncosted")


@dataclass(frozen=True)
class CostEvent:
    """One LLM call's tokens and cost. ``cost_micro`` is None when it is uncosted (no cost was
    reported and the model had no price at the event's time)."""

    id: int
    task_id: int | None
    task_ref: str | None
    model: str
    agent: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_micro: int | None
    cost_source: str  # reported | computed | uncosted
    price_id: int | None  # the price used when computed
    request_id: str | None
    created_at: datetime
    # True when this call found the event already stored under its request_id (a retry).
    duplicate: bool = field(default=False, compare=False)

    @property
    def uncosted(self) -> bool:
        return self.cost_micro is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task_id": self.task_ref,
            "model": self.model,
            "agent": self.agent,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cost_usd": micro_to_usd(self.cost_micro),
            "cost_source": self.cost_source,
            "uncosted": self.uncosted,
            "price_id": self.price_id,
            "request_id": self.request_id,
            "created_at": to_iso(self.created_at),
        }


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens, as integer micro-dollars, in effect from ``effective_from``."""

    id: int
    model: str
    effective_from: datetime
    input_micro_per_mtok: int
    output_micro_per_mtok: int
    cache_read_micro_per_mtok: int
    cache_write_micro_per_mtok: int
    created_at: datetime
    actor: str | None = None

    @property
    def per_mtok(self) -> tuple[int, int, int, int]:
        return (self.input_micro_per_mtok, self.output_micro_per_mtok,
                self.cache_read_micro_per_mtok, self.cache_write_micro_per_mtok)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "effective_from": to_iso(self.effective_from),
            "input_usd_per_mtok": micro_to_usd(self.input_micro_per_mtok),
            "output_usd_per_mtok": micro_to_usd(self.output_micro_per_mtok),
            "cache_read_usd_per_mtok": micro_to_usd(self.cache_read_micro_per_mtok),
            "cache_write_usd_per_mtok": micro_to_usd(self.cache_write_micro_per_mtok),
            "actor": self.actor,
            "created_at": to_iso(self.created_at),
        }


@dataclass(frozen=True)
class CostTotals:
    """Sums over a set of cost events. ``key`` names the group (None for the overall totals,
    for events without a task, or events without an agent)."""

    cost_micro: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    events: int = 0
    uncosted_events: int = 0
    key: str | None = None

    def __add__(self, other: CostTotals) -> CostTotals:
        return CostTotals(*(getattr(self, f.name) + getattr(other, f.name)
                            for f in fields(self) if f.name != "key"), key=self.key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cost_usd": micro_to_usd(self.cost_micro),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "events": self.events,
            "uncosted_events": self.uncosted_events,
        }


@dataclass(frozen=True)
class CostSummary:
    """Totals over ``[since, until)``, overall and per group (when grouped)."""

    since: datetime
    until: datetime
    group_by: str | None
    totals: CostTotals
    groups: tuple[CostTotals, ...] = ()
    # Raw events before this were pruned: the range's sums there come from the rollups (exact,
    # to the whole hour). None when the range reaches no pruned time.
    pruned_before: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": to_iso(self.since),
            "until": to_iso(self.until),
            "group_by": self.group_by,
            **self.totals.to_dict(),
            "groups": [{"key": g.key, **g.to_dict()} for g in self.groups],
            "pruned_before": to_iso(self.pruned_before),
        }


@dataclass(frozen=True)
class TaskCosts:
    """One task's totals (``/task cost T42``), with the split by model."""

    task_id: int
    task_ref: str
    totals: CostTotals
    models: tuple[CostTotals, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_ref,
            **self.totals.to_dict(),
            "models": [{"key": g.key, **g.to_dict()} for g in self.models],
        }


@dataclass(frozen=True)
class RepriceDay:
    """One UTC day of one model in a re-pricing: the table-priced events' totals before and after."""

    day: str
    model: str
    events: int = 0
    changed_events: int = 0
    old_micro: int = 0
    new_micro: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"day": self.day, "model": self.model, "events": self.events, "changed_events": self.changed_events,
                "old_cost_usd": micro_to_usd(self.old_micro), "new_cost_usd": micro_to_usd(self.new_micro),
                "delta_usd": micro_to_usd(self.new_micro - self.old_micro)}


@dataclass(frozen=True)
class RepriceResult:
    """A re-pricing (``run_id`` None for a dry run, which wrote nothing)."""

    model: str
    since: datetime
    until: datetime
    dry_run: bool
    events: int
    changed_events: int
    old_micro: int
    new_micro: int
    price_ids: tuple[int, ...] = ()
    days: tuple[RepriceDay, ...] = ()
    run_id: int | None = None
    actor: str | None = None
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "model": self.model, "since": to_iso(self.since), "until": to_iso(self.until),
            "dry_run": self.dry_run, "actor": self.actor, "created_at": to_iso(self.created_at),
            "price_ids": list(self.price_ids), "events": self.events, "changed_events": self.changed_events,
            "old_cost_usd": micro_to_usd(self.old_micro), "new_cost_usd": micro_to_usd(self.new_micro),
            "delta_usd": micro_to_usd(self.new_micro - self.old_micro),
            "days": [day.to_dict() for day in self.days],
        }


# -- budgets ---------------------------------------------------------------------------------
BUDGET_SCOPES: tuple[str, ...] = ("task", "task_type", "model", "agent", "fleet")
BUDGET_PERIODS: tuple[str, ...] = ("day", "week", "month", "total")  # UTC; weeks start on Monday
BUDGET_THRESHOLDS: tuple[int, ...] = (80, 100)  # per cent of the limit
BUDGET_STATES: tuple[str, ...] = ("ok", "warning", "over", "exhausted")


@dataclass(frozen=True)
class Budget:
    """A spending limit, with what it has spent in its current period."""

    id: int
    scope: str
    period: str
    limit_micro: int
    hard: bool
    created_at: datetime
    target: str | None = None  # the task type, model or agent
    task_id: int | None = None  # for a task budget
    task_ref: str | None = None  # for a task budget
    actor: str | None = None
    removed_at: datetime | None = None
    period_start: datetime | None = None  # the current period, as of the read
    spent_micro: int = 0

    @property
    def state(self) -> str:
        """ok; warning (80 % or more spent); over (an advisory budget at 100 %); exhausted (a
        hard one at 100 %)."""
        if self.spent_micro >= self.limit_micro:
            return "exhausted" if self.hard else "over"
        return "warning" if self.spent_micro * 100 >= self.limit_micro * 80 else "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scope": self.scope,
            "target": self.task_ref if self.scope == "task" else self.target,
            "period": self.period,
            "limit_usd": micro_to_usd(self.limit_micro),
            "hard": self.hard,
            "actor": self.actor,
            "created_at": to_iso(self.created_at),
            "removed_at": to_iso(self.removed_at),
            "period_start": to_iso(self.period_start),
            "spent_usd": micro_to_usd(self.spent_micro),
            "state": self.state,
        }


@dataclass(frozen=True)
class BudgetAlert:
    """A budget crossed 80 % or 100 % of its limit in one period (written once per period)."""

    id: int
    budget_id: int
    period_start: datetime
    threshold: int
    spent_micro: int
    limit_micro: int
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "budget_id": self.budget_id,
            "period_start": to_iso(self.period_start),
            "threshold": self.threshold,
            "spent_usd": micro_to_usd(self.spent_micro),
            "limit_usd": micro_to_usd(self.limit_micro),
            "created_at": to_iso(self.created_at),
        }


@dataclass(frozen=True)
class TaskBudget:
    """What a lobster asks before its next call: may it go on spending?"""

    task_id: int
    task_ref: str
    budgets: tuple[Budget, ...] = ()

    @property
    def state(self) -> str:
        """exhausted when a hard budget of the task is spent; else the worst of the others."""
        states = {budget.state for budget in self.budgets}
        for state in ("exhausted", "over", "warning"):
            if state in states:
                return state
        return "ok"

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_ref, "state": self.state, "budgets": [b.to_dict() for b in self.budgets]}


# -- audits ----------------------------------------------------------------------------------
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")  # in rising order
FINDING_STATUSES: tuple[str, ...] = ("open", "resolved", "ignored")


@dataclass(frozen=True)
class AuditFinding:
    id: int
    audit_type: str
    severity: str
    title: str
    fingerprint: str
    status: str
    occurrences: int
    first_seen_at: datetime
    last_seen_at: datetime
    detail: str | None = None
    target: str | None = None
    run_id: str | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None
    resolved_by: str | None = None
    fix_task_id: int | None = None
    fix_task_ref: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "audit_type": self.audit_type,
            "severity": self.severity,
            "title": self.title,
            "detail": self.detail,
            "target": self.target,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "occurrences": self.occurrences,
            "run_id": self.run_id,
            "first_seen_at": to_iso(self.first_seen_at),
            "last_seen_at": to_iso(self.last_seen_at),
            "resolved_at": to_iso(self.resolved_at),
            "resolution": self.resolution,
            "resolved_by": self.resolved_by,
            "fix_task_id": self.fix_task_ref,
        }


@dataclass(frozen=True)
class AuditRunResult:
    """What one submitted audit run did."""

    audit_type: str
    run_id: str | None
    created: tuple[AuditFinding, ...] = ()
    updated: tuple[AuditFinding, ...] = ()
    resolved: tuple[AuditFinding, ...] = ()
    tasks: tuple[Task, ...] = ()  # fix tasks made for critical findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "audit_type": self.audit_type,
            "run_id": self.run_id,
            "created": [f.to_dict() for f in self.created],
            "updated": [f.to_dict() for f in self.updated],
            "resolved": [f.to_dict() for f in self.resolved],
            "tasks": [t.to_dict() for t in self.tasks],
        }


# -- broker and jobs ------------------------------------------------------------------------
@dataclass(frozen=True)
class BrokerRegistration:
    """A registration with the token broker (lobwife's tasks.json entry): a task's (one per
    task), or a standalone one kept under the name it was registered as when that name matched
    no task (``task_id`` None, ``name`` set)."""

    id: int
    task_id: int | None
    task_ref: str | None
    name: str | None
    repos: tuple[str, ...]
    lobster_type: str | None
    registered_at: datetime
    expires_at: datetime
    status: str  # active, deregistered, expired
    token_count: int

    @property
    def key(self) -> str:
        """What the registration is known by: its task's ref, or its standalone name."""
        return self.task_ref if self.task_ref is not None else str(self.name)

    @property
    def standalone(self) -> bool:
        return self.task_id is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.key,
            "repos": list(self.repos),
            "lobster_type": self.lobster_type,
            "registered_at": to_iso(self.registered_at),
            "expires_at": to_iso(self.expires_at),
            "status": self.status,
            "token_count": self.token_count,
            "standalone": self.standalone,
        }


@dataclass(frozen=True)
class TokenAuditEntry:
    """One line of the token audit trail. ``task_ref`` is the task's ref, or for an imported
    entry naming a task this store does not hold, the old broker's name for it."""

    id: int
    task_ref: str
    repos: tuple[str, ...]
    action: str  # task_registered, task_deregistered, token_issued, registration_expired
    created_at: datetime
    credential: str | None = None  # the name of the API credential that asked, if one did

    def to_dict(self) -> dict[str, Any]:
        """The shape lobwife's token-audit.json entries had, and who asked."""
        return {
            "timestamp": to_iso(self.created_at),
            "task_id": self.task_ref,
            "repos": list(self.repos),
            "action": self.action,
            "credential": self.credential,
        }


@dataclass(frozen=True)
class Credential:
    """An API credential: a name, its scopes and its dates. The secret is never kept (only
    its hash, which this object does not carry either). ``task_ref`` is set on a task
    credential: it acts for that task only."""

    id: int
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    task_id: int | None = None
    task_ref: str | None = None
    created_by: str | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scopes": list(self.scopes),
            "task_id": self.task_ref,
            "created_by": self.created_by,
            "created_at": to_iso(self.created_at),
            "expires_at": to_iso(self.expires_at),
            "last_used_at": to_iso(self.last_used_at),
            "revoked_at": to_iso(self.revoked_at),
        }


@dataclass(frozen=True)
class IssuedCredential:
    """A credential just made, with its secret: the only time the secret exists outside the
    caller's hands. Show it once; it cannot be read back."""

    credential: Credential
    secret: str = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {**self.credential.to_dict(), "secret": self.secret}


@dataclass(frozen=True)
class IssuedToken:
    """A repository access token. It is a secret: kept out of repr, logs and the audit trail."""

    token: str = field(repr=False)
    expires_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "expires_at": to_iso(self.expires_at)}


@dataclass(frozen=True)
class JobState:
    """A cron job's state (lobwife's jobs.json entry, and what the scheduler keeps as it runs
    the job: see lobstore.cron)."""

    name: str
    enabled: bool = True
    description: str | None = None
    schedule: str | None = None
    last_run: datetime | None = None  # when the last run started (recorded runs: when it ended)
    last_status: str | None = None  # success, failed, timeout, error, interrupted
    last_duration: float | None = None  # seconds
    last_output: str | None = None
    run_count: int = 0
    fail_count: int = 0
    command: str | None = None  # the jobs file's command as one line (None: an outside runner's job)
    concurrency: str | None = None  # forbid or allow
    timeout: float | None = None  # seconds
    last_exit_code: int | None = None  # negative: killed by that signal
    skip_count: int = 0  # slots and triggers skipped because a forbid job was still running
    last_skipped_at: datetime | None = None
    next_run: datetime | None = None  # the next planned slot (None: disabled or not scheduled)
    running_since: datetime | None = None  # the start of the run in progress
    trigger_requested_at: datetime | None = None  # a trigger the scheduler has not taken yet

    @property
    def running(self) -> bool:
        return self.running_since is not None

    def to_dict(self) -> dict[str, Any]:
        """The job as ``GET /api/jobs`` shows it: upstream lobwife's fields first (the jobs.json
        entry with ``running`` and ``next_run``), then what lobstore adds."""
        return {
            "description": self.description,
            "schedule": self.schedule,
            "enabled": self.enabled,
            "running": self.running,
            "last_run": to_iso(self.last_run),
            "last_status": self.last_status,
            "last_duration": self.last_duration,
            "run_count": self.run_count,
            "fail_count": self.fail_count,
            "next_run": to_iso(self.next_run),
            "script": self.command,  # upstream's name for what runs
            "command": self.command,
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "last_output": self.last_output,
            "last_exit_code": self.last_exit_code,
            "skip_count": self.skip_count,
            "last_skipped_at": to_iso(self.last_skipped_at),
            "running_since": to_iso(self.running_since),
        }

    def to_detail(self) -> dict[str, Any]:
        """One job (``GET /api/jobs/{name}``): its name and everything ``to_dict`` holds."""
        return {"name": self.name, **self.to_dict()}


@dataclass(frozen=True)
class SyncState:
    """Where a vault's sync stands: its place in the event feed and the cost events, its last
    full reconcile, and its last cycle (what ``GET /api/sync`` shows), readable by any process."""

    last_event_id: int = 0
    last_full_at: datetime | None = None
    last_cycle: dict[str, Any] = field(default_factory=dict, hash=False)
    last_cost_event_id: int = 0
