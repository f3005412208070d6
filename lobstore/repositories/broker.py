"""The token broker: a task's registration for repository access, its tokens and their audit.

Every action (registration, deregistration, expiry, issued token) writes a ``token_audit`` row
and a task event in the same transaction as the change itself. Tokens are minted by the
store's token provider (see :mod:`lobstore.tokens`) and never written to the database, the
audit trail, the event trail or the log.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from .. import status as st
from ..clock import to_iso, utcnow
from ..errors import (
    ConflictError,
    NoTokenProviderError,
    NotFoundError,
    RepositoryChangeRefusedError,
    TokenRefusedError,
    ValidationError,
)
from ..ids import parse_ref
from ..models import BrokerRegistration, IssuedToken, TokenAuditEntry
from ..schema import broker_tasks, credentials, tasks, token_audit
from ..broker.policy import DEFAULT_PERMISSIONS, BrokerPolicy
from ..broker.tokens import TokenCache
from ..validation import clean_fields, identifier, repo_name, string_list, text, timestamp
from .base import Repository, StoreContext, task_row
from .credentials import revoke_task_credentials
from .events import check_limit, insert_event

log = logging.getLogger(__name__)

ACTIVE, DEREGISTERED, EXPIRED = "active", "deregistered", "expired"
REGISTRATION_STATUSES = (ACTIVE, DEREGISTERED, EXPIRED)
# The audit action names lobwife used, plus the expiry it never recorded.
TASK_REGISTERED, TASK_DEREGISTERED = "task_registered", "task_deregistered"
TOKEN_ISSUED, REGISTRATION_EXPIRED = "token_issued", "registration_expired"
AUDIT_ACTIONS = (TASK_REGISTERED, TASK_DEREGISTERED, TOKEN_ISSUED, REGISTRATION_EXPIRED)
DEFAULT_AUDIT_LIMIT = 500
DEFAULT_POLICY = BrokerPolicy()


def _required_repos(value: Any) -> list[str]:
    repos = string_list(repo_name)(value)
    if not repos:
        raise ValueError("is required: give at least one owner/repo")
    return repos


REGISTER_CLEANERS = {
    "repos": _required_repos,
    "lobster_type": lambda v: None if v is None else identifier("lobster type")(v),
    "actor": text(200),
}
ACTOR = {"actor": text(200), "reason": text(1000)}

# Built once, values bound per call (compiled once, then served from SQLAlchemy's cache).
_REGISTRATION = sa.select(broker_tasks).where(broker_tasks.c.task_id == sa.bindparam("task_id"))
_INSERT_REGISTRATION = sa.insert(broker_tasks)
_UPDATE_REGISTRATION = sa.update(broker_tasks).where(broker_tasks.c.task_id == sa.bindparam("match_task_id"))
_END_REGISTRATION = (
    sa.update(broker_tasks)
    .where(broker_tasks.c.task_id == sa.bindparam("match_task_id"), broker_tasks.c.status == ACTIVE)
    .values(status=sa.bindparam("new_status"))
)
_COUNT_TOKEN = (
    sa.update(broker_tasks)
    .where(broker_tasks.c.task_id == sa.bindparam("match_task_id"))
    .values(token_count=broker_tasks.c.token_count + 1)
)
_DUE = (
    sa.select(broker_tasks)
    .where(broker_tasks.c.status == ACTIVE, broker_tasks.c.expires_at <= sa.bindparam("now"))
    .order_by(broker_tasks.c.task_id)
)
_INSERT_AUDIT = sa.insert(token_audit)
_AUDIT_WITH_CREDENTIAL = sa.select(token_audit, credentials.c.name.label("credential_name")).select_from(
    token_audit.outerjoin(credentials, credentials.c.id == token_audit.c.credential_id)
)
_IMPORTED_AUDIT = sa.select(token_audit).where(token_audit.c.legacy_task_id.is_not(None))
_TASK_ID_BY_LEGACY = sa.select(tasks.c.id).where(tasks.c.legacy_id == sa.bindparam("legacy_id"))


def registration_from_row(row: sa.Row, ctx: StoreContext) -> BrokerRegistration:
    values = row._asdict()
    values["repos"] = tuple(values["repos"] or ())
    return BrokerRegistration(task_ref=ctx.ref(values["task_id"]), **values)


def insert_audit(
    conn: sa.Connection,
    task_id: int | None,
    repos: Sequence[str],
    action: str,
    *,
    created_at: datetime | None = None,
    legacy_task_id: str | None = None,
    credential_id: int | None = None,
) -> None:
    """Append one audit row in the caller's transaction (never with a token in it).
    ``credential_id``: the API credential that asked, when there was one."""
    conn.execute(_INSERT_AUDIT, {
        "task_id": task_id, "legacy_task_id": legacy_task_id, "repos": list(repos),
        "action": action, "created_at": created_at or utcnow(), "credential_id": credential_id,
    })


def end_registration(
    conn: sa.Connection,
    ctx: StoreContext,
    task_id: int,
    *,
    new_status: str = DEREGISTERED,
    actor: str | None = None,
    reason: str | None = None,
    credential_id: int | None = None,
) -> BrokerRegistration | None:
    """End an active registration in the caller's transaction: its audit row, its event and the
    cached token go with it. Returns the ended registration, or None if none was active.

    The task cancel path calls this too, so cancelling a task and deregistering it commit
    together.
    """
    row = conn.execute(_REGISTRATION, {"task_id": task_id}).first()
    if row is None or row.status != ACTIVE:
        return None
    conn.execute(_END_REGISTRATION, {"match_task_id": task_id, "new_status": new_status})
    repos = list(row.repos or ())
    expired = new_status == EXPIRED
    insert_audit(conn, task_id, repos, REGISTRATION_EXPIRED if expired else TASK_DEREGISTERED,
                 credential_id=credential_id)
    what = "registration expired" if expired else "deregistered from the token broker"
    insert_event(
        conn, ctx, task_id, "broker_deregistered",
        detail=f"{what}: {reason}" if reason else what, actor=actor,
        data={"repos": repos, "status": new_status, **({"reason": reason} if reason else {})},
    )
    _cache(ctx).forget(task_id)
    # The lobster's task credentials end with the registration: registering the task again
    # (a re-queued task, a new lobster) must not bring them back to life.
    revoke_task_credentials(conn, task_id)
    return replace(registration_from_row(row, ctx), status=new_status)


def _policy(ctx: StoreContext) -> BrokerPolicy:
    return ctx.attachments.broker_policy or DEFAULT_POLICY


def _known_owner(ctx: StoreContext) -> str | None:
    """The GitHub App installation's owner, if the provider knows it without asking."""
    return getattr(ctx.attachments.token_provider, "known_owner", None)


def _cache(ctx: StoreContext) -> TokenCache:
    attachments = ctx.attachments
    if attachments.token_cache is None:
        attachments.token_cache = TokenCache()
    return attachments.token_cache


class BrokerRepository(Repository):
    # -- registrations ------------------------------------------------------------------------
    def register(
        self,
        task: object,
        *,
        repos: Sequence[str] | None = None,
        lobster_type: str | None = None,
        actor: str | None = None,
        ttl: timedelta | None = None,
        credential_id: int | None = None,
        may_change_repos: bool = True,
    ) -> BrokerRegistration:
        """Register a task for access to ``repos`` (required) for ``ttl`` (default: the store's
        registration TTL, 24 h). Registering again renews it, with the repos given now; its
        token count carries on. An ended task (completed, failed, cancelled) is a ConflictError.
        ``credential_id`` is the API credential that asked (for the audit).

        The broker policy decides which repositories may be named (RepositoryNotAllowedError,
        403). With ``may_change_repos=False`` (a caller without the admin scope), a task that
        already received tokens cannot be registered for other repositories
        (RepositoryChangeRefusedError, 403).
        """
        values = clean_fields(
            {"repos": repos, "lobster_type": lobster_type, "actor": actor}, REGISTER_CLEANERS, "a registration"
        )
        _policy(self._ctx).check_repos(values["repos"], owner=_known_owner(self._ctx))
        ttl = self._ctx.attachments.registration_ttl if ttl is None else ttl
        if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
            raise ValidationError(f"ttl must be a positive timedelta, got {ttl!r}", field="ttl")
        now = utcnow()
        with self._scope.writing() as conn:
            row = task_row(conn, task, self._ctx, for_update=True)
            ref = self._ctx.ref(row.id)
            if row.status in st.TERMINAL:
                raise ConflictError(
                    f"{ref} is {row.status}: an ended task cannot be registered with the token broker",
                    task_id=ref, status=row.status,
                )
            registration = {
                "repos": values["repos"], "lobster_type": values["lobster_type"],
                "registered_at": now, "expires_at": now + ttl, "status": ACTIVE,
            }
            existing = conn.execute(_REGISTRATION, {"task_id": row.id}).first()
            if (existing is not None and existing.token_count and not may_change_repos
                    and sorted(existing.repos or ()) != sorted(values["repos"])):
                raise RepositoryChangeRefusedError(
                    f"{ref} already received {existing.token_count} token(s) for {', '.join(existing.repos)}: "
                    f"registering it for other repositories needs an admin credential",
                    task_id=ref, repos=list(existing.repos),
                )
            if existing is None:
                conn.execute(_INSERT_REGISTRATION, {"task_id": row.id, "token_count": 0, **registration})
            else:
                conn.execute(_UPDATE_REGISTRATION, {"match_task_id": row.id, **registration})
            insert_audit(conn, row.id, values["repos"], TASK_REGISTERED, credential_id=credential_id)
            kind = f" ({values['lobster_type']})" if values["lobster_type"] else ""
            insert_event(
                conn, self._ctx, row.id, "broker_registered",
                detail=f"registered with the token broker for {', '.join(values['repos'])}{kind}",
                actor=values["actor"],
                data={"repos": values["repos"], "lobster_type": values["lobster_type"],
                      "expires_at": to_iso(now + ttl), "renewed": existing is not None},
            )
            # A new registration may name other repos: never hand out a token minted for the old.
            _cache(self._ctx).forget(row.id)
            return registration_from_row(conn.execute(_REGISTRATION, {"task_id": row.id}).one(), self._ctx)

    def deregister(
        self, task: object, *, actor: str | None = None, reason: str | None = None, credential_id: int | None = None
    ) -> BrokerRegistration:
        """End a task's registration. A registration already ended is returned unchanged (and
        nothing is written); a task never registered is a NotFoundError."""
        options = clean_fields({"actor": actor, "reason": reason}, ACTOR, "a deregistration")
        with self._scope.writing() as conn:
            row = task_row(conn, task, self._ctx, for_update=True)
            ended = end_registration(conn, self._ctx, row.id, credential_id=credential_id, **options)
            if ended is not None:
                return ended
            return self._registration(conn, row.id)

    def get(self, task: object) -> BrokerRegistration:
        """A task's registration (whatever its status); NotFoundError if it was never registered."""
        with self._scope.reading() as conn:
            return self._registration(conn, task_row(conn, task, self._ctx).id)

    def list(self, *, status: str | None = None) -> list[BrokerRegistration]:
        """Every registration (or those with ``status``), in task order."""
        query = sa.select(broker_tasks).order_by(broker_tasks.c.task_id)
        if status is not None:
            if status not in REGISTRATION_STATUSES:
                raise ValidationError(
                    f"status must be one of {', '.join(REGISTRATION_STATUSES)}, got {status!r}", field="status"
                )
            query = query.where(broker_tasks.c.status == status)
        with self._scope.reading() as conn:
            return [registration_from_row(row, self._ctx) for row in conn.execute(query)]

    def expire(self, *, as_of: datetime | str | None = None, actor: str | None = None) -> list[BrokerRegistration]:
        """Mark every active registration whose time is up (at ``as_of``, default now) expired.

        The embedding daemon calls this periodically; a token is refused for an expired
        registration even before the sweep has recorded it.
        """
        values = clean_fields({"as_of": as_of, "actor": actor}, {"as_of": timestamp, "actor": text(200)}, "an expiry")
        now = values["as_of"] or utcnow()
        ended = []
        with self._scope.writing() as conn:
            for row in conn.execute(_DUE, {"now": now}).all():
                registration = end_registration(
                    conn, self._ctx, row.task_id, new_status=EXPIRED, actor=values["actor"],
                    reason=f"registered at {to_iso(row.registered_at)}, expired at {to_iso(row.expires_at)}",
                )
                if registration is not None:
                    ended.append(registration)
        if ended:
            log.info("expired %d broker registration(s): %s", len(ended), ", ".join(r.task_ref for r in ended))
        return ended

    # -- tokens ---------------------------------------------------------------------------------
    def issue_token(self, task: object, *, actor: str | None = None, credential_id: int | None = None) -> IssuedToken:
        """A token for the task's registered repos, reused until 5 minutes before it expires.

        Refused with TokenRefusedError (403) unless the task is registered, not expired and not
        ended; NoTokenProviderError (503) when no provider is attached; TokenProviderError (503)
        when the provider fails. Each token handed out counts in ``token_count`` and writes a
        ``token_issued`` audit row and event (the event says whether it was minted or reused).

        GitHub is called outside any write transaction (unless this is called on a
        ``store.transaction()``), so a slow GitHub never holds up other writers.
        """
        actor = clean_fields({"actor": actor}, {"actor": text(200)}, "a token request")["actor"]
        with self._scope.reading() as conn:
            registration = self._usable(conn, task)
        provider = self._ctx.attachments.token_provider
        if provider is None:
            raise NoTokenProviderError(
                "no token provider is configured: set GH_APP_ID, GH_APP_INSTALL_ID and GH_APP_PEM "
                "(or GH_APP_PEM_PATH) for lobwife's GitHub App"
            )
        # Again at issue time: the policy may be stricter than when the task was registered,
        # and GitHub must never be asked for what it does not allow.
        policy = _policy(self._ctx)
        policy.check_repos(registration.repos, owner=_known_owner(self._ctx))
        permissions = policy.permissions_for(registration.lobster_type)
        cache = _cache(self._ctx)
        key = (registration.registered_at, registration.repos)
        with cache.minting(registration.task_id):  # concurrent requests for one task mint once
            token = cache.get(registration.task_id, key)
            reused = token is not None
            if token is None:
                if permissions == DEFAULT_PERMISSIONS:
                    token = provider.issue(list(registration.repos))
                else:
                    token = provider.issue(list(registration.repos), permissions=permissions)
                cache.put(registration.task_id, key, token)
        with self._scope.writing() as conn:
            current = self._usable(conn, registration.task_id, for_update=True)
            if (current.registered_at, current.repos) != key:
                cache.forget(registration.task_id)
                raise ConflictError(
                    f"{current.task_ref} was registered again while its token was minted: ask again",
                    task_id=current.task_ref,
                )
            conn.execute(_COUNT_TOKEN, {"match_task_id": current.task_id})
            insert_audit(conn, current.task_id, current.repos, TOKEN_ISSUED, credential_id=credential_id)
            insert_event(
                conn, self._ctx, current.task_id, "token_issued",
                detail=f"token {'reused' if reused else 'issued'} for {', '.join(current.repos)}",
                actor=actor,
                data={"repos": list(current.repos), "expires_at": to_iso(token.expires_at), "reused": reused},
            )
        return token

    # -- audit ----------------------------------------------------------------------------------
    def audit(self, task: object = None, *, limit: int = DEFAULT_AUDIT_LIMIT) -> list[TokenAuditEntry]:
        """The newest ``limit`` (1-1000) audit entries, oldest first; only one task's if given.

        ``task`` may also be the old broker's name for a task this store does not hold (entries
        imported from token-audit.json keep it).
        """
        limit = check_limit(limit, DEFAULT_AUDIT_LIMIT)
        query = _AUDIT_WITH_CREDENTIAL
        with self._scope.reading() as conn:
            if task is not None:
                try:
                    query = query.where(token_audit.c.task_id == task_row(conn, task, self._ctx).id)
                except NotFoundError:
                    legacy = parse_ref(task, self._ctx.id_prefix).legacy_id
                    if legacy is None:
                        raise
                    query = query.where(token_audit.c.task_id.is_(None), token_audit.c.legacy_task_id == legacy)
            rows = conn.execute(query.order_by(token_audit.c.id.desc()).limit(limit)).all()
        return [self._audit_entry(row) for row in reversed(rows)]

    # -- import of lobwife's JSON state (see lobstore.json_import) ------------------------------
    def import_registration(
        self,
        task_id: int,
        *,
        repos: Sequence[str],
        lobster_type: str | None,
        registered_at: datetime,
        expires_at: datetime,
        status: str,
        token_count: int,
        source: str,
        actor: str | None = None,
    ) -> bool:
        """Attach an already-validated registration, as it was, to a task that has none.
        Returns False (and writes nothing) when the task already has one: imports are
        idempotent."""
        with self._scope.writing() as conn:
            if conn.execute(_REGISTRATION, {"task_id": task_id}).first() is not None:
                return False
            conn.execute(_INSERT_REGISTRATION, {
                "task_id": task_id, "repos": list(repos), "lobster_type": lobster_type,
                "registered_at": registered_at, "expires_at": expires_at, "status": status,
                "token_count": token_count,
            })
            insert_event(
                conn, self._ctx, task_id, "broker_registered",
                detail=f"broker registration ({status}, {token_count} tokens) imported from {source}",
                actor=actor,
                data={"repos": list(repos), "lobster_type": lobster_type, "status": status,
                      "registered_at": to_iso(registered_at), "token_count": token_count,
                      "imported_from": source},
            )
            return True

    def import_audit(self, entries: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Append already-validated old audit entries (``legacy_task_id``, ``repos``, ``action``,
        ``created_at``), linked to the task with that legacy id when there is one.

        Idempotent without losing genuine repeats: for each distinct entry, only as many copies
        are added as the store holds fewer than ``entries`` has. Returns (added, already there).
        """
        def key(legacy: str, action: str, created_at: datetime, repos: Sequence[str]) -> tuple[Any, ...]:
            return legacy, action, to_iso(created_at), tuple(repos)

        wanted = Counter(key(e["legacy_task_id"], e["action"], e["created_at"], e["repos"]) for e in entries)
        added = 0
        with self._scope.writing() as conn:
            stored = Counter(
                key(row.legacy_task_id, row.action, row.created_at, row.repos or ())
                for row in conn.execute(_IMPORTED_AUDIT)
            )
            links: dict[str, int | None] = {}
            for entry in entries:
                k = key(entry["legacy_task_id"], entry["action"], entry["created_at"], entry["repos"])
                if stored[k] >= wanted[k]:
                    continue
                stored[k] += 1
                legacy = entry["legacy_task_id"]
                if legacy not in links:
                    links[legacy] = conn.execute(_TASK_ID_BY_LEGACY, {"legacy_id": legacy}).scalar()
                insert_audit(
                    conn, links[legacy], entry["repos"], entry["action"],
                    created_at=entry["created_at"], legacy_task_id=legacy,
                )
                added += 1
        return added, len(entries) - added

    # -- helpers ----------------------------------------------------------------------------------
    def _audit_entry(self, row: sa.Row) -> TokenAuditEntry:
        ref = self._ctx.ref(row.task_id) if row.task_id is not None else row.legacy_task_id
        return TokenAuditEntry(
            id=row.id, task_ref=ref, repos=tuple(row.repos or ()), action=row.action, created_at=row.created_at,
            credential=row.credential_name,
        )

    def _registration(self, conn: sa.Connection, task_id: int) -> BrokerRegistration:
        row = conn.execute(_REGISTRATION, {"task_id": task_id}).first()
        if row is None:
            ref = self._ctx.ref(task_id)
            raise NotFoundError(f"{ref} is not registered with the token broker", task_id=ref)
        return registration_from_row(row, self._ctx)

    def _usable(self, conn: sa.Connection, task: object, *, for_update: bool = False) -> BrokerRegistration:
        """The task's registration if a token may be issued for it; TokenRefusedError otherwise."""
        try:
            row = task_row(conn, task, self._ctx, for_update=for_update)
        except NotFoundError as exc:
            # The old broker answered 403 for a task it did not know; callers rely on that.
            raise TokenRefusedError(f"{exc.message}: no token", reason="not_registered", task_id=str(task)) from None
        ref = self._ctx.ref(row.id)
        registration = conn.execute(_REGISTRATION, {"task_id": row.id}).first()
        if row.status in st.TERMINAL:
            raise TokenRefusedError(f"{ref} is {row.status}: no token for an ended task", reason="terminal", task_id=ref)
        if registration is None:
            raise TokenRefusedError(
                f"{ref} is not registered with the token broker: register it first", reason="not_registered", task_id=ref
            )
        if registration.status == DEREGISTERED:
            raise TokenRefusedError(f"{ref} was deregistered from the token broker", reason="deregistered", task_id=ref)
        if registration.status == EXPIRED or registration.expires_at <= utcnow():
            raise TokenRefusedError(
                f"{ref}'s broker registration expired at {to_iso(registration.expires_at)}: register it again",
                reason="expired", task_id=ref,
            )
        return registration_from_row(registration, self._ctx)
