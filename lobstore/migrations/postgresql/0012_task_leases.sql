-- The task lifecycle clock: claims count attempts, a lease says how long the assignee is
-- trusted without a sign of life, review_pr (set by a lobster that opened a PR) exempts a task
-- from timeouts, and timeout_warned_at makes the estimate warning once per attempt.

ALTER TABLE tasks ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN max_attempts integer;
ALTER TABLE tasks ADD COLUMN lease_expires_at timestamptz;
ALTER TABLE tasks ADD COLUMN review_pr text;
ALTER TABLE tasks ADD COLUMN timeout_warned_at timestamptz;
