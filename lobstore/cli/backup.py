"""``lobstore backup`` and ``lobstore restore``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import config
from .support import format_table


def register(commands: Any) -> None:
    backup = commands.add_parser(
        "backup", help="write a consistent, compressed backup of the database",
        description="Back up the database of --db / $LOBSTORE_URL into DEST (a new file, or a folder "
                    "to get lobstore-<time>.tar.gz in it) while it keeps serving: SQLite through its "
                    "online backup API, PostgreSQL through pg_dump (or a logical copy into SQLite). "
                    "The file holds a manifest with the schema version and every table's row count "
                    "and checksum, and appears only when complete. The database is only read.",
    )
    backup.add_argument("dest", metavar="DEST", help="the backup file to write, or an existing folder")
    backup.add_argument("--method", choices=("auto", "sqlite", "pg_dump"), default="auto",
                        help="PostgreSQL only: pg_dump, or sqlite (a portable SQLite copy that also "
                             "restores into SQLite); auto: pg_dump when installed (default)")
    backup.set_defaults(run=cmd_backup)

    restore = commands.add_parser(
        "restore", help="restore a backup into an empty database, verified",
        description="Restore the backup SRC into the empty database URL (a SQLite file that does not "
                    "exist yet, or a new PostgreSQL database), then check every table's row count and "
                    "checksum against the backup's manifest. A database that holds data is refused. "
                    "A backup of an older schema is migrated on the way.",
    )
    restore.add_argument("source", metavar="SRC", help="a backup file written by `lobstore backup`")
    restore.add_argument("url", metavar="URL", help="e.g. sqlite:///restored.db or postgresql://user@host/newdb")
    restore.set_defaults(run=cmd_restore)


def cmd_backup(args: argparse.Namespace) -> int:
    from ..maintenance.backup import backup

    result = backup(config.database_url(args.db), args.dest, method=args.method, progress=_progress)
    manifest = result.manifest
    rows = sum(table["rows"] for table in manifest["tables"].values())
    print(f"{result.path}: {result.bytes:,} bytes, schema version {manifest['schema_version']}, "
          f"{rows:,} rows in {len(manifest['tables'])} tables ({manifest['method']}, {result.seconds:.1f} s)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from ..maintenance.restore import restore

    result = restore(args.source, args.url, progress=_progress)
    note = f", migrated from schema version {result.migrated_from}" if result.migrated_from else ""
    print(f"restored {args.source} into {args.url} ({result.seconds:.1f} s{note}); "
          f"every table checked against {result.checked}:")
    print(format_table(["TABLE", "ROWS"], [[name, f"{n:,}"] for name, n in result.counts.items()]))
    return 0


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
