"""Faults injected with the database's own means (a real trigger, no mock), to prove what rolls
back with a failed write."""

from __future__ import annotations

SQLITE_FAIL_TRIGGER = (
    "CREATE TRIGGER refuse_{kind} BEFORE INSERT ON task_events WHEN NEW.event_type = '{kind}' "
    "BEGIN SELECT RAISE(ABORT, 'event insert refused by the test'); END"
)
PG_FAIL_FUNCTION = """
CREATE OR REPLACE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'event insert refused by the test';
END $$;
"""
PG_FAIL_TRIGGER = (
    "CREATE TRIGGER refuse_{kind} BEFORE INSERT ON task_events FOR EACH ROW "
    "WHEN (NEW.event_type = '{kind}') EXECUTE FUNCTION refuse_event()"
)


def break_event_inserts(store, event_type: str) -> None:
    """From now on the database refuses to insert events of ``event_type``."""
    with store.backend.writing() as conn:
        if store.backend.name == "postgresql":
            conn.exec_driver_sql(PG_FAIL_FUNCTION)
            conn.exec_driver_sql(PG_FAIL_TRIGGER.format(kind=event_type))
        else:
            conn.exec_driver_sql(SQLITE_FAIL_TRIGGER.format(kind=event_type))
