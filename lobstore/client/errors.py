"""What the client raises: the server's refusals as lobstore's own error types, plus
UnavailableError when lobwife could not be reached at all."""

from __future__ import annotations

from typing import Any

from ..errors import (
    AuthenticationError,
    ConflictError,
    ForbiddenError,
    LobstoreError,
    NotFoundError,
    StorageError,
    ValidationError,
)


class APIError(LobstoreError):
    """The server answered with an error. ``status`` is the HTTP status; ``code`` and the
    message are the server's own (``{"error": ..., "code": ...}``)."""

    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        message = str(payload.get("error") or f"HTTP {status}")
        details = {k: v for k, v in payload.items() if k not in ("error", "code")}
        LobstoreError.__init__(self, message, **details)
        self.status = status
        self.code = str(payload.get("code") or "error")
        self.field = payload.get("field")
        self.payload = payload

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status}, {self.code})"


class APINotFoundError(APIError, NotFoundError):
    pass


class APIAuthenticationError(APIError, AuthenticationError):
    """401: no credential was sent (set $LOBSTORE_TOKEN), or it is unknown, revoked or expired."""

    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(status, payload)
        self.reason = str(payload.get("reason") or "")  # missing, malformed, unknown, revoked, expired


class APIForbiddenError(APIError, ForbiddenError):
    """403 from the access rules: the credential lacks the scope, or acts for another task."""


class APIConflictError(APIError, ConflictError):
    pass


class APIValidationError(APIError, ValidationError):
    pass


class APIServerError(APIError, StorageError):
    pass


class UnavailableError(LobstoreError):
    """lobwife could not be reached (connection refused or dropped, timeout, 502/503/504)
    after every retry."""

    code = "unavailable"


def api_error(status: int, payload: dict[str, Any]) -> APIError:
    if status == 401:
        return APIAuthenticationError(status, payload)
    if status == 403 and payload.get("code") == "forbidden":
        return APIForbiddenError(status, payload)
    if status == 404:
        return APINotFoundError(status, payload)
    if status == 409:
        return APIConflictError(status, payload)
    if status in (400, 413, 415, 422):
        return APIValidationError(status, payload)
    if status >= 500:
        return APIServerError(status, payload)
    return APIError(status, payload)
