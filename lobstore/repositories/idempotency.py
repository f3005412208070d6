"""Idempotency keys: a write's response, kept so that a repeat of the write gets it back
instead of doing the work twice.

The claim and the response are written in the caller's transaction, together with the work
itself: a crash can never leave the work done without its response (or the reverse). A
concurrent repeat of the same key waits for the first transaction to end — on SQLite because
writers are serialised, on PostgreSQL because its insert blocks on the uncommitted row with the
same unique key — and then finds the stored response.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from ..clock import utcnow
from ..errors import ConflictError, IdempotencyKeyReusedError
from ..schema import idempotency_keys
from .base import Repository

log = logging.getLogger(__name__)

DEFAULT_TTL = timedelta(hours=24)
_CLAIM_ATTEMPTS = 3  # a stored row can vanish under us (expired and purged): claim again


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


def _scope(key: str, method: str, path: str) -> sa.ColumnElement[bool]:
    c = idempotency_keys.c
    return sa.and_(c.idempotency_key == key, c.method == method, c.path == path)


class IdempotencyRepository(Repository):
    def claim(
        self, key: str, method: str, path: str, request_hash: str, *, ttl: timedelta = DEFAULT_TTL
    ) -> StoredResponse | None:
        """Claim ``key`` for this request. ``None``: the key is new and now ours — do the work
        and :meth:`record` its response *in the same transaction*. A StoredResponse: the same
        request was done before; answer with it. IdempotencyKeyReusedError: the key was used
        with a different request.

        Use it inside ``with store.transaction() as tx``; on its own it would commit the claim
        without the work.
        """
        backend = self._ctx.backend
        with self._scope.writing() as conn:
            for _ in range(_CLAIM_ATTEMPTS):
                now = utcnow()
                row = {
                    "idempotency_key": key, "method": method, "path": path, "request_hash": request_hash,
                    "response_status": None, "response_headers": {}, "response_body": None,
                    "created_at": now, "expires_at": now + ttl,
                }
                if backend.insert_if_absent(conn, idempotency_keys, row):
                    return None
                stored = conn.execute(sa.select(idempotency_keys).where(_scope(key, method, path))).first()
                if stored is None:
                    continue  # purged between our insert and our read
                if stored.expires_at <= now:
                    # Expired but not yet cleaned up: the key is free again.
                    conn.execute(sa.delete(idempotency_keys).where(idempotency_keys.c.id == stored.id))
                    continue
                if stored.request_hash != request_hash:
                    raise IdempotencyKeyReusedError(
                        f"Idempotency-Key {key!r} was already used for a different {method} {path} "
                        "request: use a new key for a new request",
                        field="Idempotency-Key",
                    )
                if stored.response_status is None:
                    # Only the claiming transaction can see its unfinished row, so this is a bug.
                    raise ConflictError(f"Idempotency-Key {key!r} is still being processed")
                return StoredResponse(stored.response_status, stored.response_body or "",
                                      dict(stored.response_headers or {}))
        raise ConflictError(f"Idempotency-Key {key!r} could not be claimed; try again")

    def record(self, key: str, method: str, path: str, response: StoredResponse) -> None:
        """Store the response to a claimed key (in the claiming transaction)."""
        with self._scope.writing() as conn:
            done = conn.execute(
                sa.update(idempotency_keys).where(_scope(key, method, path)).values(
                    response_status=response.status,
                    response_headers=response.headers,
                    response_body=response.body,
                )
            )
            if done.rowcount != 1:
                raise ConflictError(f"Idempotency-Key {key!r} was not claimed by this transaction")

    def purge_expired(self, *, dry_run: bool = False) -> int:
        """Delete (or, in a dry run, count) every expired key; returns how many."""
        if dry_run:
            with self._scope.reading() as conn:
                return conn.execute(sa.select(sa.func.count()).select_from(idempotency_keys)
                                    .where(idempotency_keys.c.expires_at <= utcnow())).scalar_one()
        with self._scope.writing() as conn:
            removed = conn.execute(
                sa.delete(idempotency_keys).where(idempotency_keys.c.expires_at <= utcnow())
            ).rowcount
        if removed:
            log.info("removed %d expired idempotency keys", removed)
        return removed

    def count(self) -> int:
        with self._scope.reading() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(idempotency_keys)).scalar_one()
