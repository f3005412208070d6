"""``lobstore prune``: retention of raw cost events, expired idempotency keys, old token audit."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .support import store_from_args

DESCRIPTION = """\
Delete what a busy fleet no longer needs raw. Cost events older than the age go in batches that
hold SQLite's write lock about 40 ms each (writers keep writing); their numbers stay in the
hourly rollups and the cost archive, so every summary by day, model, task, agent or task type
adds up the same as before. Expired idempotency keys go too, and token audit entries older than
--token-audit-older-than when it is given.

  lobstore prune --costs-older-than 180d --dry-run     what would go
  lobstore prune --costs-older-than 180d --token-audit-older-than 365d
"""


def register(commands: Any) -> None:
    prune = commands.add_parser("prune", help="retention: prune old cost events, idempotency keys, token audit",
                                description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    prune.add_argument("--costs-older-than", required=True, metavar="AGE", help="e.g. 180d, 26w or 48h")
    prune.add_argument("--token-audit-older-than", metavar="AGE", help="also prune token audit entries this old")
    prune.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    prune.add_argument("--actor", default="cli")
    prune.add_argument("--json", action="store_true", help="print JSON")
    prune.set_defaults(run=cmd_prune)


def cmd_prune(args: argparse.Namespace) -> int:
    from ..maintenance.prune import parse_age, prune

    costs_age = parse_age(args.costs_older_than, "costs-older-than")
    audit_age = None if args.token_audit_older_than is None else parse_age(
        args.token_audit_older_than, "token-audit-older-than")
    with store_from_args(args, read_only=args.dry_run) as store:
        report = prune(store, costs_older_than=costs_age, token_audit_older_than=audit_age,
                       dry_run=args.dry_run, actor=args.actor)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    data = report.to_dict()
    verb = "would prune" if report.dry_run else "pruned"
    print(f"{verb} {report.cost_events:,} cost events before {data['costs_before']}, "
          f"{report.idempotency_keys:,} expired idempotency keys, {report.token_audit_rows:,} token audit entries"
          + (f" before {data['token_audit_before']}" if report.token_audit_before else ""))
    if not report.dry_run:
        print(f"{report.batches:,} batches in {report.seconds:.1f} s, longest write-lock hold "
              f"{report.longest_hold_ms:.1f} ms (prune run {report.run_id})")
    return 0
