-- Re-pricing: each run that recomputed table-priced cost events with the price table as it is
-- now (a price corrected after the fact): who, when, which model and range, the prices used,
-- how many events it changed and by how much.

CREATE TABLE cost_reprice_runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    model           TEXT NOT NULL,
    since           DATETIME NOT NULL,
    until           DATETIME NOT NULL,
    actor           TEXT,
    created_at      DATETIME NOT NULL,
    price_ids       JSON NOT NULL DEFAULT '[]',
    events          BIGINT NOT NULL,
    changed_events  BIGINT NOT NULL,
    old_micro       BIGINT NOT NULL,
    new_micro       BIGINT NOT NULL
);
