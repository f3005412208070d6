"""Registrations: a task's access to repositories, or a standalone one kept under a name that
matches no task (lobwife's fallback, e.g. ``verify-test``); renewal, ending and expiry."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ... import status as st
from ...clock import to_iso, utcnow
from ...errors import ConflictError, NotFoundError, RepositoryChangeRefusedError, ValidationError
from ...models import BrokerRegistration
from ...schema import broker_tasks, token_audit
from ...validation import (
    MAX_INT,
    clean_fields,
    enum_schema,
    field,
    integer,
    is_unicode,
    repo_name,
    string_list,
    text,
    timestamp,
)
from ..base import Repository, task_row
from ..events import check_limit, insert_event
from .common import (
    ACTIVE,
    DEREGISTER_CLEANERS,
    DEREGISTERED,
    EXPIRED,
    LOCKED_NAMED,
    REGISTER_CLEANERS,
    REGISTER_LOOKUP,
    REGISTRATION_OF_TASK,
    REGISTRATION_STATUSES,
    STANDALONE_NAME,
    TASK_REGISTERED,
    UPDATE_REGISTRATION,
    broker_policy,
    end_registration,
    end_registration_row,
    find_task,
    insert_audit,
    known_owner,
    registration_from_row,
    save_registration,
)

log = logging.getLogger(__name__)

DEFAULT_LIST_LIMIT = 500
_DUE = (
    sa.select(broker_tasks)
    .where(broker_tasks.c.status == ACTIVE, broker_tasks.c.expires_at <= sa.bindparam("now"))
    .order_by(broker_tasks.c.id)
)
_SUMMARY = sa.select(
    sa.select(sa.func.count()).select_from(broker_tasks)
    .where(broker_tasks.c.status == ACTIVE).scalar_subquery().label("active"),
    sa.select(sa.func.coalesce(sa.func.sum(broker_tasks.c.token_count), 0)).scalar_subquery().label("tokens"),
    sa.select(sa.func.count()).select_from(token_audit).scalar_subquery().label("audit_entries"),
)


def _nullable_repos(value: Any) -> list[str] | None:
    if value is None:
        return None
    repos = string_list(repo_name)(value)
    if not repos:
        raise ValueError("must name at least one owner/repo (null deregisters)")
    return repos


# What a task's broker fields may be set to in an update: "active" registers (or renews),
# the others and null end the registration ("removed" is what lobwife's own DELETE answered).
ENDING_STATUSES: dict[str | None, str] = {None: DEREGISTERED, DEREGISTERED: DEREGISTERED,
                                          "removed": DEREGISTERED, EXPIRED: EXPIRED}


def _broker_status(value: Any) -> str | None:
    if value != ACTIVE and value not in ENDING_STATUSES:
        raise ValueError(f"must be active (registers), deregistered, removed, expired or null "
                         f"(end the registration), got {value!r}")
    return value


TASK_FIELD_CLEANERS = {
    "broker_repos": field(_nullable_repos, {**string_list(repo_name).schema, "minItems": 1, "nullable": True},
                          "the task's registration: a list registers it (or renews), null deregisters"),
    "broker_status": field(_broker_status, enum_schema((ACTIVE, *(s for s in ENDING_STATUSES if s)), nullable=True),
                           "active registers (or renews); deregistered, removed, expired or null end it"),
    "broker_registered_at": timestamp.doc("when the registration began"),
    "token_count": integer(0, MAX_INT, optional=False).doc("tokens handed out to it"),
}
BROKER_FIELDS: tuple[str, ...] = tuple(TASK_FIELD_CLEANERS)


class BrokerRegistrations(Repository):
    def register(
        self, task: object, /, *, ttl: timedelta | None = None, credential_id: int | None = None,
        may_change_repos: bool = True, **fields: Any,
    ) -> BrokerRegistration:
        """Register a task for access to ``repos`` for ``ttl`` (default: the store's
        registration TTL, 24 h). Fields (:data:`REGISTER_CLEANERS`): repos (required),
        lobster_type, actor. Registering again renews it, with the repos given now; its token
        count carries on. An ended task (completed, failed, cancelled) is a ConflictError; a
        task that does not exist a NotFoundError (see :meth:`register_by_name`).

        The broker policy decides which repositories may be named (RepositoryNotAllowedError,
        403). With ``may_change_repos=False`` (a caller without the admin scope) a task that
        already received tokens cannot be registered for other repositories
        (RepositoryChangeRefusedError, 403). ``credential_id``: the API credential that asked,
        for the audit.
        """
        values = self._clean(fields)
        ttl = self._ttl(ttl)
        with self._scope.writing() as conn:
            row = task_row(conn, task, self._ctx, for_update=True)
            return self._register_task(conn, row, values, ttl, credential_id=credential_id,
                                       may_change_repos=may_change_repos)

    def register_by_name(
        self, key: str, /, *, ttl: timedelta | None = None, credential_id: int | None = None,
        may_change_repos: bool = True, **fields: Any,
    ) -> BrokerRegistration:
        """Register what ``key`` names, as lobwife did: the task it names (its ref, legacy id,
        slug or name; the newest when several share a slug or name), or else a standalone
        registration kept under ``key`` exactly, usable for tokens by that name. Fields, the
        broker policy and ``may_change_repos`` as for :meth:`register`."""
        values = self._clean(fields)
        name = clean_fields({"task_id": key}, {"task_id": STANDALONE_NAME}, "a registration")["task_id"]
        ttl = self._ttl(ttl)
        with self._scope.writing() as conn:
            row = find_task(conn, self._ctx, name, by=REGISTER_LOOKUP, for_update=True)
            if row is not None:
                return self._register_task(conn, row, values, ttl, credential_id=credential_id,
                                           may_change_repos=may_change_repos)
            broker_policy(self._ctx).check_repos(values["repos"], owner=known_owner(self._ctx))
            existing = conn.execute(LOCKED_NAMED, {"name": name}).first()
            _check_change(existing, values["repos"], may_change_repos, name)
            now = utcnow()
            saved, _ = save_registration(conn, self._ctx, task_id=None, name=name, values={
                "repos": values["repos"], "lobster_type": values["lobster_type"],
                "registered_at": now, "expires_at": now + ttl, "status": ACTIVE,
            })
            insert_audit(conn, None, values["repos"], TASK_REGISTERED, legacy_task_id=name,
                         credential_id=credential_id)
            return registration_from_row(saved, self._ctx)

    def deregister(self, task: object, /, *, credential_id: int | None = None, **fields: Any) -> BrokerRegistration:
        """End a task's registration. Fields: actor, reason (:data:`DEREGISTER_CLEANERS`). A
        registration already ended is returned unchanged (and nothing is written); a task never
        registered is a NotFoundError. ``credential_id``: the API credential that asked."""
        options = clean_fields(fields, DEREGISTER_CLEANERS, "a deregistration")
        with self._scope.writing() as conn:
            row = task_row(conn, task, self._ctx, for_update=True)
            ended = end_registration(conn, self._ctx, row.id, credential_id=credential_id, **options)
            if ended is not None:
                return ended
            return self._registration(conn, row.id)

    def deregister_by_name(
        self, key: object, /, *, credential_id: int | None = None, **fields: Any
    ) -> list[BrokerRegistration]:
        """End what a registration by ``key`` made (see :meth:`register_by_name`): the active
        registration of the task ``key`` names, and a standalone one under ``key``. Fields:
        actor, reason. Returns what was ended; nothing registered under that name is not an
        error (lobwife answered "removed" all the same)."""
        options = clean_fields(fields, DEREGISTER_CLEANERS, "a deregistration")
        ended: list[BrokerRegistration] = []
        with self._scope.writing() as conn:
            row = find_task(conn, self._ctx, key, by=REGISTER_LOOKUP, registered=True, for_update=True)
            if row is not None:
                ended.append(end_registration(conn, self._ctx, row.id, credential_id=credential_id, **options))
            if isinstance(key, str) and "\x00" not in key and is_unicode(key):
                standalone = conn.execute(LOCKED_NAMED, {"name": key}).first()
                if standalone is not None:
                    ended.append(end_registration_row(conn, self._ctx, standalone, credential_id=credential_id,
                                                      **options))
        return [registration for registration in ended if registration is not None]

    def update_task_fields(
        self, task: object, /, *, actor: str | None = None, reason: str | None = None,
        credential_id: int | None = None, may_change_repos: bool = True, **fields: Any
    ) -> tuple[str, ...]:
        """Set a task's broker fields as they appear in its JSON (lobwife's clients PATCH them):
        ``broker_repos`` (a list registers, null deregisters), ``broker_status`` ("active"
        registers or renews; null, "deregistered", "removed" or "expired" end it),
        ``broker_registered_at`` and ``token_count``. Fields that contradict each other are a
        ValidationError naming one of them and nothing is written. Returns the fields whose
        value changed; each change writes its event and audit row. A registration made so
        answers to the broker policy and ``may_change_repos`` as :meth:`register` does.
        """
        values = clean_fields(fields, TASK_FIELD_CLEANERS, "a task's broker fields")
        options = clean_fields({"actor": actor, "reason": reason}, DEREGISTER_CLEANERS, "a task update")
        intent = _intent(values)
        ttl = self._ttl(None)
        changed: list[str] = []
        with self._scope.writing() as conn:
            row = task_row(conn, task, self._ctx, for_update=True)
            current = conn.execute(REGISTRATION_OF_TASK, {"task_id": row.id}).first()
            given = [name for name in ("broker_repos", "broker_status", "broker_registered_at") if name in values]
            if intent == ACTIVE:
                repos = values.get("broker_repos") or (list(current.repos) if current is not None else None)
                if not repos:
                    raise ValidationError(
                        f"{self._ctx.ref(row.id)} has no registration to renew: give broker_repos (the owner/repo "
                        "names it may access)", field="broker_repos",
                    )
                lobster_type = current.lobster_type if current is not None else None
                self._register_task(conn, row, {"repos": repos, "lobster_type": lobster_type,
                                                "actor": options["actor"]},
                                    ttl, registered_at=values.get("broker_registered_at"),
                                    credential_id=credential_id, may_change_repos=may_change_repos)
                changed += given
            elif intent is not None:
                if values.get("broker_registered_at") is not None:
                    raise ValidationError("broker_registered_at cannot be set on a registration being ended",
                                          field="broker_registered_at")
                if end_registration(conn, self._ctx, row.id, new_status=intent, credential_id=credential_id,
                                    **options) is not None:
                    changed += given
            elif "broker_registered_at" in values:
                changed += self._set(conn, row, current, "registered_at", values["broker_registered_at"],
                                     "broker_registered_at", options["actor"])
            if "token_count" in values:
                current = conn.execute(REGISTRATION_OF_TASK, {"task_id": row.id}).first()
                changed += self._set(conn, row, current, "token_count", values["token_count"], "token_count",
                                     options["actor"])
        return tuple(changed)

    def get(self, task: object) -> BrokerRegistration:
        """A task's registration (whatever its status); NotFoundError if it was never registered."""
        with self._scope.reading() as conn:
            return self._registration(conn, task_row(conn, task, self._ctx).id)

    def list(self, *, status: str | None = None, limit: int | None = None) -> list[BrokerRegistration]:
        """Registrations, task and standalone ones (or those with ``status``), newest first;
        at most ``limit`` (1-1000) when given."""
        query = sa.select(broker_tasks).order_by(broker_tasks.c.registered_at.desc(), broker_tasks.c.id.desc())
        if status is not None:
            if status not in REGISTRATION_STATUSES:
                raise ValidationError(
                    f"status must be one of {', '.join(REGISTRATION_STATUSES)}, got {status!r}", field="status"
                )
            query = query.where(broker_tasks.c.status == status)
        if limit is not None:
            query = query.limit(check_limit(limit))
        with self._scope.reading() as conn:
            return [registration_from_row(row, self._ctx) for row in conn.execute(query)]

    def summary(self) -> dict[str, int]:
        """Counts for a dashboard: active registrations, tokens handed out to registrations
        (their token counts summed) and token audit entries. Three counts over whole tables:
        callers that poll (health probes) should keep the answer a while."""
        with self._scope.reading() as conn:
            row = conn.execute(_SUMMARY).one()
        return {"active_tasks": row.active, "total_tokens_issued": int(row.tokens), "audit_entries": row.audit_entries}

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
                registration = end_registration_row(
                    conn, self._ctx, row, new_status=EXPIRED, actor=values["actor"],
                    reason=f"registered at {to_iso(row.registered_at)}, expired at {to_iso(row.expires_at)}",
                )
                if registration is not None:
                    ended.append(registration)
        if ended:
            log.info("expired %d broker registration(s): %s", len(ended), ", ".join(r.key for r in ended))
        return ended

    # -- helpers ----------------------------------------------------------------------------------
    def _clean(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        return {"lobster_type": None, "actor": None, **clean_fields(fields, REGISTER_CLEANERS, "a registration")}

    def _ttl(self, ttl: timedelta | None) -> timedelta:
        ttl = self._ctx.attachments.registration_ttl if ttl is None else ttl
        if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
            raise ValidationError(f"ttl must be a positive timedelta, got {ttl!r}", field="ttl")
        return ttl

    def _register_task(
        self,
        conn: sa.Connection,
        row: sa.Row,
        values: Mapping[str, Any],
        ttl: timedelta,
        *,
        registered_at: datetime | None = None,
        credential_id: int | None = None,
        may_change_repos: bool = True,
    ) -> BrokerRegistration:
        ref = self._ctx.ref(row.id)
        if row.status in st.TERMINAL:
            raise ConflictError(
                f"{ref} is {row.status}: an ended task cannot be registered with the token broker",
                task_id=ref, status=row.status,
            )
        broker_policy(self._ctx).check_repos(values["repos"], owner=known_owner(self._ctx))
        existing = conn.execute(REGISTRATION_OF_TASK, {"task_id": row.id}).first()
        _check_change(existing, values["repos"], may_change_repos, ref)
        now = utcnow()
        saved, renewed = save_registration(conn, self._ctx, task_id=row.id, name=None, values={
            "repos": values["repos"], "lobster_type": values["lobster_type"],
            "registered_at": registered_at or now, "expires_at": now + ttl, "status": ACTIVE,
        })
        insert_audit(conn, row.id, values["repos"], TASK_REGISTERED, credential_id=credential_id)
        kind = f" ({values['lobster_type']})" if values["lobster_type"] else ""
        insert_event(
            conn, self._ctx, row.id, "broker_registered",
            detail=f"registered with the token broker for {', '.join(values['repos'])}{kind}",
            actor=values["actor"],
            data={"repos": values["repos"], "lobster_type": values["lobster_type"],
                  "expires_at": to_iso(now + ttl), "renewed": renewed},
        )
        return registration_from_row(saved, self._ctx)

    def _set(
        self, conn: sa.Connection, task: sa.Row, current: sa.Row | None, column: str, value: Any, field: str,
        actor: str | None,
    ) -> list[str]:
        """Set one column of a task's registration, with an event; [field] if it changed."""
        ref = self._ctx.ref(task.id)
        if current is None:
            raise ValidationError(f"{ref} has no broker registration to set {field} on: give broker_repos "
                                  "to register it", field=field)
        if value is None:
            raise ValidationError(f"{field} cannot be null while {ref} is registered", field=field)
        old = getattr(current, column)
        if old == value:
            return []
        conn.execute(UPDATE_REGISTRATION, {"match_id": current.id, column: value})
        as_json = to_iso if isinstance(value, datetime) else (lambda v: v)
        shown = {"old": as_json(old), "new": as_json(value)}
        insert_event(conn, self._ctx, task.id, "broker_updated", detail=f"{field} {shown['old']} → {shown['new']}",
                     actor=actor, data={"changes": {field: shown}})
        return [field]

    def _registration(self, conn: sa.Connection, task_id: int) -> BrokerRegistration:
        row = conn.execute(REGISTRATION_OF_TASK, {"task_id": task_id}).first()
        if row is None:
            ref = self._ctx.ref(task_id)
            raise NotFoundError(f"{ref} is not registered with the token broker", task_id=ref)
        return registration_from_row(row, self._ctx)


def _check_change(existing: sa.Row | None, repos: Sequence[str], may_change_repos: bool, name: str) -> None:
    """Tokens were minted for what a registration named: moving it to other repositories needs
    an administrator (a renewal with the same ones does not)."""
    if existing is None or not existing.token_count or may_change_repos:
        return
    if sorted(existing.repos or ()) != sorted(repos):
        raise RepositoryChangeRefusedError(
            f"{name} already received {existing.token_count} token(s) for {', '.join(existing.repos)}: "
            f"registering it for other repositories needs an admin credential",
            task_id=name, repos=list(existing.repos),
        )


def _intent(values: Mapping[str, Any]) -> str | None:
    """What a task update's broker fields ask for: ACTIVE (register or renew), the status a
    registration ends with, or None (neither). Contradictions are refused here, before any
    write, naming broker_status."""
    registers = ends = None
    if "broker_repos" in values:
        if values["broker_repos"] is None:
            ends = DEREGISTERED
        else:
            registers = "broker_repos"
    if "broker_status" in values:
        status = values["broker_status"]
        if status == ACTIVE:
            if ends is not None:
                raise ValidationError("broker_status 'active' registers the task but broker_repos null "
                                      "deregisters it: send one of them", field="broker_status")
            registers = "broker_status"
        else:
            if registers is not None:
                raise ValidationError(f"broker_status {status!r} ends the registration but broker_repos "
                                      "registers the task: send one of them", field="broker_status")
            ends = ENDING_STATUSES[status]
    return ACTIVE if registers is not None else ends
