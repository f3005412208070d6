"""The stores a contract suite runs against, as mixins: each gives the ``store`` fixture and a
way to make the database itself refuse inserting some events (to prove rollbacks)."""

from __future__ import annotations

import pytest

from lobstore import open_store

SQLITE_FAIL_TRIGGER = (
    "CREATE TRIGGER refuse_{kind} BEFORE INSERT ON task_events WHEN NEW.event_type = '{kind}' "
    "BEGIN SELECT RAISE(ABORT, 'event insert refused by the test'); END"
)
PG_FAIL_FUNCTION = """
CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'event insert refused by the test';
END $$;
"""
PG_FAIL_TRIGGER = (
    "CREATE TRIGGER refuse_{kind} BEFORE INSERT ON task_events FOR EACH ROW "
    "WHEN (NEW.event_type = '{kind}') EXECUTE FUNCTION refuse_event()"
)


class SQLiteBreaker:
    def break_event_inserts(self, store, event_type):
        with store.backend.writing() as conn:
            conn.exec_driver_sql(SQLITE_FAIL_TRIGGER.format(kind=event_type))


class SQLiteMemoryStore(SQLiteBreaker):
    @pytest.fixture
    def store(self):
        with open_store("sqlite://") as store:
            yield store


class SQLiteFileStore(SQLiteBreaker):
    @pytest.fixture
    def store(self, sqlite_file_url):
        with open_store(sqlite_file_url) as store:
            yield store


class PostgreSQLStore:
    @pytest.fixture
    def store(self, postgres_url):
        with open_store(postgres_url) as store:
            yield store

    def break_event_inserts(self, store, event_type):
        with store.backend.writing() as conn:
            conn.exec_driver_sql(PG_FAIL_FUNCTION)
            conn.exec_driver_sql(PG_FAIL_TRIGGER.format(kind=event_type))
