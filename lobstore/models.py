"""Plain value objects returned by the store. They hold data only; the store does the work."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from .clock import to_iso

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

    def to_dict(self) -> dict[str, Any]:
        """The JSON form every client sees: ``id`` is the number, ``task_id`` the ref."""
        out: dict[str, Any] = {"id": self.id, "task_id": self.ref}
        for f in fields(self):
            if f.name in ("id", "ref"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = to_iso(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


@dataclass(frozen=True)
class TaskEvent:
    id: int
    task_id: int
    task_ref: str
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


@dataclass(frozen=True)
class BrokerRegistration:
    """A task's registration with the token broker (one per task; lobwife's tasks.json entry)."""

    task_id: int
    task_ref: str
    repos: tuple[str, ...]
    lobster_type: str | None
    registered_at: datetime
    expires_at: datetime
    status: str  # active, deregistered, expired
    token_count: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_ref,
            "repos": list(self.repos),
            "lobster_type": self.lobster_type,
            "registered_at": to_iso(self.registered_at),
            "expires_at": to_iso(self.expires_at),
            "status": self.status,
            "token_count": self.token_count,
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

    def to_dict(self) -> dict[str, Any]:
        """The shape lobwife's token-audit.json entries had."""
        return {
            "timestamp": to_iso(self.created_at),
            "task_id": self.task_ref,
            "repos": list(self.repos),
            "action": self.action,
        }


@dataclass(frozen=True)
class IssuedToken:
    """A repository access token. It is a secret: kept out of repr, logs and the audit trail."""

    token: str = field(repr=False)
    expires_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "expires_at": to_iso(self.expires_at)}


@dataclass(frozen=True)
class JobState:
    """A cron job's state (lobwife's jobs.json entry)."""

    name: str
    enabled: bool = True
    description: str | None = None
    schedule: str | None = None
    last_run: datetime | None = None
    last_status: str | None = None  # success, failed, timeout, error
    last_duration: float | None = None  # seconds
    last_output: str | None = None
    run_count: int = 0
    fail_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The jobs.json entry, without the output (``GET /api/jobs`` keys these by name)."""
        return {
            "description": self.description,
            "schedule": self.schedule,
            "enabled": self.enabled,
            "last_run": to_iso(self.last_run),
            "last_status": self.last_status,
            "last_duration": self.last_duration,
            "run_count": self.run_count,
            "fail_count": self.fail_count,
        }

    def to_detail(self) -> dict[str, Any]:
        """One job in full (``GET /api/jobs/{name}``): its name, the entry and ``last_output``."""
        return {"name": self.name, **self.to_dict(), "last_output": self.last_output}
