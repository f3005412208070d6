-- Tasks and their append-only event trail.
-- AUTOINCREMENT: a task id is never reused, even after the newest task row is gone.

CREATE TABLE tasks (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    name              TEXT NOT NULL,
    slug              TEXT,
    type              TEXT NOT NULL,
    status            TEXT NOT NULL,
    priority          TEXT NOT NULL,
    model             TEXT,
    assigned_to       TEXT,
    repos             JSON NOT NULL DEFAULT '[]',
    description       TEXT,
    discord_thread_id TEXT,
    estimate_minutes  INTEGER,
    requires_qa       BOOLEAN NOT NULL DEFAULT 0,
    workflow          TEXT,
    tags              JSON NOT NULL DEFAULT '[]',
    legacy_id         TEXT UNIQUE,
    vault_path        TEXT,
    created_at        DATETIME NOT NULL,
    updated_at        DATETIME NOT NULL,
    queued_at         DATETIME,
    assigned_at       DATETIME,
    completed_at      DATETIME,
    version           INTEGER NOT NULL DEFAULT 1
);

CREATE INDEX ix_tasks_status_id ON tasks (status, id);
CREATE INDEX ix_tasks_type_id ON tasks (type, id);
CREATE INDEX ix_tasks_assigned_to ON tasks (assigned_to);
CREATE INDEX ix_tasks_created_at ON tasks (created_at);
CREATE INDEX ix_tasks_updated_at ON tasks (updated_at);

CREATE TABLE task_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     INTEGER NOT NULL REFERENCES tasks (id),
    event_type  TEXT NOT NULL,
    detail      TEXT,
    actor       TEXT,
    data        JSON NOT NULL DEFAULT '{}',
    created_at  DATETIME NOT NULL
);

CREATE INDEX ix_task_events_task_id_id ON task_events (task_id, id);
