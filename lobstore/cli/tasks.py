"""``lobstore tasks``: list, show and create tasks."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..clock import to_iso
from ..filters import MANY, TASK_FILTERS, TaskFilter
from ..models import PRIORITIES, Task
from .support import format_table, store_from_args


def register(commands: Any) -> None:
    tasks = commands.add_parser("tasks", help="list, show and create tasks")
    task_commands = tasks.add_subparsers(dest="tasks_command", metavar="ACTION", required=True)

    listing = task_commands.add_parser("list", help="list tasks, oldest first")
    add_filter_options(listing)
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


def add_filter_options(parser: argparse.ArgumentParser) -> None:
    """One option per task filter (lobstore.filters.TASK_FILTERS): ``--status``,
    ``--created-since``, ...; a filter of several values takes the option again for each."""
    for name, cleaner in TASK_FILTERS.items():
        schema = cleaner.json_schema()
        options: dict[str, Any] = {"help": cleaner.description, "dest": f"filter_{name}"}
        if "enum" in schema:
            options["choices"] = schema["enum"]
        elif schema.get("format") == "date-time":
            options["metavar"] = "ISO"
            options["help"] += " (e.g. 2026-02-01 or 2026-02-01T12:00:00Z)"
        else:
            options["metavar"] = name.upper().replace("_", "-")
        if name in MANY:
            options["action"] = "append"
            options["help"] += "; repeat for several"
        parser.add_argument(f"--{name.replace('_', '-')}", **options)


def filter_from_args(args: argparse.Namespace) -> TaskFilter:
    return TaskFilter.of(**{name: getattr(args, f"filter_{name}") for name in TASK_FILTERS})


def cmd_tasks_list(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        tasks = store.tasks.list(filter_from_args(args), limit=args.limit, after=args.after,
                                 order="desc" if args.newest_first else "asc")
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
