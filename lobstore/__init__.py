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
    LobstoreError,
    MigrationError,
    NotFoundError,
    SchemaVersionError,
    StorageError,
    ValidationError,
)
from .models import Task, TaskEvent, TaskUpdate
from .store import Store, Transaction, open_store

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "ConflictError",
    "IdempotencyKeyReusedError",
    "InvalidTransitionError",
    "LobstoreError",
    "MigrationError",
    "NotFoundError",
    "SchemaVersionError",
    "StorageError",
    "Store",
    "Task",
    "TaskEvent",
    "TaskUpdate",
    "Transaction",
    "ValidationError",
    "__version__",
    "open_store",
]
