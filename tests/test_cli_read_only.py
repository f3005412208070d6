"""Commands that only look never create, migrate or change a database, and a database that
cannot be reached is one line of error (the traceback only with -v)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from lobstore.backends import backend_for
from lobstore.cli import main
from lobstore.migrations import MigrationRunner, packaged_migrations


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def folder_listing(path):
    return sorted(p.name for p in path.iterdir())


def test_migrate_dry_run_on_a_missing_file_creates_nothing(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code, out, err = run(capsys, "--db", url, "migrate", "--dry-run")
    assert code == 0, err
    labels = [m.label for m in packaged_migrations("sqlite")]
    assert "no database yet" in out and f"{len(labels)} pending" in out
    assert [line.strip() for line in out.splitlines()[1:]] == labels
    assert folder_listing(tmp_path) == []  # not even a -wal or -shm file


@pytest.mark.parametrize("argv", [["info"], ["tasks", "list"], ["tasks", "show", "T1"], ["costs"]])
def test_reading_commands_refuse_a_missing_file_and_create_nothing(tmp_path, capsys, argv):
    code, _, err = run(capsys, "--db", f"sqlite:///{tmp_path / 'typo.db'}", *argv)
    assert code == 1
    assert err.startswith("lobstore: error: no SQLite database at ") and err.count("\n") == 1
    assert folder_listing(tmp_path) == []


def test_copy_never_creates_its_source(tmp_path, capsys):
    code, _, err = run(capsys, "copy", f"sqlite:///{tmp_path / 'typo.db'}", f"sqlite:///{tmp_path / 'dst.db'}")
    assert code == 1 and "no SQLite database at" in err
    assert "typo.db" not in folder_listing(tmp_path)


def old_schema_database(url: str) -> None:
    """A database at schema version 3 (as an older lobstore left it)."""
    backend = backend_for(url)
    runner = MigrationRunner(backend, packaged_migrations(backend.engine.dialect.name)[:3])
    runner.apply()
    backend.close()


def schema_version(url: str) -> int:
    backend = backend_for(url)
    try:
        return MigrationRunner(backend).current_version()
    finally:
        backend.close()


def test_dry_run_and_info_leave_an_old_schema_as_it_is(tmp_path, capsys):
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    old_schema_database(url)
    before = hashlib.sha256(path.read_bytes()).hexdigest()

    code, out, _ = run(capsys, "--db", url, "migrate", "--dry-run")
    latest = len(packaged_migrations("sqlite"))
    assert code == 0 and f"at version 3; {latest - 3} pending" in out
    code, out, _ = run(capsys, "--db", url, "info", "--json")
    info = json.loads(out)
    assert code == 0 and info["schema_version"] == 3 and info["pending_migrations"] == latest - 3
    assert "lobstore migrate" in info["note"]
    code, _, err = run(capsys, "--db", url, "tasks", "list")
    assert code == 1 and "run `lobstore migrate`" in err

    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert schema_version(url) == 3


def test_dry_run_and_info_never_migrate_postgresql(postgres_url, capsys):
    old_schema_database(postgres_url)
    code, out, _ = run(capsys, "--db", postgres_url, "migrate", "--dry-run")
    assert code == 0 and "at version 3" in out
    code, out, _ = run(capsys, "--db", postgres_url, "info", "--json")
    assert code == 0 and json.loads(out)["schema_version"] == 3
    assert schema_version(postgres_url) == 3


def test_an_unreachable_server_is_one_line_and_v_adds_the_traceback():
    url = "postgresql://nobody@127.0.0.1:1/nothing"  # port 1: nothing listens
    quiet = subprocess.run([sys.executable, "-m", "lobstore.cli", "--db", url, "info"],
                           capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 1
    assert quiet.stderr.count("\n") == 1, quiet.stderr
    assert quiet.stderr.startswith("lobstore: error: cannot connect to the database postgresql")
    assert "Connection refused" in quiet.stderr
    verbose = subprocess.run([sys.executable, "-m", "lobstore.cli", "-v", "--db", url, "info"],
                             capture_output=True, text=True, timeout=60)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr
    assert verbose.stderr.rstrip().splitlines()[-1] == quiet.stderr.strip()
