"""One repository per aggregate. Each reaches the database through a scope: the store's (every
call its own transaction) or an open transaction's (every call inside it)."""

from .base import Attachments, Scope, StoreContext
from .broker import BrokerRepository
from .events import EventRepository
from .jobs import JobRepository, JobRunner
from .tasks import TaskRepository

__all__ = [
    "Attachments", "BrokerRepository", "EventRepository", "JobRepository", "JobRunner", "Scope",
    "StoreContext", "TaskRepository",
]
