"""Tasks: create, find, list, update through the status machine, cancel, re-open.

Every change writes its event in the same transaction, so the trail and the task never
disagree: if the event cannot be written, the change is rolled back with it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from .. import status as st
from ..clock import to_iso, utcnow
from ..errors import ConflictError, InvalidTransitionError, NotFoundError, ValidationError
from ..filters import STATUS, TaskFilter
from ..ids import TaskRef, parse_ref
from ..models import PRIORITIES, TASK_FIELD_NAMES, Task, TaskUpdate
from ..schema import tasks
from ..validation import (
    MAX_LONG_TEXT,
    boolean,
    choice,
    clean_fields,
    field,
    identifier,
    integer,
    json_object,
    repo_name,
    string_list,
    tag,
    text,
    timestamp,
)
from .base import TASK_SELECT, Repository, no_such_task, task_query, task_row
from .broker import end_registration
from .events import check_cursor, check_limit, insert_event
from .leases import CLOCK_FIELDS, LEAVING_ACTIVE, TaskLeases, entering_active, extend_by_assignee
from .task_json import TaskJson, TasksJson, task_json
from .task_list import filter_conditions, filter_params, list_query

ACTOR = text(200).doc("who makes the change, for the event trail")
REASON = text(10_000).doc("why, for the event trail")

# The fields of a task a caller may set (everything else — id, version, updated_at — is the
# store's): the one definition of each, for the library, the HTTP API and its OpenAPI document.
TASK_FIELDS = {
    "name": text(required=True).doc("what the task is, in one line"),
    "slug": text(200).doc("a short name for paths and branches (default: from the name)"),
    "type": identifier("task type").doc("swe, research, qa, image-gen, system, ... (default swe)"),
    "status": STATUS.doc("moves follow the status machine unless force is true (default queued)"),
    "priority": choice(PRIORITIES).doc("default normal"),
    "model": text(200).doc("the model the lobster runs"),
    "assigned_to": text(200).doc("the lobster working on it, e.g. lobster-swe-t42"),
    "repos": string_list(repo_name).doc("the owner/repo names it works in"),
    "description": text(MAX_LONG_TEXT).doc("the task in full (markdown)"),
    "discord_thread_id": text(100),
    "estimate_minutes": integer(0, 100_000),
    "requires_qa": boolean,
    "workflow": text(200),
    "tags": string_list(tag),
    "vault_path": text(1000).doc("its file in the vault"),
    "queued_at": timestamp.doc("set on entering queued unless given"),
    "assigned_at": timestamp.doc("set on entering active unless given"),
    "completed_at": timestamp.doc("set on entering completed, failed or cancelled unless given"),
    "review_pr": text(1000).doc("the PR under review (set by the lobster that opened it): no timeouts while set"),
    "max_attempts": integer(1, 1000).doc("claims before an orphaned task fails instead of re-queuing "
                                         "(default: the server's, 3)"),
}
# What each write takes: ``**fields`` checked against one table (unknown, missing and bad
# fields are a ValidationError naming the field).
CREATE_CLEANERS = {
    **TASK_FIELDS,
    "name": TASK_FIELDS["name"].require(),
    "legacy_id": field(lambda value: _legacy_id(value), text(200).schema, "the old vault id, for imports"),
    "created_at": timestamp.doc("for imports: when it was made (default now)"),
    "updated_at": timestamp.doc("for imports (default: created_at)"),
    "metadata": json_object.doc("keys without a column of their own (imports)"),
    "actor": ACTOR,
}
UPDATE_CLEANERS = TASK_FIELDS
UPDATE_OPTION_CLEANERS = {
    "actor": ACTOR,
    "reason": REASON,
    "force": boolean.doc("allow a move the status machine refuses; the event records it"),
    "expected_version": integer(1, 2**62).doc("refuse (409) if the task is no longer at this version"),
}
UPDATE_REQUEST = {**UPDATE_CLEANERS, **UPDATE_OPTION_CLEANERS}  # one PATCH body: fields and options
CANCEL_CLEANERS = {"actor": ACTOR, "reason": REASON}
LIST_ORDERS = ("asc", "desc")
COUNT_BY_FIELDS = ("status", "type", "priority", "assigned_to")
IN_BATCH = 500  # values per IN (...) list: well under every driver's parameter limit
# Built once, values bound per call: compiled once and served from SQLAlchemy's cache.
_INSERT_TASK = sa.insert(tasks)
_UPDATE_TASK = sa.update(tasks).where(
    tasks.c.id == sa.bindparam("match_id"), tasks.c.version == sa.bindparam("match_version")
)
DEFAULT_TYPE = "swe"


_REF_LIKE = re.compile(r"^[A-Za-z]{0,4}[0-9]+$")


def _legacy_id(value: Any) -> str | None:
    """An old id such as task-2026-02-15-a1b2. One that reads as a ref (42, T42) could never be
    found by it: T42 names task 42."""
    value = text(200)(value)
    if value is not None and _REF_LIKE.match(value.strip()):
        raise ValueError(f"must not look like a task ref (42, T42): {value!r} would name a task by number")
    return value


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:80] or "task"


def task_from_row(row: sa.Row | Mapping[str, Any], ref: str) -> Task:
    values = dict(row._mapping if isinstance(row, sa.Row) else row)
    return Task.from_columns(_column_values(values, ref), values.keys() - TASK_FIELD_NAMES)


def tasks_from_rows(rows: Sequence[sa.Row], ref: Callable[[int], str]) -> list[Task]:
    """:func:`task_from_row` for the rows of one query: their column names are looked at once
    (a list of 50 tasks costs a third of what it did row by row)."""
    if not rows:
        return []
    names = rows[0]._fields
    others, at = set(names) - TASK_FIELD_NAMES, names.index("id")
    return [Task.from_columns(_column_values(dict(zip(names, row)), ref(row[at])), others) for row in rows]


def _column_values(values: dict[str, Any], ref: str) -> dict[str, Any]:
    """A row's values as Task takes them (in place)."""
    values["ref"] = ref
    values["repos"] = tuple(values["repos"] or ())
    values["tags"] = tuple(values["tags"] or ())
    values["requires_qa"] = bool(values["requires_qa"])
    if values.get("broker_repos") is not None:
        values["broker_repos"] = tuple(values["broker_repos"])
    values["token_count"] = values.get("token_count") or 0
    values["metadata"] = dict(values.get("metadata") or {})
    return values


class TaskRepository(TaskLeases, Repository):
    # -- writing ----------------------------------------------------------------------------
    # self is positional-only: a field named "self" (from a JSON body) is then an unknown field.
    def create(self, /, **fields: Any) -> Task:
        """Create a task; its id is the next in sequence. ``name`` is required.

        Fields (:data:`CREATE_CLEANERS`): name, type (default "swe"), status (default
        "queued"), priority (default "normal"), model, assigned_to, repos, description, slug,
        discord_thread_id, estimate_minutes, requires_qa, workflow, tags, legacy_id, vault_path,
        metadata (a JSON object of keys without a column), the timestamps created_at,
        updated_at, queued_at, assigned_at, completed_at (for imports; otherwise the store sets
        them), and actor (who creates it, for the event trail).
        """
        values = clean_fields(fields, CREATE_CLEANERS, "a task")
        actor = values.pop("actor", None)
        now = utcnow()
        status = values.get("status") or st.QUEUED
        created_at = values.get("created_at") or now
        row: dict[str, Any] = {
            column.name: None for column in tasks.columns if column.name != "id"
        }
        row.update(
            type=DEFAULT_TYPE, priority="normal", repos=[], tags=[], requires_qa=False, metadata={},
            slug=slugify(values["name"]), version=1, attempts=0,
        )
        row.update({key: value for key, value in values.items() if value is not None})
        row.update(status=status, created_at=created_at, updated_at=values.get("updated_at") or created_at)
        # Entering a status sets its timestamp, as an update would (unless the caller gave it).
        if status == st.QUEUED and row["queued_at"] is None:
            row["queued_at"] = created_at
        if status == st.ACTIVE and row["assigned_at"] is None:
            row["assigned_at"] = created_at
        if status in st.TERMINAL and row["completed_at"] is None:
            row["completed_at"] = now if "created_at" not in values else created_at

        with self._scope.writing() as conn:
            if status == st.ACTIVE and "created_at" not in values:  # made active now, not imported
                given = {key for key, value in values.items() if value is not None}
                row.update(entering_active(conn, self._ctx, 0, given))
            if row["legacy_id"] is not None:
                clash = conn.execute(
                    sa.select(tasks.c.id).where(tasks.c.legacy_id == row["legacy_id"])
                ).scalar()
                if clash is not None:
                    raise ConflictError(
                        f"legacy id {row['legacy_id']!r} already belongs to {self._ctx.ref(clash)}",
                        task_id=self._ctx.ref(clash),
                    )
            task_id = conn.execute(_INSERT_TASK, row).inserted_primary_key[0]
            ref = self._ctx.ref(task_id)
            insert_event(
                conn, self._ctx, task_id, "created",
                detail=f"created {ref}: {row['name']}", actor=actor,
                data={"status": status, "type": row["type"], "priority": row["priority"]},
            )
        return task_from_row({"id": task_id, **row}, ref)

    def update(self, task: object, /, **fields: Any) -> TaskUpdate:
        """Change fields of a task and record what changed as one event.

        Fields: those of :data:`TASK_FIELDS`, and the options actor, reason, force and
        expected_version (:data:`UPDATE_OPTION_CLEANERS`). A status change must be allowed by
        the status machine unless ``force`` is true (the event then says it was forced).
        ``expected_version`` refuses the change with a ConflictError if someone else changed
        the task since that version was read. Setting a field to the value it has is not a
        change: nothing is written. (``task`` is positional-only: a field named "task" is then
        an unknown field, not a clash.)
        """
        values = clean_fields(fields, UPDATE_REQUEST, "a task update")
        options = {name: values.pop(name) for name in UPDATE_OPTION_CLEANERS if name in values}
        if not values:
            raise ValidationError(
                f"nothing to update: give at least one of {', '.join(sorted(UPDATE_CLEANERS))}"
            )
        with self._scope.writing() as conn:
            current = self._locked(conn, task)
            return self._apply(conn, current, values, **options)

    def cancel(self, task: object, /, **fields: Any) -> Task:
        """Cancel a task that has not ended; an ended one is an InvalidTransitionError (409).
        Fields: actor, reason (:data:`CANCEL_CLEANERS`)."""
        return self._move(task, st.CANCELLED, st.OPEN, clean_fields(fields, CANCEL_CLEANERS, "a cancellation"))

    def reopen(self, task: object, /, **fields: Any) -> Task:
        """Put a failed or cancelled task back in the queue. Fields: actor, reason."""
        return self._move(task, st.QUEUED, (st.FAILED, st.CANCELLED),
                          clean_fields(fields, CANCEL_CLEANERS, "a re-opening"))

    def _move(self, task: object, target: str, only_from: Iterable[str], options: dict[str, Any]) -> Task:
        with self._scope.writing() as conn:
            current = self._locked(conn, task)
            if current.status not in only_from:
                raise InvalidTransitionError(  # cancel and re-open take no force
                    current.status, target, st.allowed_targets(current.status), task_id=current.ref,
                    overridable=False,
                )
            return self._apply(conn, current, {"status": target}, **options).task

    def _locked(self, conn: sa.Connection, task: object) -> Task:
        return self._task(task_row(conn, task, self._ctx, for_update=True))

    def _task(self, row: sa.Row | Mapping[str, Any]) -> Task:
        return task_from_row(row, self._ctx.ref(row["id"] if isinstance(row, Mapping) else row.id))

    def _apply(
        self,
        conn: sa.Connection,
        current: Task,
        values: Mapping[str, Any],
        *,
        actor: str | None = None,
        reason: str | None = None,
        force: bool | None = False,
        expected_version: int | None = None,
        event_type: str | None = None,
    ) -> TaskUpdate:
        ref = current.ref
        check_version(current, expected_version)
        now = utcnow()
        changes = _changes(current, values)
        forced = False
        new_status = changes.get("status")
        if new_status is not None:
            if not st.is_allowed(current.status, new_status):
                if not force:
                    raise InvalidTransitionError(
                        current.status, new_status, st.allowed_targets(current.status), task_id=ref
                    )
                forced = True
            implied = _implied_by_status(current, new_status, values, now)
            if new_status == st.ACTIVE and current.status != st.ACTIVE:
                implied.update(entering_active(conn, self._ctx, current.attempts, values))
            elif new_status != st.ACTIVE:
                implied.update(LEAVING_ACTIVE)
            changes = _changes(current, {**changes, **implied})
        if not changes:
            lease = extend_by_assignee(conn, self._ctx, current, actor)  # still a sign of life
            return TaskUpdate(task=current if lease is None else replace(current, lease_expires_at=lease), updated=())
        new_version = current.version + 1
        result = conn.execute(
            _UPDATE_TASK,
            {**changes, "updated_at": now, "version": new_version,
             "match_id": current.id, "match_version": current.version},
        )
        if result.rowcount != 1:
            raise ConflictError(f"{ref} was changed concurrently: read it again and retry", task_id=ref)
        insert_event(
            conn, self._ctx, current.id, event_type or _event_type(current.status, new_status),
            detail=_describe(current, changes, forced, reason),
            actor=actor,
            data=_event_data(current, changes, new_version, forced),
        )
        after = current.changed(**_as_task_values(changes), updated_at=now, version=new_version)
        lease = None if "lease_expires_at" in changes else extend_by_assignee(conn, self._ctx, after, actor)
        if lease is not None:
            after = replace(after, lease_expires_at=lease)
        if changes.get("status") == st.CANCELLED:
            # A cancelled task loses its repository access in the same transaction.
            ended = end_registration(conn, self._ctx, current.id, actor=actor, reason="task cancelled")
            if ended is not None:
                after = replace(after, broker_status=ended.status)
        return TaskUpdate(task=after, updated=tuple(sorted(set(changes) - CLOCK_FIELDS)))

    # -- reading ----------------------------------------------------------------------------
    def get(self, task: object) -> Task:
        """The task named by 42, "T42", "t42" or its legacy id; NotFoundError otherwise."""
        with self._scope.reading() as conn:
            row = task_row(conn, task, self._ctx)
        return task_from_row(row, self._ctx.ref(row.id))

    def get_json(self, task: object) -> TasksJson:
        """``get(task).to_dict()`` as JSON, made straight from the database: what the API answers."""
        found = self._json.one(self._scope, *task_query(task, self._ctx))
        if found is None:
            raise no_such_task(task, self._ctx)
        return found

    @property
    def _json(self) -> TaskJson:
        return task_json(self._ctx.backend.engine.dialect.name, self._ctx.id_prefix)

    def by_legacy_id(self, legacy_id: str) -> Task | None:
        """The task with exactly this legacy id, or None. Unlike :meth:`get`, a legacy id that
        looks like a ref (``T42``, ``42``) is still read as a legacy id."""
        return self.by_legacy_ids([legacy_id]).get(legacy_id)

    def by_legacy_ids(self, legacy_ids: Iterable[str]) -> dict[str, Task]:
        """The tasks that exist among ``legacy_ids``, keyed by legacy id: one query per
        batch, so an importer checks thousands of old ids without a round trip each."""
        return {task.legacy_id or "": task for task in self._where_in(tasks.c.legacy_id, set(legacy_ids))}

    def get_many(self, ids: Iterable[int]) -> dict[int, Task]:
        """The tasks that exist among ``ids`` (task numbers), keyed by id: one query per
        batch of 500, for readers (the vault sync) that need many tasks at once."""
        wanted = {check_cursor(task_id, "id") for task_id in ids}
        return {task.id: task for task in self._where_in(tasks.c.id, wanted)}

    def _where_in(self, column: sa.Column[Any], values: set[Any]) -> list[Task]:
        wanted = sorted(values)
        found: list[Task] = []
        with self._scope.reading() as conn:
            for start in range(0, len(wanted), IN_BATCH):
                batch = wanted[start:start + IN_BATCH]
                found += tasks_from_rows(conn.execute(TASK_SELECT.where(column.in_(batch))).all(), self._ctx.ref)
        return found

    def list(
        self,
        filter: TaskFilter | None = None,
        /,
        *,
        limit: int = 100,
        after: object = None,
        order: str = "asc",
        **filters: Any,
    ) -> list[Task]:
        """Tasks matching ``filter`` (a :class:`~lobstore.filters.TaskFilter`, or its fields as
        keyword arguments: status, type, assigned_to, priority, repo, created_since, ...), in
        id order, at most ``limit`` (1-1000). For the next page pass ``after`` = the last
        task's id (or ref); ``order="desc"`` lists the newest first.
        """
        query, params, _kept = self._list_query(filter, limit=limit, after=after, order=order, **filters)
        with self._scope.reading() as conn:
            rows = conn.execute(query, params).all()
        return tasks_from_rows(rows, self._ctx.ref)

    def list_json(self, filter: TaskFilter | None = None, /, *, limit: int = 100, after: object = None,
                  order: str = "asc", **filters: Any) -> TasksJson:
        """``[t.to_dict() for t in list(...)]`` as JSON, made straight from the database: what
        the API answers."""
        query, params, kept = self._list_query(filter, limit=limit, after=after, order=order, **filters)
        return self._json.many(self._scope, query, params, prepared=kept)

    def _list_query(self, filter: TaskFilter | None, /, *, limit: int, after: object, order: str,
                    **filters: Any) -> tuple[sa.Select[Any], dict[str, Any], bool]:
        if order not in LIST_ORDERS:
            raise ValidationError(f"order must be 'asc' or 'desc', got {order!r}", field="order")
        cursor = _cursor(after, self._ctx.id_prefix) if after is not None else None
        return list_query(_filter(filter, filters), cursor=cursor, order=order, limit=check_limit(limit),
                          contains=self._ctx.backend.json_list_contains)

    def count(self, filter: TaskFilter | None = None, /, **filters: Any) -> int:
        """How many tasks match (a TaskFilter, or its fields as keyword arguments)."""
        given = _filter(filter, filters)
        query = sa.select(sa.func.count()).select_from(tasks).where(*self._filters(given))
        with self._scope.reading() as conn:
            return conn.execute(query, filter_params(given)).scalar_one()

    def count_by(self, field: str, filter: TaskFilter | None = None, /, **filters: Any) -> dict[str, int]:
        """How many tasks match (a TaskFilter, or its fields) per value of ``field`` (status,
        type, priority or assigned_to), sorted by value; unassigned tasks count under ``""``
        for assigned_to."""
        if field not in COUNT_BY_FIELDS:
            raise ValidationError(
                f"count_by field must be one of {', '.join(COUNT_BY_FIELDS)}, got {field!r}", field="field"
            )
        column = tasks.c[field]
        given = _filter(filter, filters)
        query = sa.select(column, sa.func.count()).where(*self._filters(given)).group_by(column)
        with self._scope.reading() as conn:
            rows = conn.execute(query, filter_params(given)).all()
        return dict(sorted((value or "", count) for value, count in rows))

    def _filters(self, given: TaskFilter) -> list[sa.ColumnElement[bool]]:
        """The filter's conditions; their parameters are ``filter_params(given)``."""
        return filter_conditions(given, self._ctx.backend.json_list_contains)


# -- helpers ----------------------------------------------------------------------------------
def check_version(current: Task, expected_version: int | None) -> None:
    """ConflictError when the caller expected another version of the task than it is at."""
    if expected_version is not None and expected_version != current.version:
        raise ConflictError(
            f"{current.ref} was changed since version {expected_version} (it is at version "
            f"{current.version}): read it again and retry",
            task_id=current.ref, version=current.version,
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _filter(given: TaskFilter | None, filters: dict[str, Any]) -> TaskFilter:
    """A TaskFilter from a caller's filter object and/or keyword filters (the latter win)."""
    if given is not None and not isinstance(given, TaskFilter):
        raise ValidationError(f"filter must be a TaskFilter, got {type(given).__name__}", field="filter")
    if not filters:
        return given or TaskFilter()
    extra = TaskFilter.of(**filters)
    return replace(given, **extra.given()) if given is not None else extra


def _cursor(after: object, prefix: str) -> int:
    try:
        parsed = parse_ref(after, prefix) if not _is_int(after) else None
    except NotFoundError:  # a cursor that names no task is a bad argument, not a missing task
        parsed = TaskRef()
    if parsed is not None and parsed.id is None:
        raise ValidationError(f"after must be a task id such as 42 or {prefix}42, got {after!r}", field="after")
    return check_cursor(after if parsed is None else parsed.id) or 0


def _changes(current: Task, values: Mapping[str, Any]) -> dict[str, Any]:
    """The fields whose new value differs from the current one."""
    changes = {}
    for name, value in values.items():
        old = getattr(current, name)
        if isinstance(old, tuple):
            old = list(old)
        if value != old:
            changes[name] = value
    return changes


def _implied_by_status(current: Task, new: str, given: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Timestamps and assignment that follow from entering ``new``, unless the caller set them."""
    implied: dict[str, Any] = {}
    if new == st.ACTIVE:
        implied["assigned_at"] = now
    elif new in st.TERMINAL:
        implied["completed_at"] = now
    elif new == st.QUEUED:
        implied.update(queued_at=now, assigned_to=None, assigned_at=None, completed_at=None)
    if current.status in st.TERMINAL and new not in st.TERMINAL:
        implied.setdefault("completed_at", None)
    return {key: value for key, value in implied.items() if key not in given}


def _event_type(old_status: str, new_status: str | None) -> str:
    if new_status == st.CANCELLED:
        return "cancelled"
    if new_status == st.QUEUED and old_status in (st.FAILED, st.CANCELLED):
        return "reopened"
    return "updated"


def _describe(current: Task, changes: Mapping[str, Any], forced: bool, reason: str | None) -> str:
    if "status" in changes:
        text_ = f"status {current.status} → {changes['status']}" + (" (forced)" if forced else "")
        others = [name for name in sorted(changes) if name != "status"]
        if others:
            text_ += f"; {', '.join(others)}"
    else:
        text_ = f"updated {', '.join(sorted(changes))}"
    return f"{text_}: {reason}" if reason else text_


def _event_data(current: Task, changes: Mapping[str, Any], version: int, forced: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "changes": {
            name: {"old": _jsonable(getattr(current, name)), "new": _jsonable(value)}
            for name, value in sorted(changes.items())
        },
        "version": version,
    }
    if forced:
        data["forced"] = True
    return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_iso(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _as_task_values(changes: Mapping[str, Any]) -> dict[str, Any]:
    return {name: tuple(value) if isinstance(value, list) else value for name, value in changes.items()}
