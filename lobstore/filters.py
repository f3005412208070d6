"""Which tasks a listing asks for: :class:`TaskFilter`, one value object from the caller to the
query (dagster's ``RunsFilter`` is the model).

Its fields are declared once, in :data:`TASK_FILTERS`: the repository builds its SQL from a
TaskFilter, the HTTP adapter reads one from the query string, ``lobstore tasks list`` makes its
options from the table, the client sends one, and the OpenAPI document lists the table as the
query parameters of ``GET /api/tasks``. Standard library only (the client uses it).

    TaskFilter(status=["queued", "active"], repo="acme/web", created_since="2026-02-01")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from . import status as st
from .clock import to_iso
from .errors import ValidationError
from .models import PRIORITIES
from .validation import Field, choice, clean_fields, enum_schema, field, repo_name, text, timestamp


def _status(value: Any) -> str:
    try:
        return st.canonical(value)
    except (ValueError, AttributeError):
        raise ValueError(f"must be one of {', '.join(st.STATUSES)}, got {value!r}") from None


# A task's status as callers may name it (any case, "system-active" for active).
STATUS = field(_status, enum_schema(st.STATUSES))

# Filters that may name several values (any of them matches) and those that take one.
MANY: tuple[str, ...] = ("status", "type", "assigned_to", "priority")
TASK_FILTERS: dict[str, Field] = {
    "status": STATUS.doc("any of these statuses"),
    "type": text(200, required=True).doc("any of these task types (swe, research, ...)"),
    "assigned_to": text(200, required=True).doc("assigned to any of these"),
    "priority": choice(PRIORITIES).doc("any of these priorities"),
    "repo": repo_name.doc("owner/repo among the task's repos"),
    "text": text(200, required=True).doc("words in the task's name or slug (any case)"),
    "created_since": timestamp.doc("created at or after (inclusive)"),
    "created_until": timestamp.doc("created before (exclusive)"),
    "updated_since": timestamp.doc("last changed at or after (inclusive)"),
    "updated_until": timestamp.doc("last changed before (exclusive)"),
}


@dataclass(frozen=True)
class TaskFilter:
    """Tasks matching every filter given. A filter of several values matches any of them;
    ``*_since`` bounds are inclusive, ``*_until`` exclusive. Values are checked when the
    filter is made (ValidationError naming the filter): a status in any case or its synonym,
    timestamps as ISO text or datetimes."""

    status: tuple[str, ...] = ()
    type: tuple[str, ...] = ()
    assigned_to: tuple[str, ...] = ()
    priority: tuple[str, ...] = ()
    repo: str | None = None
    text: str | None = None
    created_since: datetime | None = None
    created_until: datetime | None = None
    updated_since: datetime | None = None
    updated_until: datetime | None = None

    def __post_init__(self) -> None:
        for name, cleaner in TASK_FILTERS.items():
            value = getattr(self, name)
            if name in MANY:
                value = _many(name, value, cleaner)
            elif value is not None:
                value = clean_fields({name: value}, {name: cleaner}, "a task filter")[name]
            object.__setattr__(self, name, value)

    @classmethod
    def of(cls, **filters: Any) -> TaskFilter:
        """A filter from keyword arguments; an unknown name is a ValidationError naming it
        (the constructor would raise TypeError). None means "not filtered"."""
        for name in filters:
            if name not in TASK_FILTERS:
                raise ValidationError(
                    f"unknown task filter {name!r}; known: {', '.join(TASK_FILTERS)}", field=name)
        return cls(**{name: value for name, value in filters.items() if value is not None})

    @classmethod
    def from_query(cls, params: Mapping[str, list[str]]) -> TaskFilter:
        """A filter from a query string's values (name -> values): a filter of several values
        may repeat or be comma-separated (``status=queued,active``); the others come once."""
        values: dict[str, Any] = {}
        for name in TASK_FILTERS:
            if name not in params:
                continue
            given = params[name]
            if name in MANY:
                values[name] = [part for value in given for part in value.split(",")]
            elif len(given) > 1:
                raise ValidationError(f"{name} may be given once, got {len(given)} values", field=name)
            else:
                values[name] = given[0]
        return cls(**values)

    def given(self) -> dict[str, Any]:
        """The filters set (name -> value), in the table's order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) not in (None, ())}

    def to_query(self) -> dict[str, str]:
        """The filters as query parameters (what :meth:`from_query` reads back)."""
        out: dict[str, str] = {}
        for name, value in self.given().items():
            if isinstance(value, tuple):
                out[name] = ",".join(value)
            elif isinstance(value, datetime):
                out[name] = to_iso(value) or ""
            else:
                out[name] = str(value)
        return out

    def __bool__(self) -> bool:
        return bool(self.given())


def _many(name: str, value: Any, cleaner: Field) -> tuple[Any, ...]:
    if value is None or value == ():  # the default: not filtered (an empty list is a mistake)
        return ()
    values: Iterable[Any] = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple, set, frozenset)):
        raise ValidationError(f"{name} filter must be a value or a list of them, got {value!r}", field=name)
    values = list(values)
    if not values:
        raise ValidationError(f"{name} filter is an empty list: give at least one value", field=name)
    cleaned = (clean_fields({name: item}, {name: cleaner}, "a task filter")[name] for item in values)
    return tuple(dict.fromkeys(cleaned))  # each value once, in the order given (a repeat matches nothing more)
