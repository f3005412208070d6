"""What the broker's rooms share: the registration table's statements, audit rows, ending a
registration, and finding the task a name means (lobwife's lookups)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ...broker.policy import BrokerPolicy
from ...broker.tokens import TokenCache
from ...clock import utcnow
from ...errors import NotFoundError
from ...models import BrokerRegistration
from ...schema import broker_tasks, tasks, token_audit
from ...validation import enum_schema, field, identifier, is_unicode, nullable, repo_name, string_list, task_ref, text
from ..base import TASK_SELECT, StoreContext, task_row
from ..credentials import revoke_task_credentials
from ..events import insert_event

ACTIVE, DEREGISTERED, EXPIRED = "active", "deregistered", "expired"
REGISTRATION_STATUSES = (ACTIVE, DEREGISTERED, EXPIRED)
# The audit action names lobwife used, plus the expiry it never recorded.
TASK_REGISTERED, TASK_DEREGISTERED = "task_registered", "task_deregistered"
TOKEN_ISSUED, REGISTRATION_EXPIRED = "token_issued", "registration_expired"
SERVICE_TOKEN_ISSUED = "service_token_issued"
AUDIT_ACTIONS = (TASK_REGISTERED, TASK_DEREGISTERED, TOKEN_ISSUED, REGISTRATION_EXPIRED, SERVICE_TOKEN_ISSUED)
DEFAULT_AUDIT_LIMIT = 500
DEFAULT_POLICY = BrokerPolicy()
# How lobwife looked a task up by a name that is not its ref (42, T42) or legacy id: by these
# columns, in this order. The token route also tried the assignee (a lobster's Job name).
REGISTER_LOOKUP = ("slug", "name")
TOKEN_LOOKUP = ("slug", "name", "assigned_to")


def _required_repos(value: Any) -> list[str]:
    repos = string_list(repo_name)(value)
    if not repos:
        raise ValueError("is required: give at least one owner/repo")
    return repos


ACTOR_FIELD = text(200).doc("who does it, for the event trail")
REGISTER_CLEANERS = {
    "repos": field(_required_repos, {**string_list(repo_name).schema, "minItems": 1},
                   "the owner/repo names the task may access").require(),
    "lobster_type": nullable(identifier("lobster type")).doc("swe, qa, research, ..."),
    "actor": ACTOR_FIELD,
}
DEREGISTER_CLEANERS = {"actor": ACTOR_FIELD, "reason": text(1000).doc("why, for the event trail")}
ACTOR = DEREGISTER_CLEANERS  # the name an earlier version used
TOKEN_CLEANERS = {"actor": ACTOR_FIELD}
# POST /api/token's body names the task (lobwife's shape) beside the fields of issue_token.
TOKEN_REQUEST = {"task_id": task_ref.require().doc("the task (or standalone registration) the token is for"),
                 **TOKEN_CLEANERS}
# A registration's status in JSON: the answer to a registration says "registered".
REGISTRATION_SCHEMA = enum_schema(("registered", *REGISTRATION_STATUSES))
# The name a standalone registration is kept under: whatever id the caller used (verify-test).
STANDALONE_NAME = text(200, required=True)

# Built once, values bound per call (compiled once, then served from SQLAlchemy's cache).
REGISTRATION_OF_TASK = sa.select(broker_tasks).where(broker_tasks.c.task_id == sa.bindparam("task_id"))
REGISTRATION_NAMED = sa.select(broker_tasks).where(broker_tasks.c.name == sa.bindparam("name"))
REGISTRATION_BY_ID = sa.select(broker_tasks).where(broker_tasks.c.id == sa.bindparam("id"))
_LOCKED_OF_TASK = REGISTRATION_OF_TASK.with_for_update()
LOCKED_NAMED = REGISTRATION_NAMED.with_for_update()
UPDATE_REGISTRATION = sa.update(broker_tasks).where(broker_tasks.c.id == sa.bindparam("match_id"))
_END_REGISTRATION = (
    sa.update(broker_tasks)
    .where(broker_tasks.c.id == sa.bindparam("match_id"), broker_tasks.c.status == ACTIVE)
    .values(status=sa.bindparam("new_status"))
)
_INSERT_AUDIT = sa.insert(token_audit)
# A task the name matches by one column, newest first; with or without a registration, locked
# or not (PostgreSQL cannot lock the nullable side of an outer join: the task row only).
_TASK_WHERE = {
    (column, registered, lock): (
        lambda query: query.with_for_update(of=tasks) if lock else query
    )(
        TASK_SELECT.where(tasks.c[column] == sa.bindparam("value"),
                          *([broker_tasks.c.id.is_not(None)] if registered else []))
        .order_by(tasks.c.id.desc()).limit(1)
    )
    for column in TOKEN_LOOKUP
    for registered in (False, True)
    for lock in (False, True)
}


def registration_from_row(row: sa.Row, ctx: StoreContext) -> BrokerRegistration:
    values = row._asdict()
    values["repos"] = tuple(values["repos"] or ())
    task_ref = ctx.ref(values["task_id"]) if values["task_id"] is not None else None
    return BrokerRegistration(task_ref=task_ref, **values)


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
    ``legacy_task_id`` names what the entry is about when it is no task of this store: an old
    broker's id, a standalone registration or a service. ``credential_id``: the API
    credential that asked, when there was one."""
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
    """End a task's active registration in the caller's transaction. Returns the ended
    registration, or None if none was active.

    The task cancel path calls this too, so cancelling a task and deregistering it commit
    together.
    """
    row = conn.execute(REGISTRATION_OF_TASK, {"task_id": task_id}).first()
    if row is None:
        return None
    return end_registration_row(conn, ctx, row, new_status=new_status, actor=actor, reason=reason,
                                credential_id=credential_id)


def end_registration_row(
    conn: sa.Connection,
    ctx: StoreContext,
    row: sa.Row,
    *,
    new_status: str = DEREGISTERED,
    actor: str | None = None,
    reason: str | None = None,
    credential_id: int | None = None,
) -> BrokerRegistration | None:
    """End the registration ``row`` if it is active: its audit row, its task's event (a
    standalone registration has no task), the cached token and the task's credentials go
    with it."""
    if row.status != ACTIVE:
        return None
    conn.execute(_END_REGISTRATION, {"match_id": row.id, "new_status": new_status})
    repos = list(row.repos or ())
    expired = new_status == EXPIRED
    insert_audit(conn, row.task_id, repos, REGISTRATION_EXPIRED if expired else TASK_DEREGISTERED,
                 legacy_task_id=row.name, credential_id=credential_id)
    if row.task_id is not None:
        # The lobster's task credentials end with the registration: registering the task
        # again (a re-queued task, a new lobster) must not bring them back to life.
        revoke_task_credentials(conn, ctx, row.task_id)
        what = "registration expired" if expired else "deregistered from the token broker"
        insert_event(
            conn, ctx, row.task_id, "broker_deregistered",
            detail=f"{what}: {reason}" if reason else what, actor=actor,
            data={"repos": repos, "status": new_status, **({"reason": reason} if reason else {})},
        )
    token_cache(ctx).forget(registration_slot(row.id))
    return replace(registration_from_row(row, ctx), status=new_status)


def save_registration(
    conn: sa.Connection,
    ctx: StoreContext,
    *,
    task_id: int | None,
    name: str | None,
    values: dict[str, Any],
) -> tuple[sa.Row, bool]:
    """Insert the registration of a task (or the standalone one named ``name``), or renew the
    one there is with ``values``; its token count carries on. Returns the row and whether it
    was renewed. Inserting first and updating on a collision (rather than looking first)
    keeps two concurrent first registrations of one name from both inserting."""
    inserted = ctx.backend.insert_if_absent(
        conn, broker_tasks, {"task_id": task_id, "name": name, "token_count": 0, **values}
    )
    if task_id is not None:
        row = conn.execute(_LOCKED_OF_TASK, {"task_id": task_id}).one()
    else:
        row = conn.execute(LOCKED_NAMED, {"name": name}).one()
    if not inserted:
        conn.execute(UPDATE_REGISTRATION, {"match_id": row.id, **values})
        row = conn.execute(REGISTRATION_BY_ID, {"id": row.id}).one()
    # A new registration may name other repos: never hand out a token minted for the old.
    token_cache(ctx).forget(registration_slot(row.id))
    return row, not inserted


def find_task(
    conn: sa.Connection,
    ctx: StoreContext,
    key: object,
    *,
    by: Sequence[str],
    registered: bool = False,
    for_update: bool = False,
) -> sa.Row | None:
    """The task ``key`` names, found as lobwife found it: by its ref (42, T42) or legacy id,
    else by each column of ``by`` in turn (the newest task when several match). With
    ``registered``, only a task that has a registration counts (lobwife's token lookup skipped
    tasks without broker access). None when nothing matches."""
    try:
        row = task_row(conn, key, ctx, for_update=for_update)
    except NotFoundError:
        row = None
    if row is not None and (not registered or row.broker_status is not None):
        return row
    if not isinstance(key, str) or not key.strip() or "\x00" in key or not is_unicode(key):
        return None  # names no task (and PostgreSQL would refuse to compare with it)
    for column in by:
        row = conn.execute(_TASK_WHERE[column, registered, for_update], {"value": key}).first()
        if row is not None:
            return row
    return None


def broker_policy(ctx: StoreContext) -> BrokerPolicy:
    return ctx.attachments.broker_policy or DEFAULT_POLICY


def known_owner(ctx: StoreContext) -> str | None:
    """The GitHub App installation's owner, if the provider knows it without asking."""
    return getattr(ctx.attachments.token_provider, "known_owner", None)


def registration_slot(registration_id: int) -> tuple[str, int]:
    """Where a registration's token is cached (services have slots of their own)."""
    return ("registration", registration_id)


def token_cache(ctx: StoreContext) -> TokenCache:
    attachments = ctx.attachments
    if attachments.token_cache is None:
        attachments.token_cache = TokenCache()
    return attachments.token_cache
