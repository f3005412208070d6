"""Audit findings: what the maintenance audits report, deduplicated across runs.

A run names its ``audit_type`` and lists findings. A finding is known by its fingerprint (given,
or derived from type, title and target): one already live (open, or ignored by a person) is
updated — seen again, one more occurrence, severity raised if higher — instead of duplicated.
A resolved finding that comes back is a new finding (a regression). A critical finding without a
fix task gets one (type ``system``, priority ``high``), created in the same transaction through
the task repository so its ``created`` event is written; the finding names the task and the
task's tags and description name the finding.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..clock import utcnow
from ..errors import ConflictError, NotFoundError, ValidationError
from ..models import FINDING_STATUSES, SEVERITIES, AuditFinding, AuditRunResult, Task
from ..schema import audit_findings
from ..validation import (
    MAX_LONG_TEXT,
    batch,
    boolean,
    choice,
    clean_fields,
    field,
    identifier,
    item_of_batch,
    nullable,
    object_schema,
    text,
    timestamp,
    with_positional,
)
from .base import ConnectionScope, Repository, StoreContext
from .events import check_cursor, check_limit, insert_event
from .tasks import TaskRepository

log = logging.getLogger(__name__)

MAX_FINDINGS = 1000
LIVE = ("open", "ignored")
COUNT_BY_FIELDS = ("audit_type", "severity", "status")
RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}
FINDING_CLEANERS = {
    "severity": choice(SEVERITIES).require(),
    "title": text(500, required=True).require().doc("the problem, in one line"),
    "detail": text(MAX_LONG_TEXT),
    "target": text(1000).doc("what it is about: a repo, a node, a task"),
    "fingerprint": text(200).doc("default: derived from type, title and target"),
}


def _findings(value: Any) -> list[Any]:
    """A run's findings: a list (empty: a clean run); submit checks each item, by index."""
    # Only an empty list is a clean run: null, "" or {} (falsy too) must not resolve every
    # open finding when close_missing is set.
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"must be a list of findings (empty for a clean run), not {type(value).__name__}")
    return list(value)


RUN_CLEANERS = {
    "audit_type": identifier("audit type").require().doc("security, infra, code, docs, task-hygiene, ..."),
    "findings": field(_findings, {"type": "array", "items": object_schema(FINDING_CLEANERS), "maxItems": MAX_FINDINGS},
                      "the run's findings: a list, empty for a clean run").require(),
    "run_id": text(200),
    "close_missing": boolean.doc("resolve the open findings of this type the run did not report"),
    "actor": text(200),
}
UPDATE_CLEANERS = {
    "status": choice(FINDING_STATUSES).require().doc("resolved, ignored or open (re-open)"),
    "resolution": text(10_000).doc("why, for people"),
    "actor": text(200),
}
# Built once, values bound per call: compiled once and served from SQLAlchemy's cache.
_INSERT = sa.insert(audit_findings)
_UPDATE = sa.update(audit_findings).where(audit_findings.c.id == sa.bindparam("match_id"))
# Locked (PostgreSQL) for the run's transaction: two runs of one type at once take turns, so
# neither counts an occurrence from a stale read.
_LIVE_OF_TYPE = sa.select(audit_findings).where(
    audit_findings.c.audit_type == sa.bindparam("audit_type"), audit_findings.c.status.in_(LIVE)
).with_for_update()
_BY_ID = sa.select(audit_findings).where(audit_findings.c.id == sa.bindparam("id"))


def fingerprint_of(audit_type: str, title: str, target: str | None) -> str:
    """The fingerprint of a finding that brings none: stable across runs for the same problem."""
    text_ = "\x1f".join((audit_type, title.strip(), (target or "").strip()))
    return hashlib.sha256(text_.encode()).hexdigest()[:32]


def clean_finding(fields: Mapping[str, Any], audit_type: str) -> dict[str, Any]:
    values = clean_fields(fields, FINDING_CLEANERS, "a finding")
    for name in ("severity", "title"):
        if name not in values:
            raise ValidationError(f"{name} is required", field=name)
    if not values.get("fingerprint"):
        values["fingerprint"] = fingerprint_of(audit_type, values["title"], values.get("target"))
    return values


class AuditRepository(Repository):
    # -- writing ----------------------------------------------------------------------------
    def submit(
        self, audit_type: str | None = None, findings: Sequence[Mapping[str, Any]] | None = None, /, **fields: Any,
    ) -> AuditRunResult:
        """Record one audit run's findings (up to 1,000; an empty list is a clean run):
        ``submit("security", [...], close_missing=True)``.

        Fields (:data:`RUN_CLEANERS`): audit_type and findings (here or positional), run_id,
        close_missing, actor. Each finding: severity (info, warning, critical), title
        (required), detail, target, fingerprint (derived from type, title and target when
        absent). ``close_missing`` resolves the open findings of this type that the run did not
        report. Everything is one transaction; a bad finding raises ValidationError with its
        ``index`` and ``field``.
        """
        options = clean_fields(with_positional(fields, audit_type=audit_type, findings=findings),
                               RUN_CLEANERS, "an audit run")
        options = {"run_id": None, "close_missing": False, "actor": None, **options}
        audit_type = options["audit_type"]
        items = batch(options["findings"], "finding", MAX_FINDINGS, name="findings") if options["findings"] else []
        seen: dict[str, dict[str, Any]] = {}  # by fingerprint: a finding listed twice counts once
        for index, fields in enumerate(items):
            with item_of_batch(index, "finding"):
                finding = clean_finding(fields, audit_type)
            twin = seen.get(finding["fingerprint"])
            if twin is None or RANK[finding["severity"]] > RANK[twin["severity"]]:
                seen[finding["fingerprint"]] = finding if twin is None else {**twin, "severity": finding["severity"]}

        now = utcnow()
        created: list[AuditFinding] = []
        updated: list[AuditFinding] = []
        resolved: list[AuditFinding] = []
        made: list[Task] = []
        with self._scope.writing() as conn:
            live = {row.fingerprint: self._finding(row) for row in conn.execute(_LIVE_OF_TYPE, {"audit_type": audit_type})}
            for fingerprint, finding in seen.items():
                current = live.get(fingerprint)
                if current is None:
                    row = {
                        "audit_type": audit_type, "severity": finding["severity"], "title": finding["title"],
                        "detail": finding.get("detail"), "target": finding.get("target"),
                        "fingerprint": fingerprint, "status": "open", "occurrences": 1,
                        "run_id": options["run_id"], "first_seen_at": now, "last_seen_at": now,
                        "resolved_at": None, "resolution": None, "resolved_by": None, "fix_task_id": None,
                    }
                    new_id = conn.execute(_INSERT, row).inserted_primary_key[0]
                    result, task = self._with_fix_task(conn, self._finding({"id": new_id, **row}), options["actor"])
                    created.append(result)
                    _announce(conn, self._ctx, result)
                else:
                    changes = {
                        "last_seen_at": now,
                        "occurrences": current.occurrences + 1,
                        "run_id": options["run_id"] or current.run_id,
                        "detail": finding.get("detail", current.detail),
                    }
                    if RANK[finding["severity"]] > RANK[current.severity]:
                        changes["severity"] = finding["severity"]
                    conn.execute(_UPDATE, {"match_id": current.id, **changes})
                    result, task = self._with_fix_task(conn, replace(current, **changes), options["actor"])
                    updated.append(result)
                if task is not None:
                    made.append(task)
            if options["close_missing"]:
                note = f"not reported by audit run {options['run_id']}" if options["run_id"] else "not reported by the latest audit run"
                for fingerprint, current in live.items():
                    if current.status == "open" and fingerprint not in seen:
                        changes = {"status": "resolved", "resolved_at": now, "resolution": note,
                                   "resolved_by": options["actor"]}
                        conn.execute(_UPDATE, {"match_id": current.id, **changes})
                        resolved.append(replace(current, **changes))
        log.info("audit run %s/%s: %d created, %d updated, %d resolved, %d fix tasks",
                 audit_type, options["run_id"], len(created), len(updated), len(resolved), len(made))
        return AuditRunResult(audit_type=audit_type, run_id=options["run_id"], created=tuple(created),
                              updated=tuple(updated), resolved=tuple(resolved), tasks=tuple(made))

    def _with_fix_task(self, conn: sa.Connection, finding: AuditFinding, actor: str | None) -> tuple[AuditFinding, Task | None]:
        """A live critical finding without a fix task gets one, once."""
        if finding.severity != "critical" or finding.fix_task_id is not None or finding.status != "open":
            return finding, None
        tasks = TaskRepository(ConnectionScope(self._ctx.backend, conn), self._ctx)
        title = f"Fix {finding.audit_type} finding: {finding.title}"
        task = tasks.create(
            name=title[:500], type="system", priority="high",
            description=_fix_description(finding),
            tags=["audit", f"audit-{finding.audit_type}", f"audit-finding-{finding.id}"],
            actor=actor or "audit",
        )
        conn.execute(_UPDATE, {"match_id": finding.id, "fix_task_id": task.id})
        return replace(finding, fix_task_id=task.id, fix_task_ref=task.ref), task

    def update(self, finding_id: int, /, **fields: Any) -> AuditFinding:
        """Resolve or ignore a finding (or re-open it) with a note saying why and who.

        Fields (:data:`UPDATE_CLEANERS`): status (required), resolution, actor. Resolving
        records ``resolved_at``; re-opening clears it. A finding cannot be re-opened while
        another live finding has its fingerprint.
        """
        finding_id = check_cursor(finding_id, "id")
        values = {"resolution": None, "actor": None,
                  **clean_fields(fields, UPDATE_CLEANERS, "a finding update")}
        now = utcnow()
        with self._scope.writing() as conn:
            current = self._get(conn, finding_id)
            closing = values["status"] != "open"
            changes: dict[str, Any] = {
                "status": values["status"],
                "resolved_at": now if values["status"] == "resolved" else None,
                "resolution": values["resolution"],
                "resolved_by": values["actor"] if closing else None,
            }
            if current.status == "resolved" and values["status"] in LIVE:
                clash = conn.execute(_LIVE_OF_TYPE.where(audit_findings.c.fingerprint == current.fingerprint),
                                     {"audit_type": current.audit_type}).first()
                if clash is not None and clash.id != current.id:
                    raise ConflictError(
                        f"finding {clash.id} is already live with this fingerprint; update that one",
                        finding_id=clash.id)
            conn.execute(_UPDATE, {"match_id": finding_id, **changes})
        return replace(current, **changes)

    def resolve(self, finding_id: int, resolution: str | None = None, /, **fields: Any) -> AuditFinding:
        return self.update(finding_id, status="resolved", **with_positional(fields, resolution=resolution))

    def ignore(self, finding_id: int, resolution: str | None = None, /, **fields: Any) -> AuditFinding:
        return self.update(finding_id, status="ignored", **with_positional(fields, resolution=resolution))

    # -- reading ----------------------------------------------------------------------------
    def get(self, finding_id: int) -> AuditFinding:
        finding_id = check_cursor(finding_id, "id")
        with self._scope.reading() as conn:
            return self._get(conn, finding_id)

    def list(
        self,
        *,
        audit_type: str | None = None,
        severity: str | None = None,
        status: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[AuditFinding]:
        """Findings in id order, every status unless ``status`` is given. ``since`` (inclusive)
        and ``until`` (exclusive) bound when a finding was last seen."""
        conditions = _conditions(audit_type=audit_type, severity=severity, status=status, since=since, until=until)
        limit = check_limit(limit)
        after = check_cursor(after)
        query = sa.select(audit_findings).where(*conditions)
        if after is not None:
            query = query.where(audit_findings.c.id > after)
        with self._scope.reading() as conn:
            rows = conn.execute(query.order_by(audit_findings.c.id).limit(limit)).all()
        return [self._finding(row) for row in rows]

    def count_by(self, field: str, **filters: Any) -> dict[str, int]:
        """How many findings match (the filters of :meth:`list`) per value of ``field``
        (audit_type, severity or status), sorted by value: one query, however many there are."""
        if field not in COUNT_BY_FIELDS:
            raise ValidationError(
                f"count_by field must be one of {', '.join(COUNT_BY_FIELDS)}, got {field!r}", field="field")
        column = audit_findings.c[field]
        query = sa.select(column, sa.func.count()).where(*_conditions(**filters)).group_by(column)
        with self._scope.reading() as conn:
            return dict(sorted((value, count) for value, count in conn.execute(query)))

    def _get(self, conn: sa.Connection, finding_id: int) -> AuditFinding:
        row = conn.execute(_BY_ID, {"id": finding_id}).first()
        if row is None:
            raise NotFoundError(f"no audit finding {finding_id}", finding_id=finding_id)
        return self._finding(row)

    def _finding(self, row: sa.Row | Mapping[str, Any]) -> AuditFinding:
        values = dict(row._mapping if isinstance(row, sa.Row) else row)
        task_id = values["fix_task_id"]
        return AuditFinding(fix_task_ref=None if task_id is None else self._ctx.ref(task_id), **values)


def _conditions(
    *,
    audit_type: str | None = None,
    severity: str | None = None,
    status: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
) -> list[sa.ColumnElement[bool]]:
    filters = clean_fields(
        {"audit_type": audit_type, "severity": severity, "status": status, "since": since, "until": until},
        {"audit_type": nullable(identifier("audit type")), "severity": nullable(choice(SEVERITIES)),
         "status": nullable(choice(FINDING_STATUSES)), "since": timestamp, "until": timestamp},
        "an audit filter",
    )
    conditions = [audit_findings.c[name] == filters[name] for name in ("audit_type", "severity", "status")
                  if filters[name] is not None]
    if filters["since"] is not None:
        conditions.append(audit_findings.c.last_seen_at >= filters["since"])
    if filters["until"] is not None:
        conditions.append(audit_findings.c.last_seen_at < filters["until"])
    return conditions


def _announce(conn: sa.Connection, ctx: StoreContext, finding: AuditFinding) -> None:
    """A new finding on the change feed (on its fix task's trail, when it has one)."""
    insert_event(conn, ctx, finding.fix_task_id, "audit_finding", detail=finding.title, actor="lobstore", data={
        "id": finding.id, "severity": finding.severity, "type": finding.audit_type, "title": finding.title,
        "target": finding.target, "task": finding.fix_task_ref})


def _fix_description(finding: AuditFinding) -> str:
    lines = [
        f"Audit finding {finding.id} ({finding.audit_type}, {finding.severity}): {finding.title}",
        "",
    ]
    if finding.target:
        lines.append(f"Target: {finding.target}")
    if finding.detail:
        lines += ["", finding.detail]
    lines += ["", f"Resolve the finding when fixed: PATCH /api/audits/{finding.id} "
                  '{"status": "resolved", "resolution": "..."}']
    return "\n".join(lines)
