-- The change feed carries events that belong to no task (a cost ingest without a task, an
-- audit finding, a fleet budget alert): task_events.task_id may be NULL.

ALTER TABLE task_events ALTER COLUMN task_id DROP NOT NULL;
