"""The token audit trail, and the import of lobwife's JSON state into the broker's tables."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ...clock import to_iso
from ...errors import NotFoundError
from ...models import TokenAuditEntry
from ...schema import broker_tasks, credentials, tasks, token_audit
from ...validation import is_unicode
from ..base import Repository, task_row
from ..events import check_limit, insert_event
from .common import DEFAULT_AUDIT_LIMIT, insert_audit

_IMPORTED_AUDIT = sa.select(token_audit).where(token_audit.c.legacy_task_id.is_not(None))
# Each entry with the name of the API credential that asked (none for imported entries, or
# when the server ran without authentication).
_AUDIT_WITH_CREDENTIAL = sa.select(token_audit, credentials.c.name.label("credential_name")).select_from(
    token_audit.outerjoin(credentials, credentials.c.id == token_audit.c.credential_id)
)
_TASK_ID_BY_LEGACY = sa.select(tasks.c.id).where(tasks.c.legacy_id == sa.bindparam("legacy_id"))


class BrokerAudit(Repository):
    def audit(self, task: object = None, *, limit: int = DEFAULT_AUDIT_LIMIT) -> list[TokenAuditEntry]:
        """The newest ``limit`` (1-1000) audit entries, oldest first; only one task's if given.

        ``task`` may also name something that is no task of this store: a standalone
        registration, a service, or the old broker's name for a task (entries imported from
        token-audit.json keep it). A name nothing was recorded under has no entries.
        """
        limit = check_limit(limit, DEFAULT_AUDIT_LIMIT)
        query = _AUDIT_WITH_CREDENTIAL
        with self._scope.reading() as conn:
            if task is not None:
                try:
                    query = query.where(token_audit.c.task_id == task_row(conn, task, self._ctx).id)
                except NotFoundError:
                    name = task.strip() if isinstance(task, str) else str(task)
                    if "\x00" in name or not is_unicode(name):
                        return []
                    query = query.where(token_audit.c.task_id.is_(None), token_audit.c.legacy_task_id == name)
            rows = conn.execute(query.order_by(token_audit.c.id.desc()).limit(limit)).all()
        return [self._audit_entry(row) for row in reversed(rows)]

    def prune_audit(self, before: datetime, *, dry_run: bool = False) -> int:
        """Delete (or, in a dry run, count) the token audit entries older than ``before``."""
        old = token_audit.c.created_at < before
        if dry_run:
            with self._scope.reading() as conn:
                return conn.execute(sa.select(sa.func.count()).select_from(token_audit).where(old)).scalar_one()
        with self._scope.writing() as conn:
            return conn.execute(sa.delete(token_audit).where(old)).rowcount

    # -- import of lobwife's JSON state (see lobstore.importers.json_state) ---------------------
    def import_registration(
        self,
        task_id: int | None,
        *,
        name: str | None = None,
        repos: Sequence[str],
        lobster_type: str | None,
        registered_at: datetime,
        expires_at: datetime,
        status: str,
        token_count: int,
        source: str,
        actor: str | None = None,
    ) -> bool:
        """Keep an already-validated registration as it was: a task's (``task_id``), or a
        standalone one under ``name`` when it names no task of this store. Returns False (and
        writes nothing) when there already is one: imports are idempotent."""
        row = {"task_id": task_id, "name": None if task_id is not None else name, "repos": list(repos),
               "lobster_type": lobster_type, "registered_at": registered_at, "expires_at": expires_at,
               "status": status, "token_count": token_count}
        with self._scope.writing() as conn:
            if not self._ctx.backend.insert_if_absent(conn, broker_tasks, row):
                return False
            if task_id is not None:
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

    def _audit_entry(self, row: sa.Row) -> TokenAuditEntry:
        ref = self._ctx.ref(row.task_id) if row.task_id is not None else row.legacy_task_id
        return TokenAuditEntry(
            id=row.id, task_ref=ref, repos=tuple(row.repos or ()), action=row.action, created_at=row.created_at,
            credential=row.credential_name,
        )
