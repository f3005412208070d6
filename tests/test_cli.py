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


def test_every_task_filter_is_an_option_of_tasks_list(db, capsys):
    with open_store(db) as store:
        store.tasks.create(name="old", priority="low", created_at="2026-01-05T00:00:00Z")
        store.tasks.create(name="web", priority="high", repos=["acme/web"], created_at="2026-02-05T00:00:00Z")
        store.tasks.create(name="api", priority="critical", repos=["acme/api"], created_at="2026-02-06T00:00:00Z")
        store.tasks.update("T3", status="active", assigned_to="lobster-swe-t3")

    def refs(*options):
        code, out, err = run(capsys, "--db", db, "tasks", "list", *options, "--json")
        assert code == 0, err
        return [t["task_id"] for t in json.loads(out)]

    assert refs("--priority", "high", "--priority", "critical") == ["T2", "T3"]
    assert refs("--created-since", "2026-02-01", "--created-until", "2026-02-06") == ["T2"]
    assert refs("--repo", "acme/api") == ["T3"] == refs("--assigned-to", "lobster-swe-t3")
    assert refs("--status", "active", "--status", "queued", "--updated-since", "2026-01-01") == ["T1", "T2", "T3"]
    code, _, err = run(capsys, "--db", db, "tasks", "list", "--repo", "not-a-repo")
    assert code == 1 and "repo must be a GitHub repository as owner/repo" in err


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


@pytest.mark.parametrize("command", [["serve"], ["sync", "--vault", "vault"]])
@pytest.mark.parametrize("flag", ["--sync-interval", "--interval"])
def test_serve_and_sync_take_the_sync_interval_under_either_spelling(capsys, monkeypatch, command, flag):
    from lobstore.cli import build_parser

    monkeypatch.delenv("LOBSTORE_SYNC_INTERVAL", raising=False)
    assert build_parser().parse_args([*command, flag, "120"]).sync_interval == "120"
    code, _, err = run(capsys, *command, flag, "soon")  # refused before anything starts
    assert code == 1
    assert "sync interval must be a number of seconds above 0 (from --sync-interval" in err and "'soon'" in err
