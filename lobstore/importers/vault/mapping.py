"""One old task file read, checked and mapped to the fields of ``tasks.create``; a file the
import leaves out raises :class:`Skip` saying why."""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from ... import status as st
from ...clock import parse_timestamp, to_iso
from ...errors import ValidationError
from ...repositories.tasks import CREATE_CLEANERS, UPDATE_CLEANERS
from ...sync import frontmatter
from ...sync.frontmatter import FrontmatterError
from ...validation import MAX_LONG_TEXT, MAX_SHORT_TEXT, clean_fields
from .report import FileEntry

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


class Skip(Exception):
    """A file the import leaves out: ``kind`` names the report's list, ``reason`` says why."""

    def __init__(self, kind: str, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.kind, self.reason, self.line = kind, reason, line


@dataclass
class Planned:
    """A file read, checked and mapped: the fields for ``tasks.create`` and its text."""

    entry: FileEntry
    fields: dict[str, Any]
    text: str  # the file as it was (without a leading byte-order mark)
    sha256: str


def read_task_file(path: Path, rel: str, folder: str) -> Planned:
    """Read, check and map one old task file; Skip says why it is left out."""
    raw = path.read_bytes()
    if "template" in path.stem.lower() and not _valid_id(path.stem):  # not 2026-02-15-email-templates
        raise Skip("templates", "a template (its name says so)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Skip("unreadable", f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                    raw[: exc.start].count(b"\n") + 1) from None
    text = text.removeprefix(BOM)  # Obsidian never writes one; an editor might have
    try:
        doc = frontmatter.split(text)
    except FrontmatterError as exc:
        raise Skip("unreadable", str(exc), 1) from None
    title, title_line = _title(doc.body)
    placeholder = PLACEHOLDER_RE.search(f"{doc.frontmatter or ''}\n{title or ''}") or FORMAT_ID_RE.search(
        doc.frontmatter or "")
    if placeholder:
        raise Skip("templates", f"a template: it holds the placeholder {placeholder.group(0)!r}")
    try:
        data = frontmatter.parse(doc.frontmatter)
    except FrontmatterError as exc:
        raise Skip("unreadable", str(exc).rsplit(" (line", 1)[0], exc.line) from None
    data = {str(k): v for k, v in data.items()}  # a number or a date as a key is still kept
    entry = FileEntry(path=rel)
    legacy_id, id_note = _legacy_id(data.get("id"), path.stem)
    if legacy_id is None:
        raise Skip("not_tasks", "neither its id nor its file name is a task id "
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
        raise Skip("unreadable", f"cannot be a task: {exc}") from None
    return Planned(entry=entry, fields=fields, text=text, sha256=hashlib.sha256(raw).hexdigest())


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

