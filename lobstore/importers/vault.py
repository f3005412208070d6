"""The vault importer: today's task files into the store, nothing lost, nothing twice.

A one-time migration, run against a vault people care about, so it is careful:

* it only **reads** the old files (``010-tasks/{active,completed,failed}/**/*.md``) and never
  changes or removes one; the tasks get new files ``010-tasks/<folder>/T42.md`` beside them;
* every task goes into the database in **one transaction**, oldest first (so ``T1`` is the
  oldest task); a failure half way leaves the database as it was and writes no file;
* the T-files are written only **after** the commit. If writing one fails, the database still
  holds the task and a second run writes the missing file (it repairs, it does not re-import);
* it is **idempotent**: a file whose old id is already in the store is "already present", or
  "changed since import" when its bytes differ from what was imported (a hash kept in the
  task's metadata), and is never imported twice;
* a dry run reads everything and writes nothing, to the database or the vault.

The T-file is the vault sync's own rendering of the task applied to the old file (the store's
frontmatter keys set, every other key, comment and the body kept byte for byte), so the next
sync cycle finds nothing to change.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from .. import status as st
from ..clock import parse_timestamp, to_iso
from ..errors import LobstoreError, ValidationError
from ..models import Task
from ..repositories.tasks import CREATE_CLEANERS, UPDATE_CLEANERS
from ..store import Store
from ..validation import MAX_JSON_BYTES, MAX_LONG_TEXT, MAX_SHORT_TEXT, clean_fields
from ..sync import frontmatter
from ..sync.files import DEFAULT_TASKS_DIR, TASK_FOLDERS, is_task_file, task_files, write_atomic
from ..sync.frontmatter import FrontmatterError
from ..sync.render import Renderer, task_keys

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # stage ("reading", "importing", "writing"), done, total

ACTOR = "import-vault"
IMPORT_KEY = "_import"  # metadata key holding where a task came from (path, hash, notes)
# Old ids: task-2026-02-15-a1b2, task-2026-02-15-inv-0f1e2d3c and, in older docs, 2026-02-15-unity-ui.
LEGACY_ID_RE = re.compile(r"^(task-)?(\d{4}-\d{2}-\d{2})-([A-Za-z0-9][A-Za-z0-9_.-]*)$")
# Placeholders of Obsidian's core templates ({{date}}) and Templater (<% tp.date.now() %>), and
# an id spelled out as its format (task-YYYY-MM-DD-xxxx): what template files hold.
PLACEHOLDER_RE = re.compile(r"\{\{.*?\}\}|<%.*?%>", re.S)
FORMAT_ID_RE = re.compile(r"^id[ \t]*:.*?\b(YYYY|xxxx)\b", re.M)
TITLE_RE = re.compile(r"^#[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*\r?$")  # ATX: "# Title", "# Title #"
FENCE_LINE_RE = re.compile(r"^(```|~~~)")
ESTIMATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|mins|minutes|h|hr|hrs|hours)?\s*$", re.I)
LIST_SPLIT_RE = re.compile(r"[,\s]+")
BOM = "\ufeff"
TIMESTAMP_KEYS = ("queued_at", "assigned_at", "completed_at")
# Frontmatter keys that become columns; every other key goes into the task's metadata.
COLUMN_KEYS = frozenset({
    "id", "status", "created", "created_at", *TIMESTAMP_KEYS, "assigned_to", "priority", "tags",
    "estimate", "model", "type", "repo", "repos", "workflow", "requires_qa", "discord_thread_id",
})
# Which folder a file sits in says which status it had when the frontmatter is silent.
TERMINAL_FOLDERS = {"completed": st.COMPLETED, "failed": st.FAILED}


class VaultImportError(LobstoreError):
    """The import cannot start (not a vault) or could not finish; nothing was written."""


class _Skip(Exception):
    """A file the import leaves out: ``kind`` names the report's list, ``reason`` says why."""

    def __init__(self, kind: str, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.kind, self.reason, self.line = kind, reason, line


# -- the report --------------------------------------------------------------------------------
@dataclass
class FileEntry:
    """One file and what the import did with it. Paths are relative to the vault."""

    path: str
    legacy_id: str | None = None
    task: str | None = None  # the ref (T42); None in a dry run
    name: str | None = None
    status: str | None = None
    target: str | None = None  # the T-file
    reason: str | None = None
    line: int | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    vault: str
    dry_run: bool = False
    imported: list[FileEntry] = field(default_factory=list)
    already_present: list[FileEntry] = field(default_factory=list)
    changed_since_import: list[FileEntry] = field(default_factory=list)
    repaired: list[FileEntry] = field(default_factory=list)  # T-files a failed earlier run missed
    templates: list[FileEntry] = field(default_factory=list)
    not_tasks: list[FileEntry] = field(default_factory=list)
    unreadable: list[FileEntry] = field(default_factory=list)
    duplicates: list[FileEntry] = field(default_factory=list)  # one old id in several files
    write_errors: list[FileEntry] = field(default_factory=list)
    store_files: int = 0  # T-files and pages the store itself wrote: not old tasks
    seconds: float = 0.0

    @property
    def disagreements(self) -> list[FileEntry]:
        """Imported files whose status and folder disagreed (the folder won)."""
        return [e for e in self.imported if any(n.startswith("status ") for n in e.notes)]

    @property
    def counts(self) -> dict[str, int]:
        names = ("imported", "already_present", "changed_since_import", "repaired", "templates",
                 "not_tasks", "unreadable", "duplicates", "write_errors")
        out = {name: len(getattr(self, name)) for name in names}
        out["status_disagreements"] = len(self.disagreements)
        out["store_files"] = self.store_files
        return out

    @property
    def written(self) -> list[str]:
        """The T-files this run wrote."""
        if self.dry_run:
            return []
        failed = {id(e) for e in self.write_errors}
        return sorted(e.target for e in (*self.imported, *self.repaired) if e.target and id(e) not in failed)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"vault": self.vault, "dry_run": self.dry_run, "counts": self.counts,
                               "seconds": round(self.seconds, 3)}
        for name in ("imported", "already_present", "changed_since_import", "repaired", "templates",
                     "not_tasks", "unreadable", "duplicates", "write_errors"):
            out[name] = [{k: v for k, v in asdict(e).items() if v not in (None, [])}
                         for e in getattr(self, name)]
        return out

    def format_text(self) -> str:
        """The summary a person reads at the end of ``lobstore import-vault``."""
        lines: list[str] = []

        def section(title: str, entries: list[FileEntry], show: Callable[[FileEntry], str]) -> None:
            if entries:
                lines.append(f"{title} ({len(entries)}):")
                lines.extend(f"  {show(e)}" for e in entries)

        verb = "would import" if self.dry_run else "imported"
        section(verb.capitalize(), self.imported, lambda e: (
            f"{e.task or '-':>6}  {e.path}  ({e.status}) {e.name}"
            + "".join(f"\n          note: {n}" for n in e.notes)))
        section("Repaired (T-file written again)", self.repaired, lambda e: f"{e.task}  {e.target}")
        section("Changed since import (not re-imported)", self.changed_since_import,
                lambda e: f"{e.path}: {e.reason}")
        section("Unreadable", self.unreadable, lambda e: f"{e.path}" + (f":{e.line}" if e.line else "") + f": {e.reason}")
        section("Same old id in several files (none of them imported)", self.duplicates,
                lambda e: f"{e.path}: {e.reason}")
        section("Not task files", self.not_tasks, lambda e: f"{e.path}: {e.reason}")
        section("Skipped templates", self.templates, lambda e: f"{e.path}: {e.reason}")
        section("Could not write", self.write_errors, lambda e: f"{e.target}: {e.reason}")
        c = self.counts
        lines.append(
            f"{'Dry run: ' if self.dry_run else ''}{c['imported']} {verb}, {c['already_present']} already present, "
            f"{c['changed_since_import']} changed since import, {c['templates']} templates skipped, "
            f"{c['unreadable']} unreadable, {c['duplicates']} duplicates, {c['not_tasks']} not tasks, "
            f"{c['status_disagreements']} status/folder disagreements"
            + (f", {c['repaired']} repaired" if c["repaired"] else "")
            + (f", {c['write_errors']} NOT WRITTEN" if c["write_errors"] else "")
            + f" ({self.seconds:.1f}s)"
        )
        if self.dry_run:
            lines.append("Nothing was written. Run again without --dry-run to import.")
        elif self.write_errors:
            lines.append("The database has every imported task; run the import again to write the missing files.")
        elif self.written:
            lines.append(f"{len(self.written)} new files under the tasks folder: review and commit them "
                         f"(git -C {self.vault} add -A && git -C {self.vault} commit). The old files are unchanged.")
        return "\n".join(lines)


# -- reading one file --------------------------------------------------------------------------
@dataclass
class _Planned:
    """A file read, checked and mapped: the fields for ``tasks.create`` and its text."""

    entry: FileEntry
    fields: dict[str, Any]
    text: str  # the file as it was (without a leading byte-order mark)
    sha256: str


def read_task_file(path: Path, rel: str, folder: str) -> _Planned:
    """Read, check and map one old task file; _Skip says why it is left out."""
    raw = path.read_bytes()
    if "template" in path.stem.lower() and not _valid_id(path.stem):  # not 2026-02-15-email-templates
        raise _Skip("templates", "a template (its name says so)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Skip("unreadable", f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                    raw[: exc.start].count(b"\n") + 1) from None
    text = text.removeprefix(BOM)  # Obsidian never writes one; an editor might have
    try:
        doc = frontmatter.split(text)
    except FrontmatterError as exc:
        raise _Skip("unreadable", str(exc), 1) from None
    title, title_line = _title(doc.body)
    placeholder = PLACEHOLDER_RE.search(f"{doc.frontmatter or ''}\n{title or ''}") or FORMAT_ID_RE.search(
        doc.frontmatter or "")
    if placeholder:
        raise _Skip("templates", f"a template: it holds the placeholder {placeholder.group(0)!r}")
    try:
        data = frontmatter.parse(doc.frontmatter)
    except FrontmatterError as exc:
        raise _Skip("unreadable", str(exc).rsplit(" (line", 1)[0], exc.line) from None
    data = {str(k): v for k, v in data.items()}  # a number or a date as a key is still kept
    entry = FileEntry(path=rel)
    legacy_id, id_note = _legacy_id(data.get("id"), path.stem)
    if legacy_id is None:
        raise _Skip("not_tasks", "neither its id nor its file name is a task id "
                                 "(task-YYYY-MM-DD-xxxx or YYYY-MM-DD-slug)")
    entry.legacy_id = legacy_id
    if id_note:
        entry.notes.append(id_note)
    fields = _map(data, doc.body, title, title_line, folder, legacy_id, entry,
                  id_used=legacy_id != path.stem or data.get("id") == legacy_id)
    try:
        # Checked now, with the store's own rules, so one bad file cannot fail the transaction.
        clean_fields({k: v for k, v in fields.items() if k != "metadata"}, CREATE_CLEANERS, "a task")
    except ValidationError as exc:
        raise _Skip("unreadable", f"cannot be a task: {exc}") from None
    return _Planned(entry=entry, fields=fields, text=text, sha256=hashlib.sha256(raw).hexdigest())


def _title(body: str) -> tuple[str | None, str | None]:
    """The first ``# Title`` outside code blocks, and its whole line."""
    in_code = False
    for line in body.splitlines(keepends=True):
        if FENCE_LINE_RE.match(line):
            in_code = not in_code
        elif not in_code:
            match = TITLE_RE.match(line.rstrip("\n"))
            if match:
                return match.group(1).strip(), line
    return None, None


def _legacy_id(value: Any, stem: str) -> tuple[str | None, str | None]:
    """The old id: the frontmatter's ``id`` when it is one, else the file name's."""
    if value not in (None, ""):
        candidate = str(value).strip()
        if _valid_id(candidate):
            note = None if candidate == stem else f"its id {candidate} differs from its file name"
            return candidate, note and f"{note}; the id was used"
        if _valid_id(stem):
            return stem, f"its id {candidate!r} is not a task id; the file name was used (the id is kept in metadata)"
        return None, None
    return (stem, None) if _valid_id(stem) else (None, None)


def _valid_id(text: str) -> bool:
    match = LEGACY_ID_RE.match(text)
    if not match:
        return False
    try:
        date.fromisoformat(match.group(2))
    except ValueError:
        return False
    return True


def _map(data: Mapping[str, Any], body: str, title: str | None, title_line: str | None, folder: str,
         legacy_id: str, entry: FileEntry, *, id_used: bool) -> dict[str, Any]:
    """The fields of ``tasks.create`` for one file. A value that does not fit its column is
    kept in metadata (and noted), never dropped; the original file keeps it too."""
    notes = entry.notes
    metadata: dict[str, Any] = {k: _jsonable(v) for k, v in data.items() if k not in COLUMN_KEYS}
    if not id_used and data.get("id") not in (None, ""):
        metadata["id"] = _jsonable(data["id"])

    def keep(key: str, why: str) -> None:
        metadata[key] = _jsonable(data[key])
        notes.append(f"{key}: {why}; kept in metadata")

    def value(key: str) -> Any:
        v = data.get(key)
        return None if v in (None, "", [], {}) else v  # `assigned_to:` with nothing means unset

    fields: dict[str, Any] = {"legacy_id": legacy_id}
    match = LEGACY_ID_RE.match(legacy_id)
    assert match is not None  # checked by _legacy_id
    slug = match.group(3) if not match.group(1) else None

    # Timestamps: the file's own, never "now".
    stamps: dict[str, datetime] = {}
    for key, column in (("created", "created_at"), ("created_at", "created_at"),
                        *((k, k) for k in TIMESTAMP_KEYS)):
        if value(key) is None:
            continue
        if column in stamps:  # created_at beside created: the second one goes to metadata
            metadata[key] = _jsonable(data[key])
            continue
        try:
            stamps[column] = parse_timestamp(data[key])
        except ValueError as exc:
            keep(key, str(exc))
    if "created_at" not in stamps:
        stamps["created_at"] = datetime.fromisoformat(match.group(2)).replace(tzinfo=timezone.utc)
        notes.append("no created timestamp: the date in its id was used")

    for key in ("assigned_to", "model", "workflow", "discord_thread_id"):
        v = value(key)
        if v is None:
            continue
        if isinstance(v, (str, int)) and not isinstance(v, bool):
            fields[key] = _cleaned(key, str(v).strip(), keep)
        else:
            keep(key, "is not a single value")
    fields = {k: v for k, v in fields.items() if v is not None}

    if value("priority") is not None:
        fields["priority"] = _cleaned("priority", str(data["priority"]).strip().lower(), keep)
    if value("type") is not None:
        fields["type"] = _cleaned("type", str(data["type"]).strip().lower(), keep)
    if value("requires_qa") is not None:
        qa = data["requires_qa"]
        if isinstance(qa, str) and qa.strip().lower() in ("true", "yes", "false", "no"):
            qa = qa.strip().lower() in ("true", "yes")
        fields["requires_qa"] = _cleaned("requires_qa", qa, keep)
    if value("estimate") is not None:
        minutes = _minutes(data["estimate"])
        if minutes is None:
            keep("estimate", f"{data['estimate']!r} is not a number of minutes")
        else:
            fields["estimate_minutes"] = _cleaned("estimate", minutes, keep, cleaner="estimate_minutes")

    for key, column, sources in (("tags", "tags", ("tags",)), ("repos", "repos", ("repo", "repos"))):
        good: list[str] = []
        for source in sources:
            v = value(source)
            if v is None:
                continue
            if isinstance(v, str):
                items = [p for p in LIST_SPLIT_RE.split(v) if p]
            elif isinstance(v, (list, tuple)):
                items = [str(p).strip() for p in v if p not in (None, "")]
            else:
                keep(source, "is not a list")
                continue
            for item in items:
                try:
                    good.append(UPDATE_CLEANERS[column]([item])[0])
                except ValueError as exc:  # the good items are imported, the list kept whole
                    if source not in metadata:
                        keep(source, str(exc).removeprefix("item 0 "))
        fields[column] = list(dict.fromkeys(good))

    fields["status"] = _status(data.get("status"), folder, fields.get("assigned_to"), notes, metadata)
    if fields["status"] not in st.TERMINAL and "completed_at" in stamps:
        # An open task has not completed; the time is kept, in metadata, not lost.
        metadata["completed_at"] = to_iso(stamps.pop("completed_at"))
        notes.append("completed_at on a task that is not finished: kept in metadata")
    if fields["status"] in st.TERMINAL and "completed_at" not in stamps:
        stamps["completed_at"] = max(stamps.values())  # the latest time the file knows of
    fields.update(stamps)
    fields["updated_at"] = max(stamps.values())

    name = title or slug or legacy_id
    if not title:
        notes.append("no '# Title' line: named after its id")
    if len(name) > MAX_SHORT_TEXT:
        name = name[: MAX_SHORT_TEXT - 1] + "…"
        notes.append(f"title longer than {MAX_SHORT_TEXT} characters: shortened (the file keeps it whole)")
    fields["name"] = name
    if slug:
        fields["slug"] = slug
    # The body (bar the title) as the description: the database then holds the task's text
    # too, and the sync could rebuild a lost file from it.
    description = (body.replace(title_line, "", 1) if title_line else body).strip("\r\n")
    if len(description) > MAX_LONG_TEXT:
        description = description[:MAX_LONG_TEXT]
        notes.append(f"body longer than {MAX_LONG_TEXT} characters: the description holds its start")
    if description.strip():
        fields["description"] = description
    fields["metadata"] = metadata
    entry.name, entry.status = fields["name"], fields["status"]
    return {k: v for k, v in fields.items() if v is not None}  # None: a value kept in metadata


def _cleaned(key: str, value: Any, keep: Callable[[str, str], None], cleaner: str | None = None) -> Any:
    try:
        return UPDATE_CLEANERS[cleaner or key](value)
    except ValueError as exc:
        keep(key, str(exc))
        return None


def _status(raw: Any, folder: str, assigned_to: str | None, notes: list[str], metadata: dict[str, Any]) -> str:
    """The frontmatter's status, else the folder's; when the two disagree about whether the
    task has ended, the folder wins (the file was moved last, by hand or by a lobster)."""
    by_folder = TERMINAL_FOLDERS.get(folder) or (st.ACTIVE if assigned_to else st.QUEUED)
    if raw in (None, ""):
        return by_folder
    try:
        said = st.canonical(str(raw))
    except ValueError:
        metadata["status"] = _jsonable(raw)
        notes.append(f"unknown status {raw!r}: {by_folder} from its folder {folder}/ "
                     "(the original kept in metadata)")
        return by_folder
    if (said in st.TERMINAL) != (folder in TERMINAL_FOLDERS):
        metadata["status"] = _jsonable(raw)
        notes.append(f"status {raw} disagrees with its folder {folder}/: imported as {by_folder} "
                     "(the folder wins; the original kept in metadata)")
        return by_folder
    return said


def _minutes(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    match = ESTIMATE_RE.match(str(value))
    if not match:
        return None
    number = float(match.group(1)) * (60 if (match.group(2) or "m").lower().startswith("h") else 1)
    return int(number) if number.is_integer() else None


def _jsonable(value: Any) -> Any:
    """A YAML value as JSON: dates as ISO text, sets as lists, bytes as base64."""
    if isinstance(value, datetime):
        return to_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# -- the import --------------------------------------------------------------------------------
def import_vault(
    store: Store,
    vault: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    tasks_dir: str = DEFAULT_TASKS_DIR,
    actor: str = ACTOR,
) -> ImportReport:
    """Import every old task file of ``vault`` into ``store``; see the module docstring.

    Raises VaultImportError when ``vault`` is not a vault (nothing is read or written), and
    whatever the database raises when the transaction fails (nothing is written then either).
    Problems with single files are in the report, not raised.
    """
    started = time.perf_counter()
    root = Path(vault).expanduser()
    tasks_root = check_vault(root, tasks_dir)
    report = ImportReport(vault=str(root), dry_run=dry_run)
    renderer = Renderer(tasks_dir=tasks_dir)
    tell = progress or (lambda stage, done, total: None)

    planned = _read_all(root, tasks_root, store.id_prefix, report, tell)
    planned = _drop_duplicates(planned, report)
    existing = store.tasks.by_legacy_ids(p.entry.legacy_id for p in planned if p.entry.legacy_id)
    t_files = task_files(root, renderer.tasks_dir, store.id_prefix)
    new: list[_Planned] = []
    repairs: list[tuple[_Planned, Task]] = []
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

    created: list[tuple[_Planned, Task]] = []
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


def _read_all(root: Path, tasks_root: Path, prefix: str, report: ImportReport, tell: Progress) -> list[_Planned]:
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
    planned: list[_Planned] = []
    for done, (path, folder) in enumerate(found, start=1):
        rel = _rel(root, path)
        try:
            planned.append(read_task_file(path, rel, folder))
        except _Skip as skip:
            getattr(report, skip.kind).append(FileEntry(path=rel, reason=skip.reason, line=skip.line))
        except OSError as exc:
            report.unreadable.append(FileEntry(path=rel, reason=f"cannot read it: {exc.strerror or exc}"))
        tell("reading", done, len(found))
    return planned


def _drop_duplicates(planned: list[_Planned], report: ImportReport) -> list[_Planned]:
    """A task copied rather than moved between folders leaves one old id in two files:
    which one is right is a person's call, so neither is imported and both are reported."""
    by_id: dict[str, list[_Planned]] = {}
    for plan in planned:
        by_id.setdefault(plan.entry.legacy_id or "", []).append(plan)
    keep: list[_Planned] = []
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


def _classify_present(plan: _Planned, task: Task, t_files: Mapping[str, list[str]], report: ImportReport,
                      repairs: list[tuple[_Planned, Task]]) -> None:
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


def _with_provenance(plan: _Planned) -> dict[str, Any]:
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
