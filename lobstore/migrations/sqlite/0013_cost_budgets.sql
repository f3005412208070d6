-- Budgets: a limit in micro-dollars per task, task type, model, agent or the whole fleet, per
-- UTC day, week (from Monday), month or in total. The spend of each budget period is counted
-- in the cost-ingest transaction (budget_spend), and each 80 and 100 per cent crossing is written
-- once per period: the unique key of budget_alerts is what makes it once.

CREATE TABLE budgets (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    scope        TEXT NOT NULL,
    target       TEXT,
    task_id      INTEGER REFERENCES tasks (id),
    period       TEXT NOT NULL,
    limit_micro  BIGINT NOT NULL,
    hard         BOOLEAN NOT NULL,
    actor        TEXT,
    created_at   DATETIME NOT NULL,
    removed_at   DATETIME
);

CREATE TABLE budget_spend (
    budget_id     INTEGER NOT NULL REFERENCES budgets (id),
    period_start  DATETIME NOT NULL,
    spent_micro   BIGINT NOT NULL,
    limit_micro   BIGINT NOT NULL,  -- the budget's (checked at ingest without a join)
    PRIMARY KEY (budget_id, period_start)
);

CREATE TABLE budget_alerts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    budget_id     INTEGER NOT NULL REFERENCES budgets (id),
    period_start  DATETIME NOT NULL,
    threshold     INTEGER NOT NULL,
    spent_micro   BIGINT NOT NULL,
    limit_micro   BIGINT NOT NULL,
    created_at    DATETIME NOT NULL,
    UNIQUE (budget_id, period_start, threshold)
);
