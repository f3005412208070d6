"""The `lobstore` command as a person uses it: output to read, errors to act on, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lobstore import __version__, open_store
from lobstore.cli import main
from lobstore.migrations import packaged_migrations


@pytest.fixture
def db(sqlite_file_url, monkeypatch):
    monkeypatch.delenv("LOBSTORE_URL", raising=False)
    return sqlite_file_url


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version_is_printed_by_the_installed_command():
    result = subprocess.run([sys.executable, "-m", "lobstore.cli", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"lobstore {__version__}"


def test_migrate_dry_run_then_apply_then_nothing_left(db, capsys):
    labels = [m.label for m in packaged_migrations("sqlite")]
    code, out, _ = run(capsys, "--db", db, "migrate", "--dry-run")
    assert code == 0 and f"{len(labels)} pending" in out
    assert [line.strip() for line in out.splitlines()[1:]] == labels
    code, out, _ = run(capsys, "--db", db, "migrate", "--dry-run")
    assert f"{len(labels)} pending" in out  # a dry run changed nothing
    code, out, _ = run(capsys, "--db", db, "migrate")
    assert code == 0 and [f"applied {label}" for label in labels] == out.splitlines()[:-1]
    code, out, _ = run(capsys, "--db", db, "migrate")
    assert code == 0 and f"up to date (version {len(labels)})" in out


def test_create_list_show(db, capsys):
    code, out, _ = run(capsys, "--db", db, "tasks", "create", "Fix login: the #1 bug",
                       "--repo", "acme/web", "--priority", "high", "--tag", "auth")
    assert (code, out.strip()) == (0, "created T1: Fix login: the #1 bug")
    run(capsys, "--db", db, "tasks", "create", "Second task", "--type", "research")

    code, out, _ = run(capsys, "--db", db, "tasks", "list")
    header, first, second = out.splitlines()
    assert header.split()[:4] == ["ID", "STATUS", "TYPE", "PRIORITY"]
    assert first.split()[:4] == ["T1", "queued", "swe", "high"]
    assert second.split()[:3] == ["T2", "queued", "research"]

    code, out, _ = run(capsys, "--db", db, "tasks", "list", "--type", "research", "--json")
    assert [t["task_id"] for t in json.loads(out)] == ["T2"]

    code, out, _ = run(capsys, "--db", db, "tasks", "show", "t1")
    assert out.startswith("T1  Fix login: the #1 bug")
    assert "repos: acme/web" in out and "created T1" in out


def test_list_says_when_more_pages_follow(db, capsys):
    with open_store(db) as store:
        for n in range(3):
            store.tasks.create(name=f"t{n}")
    _, out, _ = run(capsys, "--db", db, "tasks", "list", "--limit", "2")
    assert "--after T2" in out
    _, out, _ = run(capsys, "--db", db, "tasks", "list", "--after", "T2")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["T3"]


def test_database_url_comes_from_the_environment(sqlite_file_url, monkeypatch, capsys):
    monkeypatch.setenv("LOBSTORE_URL", sqlite_file_url)
    run(capsys, "tasks", "create", "from env")
    with open_store(sqlite_file_url) as store:
        assert store.tasks.get("T1").name == "from env"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tasks", "show", "T9"], "no task T9"),
        (["tasks", "list", "--limit", "0"], "limit must be"),
        (["tasks", "create", ""], "name must not be empty"),
        (["tasks", "create", "x", "--repo", "nope"], "owner/repo"),
        (["tasks", "list", "--created-since", "last week"], "ISO 8601"),
    ],
)
def test_errors_are_one_readable_line_and_exit_1(db, capsys, argv, message):
    code, out, err = run(capsys, "--db", db, *argv)
    assert code == 1
    assert err.startswith("lobstore: error: ") and message in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_bad_database_urls_are_explained(capsys, tmp_path):
    code, _, err = run(capsys, "--db", "mysql://x@h/db", "info")
    assert code == 1 and "supported: postgresql, sqlite" in err
    code, _, err = run(capsys, "--db", f"sqlite:///{tmp_path}/missing/x.db", "info")
    assert code == 1 and "does not exist" in err


def test_usage_errors_exit_2_with_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["tasks", "list", "--status", "done"])
    assert exc.value.code == 2
    assert "invalid choice: 'done'" in capsys.readouterr().err


def test_info_counts_tasks(db, capsys):
    with open_store(db) as store:
        store.tasks.create(name="a")
        store.tasks.update(1, status="active")
        store.tasks.create(name="b")
    code, out, _ = run(capsys, "--db", db, "info", "--json")
    info = json.loads(out)
    assert info["backend"] == "sqlite" and info["schema_version"] == len(packaged_migrations("sqlite"))
    assert info["tasks"]["active"] == 1 and info["tasks"]["queued"] == 1
