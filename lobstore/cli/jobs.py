"""``lobstore jobs``: check a cron jobs file before `serve` runs it; show the jobs' state."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from typing import Any

from ..clock import to_iso
from .support import format_table, store_from_args


def register(commands: Any) -> None:
    jobs = commands.add_parser("jobs", help="cron jobs: check a jobs file, list the jobs' state",
                               description="lobwife's cron jobs. `lobstore serve --jobs FILE` runs them.")
    actions = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="check a jobs file and show when each job runs next",
                               description="Read a jobs file as `serve --jobs` would; on a problem, name the "
                                           "file, the job and the field, and exit 1.")
    check.add_argument("file", help="the jobs file (TOML), e.g. examples/jobs.toml")
    check.add_argument("--next", type=int, default=3, metavar="N", help="upcoming runs to show per job (default 3)")
    check.set_defaults(run=cmd_check)
    listing = actions.add_parser("list", help="every job's state in the store (as GET /api/jobs)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=cmd_list)


def cmd_check(args: argparse.Namespace) -> int:
    from ..cron import load_jobs

    jobs = load_jobs(args.file)
    now = datetime.now(timezone.utc)
    rows = []
    for job in jobs.jobs:
        upcoming, moment = [], now
        for _ in range(max(0, args.next)):
            moment = job.schedule.next_after(moment)
            upcoming.append(to_iso(moment))
        rows.append([job.name, job.schedule.expression, job.concurrency, f"{job.timeout:g} s",
                     "yes" if job.enabled else "no", ", ".join(upcoming), job.command_line])
    print(format_table(["job", "schedule (UTC)", "concurrency", "timeout", "enabled", "next runs", "command"], rows,
                       max_width=100))
    print(f"{args.file}: {len(jobs.jobs)} job{'s' if len(jobs.jobs) != 1 else ''}; missed slots caught up within "
          f"{jobs.catch_up_window:g} s; {jobs.stop_grace:g} s for running jobs on shutdown")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        jobs = store.jobs.list()
    if args.json:
        print(json.dumps({name: job.to_dict() for name, job in jobs.items()}, indent=2))
        return 0
    rows = [[name, job.schedule or "-", "yes" if job.enabled else "no", "running" if job.running else "-",
             to_iso(job.last_run) or "-", job.last_status or "-", job.run_count, job.fail_count,
             to_iso(job.next_run) or "-"] for name, job in jobs.items()]
    print(format_table(["job", "schedule", "enabled", "now", "last run", "status", "runs", "failed", "next run"], rows)
          if rows else "no jobs known yet")
    return 0
