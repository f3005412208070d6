"""One repository per aggregate. Each reaches the database through a scope: the store's (every
call its own transaction) or an open transaction's (every call inside it)."""

from .audits import AuditRepository
from .base import Attachments, Scope, StoreContext
from .broker import BrokerRepository
from .budgets import BudgetRepository
from .costs import CostRepository
from .credentials import CredentialRepository
from .events import EventRepository
from .idempotency import IdempotencyRepository, StoredResponse
from .jobs import JobRepository, JobRunner
from .sync_state import SyncStateRepository
from .tasks import TaskRepository

__all__ = [
    "Attachments", "AuditRepository", "BrokerRepository", "BudgetRepository", "CostRepository", "CredentialRepository", "EventRepository",
    "IdempotencyRepository", "JobRepository", "JobRunner", "Scope", "StoreContext", "StoredResponse",
    "SyncStateRepository", "TaskRepository",
]
