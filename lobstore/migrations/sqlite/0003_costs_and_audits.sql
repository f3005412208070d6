-- LLM cost events with the price table they are costed from, and audit findings.
-- Money is integer micro-dollars (exact sums); prices are micro-dollars per million tokens.

CREATE TABLE model_prices (
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    model                   TEXT NOT NULL,
    effective_from          DATETIME NOT NULL,
    input_micro_per_mtok    BIGINT NOT NULL,
    output_micro_per_mtok   BIGINT NOT NULL,
    cache_read_micro_per_mtok  BIGINT NOT NULL,
    cache_write_micro_per_mtok BIGINT NOT NULL,
    actor                   TEXT,
    created_at              DATETIME NOT NULL,
    UNIQUE (model, effective_from)
);

-- Seeded prices (USD per million tokens): input / output / cache read (0.1 x input) /
-- cache write (1.25 x input, Anthropic's 5-minute cache ratios). In effect from 2025-01-01 so
-- that back-filled events are costed too.
INSERT INTO model_prices (model, effective_from, input_micro_per_mtok, output_micro_per_mtok,
                          cache_read_micro_per_mtok, cache_write_micro_per_mtok, actor, created_at)
VALUES
    ('claude-opus-4-6',   '2025-01-01 00:00:00.000000', 5000000, 25000000, 500000, 6250000, 'migration 0003', '2025-01-01 00:00:00.000000'),
    ('claude-sonnet-4-5', '2025-01-01 00:00:00.000000', 3000000, 15000000, 300000, 3750000, 'migration 0003', '2025-01-01 00:00:00.000000'),
    ('claude-haiku-4-5',  '2025-01-01 00:00:00.000000',  800000,  4000000,  80000, 1000000, 'migration 0003', '2025-01-01 00:00:00.000000');

CREATE TABLE cost_events (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id             INTEGER REFERENCES tasks (id),
    model               TEXT NOT NULL,
    agent               TEXT,
    input_tokens        INTEGER NOT NULL DEFAULT 0,
    output_tokens       INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens   INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens  INTEGER NOT NULL DEFAULT 0,
    cost_micro          BIGINT,
    cost_source         TEXT NOT NULL,
    price_id            INTEGER REFERENCES model_prices (id),
    request_id          TEXT UNIQUE,
    created_at          DATETIME NOT NULL
);

-- Summaries add up a date range, task totals one task: each index carries the columns they
-- add up, so neither reads the table itself (several times faster over a million events).
CREATE INDEX ix_cost_events_created_at ON cost_events
    (created_at, model, cost_micro, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens);
CREATE INDEX ix_cost_events_task_id ON cost_events
    (task_id, model, cost_micro, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens);

CREATE TABLE audit_findings (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    audit_type      TEXT NOT NULL,
    severity        TEXT NOT NULL,
    title           TEXT NOT NULL,
    detail          TEXT,
    target          TEXT,
    fingerprint     TEXT NOT NULL,
    status          TEXT NOT NULL,
    occurrences     INTEGER NOT NULL DEFAULT 1,
    run_id          TEXT,
    first_seen_at   DATETIME NOT NULL,
    last_seen_at    DATETIME NOT NULL,
    resolved_at     DATETIME,
    resolution      TEXT,
    resolved_by     TEXT,
    fix_task_id     INTEGER REFERENCES tasks (id)
);

-- At most one live (open or ignored) finding per fingerprint: a recurrence updates it.
CREATE UNIQUE INDEX ux_audit_findings_live_fingerprint ON audit_findings (audit_type, fingerprint)
    WHERE status <> 'resolved';
CREATE INDEX ix_audit_findings_status_id ON audit_findings (status, id);
CREATE INDEX ix_audit_findings_last_seen_at ON audit_findings (last_seen_at);
