"""lobstore: the state store of the lob agent fleet.

    from lobstore import open_store
    store = open_store("sqlite:///lobwife.db")
    task = store.tasks.create(name="Unity UI overhaul", type="swe", actor="lobboss")
"""

from .errors import (
    ConfigurationError,
    ConflictError,
    IdempotencyKeyReusedError,
    InvalidTransitionError,
    JobRunningError,
    LobstoreError,
    MigrationError,
    NoJobRunnerError,
    NoTokenProviderError,
    NotConfiguredError,
    NotFoundError,
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

__version__ = "0.1.0"

__all__ = [
    "AuditFinding",
    "AuditRunResult",
    "BrokerRegistration",
    "ConfigurationError",
    "ConflictError",
    "CostEvent",
    "CostSummary",
    "CostTotals",
    "IdempotencyKeyReusedError",
    "InvalidTransitionError",
    "IssuedToken",
    "JobRunningError",
    "JobState",
    "LobstoreError",
    "MigrationError",
    "ModelPrice",
    "NoJobRunnerError",
    "NoTokenProviderError",
    "NotConfiguredError",
    "NotFoundError",
    "SchemaVersionError",
    "StorageError",
    "Store",
    "Task",
    "TaskCosts",
    "TaskEvent",
    "TaskUpdate",
    "TokenAuditEntry",
    "TokenProviderError",
    "TokenRefusedError",
    "Transaction",
    "UnavailableError",
    "ValidationError",
    "open_store",
    "__version__",
]
