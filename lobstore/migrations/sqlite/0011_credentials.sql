-- API credentials: who may call the HTTP API, and with which scopes. Only a SHA-256 hash of
-- each secret is kept (the secret is printed once, when it is made). A credential with a
-- task_id is a task credential: handed out with a broker registration, it acts for that one
-- task and lives as long as the registration. A revoked credential keeps its row, so the
-- token audit can still name it; its name may then be given to a new credential.

CREATE TABLE credentials (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL,
    secret_hash   TEXT NOT NULL UNIQUE,
    scopes        JSON NOT NULL DEFAULT '[]',
    task_id       INTEGER REFERENCES tasks (id),
    created_by    TEXT,
    created_at    DATETIME NOT NULL,
    expires_at    DATETIME,
    last_used_at  DATETIME,
    revoked_at    DATETIME
);

CREATE UNIQUE INDEX ux_credentials_live_name ON credentials (name)
    WHERE revoked_at IS NULL AND task_id IS NULL;
CREATE INDEX ix_credentials_task_id ON credentials (task_id);

-- Which credential asked for each registration, deregistration and token (NULL: the server
-- ran without authentication, or the entry predates credentials).
ALTER TABLE token_audit ADD COLUMN credential_id INTEGER REFERENCES credentials (id);
