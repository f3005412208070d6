"""What only PostgreSQL does: its native types, sequence gaps, many writers at once."""

from __future__ import annotations

import pytest

from lobstore import open_store

from store_contract import create_in_threads


@pytest.mark.backends("postgresql")
class TestPostgreSQL:
    def test_native_types_are_used(self, store):
        with store.backend.reading() as conn:
            types = dict(conn.exec_driver_sql(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'tasks'").all())
        assert types["id"] == "bigint"
        assert types["repos"] == "jsonb"
        assert types["created_at"] == "timestamp with time zone"

    def test_rolled_back_create_may_leave_a_gap_but_ids_stay_increasing(self, store):
        store.tasks.create(name="a")
        with pytest.raises(RuntimeError):
            with store.transaction() as tx:
                tx.tasks.create(name="rolled back")
                raise RuntimeError
        later = store.tasks.create(name="b")
        assert later.id > 1
        assert [t.name for t in store.tasks.list()] == ["a", "b"]


@pytest.mark.slow
def test_sixteen_threads_creating_200_tasks_each(postgres_url):
    """Issue acceptance: 3,200 distinct ids, no errors, 3,200 created events."""
    with open_store(postgres_url) as store:
        assert create_in_threads(store, 16, 200) == []
        with store.backend.reading() as conn:
            ids = [row[0] for row in conn.exec_driver_sql("SELECT id FROM tasks")]
            created = conn.exec_driver_sql(
                "SELECT count(DISTINCT task_id) FROM task_events WHERE event_type = 'created'").scalar()
        assert len(ids) == len(set(ids)) == 3200
        assert created == 3200
