"""``lobstore import-json``: bring lobwife's JSON state files into the store."""

from __future__ import annotations

import argparse
from typing import Any

from ..importers.json_state import import_json_state
from .support import print_report, store_from_args


def register(commands: Any) -> None:
    """Register the command on the CLI's subparsers."""
    command = commands.add_parser(
        "import-json", help="import lobwife's jobs.json, tasks.json and token-audit.json",
        description="Import lobwife's jobs.json, tasks.json and token-audit.json from STATE_DIR "
                    "in one transaction, then rename them to *.migrated. Missing files are "
                    "skipped; a malformed file stops the import before anything is written. "
                    "Running it again changes nothing.",
    )
    command.add_argument("state_dir", metavar="STATE_DIR", help="the folder holding lobwife's JSON files")
    command.add_argument("--keep", action="store_true", help="leave the files in place (no *.migrated rename)")
    command.add_argument("--dry-run", action="store_true", help="report what would be imported; change nothing")
    command.add_argument("--json", action="store_true", help="print the report as JSON")
    command.set_defaults(run=cmd_import_json)


def cmd_import_json(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        report = import_json_state(store, args.state_dir, keep=args.keep or args.dry_run, dry_run=args.dry_run)
    print_report(report, args.json)
    return 0
