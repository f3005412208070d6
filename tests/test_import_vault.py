"""The vault importer against a vault built here from the formats the old fleet wrote.

Assertions are about what a person would check after migrating: the tasks in the database
(every field, exact timestamps, T-ids oldest first), the report, the bytes of every file, and
that nothing happens twice."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from lobstore import open_store
from lobstore.cli import main
from lobstore.repositories.tasks import TaskRepository
from lobstore.sync.cycle import VaultSync
from lobstore.sync.frontmatter import parse, split
from lobstore.importers.vault import VaultImportError, import_vault

FULL_BODY = """\
# Unity UI overhaul

## Objective

Rebuild the settings screen in UI Toolkit.

## Acceptance Criteria

- [ ] every setting reachable with a gamepad

## Lobster Notes

## Result
"""

# (path under 010-tasks/, text). Comments say which detail of the issue a file covers.
FILES: list[tuple[str, str | bytes]] = [
    # every key the old fleet wrote; Z timestamps; `repo` singular; an int thread id
    ("active/task-2026-02-10-a1b2.md", """\
---
id: task-2026-02-10-a1b2
status: queued
created: 2026-02-10T09:00:00Z
queued_at: 2026-02-10T09:01:00Z
assigned_to:
assigned_at:
completed_at:
priority: high
tags: [ui, frontend]
estimate: 90
model: claude-opus-4-6
type: swe
repo: minsley/unity
workflow: standard
requires_qa: true
related_task: task-2026-02-01-0001
pr_number: 17
discord_thread_id: 1234567890123456789
---
""" + FULL_BODY),
    # isoformat() with +00:00, quoted (a string) and unquoted (a YAML timestamp); repos list
    ("active/task-2026-02-11-b2c3.md", """\
---
id: task-2026-02-11-b2c3
status: active
created: "2026-02-11T08:00:00+00:00"
assigned_to: lobster-swe-t2
assigned_at: 2026-02-11T08:05:30+00:00
repos:
  - minsley/a
  - minsley/b
type: swe
---
# Two repos at once

## Objective
x
"""),
    # system-active; a YAML date-time without a zone (taken as UTC)
    ("active/task-2026-02-11-c3d4.md", """\
---
id: task-2026-02-11-c3d4
status: system-active
created: 2026-02-11 12:30:00
assigned_to: lobsigliere
type: system
---
# Nightly cleanup
"""),
    # an investigation id; blocked
    ("active/task-2026-02-12-inv-0f1e2d3c.md", """\
---
id: task-2026-02-12-inv-0f1e2d3c
status: blocked
created: 2026-02-12T00:00:00Z
type: research
---
# Why are builds slow?
"""),
    # an older doc: YYYY-MM-DD-slug, a YAML date, no status (folder: queued), no title (the slug)
    ("active/2026-02-01-unity-ui.md", """\
---
created: 2026-02-01
priority: low
---
Some notes without a title line.
"""),
    # no frontmatter at all: everything from the file name, the folder and the title
    ("active/task-2026-02-13-d4e5.md", "# Fix login\n\n## Objective\nLogin fails on Safari.\n"),
    # a unicode title
    ("active/task-2026-02-13-e5f6.md", """\
---
id: task-2026-02-13-e5f6
status: queued
created: 2026-02-13T10:00:00Z
---
# Überarbeitung der Oberfläche 🚀 — “quotes”: yes
"""),
    # frontmatter says completed, folder says open: the folder wins, reported
    ("active/task-2026-02-09-f6a7.md", """\
---
id: task-2026-02-09-f6a7
status: completed
created: 2026-02-09T11:00:00Z
completed_at: 2026-02-09T15:00:00Z
---
# Marked done but never moved
"""),
    # every key empty
    ("active/task-2026-02-08-0a0b.md", """\
---
id: task-2026-02-08-0a0b
status: queued
created: 2026-02-08T07:00:00Z
assigned_to:
assigned_at:
completed_at:
tags:
repos:
repo:
estimate:
model:
priority:
workflow:
requires_qa:
---
# Empty keys everywhere
"""),
    # Windows line endings
    ("active/task-2026-02-07-0c0d.md",
     "---\r\nid: task-2026-02-07-0c0d\r\nstatus: queued\r\ncreated: 2026-02-07T06:00:00Z\r\n---\r\n# CRLF file\r\n\r\nBody.\r\n"),
    # values that do not fit their columns are kept in metadata, not dropped
    ("active/task-2026-02-06-0e0f.md", """\
---
id: task-2026-02-06-0e0f
status: queued
created: sometime last week
priority: urgent
type: Not A Type
estimate: 2h
requires_qa: "maybe"
repos: [minsley/ok, not a repo]
---
# Odd values
"""),
    # the frontmatter id wins over a file name that is not an id
    ("active/old-name.md", """\
---
id: task-2026-02-04-1a2b
status: queued
created: 2026-02-04T04:00:00Z
---
# Renamed file
"""),
    # two tasks created in the same second: ordered by old id
    ("active/task-2026-02-15-bbbb.md", "---\nid: task-2026-02-15-bbbb\ncreated: 2026-02-15T10:00:00Z\n---\n# Tie B\n"),
    ("active/task-2026-02-15-aaaa.md", "---\nid: task-2026-02-15-aaaa\ncreated: 2026-02-15T10:00:00Z\n---\n# Tie A\n"),
    # templates: by name, and by placeholders
    ("active/task-template.md", "---\nstatus: queued\n---\n# New task\n"),
    ("active/Task Template.md", "---\nid: task-YYYY-MM-DD-xxxx\nstatus: queued\n---\n# Title here\n"),
    # a real task about templates, with a date format in it, is a task
    ("active/2026-02-14-email-templates.md",
     "---\nformat: YYYY-MM-DD\ncreated: 2026-02-14T09:00:00Z\n---\n# Email templates\n\nUse {{name}} in them.\n"),
    ("active/task-2026-02-20-new1.md", "---\nid: task-{{date:YYYY-MM-DD}}-xxxx\ncreated: {{date}}\n---\n# {{title}}\n"),
    # broken frontmatter: bad YAML (line 3), never closed, not UTF-8 (line 3)
    ("active/task-2026-02-14-bad1.md", "---\nid: task-2026-02-14-bad1\nassigned_to: Fix: login\nstatus: queued\n---\n# Broken\n"),
    ("active/task-2026-02-14-bad2.md", "---\nid: task-2026-02-14-bad2\nstatus: queued\n# Never closed\n"),
    ("completed/task-2026-02-04-5555.md", b"---\nid: task-2026-02-04-5555\nname: caf\xe9\n---\n# Latin-1\n"),
    # not task files
    ("active/notes.md", "# Scratch notes\n"),
    ("README.md", "# What is in this folder\n"),
    ("_overview.md", "---\nlobstore: overview\n---\n"),
    # one id in two folders (copied, not moved): neither is imported
    ("active/task-2026-02-05-dup1.md", "---\nid: task-2026-02-05-dup1\nstatus: active\n---\n# Dup\n"),
    ("completed/task-2026-02-05-dup1.md", "---\nid: task-2026-02-05-dup1\nstatus: completed\n---\n# Dup\n"),
    # completed: full timestamps, pr_number, a Result section
    ("completed/task-2026-02-02-1111.md", """\
---
id: task-2026-02-02-1111
status: completed
created: 2026-02-02T10:00:00Z
assigned_to: lobster-swe-t7
assigned_at: 2026-02-02T10:10:00Z
completed_at: 2026-02-02T12:34:56Z
repos: [minsley/unity]
pr_number: 42
---
# Ship the patch

## Result
Merged in #42.
"""),
    ("completed/task-2026-02-03-2222.md", """\
---
id: task-2026-02-03-2222
status: completed
created: 2026-02-03T09:00:00+00:00
completed_at: "2026-02-03T18:00:00+00:00"
---
# Isoformat timestamps
"""),
    # says active, sits in completed/: completed (the folder wins); completed_at from the latest time
    ("completed/task-2026-02-03-3333.md", """\
---
id: task-2026-02-03-3333
status: active
created: 2026-02-03T08:00:00Z
assigned_at: 2026-02-03T08:30:00Z
---
# Finished but never updated
"""),
    ("completed/2026-01-20-legacy-doc.md", "---\ncreated: 2026-01-20T12:00:00Z\n---\n# Legacy doc\n"),
    ("completed/task-2026-02-04-4444.md", """\
---
id: task-2026-02-04-4444
status: completed
created: 2026-02-04T09:00:00Z
assigned_at: 2026-02-04T09:30:00Z
---
# Completed without completed_at
"""),
    # a subfolder of completed/
    ("completed/2026-02/task-2026-02-05-6666.md", "---\nstatus: completed\ncreated: 2026-02-05T05:00:00Z\n---\n# Archived\n"),
    # failed/: an Error section, cancelled, a status the folder overrules, none, unknown
    ("failed/task-2026-02-05-7777.md", """\
---
id: task-2026-02-05-7777
status: failed
created: 2026-02-05T07:00:00Z
completed_at: 2026-02-05T07:45:00Z
---
# Crashed

## Error
OOMKilled
"""),
    ("failed/task-2026-02-06-8888.md", "---\nid: task-2026-02-06-8888\nstatus: cancelled\ncreated: 2026-02-06T08:00:00Z\n---\n# Cancelled\n"),
    ("failed/task-2026-02-06-9999.md", "---\nid: task-2026-02-06-9999\nstatus: queued\ncreated: 2026-02-06T09:00:00Z\n---\n# Queued but failed\n"),
    ("failed/task-2026-02-07-aaaa.md", "---\ncreated: 2026-02-07T10:00:00Z\n---\n# No status\n"),
    ("failed/task-2026-02-07-bbbb.md", "---\nstatus: wip\ncreated: 2026-02-07T11:00:00Z\n---\n# Unknown status\n"),
    # a byte-order mark; tags as a comma-separated string; an investigation in failed/
    ("failed/task-2026-02-08-inv-12345678.md",
     "\ufeff---\nid: task-2026-02-08-inv-12345678\nstatus: failed\ncreated: 2026-02-08T08:00:00Z\ntags: \"#infra, ci\"\n---\n# With BOM\n"),
]
IMPORTED = 27
TEMPLATES, UNREADABLE, NOT_TASKS, DUPLICATES = 3, 3, 2, 2


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def build_vault(root: Path) -> Path:
    for rel, text in FILES:
        path = root / "010-tasks" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    (root / "010-tasks" / "failed").mkdir(exist_ok=True)
    (root / "Home.md").write_text("# My vault\n")
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and ".git" not in p.parts}


def t_files(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in snapshot(root).items() if Path(k).name[:1] == "T" and Path(k).stem[1:].isdigit()}


@pytest.fixture
def vault(tmp_path) -> Path:
    return build_vault(tmp_path / "vault")


def by_legacy(store) -> dict:
    return {t.legacy_id: t for t in store.tasks.list(limit=1000)}


# -- acceptance 1 ------------------------------------------------------------------------------
def test_fixture_covers_the_issue(vault):
    assert len(FILES) >= 30


def test_every_field_lands_where_it_belongs(store, vault):
    import_vault(store, vault)
    tasks = by_legacy(store)

    t = tasks["task-2026-02-10-a1b2"]
    assert (t.name, t.status, t.priority, t.type, t.model, t.workflow) == (
        "Unity UI overhaul", "queued", "high", "swe", "claude-opus-4-6", "standard")
    assert t.tags == ("ui", "frontend") and t.repos == ("minsley/unity",)
    assert t.estimate_minutes == 90 and t.requires_qa is True
    assert t.discord_thread_id == "1234567890123456789" and t.assigned_to is None
    assert (t.created_at, t.queued_at, t.assigned_at, t.completed_at) == (
        utc(2026, 2, 10, 9), utc(2026, 2, 10, 9, 1), None, None)
    assert t.updated_at == utc(2026, 2, 10, 9, 1)
    assert t.metadata["pr_number"] == 17 and t.metadata["related_task"] == "task-2026-02-01-0001"
    assert t.metadata["_import"]["path"] == "010-tasks/active/task-2026-02-10-a1b2.md"
    assert t.description.startswith("## Objective\n\nRebuild the settings screen")

    t = tasks["task-2026-02-11-b2c3"]
    assert (t.status, t.assigned_to, t.repos) == ("active", "lobster-swe-t2", ("minsley/a", "minsley/b"))
    assert (t.created_at, t.assigned_at) == (utc(2026, 2, 11, 8), utc(2026, 2, 11, 8, 5, 30))

    t = tasks["task-2026-02-11-c3d4"]
    assert (t.status, t.type, t.created_at, t.assigned_at) == ("active", "system", utc(2026, 2, 11, 12, 30), utc(2026, 2, 11, 12, 30))
    t = tasks["task-2026-02-12-inv-0f1e2d3c"]
    assert (t.status, t.type, t.name) == ("blocked", "research", "Why are builds slow?")

    t = tasks["2026-02-01-unity-ui"]
    assert (t.name, t.slug, t.status, t.priority, t.created_at) == ("unity-ui", "unity-ui", "queued", "low", utc(2026, 2, 1))
    t = tasks["task-2026-02-13-d4e5"]
    assert (t.name, t.status, t.created_at, t.type) == ("Fix login", "queued", utc(2026, 2, 13), "swe")
    assert tasks["task-2026-02-13-e5f6"].name == "Überarbeitung der Oberfläche 🚀 — “quotes”: yes"

    t = tasks["task-2026-02-09-f6a7"]  # completed in active/: the folder wins
    assert t.status == "queued" and t.completed_at is None
    assert t.metadata["status"] == "completed" and t.metadata["completed_at"] == "2026-02-09T15:00:00Z"

    t = tasks["task-2026-02-08-0a0b"]
    assert (t.assigned_to, t.assigned_at, t.tags, t.repos, t.estimate_minutes, t.model, t.priority) == (
        None, None, (), (), None, None, "normal")
    assert set(t.metadata) == {"_import"}
    assert tasks["task-2026-02-07-0c0d"].name == "CRLF file"

    t = tasks["task-2026-02-06-0e0f"]
    assert (t.priority, t.type, t.estimate_minutes, t.requires_qa, t.repos) == ("normal", "swe", 120, False, ("minsley/ok",))
    assert t.created_at == utc(2026, 2, 6)  # unparseable `created`: the id's date
    assert {k: t.metadata[k] for k in ("created", "priority", "type", "requires_qa", "repos")} == {
        "created": "sometime last week", "priority": "urgent", "type": "Not A Type",
        "requires_qa": "maybe", "repos": ["minsley/ok", "not a repo"]}
    assert tasks["task-2026-02-04-1a2b"].name == "Renamed file"
    t = tasks["2026-02-14-email-templates"]
    assert (t.name, t.metadata["format"], t.description) == ("Email templates", "YYYY-MM-DD", "Use {{name}} in them.")

    t = tasks["task-2026-02-02-1111"]
    assert (t.status, t.assigned_to, t.repos, t.metadata["pr_number"]) == ("completed", "lobster-swe-t7", ("minsley/unity",), 42)
    assert (t.created_at, t.assigned_at, t.completed_at) == (utc(2026, 2, 2, 10), utc(2026, 2, 2, 10, 10), utc(2026, 2, 2, 12, 34, 56))
    assert tasks["task-2026-02-03-2222"].completed_at == utc(2026, 2, 3, 18)
    t = tasks["task-2026-02-03-3333"]
    assert (t.status, t.completed_at, t.metadata["status"]) == ("completed", utc(2026, 2, 3, 8, 30), "active")
    assert tasks["task-2026-02-04-4444"].completed_at == utc(2026, 2, 4, 9, 30)
    assert (tasks["2026-01-20-legacy-doc"].status, tasks["2026-01-20-legacy-doc"].slug) == ("completed", "legacy-doc")
    assert tasks["task-2026-02-05-6666"].status == "completed"

    assert (tasks["task-2026-02-05-7777"].status, tasks["task-2026-02-05-7777"].completed_at) == ("failed", utc(2026, 2, 5, 7, 45))
    assert "## Error\nOOMKilled" in tasks["task-2026-02-05-7777"].description
    assert tasks["task-2026-02-06-8888"].status == "cancelled"
    assert tasks["task-2026-02-06-9999"].status == "failed"
    assert tasks["task-2026-02-07-aaaa"].status == "failed"
    t = tasks["task-2026-02-07-bbbb"]
    assert (t.status, t.metadata["status"]) == ("failed", "wip")
    t = tasks["task-2026-02-08-inv-12345678"]
    assert (t.name, t.tags) == ("With BOM", ("infra", "ci"))
    assert len(tasks) == IMPORTED
    assert all(e.actor == "import-vault" for e in store.events.feed(after=0, limit=1000))


def test_t_ids_follow_creation_order(store, vault):
    import_vault(store, vault)
    tasks = store.tasks.list(limit=1000)
    assert [t.ref for t in tasks] == [f"T{i}" for i in range(1, IMPORTED + 1)]
    assert tasks[0].legacy_id == "2026-01-20-legacy-doc"  # T1 is the oldest
    created = [t.created_at for t in tasks]
    assert created == sorted(created)
    assert [t.legacy_id for t in tasks[-2:]] == ["task-2026-02-15-aaaa", "task-2026-02-15-bbbb"]  # a tie


def test_report_counts_and_reasons(store, vault):
    report = import_vault(store, vault)
    counts = report.counts
    assert (counts["imported"], counts["templates"], counts["unreadable"], counts["not_tasks"],
            counts["duplicates"], counts["already_present"], counts["store_files"]) == (
        IMPORTED, TEMPLATES, UNREADABLE, NOT_TASKS, DUPLICATES, 0, 1)
    unreadable = {e.path.split("/")[-1]: (e.line, e.reason) for e in report.unreadable}
    assert unreadable["task-2026-02-14-bad1.md"][0] == 3 and "not valid YAML" in unreadable["task-2026-02-14-bad1.md"][1]
    assert unreadable["task-2026-02-14-bad2.md"] == (1, "frontmatter opened with --- is never closed")
    assert unreadable["task-2026-02-04-5555.md"][0] == 3 and "not UTF-8" in unreadable["task-2026-02-04-5555.md"][1]
    assert {e.path for e in report.templates} == {
        "010-tasks/active/task-template.md", "010-tasks/active/Task Template.md", "010-tasks/active/task-2026-02-20-new1.md"}
    assert {e.path for e in report.duplicates} == {"010-tasks/active/task-2026-02-05-dup1.md", "010-tasks/completed/task-2026-02-05-dup1.md"}
    disagreeing = {e.legacy_id for e in report.disagreements}
    assert disagreeing == {"task-2026-02-09-f6a7", "task-2026-02-03-3333", "task-2026-02-06-9999"}
    text = report.format_text()
    assert "27 imported" in text and "3 status/folder disagreements" in text
    assert "010-tasks/active/task-2026-02-14-bad1.md:3: frontmatter is not valid YAML" in text
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["counts"]["imported"] == IMPORTED and as_json["imported"][0]["task"] == "T1"


def test_old_files_stay_byte_identical_and_t_files_keep_their_bodies(store, vault):
    before = snapshot(vault)
    report = import_vault(store, vault)
    after = snapshot(vault)
    assert {k: v for k, v in after.items() if k in before} == before
    new = set(after) - set(before)
    assert new == {e.target for e in report.imported} and len(new) == IMPORTED
    for entry in report.imported:
        old = before[entry.path].decode("utf-8").removeprefix("\ufeff")
        written = after[entry.target].decode("utf-8")
        assert split(written).body == split(old).body  # the body, byte for byte
        keys = parse(split(written).frontmatter)
        task = store.tasks.get(entry.task)
        assert keys["id"] == task.ref and keys["legacy_id"] == task.legacy_id and keys["status"] == task.status
        assert entry.target == f"010-tasks/{ {'queued': 'active', 'active': 'active', 'blocked': 'active', 'completed': 'completed'}.get(task.status, 'failed')}/{task.ref}.md"
    crlf = after[next(e.target for e in report.imported if e.legacy_id == "task-2026-02-07-0c0d")]
    assert crlf.count(b"\r\n") == crlf.count(b"\n")
    # people's other keys stay in the new file too (Dataview queries on them keep working)
    assert parse(split(after["010-tasks/active/T" + store.tasks.get("task-2026-02-10-a1b2").ref[1:] + ".md"]
                       .decode()).frontmatter)["pr_number"] == 17


def test_second_run_is_a_no_op(store, vault):
    import_vault(store, vault)
    files, events = snapshot(vault), store.events.latest_id()
    again = import_vault(store, vault)
    assert snapshot(vault) == files
    assert store.events.latest_id() == events and store.tasks.count() == IMPORTED
    assert again.counts["imported"] == 0 and again.counts["already_present"] == IMPORTED
    assert again.counts["store_files"] == IMPORTED + 1 and again.written == []


def test_a_file_changed_after_import_is_reported_not_reimported(store, vault):
    import_vault(store, vault)
    path = vault / "010-tasks/active/task-2026-02-13-e5f6.md"
    path.write_text(path.read_text() + "\nAn afterthought.\n")
    files = snapshot(vault)
    again = import_vault(store, vault)
    assert [(e.path, e.task) for e in again.changed_since_import] == [
        ("010-tasks/active/task-2026-02-13-e5f6.md", store.tasks.get("task-2026-02-13-e5f6").ref)]
    assert "not imported again" in again.changed_since_import[0].reason
    assert again.counts["imported"] == 0 and store.tasks.count() == IMPORTED
    assert snapshot(vault) == files


def test_dry_run_writes_nothing(store, vault):
    files = snapshot(vault)
    report = import_vault(store, vault, dry_run=True)
    assert snapshot(vault) == files
    assert store.tasks.count() == 0 and store.events.latest_id() == 0
    assert report.dry_run and report.counts["imported"] == IMPORTED and report.written == []
    assert "Nothing was written" in report.format_text()


def test_progress_is_reported_for_every_stage(store, vault):
    seen: dict[str, list[tuple[int, int]]] = {}
    import_vault(store, vault, progress=lambda stage, done, total: seen.setdefault(stage, []).append((done, total)))
    assert seen["importing"][-1] == (IMPORTED, IMPORTED) and seen["writing"][-1] == (IMPORTED, IMPORTED)
    assert seen["reading"][-1][0] == seen["reading"][-1][1] == len(FILES) - 2  # less README.md, _overview.md


# -- one transaction ---------------------------------------------------------------------------
def test_a_failure_half_way_leaves_the_database_and_vault_as_they_were(store, vault, monkeypatch):
    store.tasks.create(name="already here")
    files = snapshot(vault)
    real_create = TaskRepository.create
    calls = []

    def failing_create(self, **kwargs):
        calls.append(kwargs["legacy_id"])
        if len(calls) == 10:
            raise OSError("disk went away")
        return real_create(self, **kwargs)

    monkeypatch.setattr(TaskRepository, "create", failing_create)
    with pytest.raises(OSError, match="disk went away"):
        import_vault(store, vault)
    monkeypatch.undo()
    assert len(calls) == 10
    assert [t.name for t in store.tasks.list()] == ["already here"]
    assert store.events.latest_id() == 1
    assert snapshot(vault) == files  # files are written only after the commit
    report = import_vault(store, vault)  # and a new run simply works
    assert report.counts["imported"] == IMPORTED
    # Oldest first again; PostgreSQL may skip the ids the rolled-back run drew (DESIGN.md).
    assert report.imported[0].legacy_id == "2026-01-20-legacy-doc"
    ids = [store.tasks.get(e.task).id for e in report.imported]
    assert ids == sorted(ids) and ids[0] > 1


def test_files_that_failed_to_write_after_the_commit_are_written_by_the_next_run(store, vault, monkeypatch):
    import lobstore.importers.vault.run as importer

    real_write = importer.write_atomic

    def flaky(path, text):
        if path.name in ("T3.md", "T5.md"):
            raise OSError(28, "No space left on device")
        real_write(path, text)

    monkeypatch.setattr(importer, "write_atomic", flaky)
    first = import_vault(store, vault)
    monkeypatch.undo()
    assert store.tasks.count() == IMPORTED
    assert sorted(e.task for e in first.write_errors) == ["T3", "T5"]
    assert "No space left" in first.write_errors[0].reason and "run the import again" in first.format_text()
    assert not any(Path(k).name in ("T3.md", "T5.md") for k in snapshot(vault))
    second = import_vault(store, vault)
    assert sorted(e.task for e in second.repaired) == ["T3", "T5"]
    assert second.counts["imported"] == 0 and store.tasks.count() == IMPORTED
    assert sum(Path(k).name in ("T3.md", "T5.md") for k in snapshot(vault)) == 2
    third_files = snapshot(vault)
    assert import_vault(store, vault).counts["repaired"] == 0 and snapshot(vault) == third_files


def test_a_file_already_at_a_new_tasks_path_is_not_overwritten(store, vault):
    stray = vault / "010-tasks/active/T1.md"
    stray.write_text("---\nid: T1\n---\n# From another store\n")
    report = import_vault(store, vault)
    assert stray.read_text() == "---\nid: T1\n---\n# From another store\n"
    assert [e.task for e in report.write_errors] == ["T1"] and "left as it is" in report.write_errors[0].reason


# -- acceptance 2: the vault sync renders the same files ------------------------------------------
def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_a_sync_cycle_after_the_import_changes_no_task_file(store, vault):
    git(vault, "init", "-q", "-b", "main")
    git(vault, "config", "user.name", "person")
    git(vault, "config", "user.email", "person@example.com")
    git(vault, "add", "-A")
    git(vault, "commit", "-q", "-m", "the old vault")
    import_vault(store, vault)
    git(vault, "add", "-A")
    git(vault, "commit", "-q", "-m", "imported")
    files = snapshot(vault)

    sync = VaultSync(store, vault)
    try:
        result = sync.run_cycle(full=True)
    finally:
        sync.close()
    assert result.error is None and result.full
    assert result.tasks_changed == 0 and result.skipped == ()
    changed = git(vault, "show", "--name-only", "--format=", "HEAD").splitlines() if result.commit else []
    assert changed and all(not path.startswith("010-tasks/") or path.endswith("_overview.md") for path in changed)
    assert t_files(vault) == {k: v for k, v in files.items() if k in t_files(vault)}
    assert {k: v for k, v in snapshot(vault).items() if k in files and not k.endswith("_overview.md")} == {
        k: v for k, v in files.items() if not k.endswith("_overview.md")}


# -- the command -------------------------------------------------------------------------------
def test_cli_dry_run_json_creates_no_database(tmp_path, vault, capsys):
    db = tmp_path / "new.db"
    files = snapshot(vault)
    assert main(["--db", f"sqlite:///{db}", "import-vault", str(vault), "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] and out["counts"]["imported"] == IMPORTED
    assert not db.exists() and snapshot(vault) == files


def test_cli_imports_and_reports(db_url, vault, capsys):
    db = db_url
    assert main(["import-vault", str(vault), "--db", db]) == 0
    captured = capsys.readouterr()
    assert "27 imported, 0 already present" in captured.out and "reading:" in captured.err
    assert "T1  010-tasks/completed/2026-01-20-legacy-doc.md  (completed) Legacy doc" in captured.out
    assert main(["import-vault", str(vault), "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["already_present"] == IMPORTED


@pytest.mark.parametrize("make", [lambda p: p / "missing", lambda p: p])
def test_a_path_that_is_not_a_vault_is_a_clear_error(tmp_path, capsys, make):
    target = make(tmp_path / "x")
    (tmp_path / "x").mkdir()
    db = tmp_path / "never.db"
    assert main(["--db", f"sqlite:///{db}", "import-vault", str(target)]) == 1
    err = capsys.readouterr().err
    assert f"{target} is not a vault" in err
    assert not db.exists() and list((tmp_path / "x").iterdir()) == []
    with pytest.raises(VaultImportError, match="no 010-tasks/ folder"):
        import_vault(open_store("sqlite://"), tmp_path / "x")
