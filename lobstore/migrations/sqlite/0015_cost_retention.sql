-- Retention: raw cost events older than a horizon can be pruned. Before an event is deleted its
-- numbers are added to cost_archive, per hour, model, task and agent (task_id 0 and agent ''
-- stand for none: key columns cannot be NULL), so summaries by task, agent or task type over
-- pruned hours stay exact; the hourly cost_rollups (per model) are never pruned. Each prune run
-- is recorded with its horizon: summaries say when they reach before it.

CREATE TABLE cost_archive (
    hour                DATETIME NOT NULL,
    model               TEXT NOT NULL,
    task_id             INTEGER NOT NULL,
    agent               TEXT NOT NULL,
    cost_micro          BIGINT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    cache_read_tokens   BIGINT NOT NULL,
    cache_write_tokens  BIGINT NOT NULL,
    events              BIGINT NOT NULL,
    costed_events       BIGINT NOT NULL,
    PRIMARY KEY (hour, model, task_id, agent)
);
CREATE INDEX ix_cost_archive_task_id ON cost_archive (task_id);

CREATE TABLE cost_prune_runs (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    horizon                DATETIME NOT NULL,
    actor                  TEXT,
    started_at             DATETIME NOT NULL,
    finished_at            DATETIME,
    events                 BIGINT NOT NULL,
    batches                BIGINT NOT NULL,
    longest_hold_ms        FLOAT NOT NULL,
    idempotency_keys       BIGINT NOT NULL,
    token_audit_rows       BIGINT NOT NULL
);
