"""``lobstore sweep``: one pass of the lifecycle clock now (what `serve` does every 30 s)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .support import format_table, store_from_args


def register(commands: Any) -> None:
    sweep = commands.add_parser(
        "sweep", help="re-queue or fail tasks whose lease lapsed; timeout warnings and failures",
        description="One pass of the lifecycle clock, as `lobstore serve` runs every $LOBSTORE_SWEEP_INTERVAL "
                    "seconds: safe beside running servers (each move is made once). Thresholds come from the "
                    "LOBSTORE_* settings (README, \"The lifecycle clock\").",
    )
    sweep.add_argument("--json", action="store_true", help="print the moves as JSON")
    sweep.set_defaults(run=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..lifecycle.settings import LifecycleSettings
    from ..lifecycle.sweep import sweep

    with store_from_args(args) as store:
        store.set_lifecycle(LifecycleSettings.from_env())
        moves = sweep(store)
    if args.json:
        print(json.dumps([move.to_dict() for move in moves], indent=2, ensure_ascii=False))
    elif moves:
        print(format_table(["task", "move", "event", "investigation", "why"],
                           [[m.task_id, m.action, m.event_type, m.investigation or "-", m.reason] for m in moves],
                           max_width=120))
    else:
        print("nothing to do: no active task's lease lapsed or timeout came")
    return 0
