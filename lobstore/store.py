"""The Store: a backend, its repositories, and transactions that span them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from .backends import SqlBackend, backend_for
from .errors import ConfigurationError
from .ids import DEFAULT_PREFIX, check_prefix
from .lifecycle.settings import LifecycleSettings
from .migrations import MigrationRunner
from .repositories import (
    AuditRepository,
    BrokerRepository,
    BudgetRepository,
    CostRepository,
    CredentialRepository,
    EventRepository,
    IdempotencyRepository,
    JobRepository,
    JobRunner,
    StoreContext,
    SyncStateRepository,
    TaskRepository,
)
from .repositories.base import BackendScope, ConnectionScope, Scope, StoreObserver
from .broker.policy import BrokerPolicy
from .broker.service_tokens import ServiceTokenPolicy
from .broker.tokens import TokenProvider

log = logging.getLogger(__name__)


class _Repositories:
    tasks: TaskRepository
    events: EventRepository
    costs: CostRepository
    budgets: BudgetRepository
    audits: AuditRepository
    broker: BrokerRepository
    jobs: JobRepository
    idempotency: IdempotencyRepository
    credentials: CredentialRepository
    sync_state: SyncStateRepository

    def _bind(self, scope: Scope, context: StoreContext) -> None:
        self.tasks = TaskRepository(scope, context)
        self.events = EventRepository(scope, context)
        self.costs = CostRepository(scope, context)
        self.budgets = BudgetRepository(scope, context)
        self.audits = AuditRepository(scope, context)
        self.broker = BrokerRepository(scope, context)
        self.jobs = JobRepository(scope, context)
        self.idempotency = IdempotencyRepository(scope, context)
        self.credentials = CredentialRepository(scope, context)
        self.sync_state = SyncStateRepository(scope, context)


class Transaction(_Repositories):
    """Repositories bound to one open transaction: everything commits together or not at all."""

    def __init__(self, backend: SqlBackend, conn: sa.Connection, context: StoreContext) -> None:
        self._bind(ConnectionScope(backend, conn), context)


class Store(_Repositories):
    """The state store. Calls on ``store.tasks``, ``.events``, ``.broker`` and ``.jobs`` are
    each their own transaction; ``with store.transaction() as tx`` groups several into one."""

    def __init__(self, backend: SqlBackend, *, id_prefix: str = DEFAULT_PREFIX) -> None:
        self.backend = backend
        self.id_prefix = check_prefix(id_prefix)
        self._context = StoreContext(backend=backend, id_prefix=self.id_prefix)
        self._bind(BackendScope(backend), self._context)
        self.changes = backend.changes  # lobstore.notify: wakes followers when any replica commits

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Commit on a clean exit, roll back if the block raises."""
        with self.backend.writing() as conn:
            yield Transaction(self.backend, conn, self._context)

    # -- what the embedding daemon plugs in ----------------------------------------------------
    def set_token_provider(self, provider: TokenProvider | None) -> None:
        """Where ``broker.issue_token`` gets tokens (None: tokens are refused with a 503)."""
        if provider is not None and not isinstance(provider, TokenProvider):
            raise ConfigurationError(f"a token provider needs an issue(repos) method, got {provider!r}")
        self._context.attachments.token_provider = provider

    def set_job_runner(self, runner: JobRunner | None) -> None:
        """What ``jobs.trigger`` asks to run a job (None: triggers are refused with a 503)."""
        if runner is not None and not isinstance(runner, JobRunner):
            raise ConfigurationError(f"a job runner needs a trigger(name) method, got {runner!r}")
        self._context.attachments.job_runner = runner

    def set_broker_policy(self, policy: BrokerPolicy | None) -> None:
        """Which repositories tasks may be registered for, token permissions per lobster type,
        and which services may have tokens (None: the defaults; see lobstore.broker.policy)."""
        if policy is not None and not isinstance(policy, BrokerPolicy):
            raise ConfigurationError(f"a broker policy is a lobstore.broker.policy.BrokerPolicy, got {policy!r}")
        self._context.attachments.broker_policy = policy
        self._context.attachments.service_policy = (policy or BrokerPolicy()).service_policy

    def set_service_policy(self, policy: ServiceTokenPolicy) -> None:
        """Which services ``broker.issue_service_token`` serves, for which repositories."""
        if not isinstance(policy, ServiceTokenPolicy):
            raise ConfigurationError(f"a service token policy must be a ServiceTokenPolicy, got {policy!r}")
        self._context.attachments.service_policy = policy

    def set_observer(self, observer: StoreObserver | None) -> None:
        """Who hears about write-lock waits, tokens and job runs (the metrics of ``lobstore
        serve``); None: nobody."""
        observer = observer or StoreObserver()
        self._context.attachments.observer = observer
        self.backend.on_write_wait = observer.write_lock_waited

    def set_registration_ttl(self, ttl: timedelta) -> None:
        """How long a new broker registration lives before it expires (default 24 h)."""
        if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
            raise ConfigurationError(f"the registration TTL must be a positive timedelta, got {ttl!r}")
        self._context.attachments.registration_ttl = ttl

    def set_lifecycle(self, settings: LifecycleSettings) -> None:
        """The lifecycle clock's thresholds: default lease, re-queue window, timeouts, ..."""
        if not isinstance(settings, LifecycleSettings):
            raise ConfigurationError(f"lifecycle settings are a lobstore.lifecycle.settings.LifecycleSettings, "
                                     f"got {settings!r}")
        self._context.attachments.lifecycle = settings

    @property
    def lifecycle(self) -> LifecycleSettings:
        return self._context.attachments.lifecycle

    def set_clock(self, clock: Callable[[], datetime] | None) -> None:
        """What the lifecycle clock reads the time from: None (the default) is the database's
        clock; tests pass a fake one."""
        self._context.attachments.clock = clock

    @property
    def token_provider(self) -> TokenProvider | None:
        return self._context.attachments.token_provider

    @property
    def job_runner(self) -> JobRunner | None:
        return self._context.attachments.job_runner

    @property
    def migrations(self) -> MigrationRunner:
        return MigrationRunner(self.backend)

    def schema_version(self) -> int:
        return self.migrations.current_version()

    def describe(self) -> dict[str, Any]:
        """What /health and `lobstore info` show about the database."""
        return {**self.backend.describe(), "schema_version": self.schema_version()}

    def size_bytes(self) -> int:
        """The room the database takes, in bytes (0 when the backend cannot tell)."""
        return self.backend.size_bytes() or 0

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
    read_only: bool = False,
) -> Store:
    """Open the store at ``url`` (``sqlite:///lobwife.db``, ``sqlite://`` for a private
    in-memory store, ``postgresql://user@host/db``) or on a ready SQLAlchemy Engine.

    Pending migrations are applied unless ``migrate=False``, in which case a database that is
    not at this code's schema version is refused with SchemaVersionError. A database newer
    than the code is always refused. ``read_only=True`` (for commands that only look) never
    creates or migrates: a missing database is a MissingDatabaseError, and writes fail.
    """
    if url is None or isinstance(url, sa.Engine):
        backend = backend_for("sqlite://" if url is None else url)
    else:
        backend = backend_for(url, read_only=read_only)
    try:
        runner = MigrationRunner(backend)
        if migrate and not read_only:
            for migration in runner.apply():
                log.info("applied migration %s", migration.label)
        else:
            runner.check()
        return Store(backend, id_prefix=id_prefix)
    except BaseException:
        backend.close()
        raise
