"""API credentials: the scopes a credential may hold, and how secrets are made and kept.

A secret is 32 random bytes from :mod:`secrets` (URL-safe base64) behind a recognisable prefix
(``lbs_`` for a named credential, ``lbt_`` for a task credential) so secret scanners and
people can tell one when they see it in a log or a commit. The store keeps only its SHA-256
hash: a high-entropy random secret cannot be guessed from its hash, so the slow password
hashes (bcrypt, scrypt) that protect low-entropy passwords would only cost time on every
request here.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable

READ, WRITE, BROKER, ADMIN = "read", "write", "broker", "admin"
SCOPES: tuple[str, ...] = (READ, WRITE, BROKER, ADMIN)
SCOPE_HELP = {
    READ: "every GET: tasks, events, costs, audits, jobs, broker state",
    WRITE: "tasks, events, costs and audits (implies read)",
    BROKER: "token broker registrations, deregistrations and task tokens (implies read)",
    ADMIN: "jobs, prices, the sync trigger, service tokens and credentials (implies all)",
}
# What holding a scope also grants: a writer must read what it writes (ETags, ids), lobboss
# registering a task reads its state, and an administrator may do anything.
IMPLIES: dict[str, frozenset[str]] = {
    ADMIN: frozenset(SCOPES),
    WRITE: frozenset({WRITE, READ}),
    BROKER: frozenset({BROKER, READ}),
    READ: frozenset({READ}),
}

SECRET_PREFIX = "lbs_"  # a named credential (lobboss, cron scripts, people)
TASK_SECRET_PREFIX = "lbt_"  # a task credential (one lobster, one task)
SECRET_BYTES = 32
# The prefix, then URL-safe base64 of the random bytes: what a well-formed secret looks like.
SECRET_RE = re.compile(r"^lb[st]_[A-Za-z0-9_-]{43}$")
TASK_NAME_PREFIX = "task:"  # task credentials are named task:T42; people cannot use a colon


def effective_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Every scope the given ones grant, implied ones included."""
    granted: set[str] = set()
    for scope in scopes:
        granted |= IMPLIES.get(scope, frozenset())
    return frozenset(granted)


def new_secret(prefix: str = SECRET_PREFIX) -> str:
    return prefix + secrets.token_urlsafe(SECRET_BYTES)


def secret_hash(secret: str) -> str:
    """What the store keeps of a secret (hex SHA-256)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def looks_like_secret(value: str) -> bool:
    """Whether ``value`` has the shape of a secret this module makes (checked before any
    database lookup: anything else is refused without a query)."""
    return bool(SECRET_RE.match(value))


def task_credential_name(ref: str) -> str:
    return f"{TASK_NAME_PREFIX}{ref}"
