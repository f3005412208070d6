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
    # Keys without a column of their own, e.g. an imported task file's other frontmatter keys.
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)

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
