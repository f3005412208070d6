"""One repository per aggregate. Each reaches the database through a scope: the store's (every
call its own transaction) or an open transaction's (every call inside it)."""

from .base import Scope, StoreContext
from .events import EventRepository
from .idempotency import IdempotencyRepository, StoredResponse
from .tasks import TaskRepository

__all__ = [
    "EventRepository", "IdempotencyRepository", "Scope", "StoreContext", "StoredResponse", "TaskRepository",
]
