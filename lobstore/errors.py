"""The errors lobstore raises. Everything derives from :class:`LobstoreError`.

Driver exceptions (sqlite3, psycopg, SQLAlchemy) are converted where they leave a
backend, so callers only ever need to catch these.
"""

from __future__ import annotations

from typing import Any


class LobstoreError(Exception):
    """Root of every lobstore error. ``code`` is a stable machine-readable name."""

    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.message, "code": self.code, **self.details}


class NotFoundError(LobstoreError):
    code = "not_found"


class ValidationError(LobstoreError):
    """Input that can never succeed as given; ``field`` names the culprit."""

    code = "invalid"

    def __init__(self, message: str, field: str | None = None, **details: Any) -> None:
        if field is not None:
            details["field"] = field
        super().__init__(message, **details)
        self.field = field


class IdempotencyKeyReusedError(ValidationError):
    """An Idempotency-Key sent again with a different request: it cannot be the same write."""

    code = "idempotency_key_reused"


class ConflictError(LobstoreError):
    """The request is valid but collides with the current state (stale version, duplicate)."""

    code = "conflict"


class InvalidTransitionError(ConflictError):
    """A status change the status machine does not allow; ``allowed`` lists what would be."""

    code = "invalid_transition"

    def __init__(self, current: str, requested: str, allowed: list[str], *, overridable: bool = True,
                 **details: Any) -> None:
        targets = ", ".join(allowed) if allowed else "none (it is terminal)"
        # Said in the request's own terms: most callers send JSON (the library's force=True
        # is the same switch).
        hint = ' (to override, send "force": true)' if overridable else ""
        super().__init__(
            f"cannot move a task from {current!r} to {requested!r}; allowed from {current!r}: "
            f"{targets}{hint}",
            current=current,
            requested=requested,
            allowed=allowed,
            **details,
        )
        self.current = current
        self.requested = requested
        self.allowed = allowed


class ConfigurationError(LobstoreError):
    code = "configuration"


class MissingDatabaseError(ConfigurationError):
    """A command that only reads was pointed at a database that does not exist; nothing was
    created."""

    code = "missing_database"


class StorageError(LobstoreError):
    """The database failed in a way the caller cannot fix by changing the request."""

    code = "storage"


class MigrationError(LobstoreError):
    code = "migration"


class SchemaVersionError(MigrationError):
    """The database schema is not the one this code expects (ahead, or behind and not migrated)."""

    code = "schema_version"


class TokenRefusedError(LobstoreError):
    """The broker will not issue a token for this task (HTTP 403): it is not registered, its
    registration was deregistered or has expired, or the task has ended. ``reason`` says which:
    ``not_registered``, ``deregistered``, ``expired`` or ``terminal``."""

    code = "token_refused"

    def __init__(self, message: str, reason: str, **details: Any) -> None:
        super().__init__(message, reason=reason, **details)
        self.reason = reason


class UnavailableError(LobstoreError):
    """A service the request needs is missing or failing (HTTP 503); retrying later may work."""

    code = "unavailable"


class NotConfiguredError(UnavailableError):
    """The request needs a part this server was not started with (e.g. the vault sync)."""

    code = "not_configured"


class NoTokenProviderError(NotConfiguredError):
    """No token provider is configured (e.g. no GH_APP_ID), so no token can be issued."""

    code = "no_token_provider"


class TokenProviderError(UnavailableError):
    """The token provider (GitHub) failed. ``upstream_status`` is GitHub's HTTP status (None when
    it could not be reached) and ``reason`` a short reason from its answer."""

    code = "token_provider_failed"

    def __init__(self, message: str, upstream_status: int | None, reason: str, **details: Any) -> None:
        super().__init__(message, upstream_status=upstream_status, reason=reason, **details)
        self.upstream_status = upstream_status
        self.reason = reason


class NoJobRunnerError(NotConfiguredError):
    """No job runner (the embedding daemon's scheduler) is attached, so jobs cannot be triggered."""

    code = "no_job_runner"


class JobRunningError(ConflictError):
    """The job is already running (HTTP 409)."""

    code = "job_running"


class AuthenticationError(LobstoreError):
    """No credential, or one that is unknown, revoked or expired (HTTP 401). ``reason`` says
    which: ``missing``, ``malformed``, ``unknown``, ``revoked`` or ``expired``."""

    code = "unauthenticated"

    def __init__(self, message: str, reason: str, **details: Any) -> None:
        super().__init__(message, reason=reason, **details)
        self.reason = reason


class ForbiddenError(LobstoreError):
    """The caller is known but may not do this (HTTP 403): a scope it lacks, another task's
    data, or what the broker policy refuses."""

    code = "forbidden"


class RepositoryNotAllowedError(ForbiddenError):
    """The broker policy refuses a repository: outside the allow-list, or owned by someone
    other than the GitHub App installation's owner. ``repos`` lists the refused ones."""

    code = "repository_not_allowed"


class TooManyFailuresError(LobstoreError):
    """Too many bad credentials from one address: wait ``retry_after`` seconds (HTTP 429)."""

    code = "too_many_failures"

    def __init__(self, message: str, retry_after: int, **details: Any) -> None:
        super().__init__(message, retry_after=retry_after, **details)
        self.retry_after = retry_after


class RepositoryChangeRefusedError(ForbiddenError):
    """Registering a task that already received tokens for other repositories needs an admin
    credential (HTTP 403): tokens were minted for what it named first."""

    code = "repository_change_refused"
