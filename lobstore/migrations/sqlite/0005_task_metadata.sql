-- Keys a task carries that have no column of their own (the vault importer keeps a task
-- file's unknown frontmatter keys here, and where it came from), as a JSON object.
-- SQLite adds a NOT NULL column only with a default.

ALTER TABLE tasks ADD COLUMN metadata JSON NOT NULL DEFAULT '{}';
