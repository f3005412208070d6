-- The job scheduler inside `lobstore serve` (lobstore.cron): what the jobs file defines for
-- each job (command, concurrency, timeout), the last run's exit code, runs skipped because the
-- previous one was still alive, the next planned slot (so a restart or another replica knows
-- which slot is due, and claims it exactly once), the start of the run in progress, and a
-- trigger waiting for the process that runs the schedule.
ALTER TABLE job_state ADD COLUMN command TEXT;
ALTER TABLE job_state ADD COLUMN concurrency TEXT;
ALTER TABLE job_state ADD COLUMN timeout FLOAT;
ALTER TABLE job_state ADD COLUMN last_exit_code INTEGER;
ALTER TABLE job_state ADD COLUMN skip_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE job_state ADD COLUMN last_skipped_at DATETIME;
ALTER TABLE job_state ADD COLUMN next_run DATETIME;
ALTER TABLE job_state ADD COLUMN running_since DATETIME;
ALTER TABLE job_state ADD COLUMN trigger_requested_at DATETIME;
