"""The import itself: every old file read and mapped, new tasks created in one transaction,
oldest first, and only then their T-files written."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ...errors import LobstoreError
from ...models import Task
from ...store import Store
from ...sync import frontmatter
from ...sync.files import DEFAULT_TASKS_DIR, TASK_FOLDERS, is_task_file, task_files, write_atomic
from ...sync.frontmatter import FrontmatterError
from ...sync.render import Renderer, task_keys
from ...validation import MAX_JSON_BYTES
from .mapping import Planned, Skip, read_task_file
from .report import FileEntry, VaultImportReport

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # stage ("reading", "importing", "writing"), done, total

ACTOR = "import-vault"
IMPORT_KEY = "_import"  # metadata key holding where a task came from (path, hash, notes)


class VaultImportError(LobstoreError):
    """The import cannot start (not a vault) or could not finish; nothing was written."""


def import_vault(
    store: Store,
    vault: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    tasks_dir: str = DEFAULT_TASKS_DIR,
    actor: str = ACTOR,
) -> VaultImportReport:
    """Import every old task file of ``vault`` into ``store``; see the module docstring.

    Raises VaultImportError when ``vault`` is not a vault (nothing is read or written), and
    whatever the database raises when the transaction fails (nothing is written then either).
    Problems with single files are in the report, not raised.
    """
    started = time.perf_counter()
    root = Path(vault).expanduser()
    tasks_root = check_vault(root, tasks_dir)
    report = VaultImportReport(vault=str(root), dry_run=dry_run)
    renderer = Renderer(tasks_dir=tasks_dir)
    tell = progress or (lambda stage, done, total: None)

    planned = _read_all(root, tasks_root, store.id_prefix, report, tell)
    planned = _drop_duplicates(planned, report)
    existing = store.tasks.by_legacy_ids(p.entry.legacy_id for p in planned if p.entry.legacy_id)
    t_files = task_files(root, renderer.tasks_dir, store.id_prefix)
    new: list[Planned] = []
    repairs: list[tuple[Planned, Task]] = []
    for plan in planned:
        task = existing.get(plan.entry.legacy_id or "")
        if task is None:
            new.append(plan)
        else:
            _classify_present(plan, task, t_files, report, repairs)
    # Creation order: T1 is the oldest. Ties (same second) by old id, then path: deterministic.
    new.sort(key=lambda p: (p.fields["created_at"], p.entry.legacy_id, p.entry.path))

    if dry_run:
        report.imported = [p.entry for p in new]
        report.repaired = [p.entry for p, _ in repairs]
        report.seconds = time.perf_counter() - started
        return report

    created: list[tuple[Planned, Task]] = []
    with store.transaction() as tx:
        for done, plan in enumerate(new, start=1):
            fields = {**plan.fields, "metadata": _with_provenance(plan)}
            created.append((plan, tx.tasks.create(actor=actor, **fields)))
            tell("importing", done, len(new))
    log.info("imported %d tasks from %s", len(created), root)

    # Only now, with the tasks committed, are files written: a failure here loses nothing
    # and the next run writes what is missing.
    to_write = [(plan, task, True) for plan, task in created] + [(plan, task, False) for plan, task in repairs]
    for done, (plan, task, is_new) in enumerate(to_write, start=1):
        plan.entry.task = task.ref
        target = renderer.task_path(task)
        plan.entry.target = target
        if is_new and task.ref in t_files:
            plan.entry.reason = (f"{', '.join(t_files[task.ref])} already exists and belongs to no imported task: "
                                 "left as it is; move it away and run the import again")
            report.write_errors.append(plan.entry)
        else:
            try:
                write_atomic(root / target, _t_file_text(renderer, task, plan.text))
            except OSError as exc:
                plan.entry.reason = f"{type(exc).__name__}: {exc}"
                report.write_errors.append(plan.entry)
                log.warning("could not write %s: %s", target, exc)
        tell("writing", done, len(to_write))
    report.imported = [p.entry for p, _ in created]
    failed = {id(e) for e in report.write_errors}
    report.repaired = [p.entry for p, _ in repairs if id(p.entry) not in failed]
    report.seconds = time.perf_counter() - started
    return report


def check_vault(vault: str | os.PathLike[str], tasks_dir: str = DEFAULT_TASKS_DIR) -> Path:
    """The vault's tasks folder; VaultImportError saying what is missing when it is no vault."""
    root = Path(vault).expanduser()
    if not root.is_dir():
        raise VaultImportError(f"{root} is not a vault: no such folder")
    tasks_root = root / tasks_dir.strip("/")
    if not tasks_root.is_dir():
        raise VaultImportError(f"{root} is not a vault: it has no {tasks_dir.strip('/')}/ folder "
                               "(the old task files live in 010-tasks/{active,completed,failed}/)")
    if not any((tasks_root / folder).is_dir() for folder in TASK_FOLDERS):
        raise VaultImportError(f"{tasks_root} has none of the folders {', '.join(TASK_FOLDERS)}: "
                               "there is no task file to import")
    return tasks_root


def _read_all(root: Path, tasks_root: Path, prefix: str, report: VaultImportReport, tell: Progress) -> list[Planned]:
    found: list[tuple[Path, str]] = []
    for path in sorted(tasks_root.glob("*.md")):
        if path.name.startswith(("_", ".")):
            report.store_files += 1  # _overview.md: the sync's page
        else:
            report.not_tasks.append(FileEntry(path=_rel(root, path), reason=(
                "outside active/, completed/ and failed/: move it into one to import it")))
    for folder in TASK_FOLDERS:
        base = tasks_root / folder
        for path in sorted(base.rglob("*.md")) if base.is_dir() else ():
            parts = path.relative_to(base).parts
            if any(p.startswith(".") for p in parts):
                continue  # hidden files: editors' and the sync's temporary files
            if len(parts) == 1 and is_task_file(path.name, prefix):
                report.store_files += 1
                continue
            found.append((path, folder))
    planned: list[Planned] = []
    for done, (path, folder) in enumerate(found, start=1):
        rel = _rel(root, path)
        try:
            planned.append(read_task_file(path, rel, folder))
        except Skip as skip:
            getattr(report, skip.kind).append(FileEntry(path=rel, reason=skip.reason, line=skip.line))
        except OSError as exc:
            report.unreadable.append(FileEntry(path=rel, reason=f"cannot read it: {exc.strerror or exc}"))
        tell("reading", done, len(found))
    return planned


def _drop_duplicates(planned: list[Planned], report: VaultImportReport) -> list[Planned]:
    """A task copied rather than moved between folders leaves one old id in two files:
    which one is right is a person's call, so neither is imported and both are reported."""
    by_id: dict[str, list[Planned]] = {}
    for plan in planned:
        by_id.setdefault(plan.entry.legacy_id or "", []).append(plan)
    keep: list[Planned] = []
    for legacy_id, plans in by_id.items():
        if len(plans) == 1:
            keep.append(plans[0])
            continue
        paths = [p.entry.path for p in plans]
        for plan in plans:
            others = ", ".join(p for p in paths if p != plan.entry.path)
            plan.entry.reason = f"the id {legacy_id} is also in {others}: keep one file and run the import again"
            report.duplicates.append(plan.entry)
    return keep


def _classify_present(plan: Planned, task: Task, t_files: Mapping[str, list[str]], report: VaultImportReport,
                      repairs: list[tuple[Planned, Task]]) -> None:
    entry = plan.entry
    entry.task, entry.name, entry.status, entry.notes = task.ref, task.name, task.status, []
    provenance = task.metadata.get(IMPORT_KEY) if isinstance(task.metadata, dict) else None
    if not isinstance(provenance, dict):
        entry.reason = f"{task.ref} already has this id (it was not imported from a file)"
        report.already_present.append(entry)
        return
    if provenance.get("sha256") != plan.sha256:
        entry.reason = (f"changed since it was imported as {task.ref}: not imported again "
                        f"(the database keeps {task.ref}; edit its file {task.ref}.md instead)")
        report.changed_since_import.append(entry)
    else:
        entry.reason = f"imported before as {task.ref}"
        report.already_present.append(entry)
    if task.ref not in t_files:  # an earlier run committed but could not write the file
        repairs.append((plan, task))


def _with_provenance(plan: Planned) -> dict[str, Any]:
    provenance: dict[str, Any] = {"path": plan.entry.path, "sha256": plan.sha256}
    if plan.entry.notes:
        provenance["notes"] = list(plan.entry.notes)
    metadata = {**plan.fields["metadata"], IMPORT_KEY: provenance}
    size = len(json.dumps(metadata, ensure_ascii=False).encode())
    if size > MAX_JSON_BYTES:
        note = f"its other keys are too large for metadata ({size} bytes as JSON): kept only in the original file"
        plan.entry.notes.append(note)
        metadata = {IMPORT_KEY: {**provenance, "notes": list(plan.entry.notes)}}
    return metadata


def _t_file_text(renderer: Renderer, task: Task, old_text: str) -> str:
    """What the vault sync renders for ``task`` over the old file: its keys set, the rest
    kept. An old frontmatter the sync could not edit safely gives way to the store's keys
    alone (the body still kept); the old file itself is unchanged either way."""
    try:
        return renderer.task_text(task, old_text)
    except FrontmatterError:
        doc = frontmatter.split(old_text)
        return frontmatter.Document(frontmatter.set_keys("", task_keys(task)), doc.body).text


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()

