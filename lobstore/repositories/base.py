from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa

from ..backends.base import RawRows, SqlBackend, fetch_raw
from ..broker.service_tokens import ServiceTokenPolicy
from ..errors import NotFoundError
from ..ids import format_ref, parse_ref
from ..lifecycle.settings import LifecycleSettings
from ..schema import broker_tasks, tasks


class Scope(Protocol):
    def reading(self) -> AbstractContextManager[sa.Connection]: ...
    def writing(self) -> AbstractContextManager[sa.Connection]: ...
    def select_raw(self, statement: sa.Executable, params: dict[str, Any] | None = None) -> RawRows: ...
    def select_prepared(self, statement: sa.Select[Any], params: dict[str, Any]) -> RawRows: ...


class StoreObserver:
    """What a store tells whoever watches it (``lobstore serve``'s metrics): a base whose every
    method does nothing. Called after the fact, outside any transaction; must be quick and must
    not raise."""

    def write_lock_waited(self, seconds: float) -> None:
        """A write transaction began ``seconds`` after it was asked for."""

    def token_issued(self, reused: bool) -> None:
        """The broker handed out a token (``reused``: from its cache, not newly minted)."""

    def token_refused(self, reason: str) -> None:
        """The broker refused a token (not_registered, deregistered, expired, terminal)."""

    def job_run(self, name: str, status: str) -> None:
        """A cron job's finished run was recorded (success, failed, timeout, error)."""


@dataclass
class Attachments:
    """What the embedding process plugs into a store at run time (shared by the store and all
    its transactions): the token provider, the job runner, and the broker's settings and cache."""

    token_provider: Any = None  # a lobstore.tokens.TokenProvider
    job_runner: Any = None  # a lobstore.repositories.jobs.JobRunner
    registration_ttl: timedelta = timedelta(hours=24)
    token_cache: Any = None  # a lobstore.broker.tokens.TokenCache, made on first use
    observer: StoreObserver = field(default_factory=StoreObserver)  # metrics, when serve runs
    # Which services may have tokens for which repos (by default the fleet's, every repository).
    service_policy: ServiceTokenPolicy = field(default_factory=ServiceTokenPolicy)
    broker_policy: Any = None  # a lobstore.broker.policy.BrokerPolicy (None: the defaults)
    credential_cache: Any = None  # a lobstore.repositories.credentials.CredentialCache, made on first use
    # The lifecycle clock's thresholds, and the time it goes by (None: the database's clock;
    # tests set a fake one with store.set_clock).
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    clock: Callable[[], datetime] | None = None


@dataclass(frozen=True)
class StoreContext:
    """What repositories need to know about their store."""

    backend: SqlBackend
    id_prefix: str
    attachments: Attachments = field(default_factory=Attachments)

    def ref(self, task_id: int) -> str:
        return format_ref(task_id, self.id_prefix)


class BackendScope:
    """Each call opens its own transaction."""

    def __init__(self, backend: SqlBackend) -> None:
        self._backend = backend

    def reading(self) -> AbstractContextManager[sa.Connection]:
        return self._backend.reading()

    def writing(self) -> AbstractContextManager[sa.Connection]:
        return self._backend.writing()

    def select_raw(self, statement: sa.Executable, params: dict[str, Any] | None = None) -> RawRows:
        return self._backend.select_raw(statement, params)

    def select_prepared(self, statement: sa.Select[Any], params: dict[str, Any]) -> RawRows:
        return self._backend.select_prepared(statement, params)


class ConnectionScope:
    """Every call joins one open transaction."""

    def __init__(self, backend: SqlBackend, conn: sa.Connection) -> None:
        self._backend = backend
        self._conn = conn

    @contextmanager
    def reading(self) -> Iterator[sa.Connection]:
        with self._backend.translate_errors():
            yield self._conn

    writing = reading

    def select_raw(self, statement: sa.Executable, params: dict[str, Any] | None = None) -> RawRows:
        with self._backend.translate_errors():
            return fetch_raw(self._conn, statement, params)

    select_prepared = select_raw  # inside the transaction, on its connection


class Repository:
    def __init__(self, scope: Scope, context: StoreContext) -> None:
        self._scope = scope
        self._ctx = context


# A task is read with its broker registration (an outer join on the registration's primary
# key), so the task JSON shows broker_repos, broker_status, broker_registered_at, token_count.
TASK_SELECT = sa.select(
    tasks,
    broker_tasks.c.repos.label("broker_repos"),
    broker_tasks.c.status.label("broker_status"),
    broker_tasks.c.registered_at.label("broker_registered_at"),
    broker_tasks.c.token_count.label("token_count"),
).select_from(tasks.outerjoin(broker_tasks, broker_tasks.c.task_id == tasks.c.id))

# Built once (values bound per call) so SQLAlchemy compiles each a single time.
_TASK_BY = {
    (column.name, lock): (
        # PostgreSQL cannot lock the nullable side of an outer join: lock the task row only.
        TASK_SELECT.where(column == sa.bindparam("ref")).with_for_update(of=tasks)
        if lock else TASK_SELECT.where(column == sa.bindparam("ref"))
    )
    for column in (tasks.c.id, tasks.c.legacy_id)
    for lock in (False, True)
}


def task_row(conn: sa.Connection, ref: object, ctx: StoreContext, *, for_update: bool = False) -> sa.Row:
    """The row of the task ``ref`` names (42, "T42", "t42" or a legacy id), or NotFoundError.

    ``for_update`` locks the row until the transaction ends (PostgreSQL; SQLite already holds
    the database's one write lock).
    """
    query, params = task_query(ref, ctx, for_update=for_update)
    row = conn.execute(query, params).first()
    if row is None:
        raise no_such_task(ref, ctx)
    return row


def task_query(ref: object, ctx: StoreContext, *, for_update: bool = False) -> tuple[sa.Select[Any], dict[str, Any]]:
    """The query reading the task ``ref`` names (by id, or by legacy id), and its parameters."""
    parsed = parse_ref(ref, ctx.id_prefix)
    if parsed.id is not None:
        return _TASK_BY["id", for_update], {"ref": parsed.id}
    return _TASK_BY["legacy_id", for_update], {"ref": parsed.legacy_id}


def no_such_task(ref: object, ctx: StoreContext) -> NotFoundError:
    # Named as a ref (T9, however it was asked for: 9, t9), or as the legacy id given.
    parsed = parse_ref(ref, ctx.id_prefix)
    shown = ctx.ref(parsed.id) if parsed.id is not None else repr(ref)
    return NotFoundError(f"no task {shown} in this store", task=str(ref))


def task_ids(conn: sa.Connection, refs: Iterable[object], ctx: StoreContext) -> dict[object, int]:
    """The task ids of many refs in two queries (by id, by legacy id): for batches that name
    hundreds of tasks. A ref naming no task (or that cannot name one) is absent from the answer."""
    by_id: dict[int, list[object]] = {}
    by_legacy: dict[str, list[object]] = {}
    for ref in refs:
        try:
            parsed = parse_ref(ref, ctx.id_prefix)
        except NotFoundError:
            continue
        if parsed.id is not None:
            by_id.setdefault(parsed.id, []).append(ref)
        else:
            by_legacy.setdefault(str(parsed.legacy_id), []).append(ref)
    found: dict[object, int] = {}
    for column, wanted in ((tasks.c.id, by_id), (tasks.c.legacy_id, by_legacy)):
        if wanted:
            rows = conn.execute(_TASKS_WHERE_IN[column.name], {"values": list(wanted)})
            for task_id, key in rows:
                for ref in wanted[key]:
                    found[ref] = task_id
    return found


_TASKS_WHERE_IN = {
    column.name: sa.select(tasks.c.id, column).where(column.in_(sa.bindparam("values", expanding=True)))
    for column in (tasks.c.id, tasks.c.legacy_id)
}
