-- The token broker's registration of a task (one per task), the token audit trail, and the
-- state of lobwife's cron jobs (formerly tasks.json, token-audit.json and jobs.json).

CREATE TABLE broker_tasks (
    task_id        INTEGER PRIMARY KEY REFERENCES tasks (id),
    repos          JSON NOT NULL DEFAULT '[]',
    lobster_type   TEXT,
    registered_at  DATETIME NOT NULL,
    expires_at     DATETIME NOT NULL,
    status         TEXT NOT NULL,
    token_count    INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX ix_broker_tasks_status_expires_at ON broker_tasks (status, expires_at);

-- task_id is NULL only for an imported entry naming a task this store does not hold;
-- legacy_task_id keeps the name the old broker used (set on imported entries only).
CREATE TABLE token_audit (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id         INTEGER REFERENCES tasks (id),
    legacy_task_id  TEXT,
    repos           JSON NOT NULL DEFAULT '[]',
    action          TEXT NOT NULL,
    created_at      DATETIME NOT NULL
);

CREATE INDEX ix_token_audit_task_id_id ON token_audit (task_id, id);
CREATE INDEX ix_token_audit_legacy_task_id ON token_audit (legacy_task_id);

CREATE TABLE job_state (
    name           TEXT PRIMARY KEY,
    description    TEXT,
    schedule       TEXT,
    enabled        BOOLEAN NOT NULL DEFAULT 1,
    last_run       DATETIME,
    last_status    TEXT,
    last_duration  FLOAT,
    last_output    TEXT,
    run_count      INTEGER NOT NULL DEFAULT 0,
    fail_count     INTEGER NOT NULL DEFAULT 0
);
