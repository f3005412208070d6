-- Keys a task carries that have no column of their own (the vault importer keeps a task
-- file's unknown frontmatter keys here, and where it came from), as a JSON object.

ALTER TABLE tasks ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}';
