"""API credentials: made with their secret shown once, kept as a hash, checked per request.

A named credential (``lobstore credentials create lobboss --scope write``) holds scopes and
an optional expiry. A task credential is made by the broker registration of a task and acts
for that task alone; it is valid while the task's registration is active and unexpired, and
it is revoked when the registration ends (so re-registering an ended task never revives the
credentials of the lobster it had before).

Checking a secret is one indexed read (by hash; the hash found is compared again in constant
time), and a good answer is remembered for :data:`CACHE_FOR` (5 s): the HTTP API checks every
request, and the read cost as much as a request for one task. A revocation or an ended
registration in this process clears that memory at once; one made elsewhere (the CLI, another
replica) is seen within those 5 s. ``last_used_at`` is written at most once a minute per
credential, never on every request: a write per call would serialise reads behind SQLite's
one writer.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..clock import to_iso, utcnow
from ..credentials import (
    SCOPES,
    SECRET_PREFIX,
    TASK_NAME_PREFIX,
    TASK_SECRET_PREFIX,
    looks_like_secret,
    new_secret,
    secret_hash,
    task_credential_name,
)
from ..errors import AuthenticationError, ConflictError, LobstoreError, NotFoundError, ValidationError
from ..models import Credential, IssuedCredential
from ..schema import broker_tasks, credentials
from ..validation import TIME_SCHEMA, clean_fields, enum_schema, field, text, timestamp, with_positional
from .base import Repository, StoreContext, task_row

log = logging.getLogger(__name__)

TOUCH_EVERY = timedelta(minutes=1)  # how stale last_used_at may grow before it is written
CACHE_FOR = timedelta(seconds=5)  # how long a good check is remembered (see the module's doc)
CACHE_LIMIT = 10_000  # credentials remembered at once; beyond that the memory starts afresh
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
ACTIVE_REGISTRATION = "active"


def credential_name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            "must be 1-64 letters, digits, '-', '_', '.' or '@', starting with a letter or digit "
            f"(e.g. lobboss, cron-audits), got {value!r}"
        )
    return value


def scope_list(value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"must be a non-empty list of scopes ({', '.join(SCOPES)}), got {value!r}")
    unknown = [scope for scope in value if scope not in SCOPES]
    if unknown:
        raise ValueError(f"include {unknown[0]!r}, which is not a scope (known: {', '.join(SCOPES)})")
    return [scope for scope in SCOPES if scope in value]  # one order, no repeats


def future_time(value: Any) -> datetime | None:
    moment = timestamp(value)
    if moment is not None and moment <= utcnow():
        raise ValueError(f"must be in the future, got {to_iso(moment)}")
    return moment


# What a new credential is made of (the HTTP API's request body and OpenAPI derive from it).
CREATE_CLEANERS = {
    "name": field(credential_name, {"type": "string", "pattern": _NAME_RE.pattern, "example": "lobboss"},
                  "who holds it; unique among live credentials").require(),
    "scopes": field(scope_list, {"type": "array", "minItems": 1, "items": enum_schema(SCOPES)},
                    "what it may do: read, write, broker, admin").require(),
    "expires_at": field(future_time, {**TIME_SCHEMA, "nullable": True}, "when it stops working (default: never)"),
}
CREATED_BY = {"created_by": text(200)}

# Built once (values bound per call), so SQLAlchemy compiles each a single time.
_BY_HASH = (
    sa.select(
        credentials,
        broker_tasks.c.status.label("registration_status"),
        broker_tasks.c.expires_at.label("registration_expires_at"),
    )
    .select_from(credentials.outerjoin(broker_tasks, broker_tasks.c.task_id == credentials.c.task_id))
    .where(credentials.c.secret_hash == sa.bindparam("secret_hash"))
)
_LIVE_BY_NAME = sa.select(credentials).where(
    credentials.c.name == sa.bindparam("name"), credentials.c.revoked_at.is_(None), credentials.c.task_id.is_(None)
)
_TOUCH = (
    sa.update(credentials)
    .where(
        credentials.c.id == sa.bindparam("match_id"),
        sa.or_(credentials.c.last_used_at.is_(None), credentials.c.last_used_at <= sa.bindparam("stale_before")),
    )
    .values(last_used_at=sa.bindparam("now"))
)
_REVOKE_TASK = (
    sa.update(credentials)
    .where(credentials.c.task_id == sa.bindparam("match_task_id"), credentials.c.revoked_at.is_(None))
    .values(revoked_at=sa.bindparam("now"))
)


class CredentialCache:
    """Good checks by secret hash, each until its time is up. Bounded; thread-safe."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Credential, datetime]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str, now: datetime) -> Credential | None:
        with self._lock:
            entry = self._entries.get(digest)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def put(self, digest: str, credential: Credential, until: datetime) -> None:
        with self._lock:
            if len(self._entries) >= CACHE_LIMIT:
                self._entries.clear()
            self._entries[digest] = (credential, until)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def credential_cache(ctx: StoreContext) -> CredentialCache:
    attachments = ctx.attachments
    if attachments.credential_cache is None:
        attachments.credential_cache = CredentialCache()
    return attachments.credential_cache


def revoke_task_credentials(conn: sa.Connection, ctx: StoreContext, task_id: int) -> int:
    """Revoke every live credential of a task in the caller's transaction (the broker calls
    this when a registration ends). Returns how many were revoked."""
    revoked = conn.execute(_REVOKE_TASK, {"match_task_id": task_id, "now": utcnow()}).rowcount
    credential_cache(ctx).clear()
    return revoked


class CredentialRepository(Repository):
    def create(self, name: str | None = None, /, *, created_by: str | None = None, **fields: Any) -> IssuedCredential:
        """A new credential and its secret (shown once: the store keeps only a hash). Fields
        (:data:`CREATE_CLEANERS`): name (also positional), scopes (both required), expires_at.
        ``created_by``: who made it. A name already held by a live credential is a
        ConflictError; revoke that one first."""
        values = clean_fields(with_positional(dict(fields), name=name), CREATE_CLEANERS, "a credential")
        values.setdefault("expires_at", None)
        values.update(clean_fields({"created_by": created_by}, CREATED_BY, "a credential"))
        secret = new_secret(SECRET_PREFIX)
        with self._scope.writing() as conn:
            try:
                with conn.begin_nested():  # the unique index decides, not a look beforehand
                    row = self._insert(conn, {**values, "secret_hash": secret_hash(secret), "task_id": None})
            except sa.exc.IntegrityError:
                raise ConflictError(
                    f"a live credential is already named {values['name']!r}: revoke it first "
                    f"(lobstore credentials revoke {values['name']}) or choose another name",
                    field="name", name=values["name"],
                ) from None
        log.info("credential %r created with scopes %s", values["name"], ", ".join(values["scopes"]))
        return IssuedCredential(self._credential(row), secret)

    def create_for_task(self, task: object, *, created_by: str | None = None) -> IssuedCredential:
        """A task credential for ``task``: it acts for that task only and is valid while the
        task's broker registration is active and unexpired. Call it in the transaction that
        registers the task."""
        created_by = clean_fields({"created_by": created_by}, CREATED_BY, "a credential")["created_by"]
        secret = new_secret(TASK_SECRET_PREFIX)
        with self._scope.writing() as conn:
            task_id = task_row(conn, task, self._ctx).id
            row = self._insert(conn, {
                "name": task_credential_name(self._ctx.ref(task_id)), "scopes": [], "expires_at": None,
                "created_by": created_by, "secret_hash": secret_hash(secret), "task_id": task_id,
            })
        return IssuedCredential(self._credential(row), secret)

    def authenticate(self, secret: str) -> Credential:
        """The credential whose secret this is, if it may be used now; AuthenticationError
        (with ``reason`` unknown, revoked or expired) otherwise. Never logs the secret."""
        if not isinstance(secret, str) or not looks_like_secret(secret):
            raise AuthenticationError("the credential is not one this server issued", reason="unknown")
        digest = secret_hash(secret)
        cache = credential_cache(self._ctx)
        remembered = cache.get(digest, utcnow())
        if remembered is not None:
            return remembered
        with self._scope.reading() as conn:
            row = conn.execute(_BY_HASH, {"secret_hash": digest}).first()
        # The index found the row by hash; comparing again in constant time costs nothing and
        # keeps the check itself free of timing differences.
        if row is None or not hmac.compare_digest(row.secret_hash, digest):
            raise AuthenticationError("the credential is not one this server issued", reason="unknown")
        now = utcnow()
        credential = self._credential(row)
        if row.revoked_at is not None:
            raise AuthenticationError(f"credential {row.name!r} was revoked", reason="revoked", name=row.name)
        if row.expires_at is not None and row.expires_at <= now:
            raise AuthenticationError(f"credential {row.name!r} expired at {to_iso(row.expires_at)}",
                                      reason="expired", name=row.name)
        if row.task_id is not None and (
            row.registration_status != ACTIVE_REGISTRATION
            or row.registration_expires_at is None or row.registration_expires_at <= now
        ):
            raise AuthenticationError(
                f"credential {row.name!r} ended with its task's broker registration", reason="expired", name=row.name
            )
        if row.last_used_at is None or row.last_used_at <= now - TOUCH_EVERY:
            self._touch(row.id, now)
        # Remembered no longer than the credential (or its task's registration) lives.
        ends = [moment for moment in (row.expires_at, row.registration_expires_at) if moment is not None]
        cache.put(digest, credential, min([now + CACHE_FOR, *ends]))
        return credential

    def get(self, name: str) -> Credential:
        """The live credential named ``name``; NotFoundError if there is none."""
        with self._scope.reading() as conn:
            row = conn.execute(_LIVE_BY_NAME, {"name": name}).first()
        if row is None:
            raise NotFoundError(f"no live credential named {name!r}", name=name)
        return self._credential(row)

    def list(self, *, include_revoked: bool = False, include_tasks: bool = False) -> list[Credential]:
        """Credentials in the order they were made: live named ones, unless asked for revoked
        ones and task credentials too."""
        query = sa.select(credentials).order_by(credentials.c.id)
        if not include_revoked:
            query = query.where(credentials.c.revoked_at.is_(None))
        if not include_tasks:
            query = query.where(credentials.c.task_id.is_(None))
        with self._scope.reading() as conn:
            return [self._credential(row) for row in conn.execute(query)]

    def revoke(self, name: str) -> list[Credential]:
        """Revoke the live credential ``name`` — or, for ``task:T42``, every live credential of
        that task. Returns what was revoked; NotFoundError when nothing live has that name."""
        if not isinstance(name, str) or not name:
            raise ValidationError("name the credential to revoke", field="name")
        now = utcnow()
        with self._scope.writing() as conn:
            if name.startswith(TASK_NAME_PREFIX):
                task_id = task_row(conn, name[len(TASK_NAME_PREFIX):], self._ctx).id
                where = sa.and_(credentials.c.task_id == task_id, credentials.c.revoked_at.is_(None))
            else:
                where = sa.and_(credentials.c.name == name, credentials.c.task_id.is_(None),
                                credentials.c.revoked_at.is_(None))
            rows = conn.execute(
                sa.update(credentials).where(where).values(revoked_at=now).returning(*credentials.c)
            ).all()
            credential_cache(self._ctx).clear()
        credential_cache(self._ctx).clear()  # again once committed: no check in between remembers it
        if not rows:
            raise NotFoundError(f"no live credential named {name!r}", name=name)
        log.info("credential %r revoked", name)
        return [self._credential(row) for row in sorted(rows, key=lambda r: r.id)]

    def forget_checks(self) -> None:
        """Forget the good checks remembered for the next 5 s, e.g. after credentials or
        registrations were changed behind the store's back (a script, a test)."""
        credential_cache(self._ctx).clear()

    # -- helpers ----------------------------------------------------------------------------------
    def _insert(self, conn: sa.Connection, values: dict[str, Any]) -> sa.Row:
        row = {"created_at": utcnow(), "last_used_at": None, "revoked_at": None, **values}
        (new_id,) = self._ctx.backend.insert_many(conn, credentials, [row])
        return conn.execute(sa.select(credentials).where(credentials.c.id == new_id)).one()

    def _touch(self, credential_id: int, now: datetime) -> None:
        """Record the use; a failure here is logged and never fails the request it came with."""
        try:
            with self._scope.writing() as conn:
                conn.execute(_TOUCH, {"match_id": credential_id, "stale_before": now - TOUCH_EVERY, "now": now})
        except LobstoreError as exc:
            log.warning("could not record the use of credential %d: %s", credential_id, exc)

    def _credential(self, row: sa.Row) -> Credential:
        return Credential(
            id=row.id, name=row.name, scopes=tuple(row.scopes or ()), created_at=row.created_at,
            task_id=row.task_id, task_ref=None if row.task_id is None else self._ctx.ref(row.task_id),
            created_by=row.created_by, expires_at=row.expires_at, last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )
