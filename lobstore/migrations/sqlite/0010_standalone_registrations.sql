-- Standalone broker registrations (lobwife's fallback): a registration for an id that names
-- no task, such as `verify-test`, is kept under that name. A registration gets an id of its
-- own: `task_id` (one registration per task) or `name` (a standalone one), never both.
-- SQLite cannot change a primary key in place: the table is rebuilt, rows and all.

CREATE TABLE broker_tasks_0009 (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id        INTEGER REFERENCES tasks (id),
    name           TEXT,
    repos          JSON NOT NULL DEFAULT '[]',
    lobster_type   TEXT,
    registered_at  DATETIME NOT NULL,
    expires_at     DATETIME NOT NULL,
    status         TEXT NOT NULL,
    token_count    INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT ck_broker_tasks_task_or_name CHECK ((task_id IS NULL) <> (name IS NULL))
);

INSERT INTO broker_tasks_0009 (task_id, repos, lobster_type, registered_at, expires_at, status, token_count)
SELECT task_id, repos, lobster_type, registered_at, expires_at, status, token_count
FROM broker_tasks ORDER BY task_id;

DROP TABLE broker_tasks;
ALTER TABLE broker_tasks_0009 RENAME TO broker_tasks;

CREATE UNIQUE INDEX ux_broker_tasks_task_id ON broker_tasks (task_id);
CREATE UNIQUE INDEX ux_broker_tasks_name ON broker_tasks (name);
CREATE INDEX ix_broker_tasks_status_expires_at ON broker_tasks (status, expires_at);

-- lobwife's lookups find a task by slug or name (registration, token, deregistration): an
-- index each, so a name that matches nothing costs a lookup, not a scan of every task.
CREATE INDEX ix_tasks_slug ON tasks (slug);
CREATE INDEX ix_tasks_name ON tasks (name);
