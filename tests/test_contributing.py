"""CONTRIBUTING.md's promise, kept: a new task field takes a column in schema.py, a migration in
both dialects and one line in the field table — nothing else — and then the library, the HTTP
API and its OpenAPI document all know it.

The three edits are made to a copy of the package, which runs in a child process.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

CHILD = textwrap.dedent(
    """
    import json, sys
    from datetime import datetime, timezone

    from lobstore import open_store
    from lobstore.adapters.http import make_app
    from lobstore.schema import metadata
    from schema_compare import from_database, from_metadata
    from wsgi_client import WsgiClient

    out = {}
    with open_store(URL) as store:
        out["schema_matches"] = from_database(store.backend.engine) == from_metadata(metadata, store.backend.engine.dialect)
        client = WsgiClient(make_app(store))
        created = client.post("/api/tasks", {"name": "due soon", "due_at": "2026-03-01T09:00:00Z"})
        out["created"] = [created.status, created.json.get("due_at")]
        changed = client.patch("/api/tasks/T1", {"due_at": "2026-03-02T09:00:00Z", "actor": "lead"})
        out["changed"] = [changed.status, changed.json["updated"], changed.json["task"]["due_at"]]
        out["read"] = [client.get("/api/v1/tasks/T1").json.get("due_at"),  # the hot reads too
                       [task.get("due_at") for task in client.get("/api/v1/tasks").json]]
        bad = client.post("/api/tasks", {"name": "x", "due_at": "next week"})
        out["bad"] = [bad.status, bad.json.get("field")]
        out["event"] = store.events.for_task("T1")[-1].data["changes"]["due_at"]
        out["library"] = store.tasks.get("T1").due_at == datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
        schemas = client.get("/api/openapi.json").json["components"]["schemas"]
        out["openapi"] = sorted(name for name in ("Task", "TaskCreate", "TaskUpdate")
                                if schemas[name]["properties"].get("due_at", {}).get("format") == "date-time")
    print(json.dumps(out))
    """
)


def add_a_task_field(package: Path) -> None:
    """What CONTRIBUTING.md tells a contributor to do, for a ``due_at`` timestamp."""
    schema = package / "schema.py"
    text = schema.read_text()
    anchor = '    sa.Column("metadata", JSONType, nullable=False),  # keys without a column (0005)\n'
    assert anchor in text, "schema.py changed: update this test and CONTRIBUTING.md together"
    schema.write_text(text.replace(anchor, anchor + '    sa.Column("due_at", UTCDateTime),\n'))

    for dialect, sql_type in (("sqlite", "DATETIME"), ("postgresql", "timestamptz")):
        folder = package / "migrations" / dialect
        number = max(int(p.name[:4]) for p in folder.glob("[0-9][0-9][0-9][0-9]_*.sql")) + 1
        (folder / f"{number:04d}_task_due_at.sql").write_text(f"ALTER TABLE tasks ADD COLUMN due_at {sql_type};\n")

    tasks = package / "repositories" / "tasks.py"
    text = tasks.read_text()
    anchor = re.search(r'^    "completed_at": timestamp[^\n]*\n', text, re.M)
    assert anchor, "the task field table changed: update this test and CONTRIBUTING.md together"
    tasks.write_text(text[:anchor.end()] + '    "due_at": timestamp.doc("when it is due"),\n' + text[anchor.end():])


def test_a_field_added_in_schema_migration_and_field_table_reaches_every_layer(tmp_path, db_url):
    source = tmp_path / "src"
    shutil.copytree(ROOT / "lobstore", source / "lobstore", ignore=shutil.ignore_patterns("__pycache__"))
    add_a_task_field(source / "lobstore")
    setup = f"URL = {db_url!r}\nsys_path = [{str(source)!r}, {str(TESTS)!r}]\n"
    script = setup + "import sys\nsys.path[:0] = sys_path\n" + CHILD
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["schema_matches"], "the migration and schema.py disagree"
    assert out["created"] == [201, "2026-03-01T09:00:00Z"]
    assert out["changed"] == [200, ["due_at"], "2026-03-02T09:00:00Z"]
    assert out["read"] == ["2026-03-02T09:00:00Z", ["2026-03-02T09:00:00Z"]]
    assert out["bad"] == [422, "due_at"]
    assert out["event"] == {"old": "2026-03-01T09:00:00Z", "new": "2026-03-02T09:00:00Z"}
    assert out["library"] is True
    assert out["openapi"] == ["Task", "TaskCreate", "TaskUpdate"]


def test_the_copy_is_what_runs(tmp_path):
    """The child imports the edited copy, not the installed package (else the test above
    would prove nothing)."""
    source = tmp_path / "src"
    shutil.copytree(ROOT / "lobstore", source / "lobstore", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(source)!r}); import lobstore; print(lobstore.__file__)"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    if done.returncode:
        pytest.fail(done.stderr)
    assert done.stdout.strip().startswith(str(source))
