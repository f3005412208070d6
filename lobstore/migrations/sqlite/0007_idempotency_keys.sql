-- Idempotency keys of the HTTP API: the response to a write, stored in the same transaction
-- as the write, so a repeat with the same Idempotency-Key gets that response instead of doing
-- the work twice. Scoped by method and path; kept until expires_at (24 h by default).
-- response_status is NULL only while the claiming transaction is still open, so no committed
-- row has it NULL.

CREATE TABLE idempotency_keys (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key   TEXT NOT NULL,
    method            TEXT NOT NULL,
    path              TEXT NOT NULL,
    request_hash      TEXT NOT NULL,
    response_status   INTEGER,
    response_headers  JSON NOT NULL DEFAULT '{}',
    response_body     TEXT,
    created_at        DATETIME NOT NULL,
    expires_at        DATETIME NOT NULL,
    UNIQUE (idempotency_key, method, path)
);

CREATE INDEX ix_idempotency_keys_expires_at ON idempotency_keys (expires_at);
