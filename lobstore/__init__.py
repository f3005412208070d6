"""lobstore: the state store of the lob agent fleet.

    from lobstore import open_store
    store = open_store("sqlite:///lobwife.db")
    task = store.tasks.create(name="Unity UI overhaul", type="swe", actor="lobboss")
"""

from .errors import (
    ConfigurationError,
    ConflictError,
    InvalidTransitionError,
    JobRunningError,
    LobstoreError,
    MigrationError,
    NoJobRunnerError,
    NoTokenProviderError,
    NotFoundError,
    SchemaVersionError,
    StorageError,
    TokenProviderError,
    TokenRefusedError,
    UnavailableError,
    ValidationError,
)
from .models import BrokerRegistration, IssuedToken, JobState, Task, TaskEvent, TaskUpdate, TokenAuditEntry
from .store import Store, Transaction, open_store

__version__ = "0.1.0"

__all__ = [
    "BrokerRegistration",
    "ConfigurationError",
    "ConflictError",
    "InvalidTransitionError",
    "IssuedToken",
    "JobRunningError",
    "JobState",
    "LobstoreError",
    "MigrationError",
    "NoJobRunnerError",
    "NoTokenProviderError",
    "NotFoundError",
    "SchemaVersionError",
    "StorageError",
    "Store",
    "Task",
    "TaskEvent",
    "TaskUpdate",
    "TokenAuditEntry",
    "TokenProviderError",
    "TokenRefusedError",
    "Transaction",
    "UnavailableError",
    "ValidationError",
    "__version__",
    "open_store",
]
