"""`lobstore copy`: every table into an empty store, ids kept, counts verified."""

from __future__ import annotations

import importlib.util

import pytest

from lobstore import ConfigurationError, ConflictError, SchemaVersionError, open_store
from lobstore.cli import main
from lobstore.maintenance.copy import copy_store


def fill(url: str, tasks: int) -> None:
    with open_store(url) as store:
        with store.transaction() as tx:
            for n in range(tasks):
                task = tx.tasks.create(name=f"task {n}", repos=["acme/web"], tags=["t"],
                                       legacy_id=f"task-2026-02-15-{n:04x}")
                if n % 3 == 0:
                    tx.tasks.update(task.id, status="active", assigned_to=f"lobster-swe-t{task.id}")
                if n % 7 == 0:
                    tx.events.add(task.id, "note", data={"n": n})


def snapshot(url: str) -> tuple[list[dict], list[dict]]:
    with open_store(url) as store:
        tasks, after = [], None
        while page := store.tasks.list(limit=1000, after=after):
            tasks += [t.to_dict() for t in page]
            after = page[-1].id
        events, last = [], 0
        while page := store.events.feed(after=last, limit=1000):
            events += [e.to_dict() for e in page]
            last = page[-1].id
    return tasks, events


def test_sqlite_to_postgresql_keeps_every_row_and_id(sqlite_file_url, postgres_url, capsys):
    fill(sqlite_file_url, 1000)
    assert main(["copy", sqlite_file_url, postgres_url]) == 0
    out = capsys.readouterr()
    assert "tasks" in out.out and "1,000" in out.out and "verified" in out.out
    assert "task_events: " in out.err  # progress
    assert snapshot(postgres_url) == snapshot(sqlite_file_url)
    with open_store(postgres_url) as store:
        last_event = store.events.latest_id()
        assert store.tasks.create(name="next").id == 1001
        assert store.events.for_task("T1001")[0].id == last_event + 1

    assert main(["copy", sqlite_file_url, postgres_url]) == 1
    assert "already holds data" in capsys.readouterr().err
    with open_store(postgres_url) as store:
        assert store.tasks.count() == 1001


def test_sqlite_to_sqlite_and_next_id(sqlite_file_url, tmp_path):
    fill(sqlite_file_url, 30)
    destination = f"sqlite:///{tmp_path / 'copy.db'}"
    result = copy_store(sqlite_file_url, destination)
    assert result.counts["tasks"] == 30
    assert snapshot(destination) == snapshot(sqlite_file_url)
    with open_store(destination) as store:
        assert store.tasks.create(name="next").ref == "T31"


def test_a_failed_copy_leaves_the_destination_empty_and_can_be_rerun(sqlite_file_url, tmp_path):
    fill(sqlite_file_url, 2500)  # more than one batch
    destination = f"sqlite:///{tmp_path / 'copy.db'}"

    def fail_midway(table, done, total):
        if table == "task_events" and done >= 1000:
            raise RuntimeError("connection lost")

    with pytest.raises(RuntimeError):
        copy_store(sqlite_file_url, destination, progress=fail_midway)
    with open_store(destination) as store:
        assert store.tasks.count() == 0 and store.events.latest_id() == 0
    copy_store(sqlite_file_url, destination)
    assert snapshot(destination) == snapshot(sqlite_file_url)


def test_source_at_an_old_schema_is_refused_untouched(tmp_path):
    from lobstore.backends import backend_for
    from lobstore.migrations import MigrationRunner

    source = f"sqlite:///{tmp_path / 'empty.db'}"
    backend = backend_for(source)
    assert MigrationRunner(backend).current_version() == 0
    backend.close()
    with pytest.raises(SchemaVersionError, match="migrate"):
        copy_store(source, f"sqlite:///{tmp_path / 'dst.db'}")
    backend = backend_for(source)
    assert MigrationRunner(backend).current_version() == 0  # copy did not migrate its source
    backend.close()


def test_into_non_empty_sqlite_is_refused(sqlite_file_url, tmp_path):
    fill(sqlite_file_url, 3)
    destination = f"sqlite:///{tmp_path / 'busy.db'}"
    fill(destination, 1)
    with pytest.raises(ConflictError, match="already holds data"):
        copy_store(sqlite_file_url, destination)


def test_postgresql_without_psycopg_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "psycopg" else real(name, *a))
    with pytest.raises(ConfigurationError, match=r"pip install 'lobstore\[postgres\]'"):
        open_store("postgresql://nobody@127.0.0.1/nothing")


@pytest.mark.parametrize("url", ["postgresql+psycopg2://x@h/db", "mysql://x@h/db", "not a url", ""])
def test_unsupported_urls_are_configuration_errors(url):
    with pytest.raises(ConfigurationError):
        open_store(url)
