"""The ``lobstore`` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from . import __version__, config
from .adapters import server
from .backends import backend_for
from . import cli_costs
from .cli_import_json import add_command as add_import_json
from .cli_support import format_table, store_from_args
from .clock import to_iso
from .copy import copy_store
from .errors import LobstoreError
from .migrations import MigrationRunner
from .models import PRIORITIES, Task
from .status import STATUSES
from .sync.command import add_sync_command
from .sync.import_command import add_import_command

EXAMPLES = """\
examples:
  lobstore migrate --dry-run              what would be applied to ./lobstore.db
  lobstore tasks create "Fix login bug" --type swe --repo acme/web --priority high
  lobstore tasks list --status queued --status active
  lobstore tasks show T42
  lobstore costs --period week --group-by agent
  lobstore copy sqlite:///lobwife.db postgresql://lobwife@db/lobstore
  lobstore import-json /data/lobwife --dry-run    what lobwife's JSON files would bring in
  LOBSTORE_URL=postgresql://lobwife@db/lobstore lobstore tasks list

The database is --db, else $LOBSTORE_URL, else sqlite:///lobstore.db in this folder.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lobstore",
        description="State store of the lob agent fleet: tasks, their event trail and more.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lobstore {__version__}")
    parser.add_argument("--db", metavar="URL", help="database URL (default: $LOBSTORE_URL or sqlite:///lobstore.db)")
    parser.add_argument("--id-prefix", metavar="P", help="task id prefix (default: $LOBSTORE_ID_PREFIX or T)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # In the order a newcomer meets them: run it, look at tasks and costs, then administer.
    server.add_command(commands)  # `lobstore serve`: Bottle and cheroot load only when it runs
    add_sync_command(commands)
    tasks = commands.add_parser("tasks", help="list, show and create tasks")
    task_commands = tasks.add_subparsers(dest="tasks_command", metavar="ACTION", required=True)

    listing = task_commands.add_parser("list", help="list tasks, oldest first")
    listing.add_argument("--status", action="append", choices=STATUSES, help="repeat for several")
    listing.add_argument("--type", help="task type, e.g. swe")
    listing.add_argument("--assigned-to", metavar="WHO")
    listing.add_argument("--priority", choices=PRIORITIES)
    listing.add_argument("--repo", metavar="OWNER/REPO")
    listing.add_argument("--created-since", metavar="ISO", help="e.g. 2026-02-01 or 2026-02-01T12:00:00Z")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (1-1000, default 50)")
    listing.add_argument("--after", metavar="ID", help="continue after this task (the last one shown)")
    listing.add_argument("--newest-first", action="store_true")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(run=cmd_tasks_list)

    show = task_commands.add_parser("show", help="show one task and its history")
    show.add_argument("ref", metavar="TASK", help="T42, 42 or a legacy id")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=cmd_tasks_show)

    create = task_commands.add_parser("create", help="create a task")
    create.add_argument("name")
    create.add_argument("--type", default="swe", help="swe (default), research, qa, image-gen, system, ...")
    create.add_argument("--priority", choices=PRIORITIES, default="normal")
    create.add_argument("--repo", action="append", dest="repos", metavar="OWNER/REPO", help="repeat for several")
    create.add_argument("--description")
    create.add_argument("--tag", action="append", dest="tags", metavar="TAG")
    create.add_argument("--model")
    create.add_argument("--actor", default="cli", help="who is creating it (default: cli)")
    create.add_argument("--json", action="store_true", help="print the task as JSON")
    create.set_defaults(run=cmd_tasks_create)

    cli_costs.add_parser(commands)

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

    add_import_command(commands)
    add_import_json(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except LobstoreError as exc:
        print(f"lobstore: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lobstore: interrupted", file=sys.stderr)
        return 130


# -- commands ----------------------------------------------------------------------------------
def cmd_migrate(args: argparse.Namespace) -> int:
    backend = backend_for(config.database_url(args.db))
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
    with store_from_args(args) as store:
        info = store.describe()
        info["tasks"] = {status: store.tasks.count(status=status) for status in STATUSES}
        info["events"] = store.events.latest_id()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            print(f"{key:>15}: {value}")
    return 0


def cmd_tasks_list(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        tasks = store.tasks.list(
            status=args.status, type=args.type, assigned_to=args.assigned_to, priority=args.priority,
            repo=args.repo, created_since=args.created_since, limit=args.limit, after=args.after,
            order="desc" if args.newest_first else "asc",
        )
    if args.json:
        print(json.dumps([t.to_dict() for t in tasks], indent=2))
        return 0
    if not tasks:
        print("no tasks match")
        return 0
    print(format_table(
        ["ID", "STATUS", "TYPE", "PRIORITY", "ASSIGNED TO", "CREATED", "NAME"],
        [[t.ref, t.status, t.type, t.priority, t.assigned_to or "-", to_iso(t.created_at), t.name]
         for t in tasks],
    ))
    if len(tasks) == args.limit:
        print(f"(more may follow: --after {tasks[-1].ref})")
    return 0


def cmd_tasks_show(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        task = store.tasks.get(args.ref)
        events = store.events.for_task(task.id)
    if args.json:
        print(json.dumps({**task.to_dict(), "events": [e.to_dict() for e in events]}, indent=2))
        return 0
    print(describe_task(task))
    print()
    print(format_table(
        ["WHEN", "EVENT", "ACTOR", "DETAIL"],
        [[to_iso(e.created_at), e.event_type, e.actor or "-", e.detail or ""] for e in events],
    ))
    return 0


def cmd_tasks_create(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        task = store.tasks.create(
            name=args.name, type=args.type, priority=args.priority, repos=args.repos or [],
            description=args.description, tags=args.tags or [], model=args.model, actor=args.actor,
        )
    if args.json:
        print(json.dumps(task.to_dict(), indent=2))
    else:
        print(f"created {task.ref}: {task.name}")
    return 0


# -- output ------------------------------------------------------------------------------------
def describe_task(task: Task) -> str:
    fields = task.to_dict()
    description = fields.pop("description")
    lines = [f"{task.ref}  {task.name}"]
    for key, value in fields.items():
        if key in ("id", "task_id", "name") or value in (None, [], ""):
            continue
        if isinstance(value, list):
            value = ", ".join(value)
        lines.append(f"  {key:>20}: {value}")
    if description:
        lines += ["", description]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
