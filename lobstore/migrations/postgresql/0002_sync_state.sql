-- Where the vault sync stands, per vault: the last event id it rendered (its place in the
-- change feed), when it last reconciled every task, and what its last cycle did (JSON:
-- time, commit, files changed, error) so any process can show it.

CREATE TABLE sync_state (
    vault          text PRIMARY KEY,
    last_event_id  bigint NOT NULL DEFAULT 0,
    last_full_at   timestamptz,
    last_cycle     jsonb NOT NULL DEFAULT '{}',
    updated_at     timestamptz NOT NULL
);
