"""The vault importer: today's task files into the store, nothing lost, nothing twice.

A one-time migration, run against a vault people care about, so it is careful:

* it only **reads** the old files (``010-tasks/{active,completed,failed}/**/*.md``) and never
  changes or removes one; the tasks get new files ``010-tasks/<folder>/T42.md`` beside them;
* every task goes into the database in **one transaction**, oldest first (so ``T1`` is the
  oldest task); a failure half way leaves the database as it was and writes no file;
* the T-files are written only **after** the commit. If writing one fails, the database still
  holds the task and a second run writes the missing file (it repairs, it does not re-import);
* it is **idempotent**: a file whose old id is already in the store is "already present", or
  "changed since import" when its bytes differ from what was imported (a hash kept in the
  task's metadata), and is never imported twice;
* a dry run reads everything and writes nothing, to the database or the vault.

The T-file is the vault sync's own rendering of the task applied to the old file (the store's
frontmatter keys set, every other key, comment and the body kept byte for byte), so the next
sync cycle finds nothing to change.

In three rooms: :mod:`.mapping` (one old file read, checked and mapped to a task's fields),
:mod:`.run` (the import: every file, one transaction, then the T-files) and :mod:`.report`
(what it did).
"""

from __future__ import annotations

from .mapping import read_task_file
from .report import FileEntry, VaultImportReport
from .run import ACTOR, IMPORT_KEY, VaultImportError, check_vault, import_vault

__all__ = ["ACTOR", "IMPORT_KEY", "FileEntry", "VaultImportError", "VaultImportReport", "check_vault",
           "import_vault", "read_task_file"]
