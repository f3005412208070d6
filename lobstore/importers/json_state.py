"""One-time import of lobwife's JSON state files: jobs.json, tasks.json, token-audit.json.

Everything is read and checked first; a malformed file is a ValidationError naming the file
(and the entry) and nothing is written. The import itself is one transaction. Only after it
committed are the files renamed to ``*.migrated`` (unless ``keep``), so the source is never
destroyed before its data is safe. Running it again changes nothing: jobs and registrations
already in the store are left as they are, and audit entries already imported are not added
twice.

Import the vault first (its tasks carry the legacy ids the broker used): a registration whose
key names no task of the store (by legacy id) is kept as a standalone registration under that
key, as lobwife kept it, so that nothing is dropped and tokens can still be asked for by it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..errors import ValidationError
from ..repositories.broker import REGISTRATION_STATUSES
from ..repositories.jobs import STATE_CLEANERS, job_name
from ..store import Store
from ..validation import MAX_SHORT_TEXT, choice, clean_fields, identifier, integer, repo_name, string_list, text, timestamp
from .report import ImportReportBase, names

log = logging.getLogger(__name__)

JOBS_FILE, TASKS_FILE, AUDIT_FILE = "jobs.json", "tasks.json", "token-audit.json"
FILES = (JOBS_FILE, TASKS_FILE, AUDIT_FILE)
MIGRATED_SUFFIX = ".migrated"
ACTOR = "import-json"
# What the old broker gave a registration when tasks.json has no expiry of its own.
LEGACY_TTL = timedelta(hours=24)


def _any_repo_list(value: Any) -> list[str]:
    return string_list(repo_name)(value)


REGISTRATION_CLEANERS = {
    "repos": _any_repo_list,
    "lobster_type": text(100),
    "registered_at": timestamp,
    "expires_at": timestamp,
    "status": choice(REGISTRATION_STATUSES),
    "token_count": integer(0, 2**31 - 1, optional=False),
}
AUDIT_CLEANERS = {
    "timestamp": timestamp,
    "task_id": text(MAX_SHORT_TEXT, required=True),
    "repos": _any_repo_list,
    "action": identifier("audit action"),
}


@dataclass
class JsonStateImportReport(ImportReportBase):
    """What an import of lobwife's JSON state did (or, with ``dry_run``, would do)."""

    state_dir: str
    dry_run: bool = False
    missing: list[str] = field(default_factory=list)
    jobs_imported: list[str] = field(default_factory=list)
    jobs_skipped: list[str] = field(default_factory=list)  # already in the store
    standalone: list[str] = field(default_factory=list)  # keys that name no task: kept standalone
    registrations_imported: list[str] = field(default_factory=list)  # legacy ids
    registrations_skipped: list[str] = field(default_factory=list)  # the task already has one
    audit_imported: int = 0
    audit_skipped: int = 0  # already imported
    ignored_fields: list[str] = field(default_factory=list)  # "jobs.json: x.next_run"
    renamed: list[str] = field(default_factory=list)
    rename_errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.jobs_imported or self.registrations_imported or self.audit_imported)

    def lines(self) -> list[str]:
        """A summary a person reads after ``lobstore import-json``."""
        would = "would import" if self.dry_run else "imported"
        out = [f"{'dry run: ' if self.dry_run else ''}lobwife state from {self.state_dir}"]
        for name in self.missing:
            out.append(f"  {name}: not found (nothing to import)")
        out.append(f"  jobs: {would} {len(self.jobs_imported)}{names(self.jobs_imported)}, "
                   f"{len(self.jobs_skipped)} already in the store{names(self.jobs_skipped)}")
        out.append(f"  registrations: {would} {len(self.registrations_imported)}"
                   f"{names(self.registrations_imported)}, {len(self.registrations_skipped)} "
                   f"already registered{names(self.registrations_skipped)}")
        if self.standalone:
            out.append(f"  standalone registrations (the key names no task of the store): "
                       f"{', '.join(self.standalone)}")
        out.append(f"  token audit entries: {would} {self.audit_imported}, {self.audit_skipped} already there")
        for name in self.ignored_fields:
            out.append(f"  ignored unknown field {name}")
        for name in self.renamed:
            out.append(f"  renamed {name}")
        for error in self.rename_errors:
            out.append(f"  NOT renamed: {error}")
        if not self.changed:
            out.append("  nothing new: the store already holds all of it")
        return out


class _DryRun(Exception):
    """Raised inside the transaction of a dry run so everything is rolled back."""


def import_json_state(store: Store, state_dir: str | Path, *, keep: bool = False, dry_run: bool = False) -> JsonStateImportReport:
    """Import jobs.json, tasks.json and token-audit.json from ``state_dir`` in one transaction.

    Missing files are fine (reported). ``dry_run`` reports what would happen and changes
    nothing; ``keep`` leaves the files where they are instead of renaming them to ``*.migrated``.
    """
    folder = Path(state_dir)
    if not folder.is_dir():
        raise ValidationError(f"{folder} is not a folder (expected lobwife's state folder)", field="state_dir")
    report = JsonStateImportReport(state_dir=str(folder), dry_run=dry_run)
    raw = {}
    for name in FILES:
        path = folder / name
        if path.is_file():
            raw[name] = _read_json(path)
        else:
            report.missing.append(name)
    jobs = _parse_jobs(folder / JOBS_FILE, raw.get(JOBS_FILE, {}), report)
    registrations = _parse_registrations(folder / TASKS_FILE, raw.get(TASKS_FILE, {}), report)
    audit = _parse_audit(folder / AUDIT_FILE, raw.get(AUDIT_FILE, []), report)

    try:
        with store.transaction() as tx:
            for name, state in jobs.items():
                (report.jobs_imported if tx.jobs.import_state(name, state) else report.jobs_skipped).append(name)
            for legacy_id, registration in registrations.items():
                task = tx.tasks.by_legacy_id(legacy_id)
                if task is None:
                    report.standalone.append(legacy_id)
                imported = tx.broker.import_registration(
                    task.id if task is not None else None, name=legacy_id, **registration,
                    source=TASKS_FILE, actor=ACTOR,
                )
                (report.registrations_imported if imported else report.registrations_skipped).append(legacy_id)
            report.audit_imported, report.audit_skipped = tx.broker.import_audit(audit)
            if dry_run:
                raise _DryRun
    except _DryRun:
        return report
    log.info("imported lobwife state from %s: %d jobs, %d registrations, %d audit entries",
             folder, len(report.jobs_imported), len(report.registrations_imported), report.audit_imported)
    if not keep:
        _rename(folder, [name for name in FILES if name in raw], report)
    return report


# -- reading ----------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValidationError(f"{path}: cannot be read as JSON: {exc}", field=path.name, file=str(path)) from None


def _bad(path: Path, message: str, field: str | None = None, entry: object = None) -> ValidationError:
    where = f"{path}: entry {entry!r}: " if entry is not None else f"{path}: "
    details = {"file": str(path)}
    if entry is not None:
        details["entry"] = str(entry)
    return ValidationError(f"{where}{message}; nothing was imported", field=field or path.name, **details)


def _entries(path: Path, data: Any, shape: type) -> Any:
    if not isinstance(data, shape):
        kind = "an object keyed by name" if shape is dict else "a list"
        raise _bad(path, f"must hold {kind}, not {type(data).__name__}")
    return data


def _clean(path: Path, entry: object, values: Any, cleaners: dict[str, Any], report: JsonStateImportReport) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise _bad(path, f"must be an object, not {type(values).__name__}", entry=entry)
    known = {k: v for k, v in values.items() if k in cleaners}
    # Fields a newer or older lobwife wrote that the store has no place for: reported, not fatal.
    report.ignored_fields += [f"{path.name}: {entry}.{k}" for k in values if k not in cleaners]
    try:
        return clean_fields(known, cleaners, f"an entry of {path.name}")
    except ValidationError as exc:
        raise _bad(path, exc.message, field=exc.field, entry=entry) from None


def _parse_jobs(path: Path, data: Any, report: JsonStateImportReport) -> dict[str, dict[str, Any]]:
    jobs = {}
    for name, values in _entries(path, data, dict).items():
        try:
            job_name(name)
        except ValueError as exc:
            raise _bad(path, f"job name {exc}", field="name", entry=name) from None
        state = _clean(path, name, values, STATE_CLEANERS, report)
        state.setdefault("enabled", True)
        state.setdefault("run_count", 0)
        state.setdefault("fail_count", 0)
        jobs[name] = state
    return jobs


def _parse_registrations(path: Path, data: Any, report: JsonStateImportReport) -> dict[str, dict[str, Any]]:
    registrations = {}
    for legacy_id, values in _entries(path, data, dict).items():
        if not legacy_id.strip() or len(legacy_id) > 200 or "\x00" in legacy_id:
            raise _bad(path, "the key must be a task id of 1 to 200 characters", field="task_id", entry=legacy_id)
        clean = _clean(path, legacy_id, values, REGISTRATION_CLEANERS, report)
        for required in ("repos", "registered_at"):
            if not clean.get(required):
                raise _bad(path, f"{required} is required", field=required, entry=legacy_id)
        registrations[legacy_id] = {
            "repos": clean["repos"],
            "lobster_type": clean.get("lobster_type"),
            "registered_at": clean["registered_at"],
            "expires_at": clean.get("expires_at") or clean["registered_at"] + LEGACY_TTL,
            "status": clean.get("status") or "active",
            "token_count": clean.get("token_count") or 0,
        }
    return registrations


def _parse_audit(path: Path, data: Any, report: JsonStateImportReport) -> list[dict[str, Any]]:
    entries = []
    for position, values in enumerate(_entries(path, data, list)):
        clean = _clean(path, position, values, AUDIT_CLEANERS, report)
        for required in ("timestamp", "task_id", "action"):
            if clean.get(required) is None:
                raise _bad(path, f"{required} is required", field=required, entry=position)
        entries.append({
            "legacy_task_id": clean["task_id"], "repos": clean.get("repos") or [],
            "action": clean["action"], "created_at": clean["timestamp"],
        })
    return entries


# -- after the commit -----------------------------------------------------------------------
def _rename(folder: Path, files: list[str], report: JsonStateImportReport) -> None:
    for name in files:
        source = folder / name
        target = folder / f"{name}{MIGRATED_SUFFIX}"
        n = 1
        while target.exists():  # never overwrite an earlier run's copy
            n += 1
            target = folder / f"{name}{MIGRATED_SUFFIX}.{n}"
        try:
            source.rename(target)
        except OSError as exc:
            # The data is committed; a rerun is harmless. Say so rather than fail.
            log.warning("imported %s but could not rename it: %s", source, exc)
            report.rename_errors.append(f"{name}: {exc.strerror or exc}")
        else:
            report.renamed.append(f"{name} -> {target.name}")
