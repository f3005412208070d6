"""The broker, job and JSON import contract on every backend, and the import command."""

from __future__ import annotations

import json

from lobstore import open_store
from lobstore.cli import main

from broker_contract import BrokerJobsContract, write_state


class TestBrokerJobs(BrokerJobsContract):
    __test__ = True


def test_import_json_command(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'lobstore.db'}"
    state = tmp_path / "state"
    state.mkdir()
    write_state(state)

    assert main(["--db", db, "import-json", str(state), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dry run:") and "would import 1 (task-manager)" in out
    assert sorted(p.name for p in state.iterdir()) == ["jobs.json", "tasks.json", "token-audit.json"]

    assert main(["--db", db, "import-json", str(state), "--keep", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["jobs_imported"] == ["task-manager"] and report["standalone"] == ["test-task-1"]
    assert report["renamed"] == []

    assert main(["--db", db, "import-json", str(state)]) == 0
    out = capsys.readouterr().out
    assert "nothing new" in out and "renamed tasks.json -> tasks.json.migrated" in out
    with open_store(db) as store:
        (registration,) = store.broker.list()
        assert (registration.key, registration.standalone, registration.token_count) == ("test-task-1", True, 3)


def test_import_json_command_reports_a_malformed_file(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'lobstore.db'}"
    write_state(tmp_path, tasks="{oops")
    assert main(["--db", db, "import-json", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "tasks.json" in err and "cannot be read as JSON" in err


def test_readme_broker_quickstart_runs_as_written():
    import contextlib
    import io
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "broker and jobs quickstart" in b]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README broker quickstart", "exec"), {})
    assert out.getvalue().splitlines() == [
        "ghs_example", "1", "terminal",
        "['task_registered', 'token_issued', 'task_deregistered']", "{'task-manager': 1}",
    ]
