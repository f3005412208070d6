"""Migration behaviour every backend keeps, run by test_store.py on each backend a URL can name
(the ``db_url`` fixture of conftest.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from lobstore import SchemaVersionError, open_store
from lobstore.backends import backend_for
from lobstore.cli import main
from lobstore.errors import MigrationError
from lobstore.migrations import Migration, MigrationRunner, packaged_migrations
from lobstore.schema import metadata

from schema_compare import from_database, from_metadata


class MigrationContract:
    __test__ = False

    @pytest.fixture
    def url(self, db_url):
        return db_url

    @pytest.fixture
    def backend(self, url):
        backend = backend_for(url)
        yield backend
        backend.close()

    def test_dry_run_lists_pending_and_changes_nothing(self, backend):
        runner = MigrationRunner(backend)
        pending = runner.apply(dry_run=True)
        assert [m.version for m in pending] == list(range(1, runner.latest + 1))
        assert runner.current_version() == 0
        assert "tasks" not in sa.inspect(backend.engine).get_table_names()

    def test_second_run_is_a_no_op(self, backend):
        runner = MigrationRunner(backend)
        assert len(runner.apply()) == runner.latest
        assert runner.apply() == []
        assert runner.pending() == []
        assert runner.current_version() == runner.latest

    def test_migrated_schema_matches_schema_py(self, backend):
        MigrationRunner(backend).apply()
        assert from_database(backend.engine) == from_metadata(metadata, backend.engine.dialect)

    def test_database_ahead_of_the_code_is_refused(self, url, backend, capsys):
        runner = MigrationRunner(backend)
        runner.apply()
        with backend.writing() as conn:
            conn.exec_driver_sql(
                "INSERT INTO schema_version (version, name, applied_at) "
                "VALUES (999, 'from_the_future', CURRENT_TIMESTAMP)"
            )
        with pytest.raises(SchemaVersionError, match="newer than this lobstore knows"):
            open_store(url)
        assert main(["--db", url, "migrate"]) == 1
        assert "upgrade lobstore" in capsys.readouterr().err

    def test_store_at_an_old_version_is_refused_without_migrate(self, url):
        with pytest.raises(SchemaVersionError, match="lobstore migrate"):
            open_store(url, migrate=False)
        open_store(url).close()
        open_store(url, migrate=False).close()

    def test_failing_migration_leaves_version_and_schema_as_they_were(self, backend):
        migrations = packaged_migrations(backend.engine.dialect.name)
        bad = Migration(
            len(migrations) + 1,
            "broken",
            "CREATE TABLE half_done (x integer);\nINSERT INTO tasks_that_do_not_exist VALUES (1);\n",
        )
        runner = MigrationRunner(backend, migrations + [bad])
        with pytest.raises(MigrationError, match="broken failed and was rolled back"):
            runner.apply()
        assert runner.current_version() == len(migrations)
        assert "half_done" not in sa.inspect(backend.engine).get_table_names()
        # The good migrations before it were kept, and the store works.
        assert from_database(backend.engine) == from_metadata(metadata, backend.engine.dialect)

    def test_old_database_upgrades_with_its_data(self, url, backend):
        migrations = packaged_migrations(backend.engine.dialect.name)
        MigrationRunner(backend, migrations[:1]).apply()
        with backend.writing() as conn:
            conn.exec_driver_sql(
                "INSERT INTO tasks (name, type, status, priority, repos, requires_qa, tags, "
                "created_at, updated_at, version) VALUES ('old task', 'swe', 'active', 'high', "
                "'[\"a/b\"]', false, '[]', '2026-02-15 10:00:00', '2026-02-15 10:00:00', 3)"
            )
        with open_store(url) as store:
            task = store.tasks.get("T1")
            assert (task.name, task.status, task.priority, task.repos, task.version) == (
                "old task", "active", "high", ("a/b",), 3)
            assert task.to_dict()["created_at"] == "2026-02-15T10:00:00Z"
            assert store.schema_version() == len(migrations)

    def test_broker_registrations_survive_the_standalone_migration(self, url, backend):
        """0010 gives registrations ids of their own (for standalone ones): a task's
        registration made before it is still the task's, token count and all."""
        migrations = packaged_migrations(backend.engine.dialect.name)
        (before,) = [m for m in migrations if m.name == "standalone_registrations"]
        MigrationRunner(backend, [m for m in migrations if m.version < before.version]).apply()
        with backend.writing() as conn:
            conn.exec_driver_sql(
                "INSERT INTO tasks (name, type, status, priority, repos, requires_qa, tags, created_at, "
                "updated_at, version, metadata) VALUES ('old task', 'swe', 'active', 'high', '[]', false, "
                "'[]', '2026-02-15 10:00:00', '2026-02-15 10:00:00', 1, '{}')"
            )
            conn.exec_driver_sql(
                "INSERT INTO broker_tasks (task_id, repos, lobster_type, registered_at, expires_at, status, "
                "token_count) VALUES (1, '[\"a/b\"]', 'swe', '2026-02-15 10:00:00', '2099-01-01 00:00:00', "
                "'active', 4)"
            )
        with open_store(url) as store:
            registration = store.broker.get("T1")
            assert (registration.repos, registration.token_count, registration.standalone) == (("a/b",), 4, False)
            assert store.tasks.get("T1").broker_status == "active"
            assert store.broker.register_by_name("verify-test", repos=["a/b"]).id > registration.id
            assert from_database(backend.engine) == from_metadata(metadata, backend.engine.dialect)
