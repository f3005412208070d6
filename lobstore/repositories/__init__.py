"""One repository per aggregate. Each reaches the database through a scope: the store's (every
call its own transaction) or an open transaction's (every call inside it)."""

from .audits import AuditRepository
from .base import Scope, StoreContext
from .costs import CostRepository
from .events import EventRepository
from .tasks import TaskRepository

__all__ = ["AuditRepository", "CostRepository", "EventRepository", "Scope", "StoreContext", "TaskRepository"]
