"""``lobstore import-vault``: the one-time migration of an existing vault's task files.

Light to import (the CLI loads it for every command); the importer and PyYAML are loaded
only when the command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .. import config
from ..errors import ConfigurationError, SchemaVersionError
from .support import print_report

EXAMPLES = """\
examples:
  lobstore import-vault ~/vault --dry-run      what would be imported; writes nothing anywhere
  lobstore import-vault ~/vault                import, then print what was done
  lobstore --db postgresql://lobwife@db/lobstore import-vault ~/vault --json

Reads 010-tasks/{active,completed,failed}/ and never changes those files; writes one
010-tasks/<folder>/T42.md per imported task. Running it again imports nothing twice.
"""


def register(commands: Any) -> None:
    """Register ``import-vault`` on the CLI's subparsers."""
    cmd = commands.add_parser(
        "import-vault", help="import an existing vault's task files (one-time migration)",
        description="Import every task file of an existing vault into the database in one "
                    "transaction, oldest first (T1 is the oldest), keeping original timestamps and "
                    "old ids; write a T-file per task beside the old files, which are left as they are.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("vault", metavar="VAULT", help="the vault folder (the one holding 010-tasks/)")
    cmd.add_argument("--dry-run", action="store_true", help="report what would be imported; write nothing")
    cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    cmd.add_argument("--tasks-dir", default="010-tasks", metavar="DIR", help="the tasks folder (default 010-tasks)")
    # Also accepted after the command; SUPPRESS keeps a --db given before it.
    cmd.add_argument("--db", metavar="URL", default=argparse.SUPPRESS, help="database URL (as lobstore --db)")
    cmd.set_defaults(run=run_import)


def run_import(args: argparse.Namespace) -> int:
    try:
        from ..importers.vault import check_vault, import_vault
    except ImportError as exc:
        raise ConfigurationError(
            f"lobstore import-vault needs the sync extra ({exc.name} is missing): pip install 'lobstore[sync]'"
        ) from None
    check_vault(args.vault, args.tasks_dir)  # before the store: a wrong path creates no database
    with _open_store(args) as store:
        report = import_vault(store, args.vault, dry_run=args.dry_run, progress=_progress_printer(),
                              tasks_dir=args.tasks_dir)
    print_report(report, args.json)
    return 1 if report.write_errors else 0


def _open_store(args: argparse.Namespace) -> Any:
    from sqlalchemy.engine import make_url

    from ..store import open_store

    url = config.database_url(args.db)
    prefix = config.id_prefix(args.id_prefix)
    if not args.dry_run:
        return open_store(url, id_prefix=prefix)
    # A dry run writes nothing anywhere: no new database file and no migration. A database
    # that does not exist yet is an empty store, which an in-memory one stands in for.
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not os.path.exists(parsed.database):
        return open_store("sqlite://", id_prefix=prefix)
    try:
        return open_store(url, migrate=False, id_prefix=prefix)
    except SchemaVersionError as exc:
        if exc.details.get("current") == 0:
            return open_store("sqlite://", id_prefix=prefix)
        raise


def _progress_printer() -> Any:
    live = sys.stderr.isatty()
    labels = {"reading": "read", "importing": "imported", "writing": "written"}

    def progress(stage: str, done: int, total: int) -> None:
        # A terminal gets a counter redrawn in place; a log a line every 1,000 files.
        label = labels.get(stage, stage)
        if done == total:
            print(f"  {stage}: {done:,} {label}" + " " * 10, file=sys.stderr, flush=True)
        elif live and (done % 50 == 0 or done == 1):
            print(f"  {stage}: {done:,} / {total:,}", end="\r", file=sys.stderr, flush=True)
        elif not live and done % 1000 == 0:
            print(f"  {stage}: {done:,} / {total:,}", file=sys.stderr, flush=True)

    return progress
