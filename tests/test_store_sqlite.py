"""What only SQLite does: its pragmas, its one writer, the private memory store, its files."""

from __future__ import annotations

import sqlite3
import threading

import pytest
import sqlalchemy as sa

from lobstore import ConfigurationError, LobstoreError, open_store

from store_contract import create_in_threads


def test_each_memory_store_is_private():
    with open_store("sqlite://") as store:
        store.tasks.create(name="x")
        with open_store("sqlite://") as other:
            assert other.tasks.count() == 0


@pytest.mark.backends("sqlite-file")
class TestSQLiteFile:
    def test_connections_use_wal_full_sync_and_foreign_keys(self, store):
        with store.backend.reading() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000

    def test_data_survives_reopening(self, sqlite_file_url, store):
        store.tasks.create(name="kept")
        store.close()
        with open_store(sqlite_file_url) as again:
            assert again.tasks.get("T1").name == "kept"
            assert again.tasks.create(name="next").id == 2

    def test_readers_are_not_blocked_by_an_open_write(self, store):
        store.tasks.create(name="x")
        result = {}
        with store.transaction() as tx:
            tx.tasks.update(1, name="uncommitted")
            reader = threading.Thread(target=lambda: result.setdefault("name", store.tasks.get(1).name))
            reader.start()
            reader.join(timeout=5)
        assert result == {"name": "x"}
        assert store.tasks.get(1).name == "uncommitted"

    def test_another_process_writing_waits_instead_of_failing(self, store, sqlite_file_url):
        path = sqlite_file_url.removeprefix("sqlite:///")
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # as another process holding the write lock
        threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
        assert store.tasks.create(name="after the wait").id == 1
        other.close()

    def test_foreign_keys_are_enforced(self, store):
        with pytest.raises(Exception, match="FOREIGN KEY"):
            with store.backend.writing() as conn:
                conn.exec_driver_sql(
                    "INSERT INTO task_events (task_id, event_type, data, created_at) "
                    "VALUES (99, 'note', '{}', '2026-01-01 00:00:00')"
                )


@pytest.mark.slow
def test_sixteen_threads_creating_200_tasks_each(sqlite_file_url):
    """Issue acceptance: 3,200 tasks with ids 1..3200, no errors, 3,200 created events."""
    with open_store(sqlite_file_url) as store:
        assert create_in_threads(store, 16, 200) == []
        with store.backend.reading() as conn:
            ids = [row[0] for row in conn.exec_driver_sql("SELECT id FROM tasks ORDER BY id")]
            created = conn.exec_driver_sql(
                "SELECT count(*) FROM task_events WHERE event_type = 'created'").scalar()
            orphans = conn.exec_driver_sql(
                "SELECT count(*) FROM tasks t WHERE NOT EXISTS "
                "(SELECT 1 FROM task_events e WHERE e.task_id = t.id AND e.event_type = 'created')").scalar()
        assert ids == list(range(1, 3201))
        assert created == 3200 and orphans == 0


def test_missing_folder_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path}/no/such/folder/x.db")


def test_open_store_accepts_a_ready_engine(sqlite_file_url):
    engine = sa.create_engine(sqlite_file_url)
    with open_store(engine) as store:
        store.tasks.create(name="x")
        assert store.backend.name == "sqlite"
        assert store.tasks.get("T1").name == "x"


def test_id_prefix_is_per_store():
    with open_store("sqlite://", id_prefix="D") as store:
        task = store.tasks.create(name="dev task")
        assert task.ref == "D1" and task.to_dict()["task_id"] == "D1"
        assert store.tasks.get("d1").id == 1
        assert store.events.for_task("D1")[0].to_dict()["task_id"] == "D1"
    for bad in ("dev-", "T\n", "ABCDE"):  # "T\n": a prefix is written into SQL (the hot reads' JSON)
        with pytest.raises(ConfigurationError, match="capital letters"):
            open_store("sqlite://", id_prefix=bad)


def test_migration_scripts_split_where_sqlite_says_statements_end():
    from lobstore.backends.sqlite import split_sqlite_script

    script = """-- a comment; with a semicolon
CREATE TABLE a (x TEXT DEFAULT ';');
CREATE TRIGGER t AFTER INSERT ON a BEGIN
    UPDATE a SET x = 'y;z';
    SELECT 1;
END;
-- trailing comment
"""
    statements = split_sqlite_script(script)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")


def test_a_read_inside_the_threads_own_write_is_refused_on_the_memory_store():
    with open_store("sqlite://") as store:
        store.tasks.create(name="x")
        with pytest.raises(LobstoreError, match="use tx.tasks"):
            with store.transaction() as tx:
                tx.tasks.update(1, name="y")
                store.tasks.get(1)  # would wait for its own transaction for ever
        assert store.tasks.get(1).name == "x"  # and the write was rolled back


def test_writers_take_the_write_lock_when_they_begin(sqlite_file_url):
    """BEGIN IMMEDIATE: a writer holds SQLite's write lock from its first statement, so another
    process waits at the start of its own write instead of failing at its end."""
    path = sqlite_file_url.removeprefix("sqlite:///")
    with open_store(sqlite_file_url) as store:
        other = sqlite3.connect(path, isolation_level=None, timeout=0)
        with store.backend.writing():
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # free again once the writer committed
        other.execute("ROLLBACK")
        other.close()


def test_a_failed_commit_leaves_the_store_usable(sqlite_file_url):
    """A COMMIT that fails (here: a deferred foreign key) must not leave the pooled connection
    inside its transaction, holding the write lock for every later writer."""
    with open_store(sqlite_file_url) as store:
        with pytest.raises(LobstoreError):
            with store.backend.writing() as conn:
                conn.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
                conn.exec_driver_sql(
                    "INSERT INTO task_events (task_id, event_type, data, created_at) "
                    "VALUES (99, 'note', '{}', '2026-01-01 00:00:00.000000')")
        for n in range(3):
            store.tasks.create(name=f"after {n}")
        assert store.tasks.count() == 3
