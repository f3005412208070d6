"""Administering the database: ``lobstore migrate``, ``info`` and ``copy``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .. import config
from ..backends import backend_for
from ..errors import MissingDatabaseError
from ..maintenance.copy import copy_store
from ..migrations import MigrationRunner, packaged_migrations
from ..status import STATUSES
from ..store import Store
from .support import format_table


def register(commands: Any) -> None:
    migrate = commands.add_parser("migrate", help="bring the database schema up to date",
                                  description="Apply pending schema migrations, oldest first.")
    migrate.add_argument("--dry-run", action="store_true", help="list what is pending; change nothing")
    migrate.set_defaults(run=cmd_migrate)

    info = commands.add_parser("info", help="show the database, its schema version and task counts")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=cmd_info)

    copy = commands.add_parser(
        "copy", help="copy every table into an empty database (SQLite to PostgreSQL)",
        description="Copy every table of the store at SOURCE into the empty database at "
                    "DESTINATION, ids preserved, in one transaction, and verify the row counts. "
                    "The source is only read. A failed copy leaves the destination empty.",
    )
    copy.add_argument("source", metavar="SOURCE", help="e.g. sqlite:///lobwife.db")
    copy.add_argument("destination", metavar="DESTINATION", help="e.g. postgresql://lobwife@db/lobstore")
    copy.set_defaults(run=cmd_copy)


def cmd_migrate(args: argparse.Namespace) -> int:
    url = config.database_url(args.db)
    # A dry run only looks: it never creates the database, takes no write lock, changes nothing.
    try:
        backend = backend_for(url, read_only=args.dry_run)
    except MissingDatabaseError as exc:
        todo = packaged_migrations(_dialect(url))
        print(f"{backend_url_of(exc)}: no database yet (nothing was created); "
              f"`lobstore migrate` would create it and apply the {len(todo)} pending:")
        for migration in todo:
            print(f"  {migration.label}")
        return 0
    try:
        runner = MigrationRunner(backend)
        current = runner.current_version()
        todo = runner.apply(dry_run=args.dry_run)
        if not todo:
            print(f"{backend.url}: schema is up to date (version {current})")
        elif args.dry_run:
            print(f"{backend.url}: at version {current}; {len(todo)} pending:")
            for migration in todo:
                print(f"  {migration.label}")
        else:
            for migration in todo:
                print(f"applied {migration.label}")
            print(f"{backend.url}: schema now at version {todo[-1].version}")
    finally:
        backend.close()
    return 0


def backend_url_of(exc: MissingDatabaseError) -> str:
    return f"sqlite:///{exc.details['path']}" if "path" in exc.details else "the database"


def _dialect(url: str) -> str:
    return "postgresql" if url.startswith("postgres") else "sqlite"


def cmd_copy(args: argparse.Namespace) -> int:
    live = sys.stderr.isatty()

    def progress(table: str, done: int, total: int) -> None:
        # A terminal gets a counter redrawn in place; a log gets a line every 10,000 rows.
        if done == total:
            print(f"  {table}: {done:,} rows copied", file=sys.stderr, flush=True)
        elif live:
            print(f"  {table}: {done:,} / {total:,} rows", end="\r", file=sys.stderr, flush=True)
        elif done and done % 10_000 == 0:
            print(f"  {table}: {done:,} / {total:,} rows", file=sys.stderr, flush=True)

    result = copy_store(args.source, args.destination, progress=progress)
    print(f"copied {result.source} -> {result.destination}; row counts verified:")
    print(format_table(["TABLE", "ROWS"], [[name, f"{n:,}"] for name, n in result.counts.items()]))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    # Only looks: a missing database is an error, and one at an older schema is described, not
    # migrated (its counts wait for `lobstore migrate`).
    backend = backend_for(config.database_url(args.db), read_only=True)
    try:
        runner = MigrationRunner(backend)
        version = runner.current_version()
        info: dict[str, Any] = {**backend.describe(), "schema_version": version}
        if version != runner.latest:
            info["pending_migrations"] = max(runner.latest - version, 0)
            info["note"] = (f"this lobstore is at schema version {runner.latest}: "
                            + ("run `lobstore migrate`" if version < runner.latest else "upgrade lobstore"))
        else:
            store = Store(backend, id_prefix=config.id_prefix(args.id_prefix))
            info["tasks"] = store.tasks.count_by("status")
            info["tasks"] = {status: info["tasks"].get(status, 0) for status in STATUSES}
            info["events"] = store.events.latest_id()
    finally:
        backend.close()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            print(f"{key:>15}: {value}")
    return 0
