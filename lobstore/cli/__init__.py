"""The ``lobstore`` command: one module per command group, each with ``register(commands)``.

Command modules import only what ``--help`` needs; heavy parts (Bottle, cheroot, Jinja2,
GitPython) load when their command runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable, Sequence

from .. import __version__, config
from ..adapters import logs
from ..errors import LobstoreError
from . import admin, backup, costs, credentials, import_json, import_vault, jobs, prune, serve, sweep, sync, tasks

EXAMPLES = """\
examples:
  lobstore migrate --dry-run              what would be applied to ./lobstore.db
  lobstore tasks create "Fix login bug" --type swe --repo acme/web --priority high
  lobstore tasks list --status queued --status active
  lobstore tasks show T42
  lobstore sweep                          re-queue or fail tasks whose lease lapsed, now
  lobstore costs --period week --group-by agent
  lobstore credentials create lobboss --scope write --scope broker
  lobstore jobs check examples/jobs.toml  what serve --jobs would run, and when
  lobstore copy sqlite:///lobwife.db postgresql://lobwife@db/lobstore
  lobstore backup /backups/                       a consistent backup while it serves
  lobstore restore /backups/lobstore-20260301T120000Z.tar.gz sqlite:///restored.db
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
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (and tracebacks of errors)")
    parser.add_argument("--log-format", choices=logs.FORMATS,
                        help=f"text (default) or json: one JSON object per line (${config.ENV_LOG_FORMAT})")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # In the order a newcomer meets them: run it, look at tasks and costs, then administer.
    for group in (serve, sync, tasks, sweep, costs, jobs, credentials, admin, backup, prune, import_vault, import_json):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        logs.configure(logging.INFO if args.verbose else logging.WARNING, config.log_format(args.log_format))
        return run(args)
    except (LobstoreError, OSError) as exc:
        # One line a person can act on; the traceback only when asked for (-v).
        if args.verbose:
            traceback.print_exc()
        print(f"lobstore: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lobstore: interrupted", file=sys.stderr)
        return 130

