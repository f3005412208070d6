"""The token broker: registrations for repository access, their tokens and their audit.

A registration belongs to a task (one per task), or — lobwife's fallback for an id that names
no task, such as ``verify-test`` — stands alone under that name. Every action (registration,
deregistration, expiry, issued token) writes a ``token_audit`` row, and for a task an event,
in the same transaction as the change itself. Tokens are minted by the store's token provider
(see :mod:`lobstore.broker.tokens`) and never written to the database, the audit trail, the
event trail or the log.

One repository (``store.broker``) in three rooms: :mod:`.registrations`, :mod:`.issuing`
(tokens for registrations and services) and :mod:`.audit` (the trail, and the JSON import).
"""

from __future__ import annotations

from .audit import BrokerAudit
from .common import (
    ACTIVE,
    AUDIT_ACTIONS,
    DEREGISTER_CLEANERS,
    DEREGISTERED,
    EXPIRED,
    REGISTER_CLEANERS,
    REGISTRATION_SCHEMA,
    REGISTRATION_STATUSES,
    TOKEN_CLEANERS,
    TOKEN_REQUEST,
    end_registration,
)
from .issuing import SERVICE_TOKEN_REQUEST, BrokerTokens
from .registrations import BROKER_FIELDS, TASK_FIELD_CLEANERS, BrokerRegistrations

__all__ = [
    "ACTIVE", "AUDIT_ACTIONS", "BROKER_FIELDS", "BrokerRepository", "DEREGISTERED", "DEREGISTER_CLEANERS",
    "EXPIRED", "REGISTER_CLEANERS", "REGISTRATION_SCHEMA", "REGISTRATION_STATUSES", "SERVICE_TOKEN_REQUEST",
    "TASK_FIELD_CLEANERS", "TOKEN_CLEANERS", "TOKEN_REQUEST", "end_registration",
]


class BrokerRepository(BrokerRegistrations, BrokerTokens, BrokerAudit):
    """``store.broker``: register, issue tokens, keep the audit trail."""
