"""The Store: a backend, its repositories, and transactions that span them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from .backends import SqlBackend, backend_for
from .ids import DEFAULT_PREFIX, check_prefix
from .migrations import MigrationRunner
from .repositories import EventRepository, IdempotencyRepository, StoreContext, TaskRepository
from .repositories.base import BackendScope, ConnectionScope, Scope

log = logging.getLogger(__name__)


class _Repositories:
    tasks: TaskRepository
    events: EventRepository
    idempotency: IdempotencyRepository

    def _bind(self, scope: Scope, context: StoreContext) -> None:
        self.tasks = TaskRepository(scope, context)
        self.events = EventRepository(scope, context)
        self.idempotency = IdempotencyRepository(scope, context)


class Transaction(_Repositories):
    """Repositories bound to one open transaction: everything commits together or not at all."""

    def __init__(self, backend: SqlBackend, conn: sa.Connection, context: StoreContext) -> None:
        self._bind(ConnectionScope(backend, conn), context)


class Store(_Repositories):
    """The state store. Calls on ``store.tasks`` / ``store.events`` are each their own
    transaction; ``with store.transaction() as tx`` groups several into one."""

    def __init__(self, backend: SqlBackend, *, id_prefix: str = DEFAULT_PREFIX) -> None:
        self.backend = backend
        self.id_prefix = check_prefix(id_prefix)
        self._context = StoreContext(backend=backend, id_prefix=self.id_prefix)
        self._bind(BackendScope(backend), self._context)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Commit on a clean exit, roll back if the block raises."""
        with self.backend.writing() as conn:
            yield Transaction(self.backend, conn, self._context)

    @property
    def migrations(self) -> MigrationRunner:
        return MigrationRunner(self.backend)

    def schema_version(self) -> int:
        return self.migrations.current_version()

    def describe(self) -> dict[str, Any]:
        """What /health and `lobstore info` show about the database."""
        return {**self.backend.describe(), "schema_version": self.schema_version()}

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {self.backend.url}>"


def open_store(
    url: str | sa.Engine | None = None,
    *,
    migrate: bool = True,
    id_prefix: str = DEFAULT_PREFIX,
) -> Store:
    """Open the store at ``url`` (``sqlite:///lobwife.db``, ``sqlite://`` for a private
    in-memory store, ``postgresql://user@host/db``) or on a ready SQLAlchemy Engine.

    Pending migrations are applied unless ``migrate=False``, in which case a database that is
    not at this code's schema version is refused with SchemaVersionError. A database newer
    than the code is always refused.
    """
    backend = backend_for("sqlite://" if url is None else url)
    try:
        runner = MigrationRunner(backend)
        if migrate:
            for migration in runner.apply():
                log.info("applied migration %s", migration.label)
        else:
            runner.check()
        return Store(backend, id_prefix=id_prefix)
    except BaseException:
        backend.close()
        raise
