-- The change feed carries events that belong to no task (a cost ingest without a task, an
-- audit finding, a fleet budget alert): task_events.task_id may be NULL.
-- SQLite cannot drop NOT NULL in place: the table is rebuilt with every row and id, and the
-- AUTOINCREMENT sequence carried over (it may be past the newest id: an id is never reused).

CREATE TABLE task_events_rebuilt (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     INTEGER REFERENCES tasks (id),
    event_type  TEXT NOT NULL,
    detail      TEXT,
    actor       TEXT,
    data        JSON NOT NULL DEFAULT '{}',
    created_at  DATETIME NOT NULL
);

INSERT INTO task_events_rebuilt (id, task_id, event_type, detail, actor, data, created_at)
SELECT id, task_id, event_type, detail, actor, data, created_at FROM task_events ORDER BY id;

DELETE FROM sqlite_sequence WHERE name = 'task_events_rebuilt';
INSERT INTO sqlite_sequence (name, seq) SELECT 'task_events_rebuilt', seq FROM sqlite_sequence WHERE name = 'task_events';

DROP TABLE task_events;
ALTER TABLE task_events_rebuilt RENAME TO task_events;

CREATE INDEX ix_task_events_task_id_id ON task_events (task_id, id);
