-- The vault sync's place in the cost events: a task whose cost grew since the last cycle has
-- its "cost so far" key rendered again, even when nothing else about it changed.
ALTER TABLE sync_state ADD COLUMN last_cost_event_id bigint NOT NULL DEFAULT 0;
