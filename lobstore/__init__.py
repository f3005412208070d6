"""lobstore: the state store of the lob agent fleet.

    from lobstore import open_store
    store = open_store("sqlite:///lobwife.db")
    task = store.tasks.create(name="Unity UI overhaul", type="swe", actor="lobboss")

The names below are imported on first use (PEP 562), so ``import lobstore.client`` on a
lobster image without SQLAlchemy costs nothing and fails nothing: the client is stdlib-only.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "AuthenticationError": "errors",
    "ConfigurationError": "errors",
    "ConflictError": "errors",
    "ForbiddenError": "errors",
    "IdempotencyKeyReusedError": "errors",
    "InvalidTransitionError": "errors",
    "JobRunningError": "errors",
    "LobstoreError": "errors",
    "MigrationError": "errors",
    "MissingDatabaseError": "errors",
    "NoJobRunnerError": "errors",
    "NoTokenProviderError": "errors",
    "NotConfiguredError": "errors",
    "NotFoundError": "errors",
    "RepositoryNotAllowedError": "errors",
    "SchemaVersionError": "errors",
    "StorageError": "errors",
    "TokenProviderError": "errors",
    "TokenRefusedError": "errors",
    "UnavailableError": "errors",
    "ValidationError": "errors",
    "AuditFinding": "models",
    "AuditRunResult": "models",
    "BrokerRegistration": "models",
    "CostEvent": "models",
    "CostSummary": "models",
    "CostTotals": "models",
    "Credential": "models",
    "IssuedCredential": "models",
    "IssuedToken": "models",
    "JobState": "models",
    "ModelPrice": "models",
    "Task": "models",
    "TaskCosts": "models",
    "TaskEvent": "models",
    "TaskUpdate": "models",
    "TokenAuditEntry": "models",
    "Store": "store",
    "Transaction": "store",
    "open_store": "store",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # found once; later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # what type checkers and IDEs see; nothing here runs
    from .errors import (
        AuthenticationError,
        ConfigurationError,
        ConflictError,
        ForbiddenError,
        IdempotencyKeyReusedError,
        InvalidTransitionError,
        JobRunningError,
        LobstoreError,
        MigrationError,
        MissingDatabaseError,
        NoJobRunnerError,
        NoTokenProviderError,
        NotConfiguredError,
        NotFoundError,
        RepositoryNotAllowedError,
        SchemaVersionError,
        StorageError,
        TokenProviderError,
        TokenRefusedError,
        UnavailableError,
        ValidationError,
    )
    from .models import (
        AuditFinding,
        AuditRunResult,
        BrokerRegistration,
        CostEvent,
        CostSummary,
        CostTotals,
        Credential,
        IssuedCredential,
        IssuedToken,
        JobState,
        ModelPrice,
        Task,
        TaskCosts,
        TaskEvent,
        TaskUpdate,
        TokenAuditEntry,
    )
    from .store import Store, Transaction, open_store
