-- The task lifecycle clock: claims count attempts, a lease says how long the assignee is
-- trusted without a sign of life, review_pr (set by a lobster that opened a PR) exempts a task
-- from timeouts, and timeout_warned_at makes the estimate warning once per attempt.
-- SQLite adds a NOT NULL column only with a default.

ALTER TABLE tasks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN max_attempts INTEGER;
ALTER TABLE tasks ADD COLUMN lease_expires_at DATETIME;
ALTER TABLE tasks ADD COLUMN review_pr TEXT;
ALTER TABLE tasks ADD COLUMN timeout_warned_at DATETIME;
