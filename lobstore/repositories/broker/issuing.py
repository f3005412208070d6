"""Tokens: asking the store's token provider (GitHub) for a registration's repositories, or for
a service's (see :mod:`lobstore.broker.service_tokens`), reusing a cached token while it lasts.

GitHub is called outside any write transaction (unless the caller opened one), so a slow
GitHub never holds up other writers. Tokens are never written to the database, the audit
trail, the events or the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Any

import sqlalchemy as sa

from ... import status as st
from ...broker.policy import DEFAULT_PERMISSIONS
from ...broker.service_tokens import SERVICE_NAME
from ...clock import to_iso, utcnow
from ...errors import ConflictError, ForbiddenError, NoTokenProviderError, TokenRefusedError
from ...models import BrokerRegistration, IssuedToken
from ...schema import broker_tasks
from ...validation import clean_fields, is_unicode
from ..base import Repository, StoreContext, task_row
from ..events import insert_event
from .common import (
    DEREGISTERED,
    EXPIRED,
    REGISTRATION_BY_ID,
    REGISTRATION_NAMED,
    REGISTRATION_OF_TASK,
    SERVICE_TOKEN_ISSUED,
    TOKEN_CLEANERS,
    TOKEN_ISSUED,
    TOKEN_LOOKUP,
    broker_policy,
    find_task,
    insert_audit,
    known_owner,
    registration_from_row,
    registration_slot,
    token_cache,
)

log = logging.getLogger(__name__)

# POST /api/v1/service-token's body.
SERVICE_TOKEN_REQUEST = {"service": SERVICE_NAME.require().doc("the service asking: lobboss, lobsigliere, ...")}

_COUNT_TOKEN = (
    sa.update(broker_tasks)
    .where(broker_tasks.c.id == sa.bindparam("match_id"))
    .values(token_count=broker_tasks.c.token_count + 1)
)
_LOCKED_BY_ID = REGISTRATION_BY_ID.with_for_update()
# Every repository the App installation reaches, as lobwife wrote it in the audit trail.
ALL_REPOS_IN_AUDIT = ["*"]


class BrokerTokens(Repository):
    def issue_token(
        self, task: object, /, *, credential_id: int | None = None, only_task: int | None = None, **fields: Any
    ) -> IssuedToken:
        """A token for the repos registered under ``task``, reused until 5 minutes before it
        expires. ``task`` is found as lobwife found it: a task's ref (42, T42) or legacy id, or
        the slug, name or assignee (Job name) of a task with a registration, else a standalone
        registration of that exact name.

        Refused with TokenRefusedError (403) unless the registration is active and not expired
        and its task has not ended; NoTokenProviderError (503) when no provider is attached;
        TokenProviderError (503) when the provider fails. Each token handed out counts in
        ``token_count`` and writes a ``token_issued`` audit row (and, for a task, an event
        saying whether it was minted or reused), naming ``credential_id`` (the API credential
        that asked). The broker policy is checked again before GitHub is asked: repositories it
        no longer allows are refused (RepositoryNotAllowedError, 403), and the token has the
        permissions of the registration's lobster type. ``only_task`` (a task credential's
        task): anything ``task`` names but that task is a ForbiddenError (403).
        """
        observer = self._ctx.attachments.observer
        try:
            token, reused = self._issue_token(task, fields, credential_id, only_task)
        except TokenRefusedError as exc:
            observer.token_refused(exc.reason)
            raise
        observer.token_issued(reused)
        return token

    def _issue_token(self, task: object, fields: dict[str, Any], credential_id: int | None,
                     only_task: int | None) -> tuple[IssuedToken, bool]:
        actor = clean_fields(fields, TOKEN_CLEANERS, "a token request").get("actor")
        with self._scope.reading() as conn:
            task_found, row = self._resolve(conn, task)
            if only_task is not None and (task_found is None or task_found.id != only_task):
                raise ForbiddenError(f"a credential of {self._ctx.ref(only_task)} asks for tokens of that task only, "
                                     f"not for {str(task)!r}", task_id=self._ctx.ref(only_task))
            registration = _usable(self._ctx, task, task_found, row)
        # Again at issue time: the policy may be stricter than when the task was registered,
        # and GitHub must never be asked for what it does not allow.
        policy = broker_policy(self._ctx)
        policy.check_repos(registration.repos, owner=known_owner(self._ctx))
        permissions = policy.permissions_for(registration.lobster_type)
        key = (registration.registered_at, registration.repos)
        token, reused = self._mint(registration_slot(registration.id), key,
                                   lambda provider: _issue(provider, list(registration.repos), permissions))
        with self._scope.writing() as conn:
            # Lock as a registration does (the task first), then look again: it may have
            # changed while GitHub was asked.
            task_found = task_row(conn, registration.task_id, self._ctx, for_update=True) \
                if registration.task_id is not None else None
            current = _usable(self._ctx, task, task_found, conn.execute(_LOCKED_BY_ID, {"id": registration.id}).first())
            if (current.registered_at, current.repos) != key:
                token_cache(self._ctx).forget(registration_slot(registration.id))
                raise ConflictError(
                    f"{current.key} was registered again while its token was minted: ask again",
                    task_id=current.key,
                )
            conn.execute(_COUNT_TOKEN, {"match_id": current.id})
            insert_audit(conn, current.task_id, current.repos, TOKEN_ISSUED, legacy_task_id=current.name,
                         credential_id=credential_id)
            if current.task_id is not None:
                insert_event(
                    conn, self._ctx, current.task_id, "token_issued",
                    detail=f"token {'reused' if reused else 'issued'} for {', '.join(current.repos)}",
                    actor=actor,
                    data={"repos": list(current.repos), "expires_at": to_iso(token.expires_at), "reused": reused},
                )
        return token, reused

    def issue_service_token(self, service: str, *, credential_id: int | None = None) -> IssuedToken:
        """A token for a service (lobboss, lobsigliere, lobwife's cron jobs), for the
        repositories the store's service policy allows it (by default: every repository the
        App installation reaches, as lobwife gave). Reused until 5 minutes before it expires;
        each one handed out writes a ``service_token_issued`` audit row naming the service.
        A malformed name is a ValidationError, a service the policy refuses a
        TokenRefusedError (403); no provider or a failing one as for :meth:`issue_token`."""
        name = clean_fields({"service": service}, {"service": SERVICE_NAME}, "a service token request")["service"]
        repos = self._ctx.attachments.service_policy.repos_for(name)
        token, reused = self._mint(("service", name), tuple(repos) if repos is not None else None,
                                   lambda provider: provider.issue(repos))
        with self._scope.writing() as conn:
            insert_audit(conn, None, repos or ALL_REPOS_IN_AUDIT, SERVICE_TOKEN_ISSUED, legacy_task_id=name,
                         credential_id=credential_id)
        log.info("service token %s for %s (%s)", "reused" if reused else "issued", name,
                 ", ".join(repos) if repos else "every repository of the installation")
        return token

    # -- helpers ----------------------------------------------------------------------------------
    def _mint(self, slot: Hashable, key: Any, issue: Callable[[Any], IssuedToken]) -> tuple[IssuedToken, bool]:
        """The cached token of ``slot`` if it was minted for ``key`` and still lasts, else a
        new one from the provider. Concurrent requests for one slot mint once."""
        provider = self._ctx.attachments.token_provider
        if provider is None:
            raise NoTokenProviderError(
                "Token broker not configured: no GitHub App is set up. Set GH_APP_ID, GH_APP_INSTALL_ID "
                "and GH_APP_PEM (or GH_APP_PEM_PATH) for lobwife's GitHub App"
            )
        cache = token_cache(self._ctx)
        with cache.minting(slot):
            token = cache.get(slot, key)
            if token is not None:
                return token, True
            token = issue(provider)
            cache.put(slot, key, token)
            return token, False

    def task_named(self, key: object) -> int | None:
        """The id of the task a token request for ``key`` is about (found as :meth:`issue_token`
        finds it), or None when it names a standalone registration or nothing."""
        with self._scope.reading() as conn:
            task = find_task(conn, self._ctx, key, by=TOKEN_LOOKUP, registered=True)
        return None if task is None else task.id

    def _resolve(self, conn: sa.Connection, key: object) -> tuple[sa.Row | None, sa.Row | None]:
        """The task ``key`` names (one with a registration) and its registration, or else no
        task and the standalone registration named ``key`` (None when there is none)."""
        task = find_task(conn, self._ctx, key, by=TOKEN_LOOKUP, registered=True)
        if task is not None:
            return task, conn.execute(REGISTRATION_OF_TASK, {"task_id": task.id}).first()
        if isinstance(key, str) and "\x00" not in key and is_unicode(key):
            return None, conn.execute(REGISTRATION_NAMED, {"name": key}).first()
        return None, None  # names nothing a database could hold


def _issue(provider: Any, repos: list[str], permissions: dict[str, str]) -> IssuedToken:
    """Ask with the policy's permissions only when they are not the provider's own defaults:
    a provider need not take ``permissions=`` until a policy sets other ones."""
    if permissions == dict(DEFAULT_PERMISSIONS):
        return provider.issue(repos)
    return provider.issue(repos, permissions=permissions)


def _usable(ctx: StoreContext, asked: object, task: sa.Row | None, row: sa.Row | None) -> BrokerRegistration:
    """The registration if a token may be issued for it; TokenRefusedError saying why not."""
    if row is None:
        # The old broker answered 403 for a name it did not know; callers rely on that.
        raise TokenRefusedError(f"{asked} is not registered with the token broker: register it first",
                                reason="not_registered", task_id=str(asked))
    registration = registration_from_row(row, ctx)
    name = registration.key
    if task is not None and task.status in st.TERMINAL:
        raise TokenRefusedError(f"{name} is {task.status}: no token for an ended task", reason="terminal", task_id=name)
    if row.status == DEREGISTERED:
        raise TokenRefusedError(f"{name} was deregistered from the token broker", reason="deregistered", task_id=name)
    if row.status == EXPIRED or row.expires_at <= utcnow():
        raise TokenRefusedError(
            f"{name}'s broker registration expired at {to_iso(row.expires_at)}: register it again",
            reason="expired", task_id=name,
        )
    return registration
