"""``lobstore sync``: one cycle (``--once``, the default) or the daemon in the foreground
(``--watch``). Imports the sync machinery only when run, so other commands never need it."""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import time
from typing import Any

from .. import config
from ..errors import ConfigurationError
from .support import add_sync_interval, store_from_args

EXAMPLES = """\
examples:
  lobstore sync --vault ~/vault                one cycle: pull, render, commit, push
  lobstore sync --vault ~/vault --full         the same, re-checking every task
  lobstore sync --watch --sync-interval 120    keep syncing ($LOBSTORE_VAULT) until Ctrl-C

The vault is --vault, else $LOBSTORE_VAULT; the interval --sync-interval (as for `lobstore
serve`), else $LOBSTORE_SYNC_INTERVAL, else 300 seconds.
"""


def register(commands: Any) -> None:
    """Register ``sync`` on the CLI's subparsers."""
    sync = commands.add_parser(
        "sync", help="render the database into the vault and commit it",
        description="Write the database's tasks into the git vault (010-tasks/...), one commit "
                    "per cycle, keeping everything people wrote.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = sync.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="run one cycle and exit (the default)")
    mode.add_argument("--watch", action="store_true", help="keep running: a cycle every interval and after significant events")
    sync.add_argument("--vault", metavar="PATH", help="the vault's git working copy (default: $LOBSTORE_VAULT)")
    # Also accepted after the command; SUPPRESS keeps a --db given before it.
    sync.add_argument("--db", metavar="URL", default=argparse.SUPPRESS, help="database URL (as lobstore --db)")
    add_sync_interval(sync, "seconds between cycles with --watch")
    sync.add_argument("--full", action="store_true", help="re-check every task, not only those changed since the last cycle")
    sync.add_argument("--author", metavar="'NAME <EMAIL>'", help="commit author (default: lobstore sync)")
    sync.add_argument("--json", action="store_true", help="print each cycle's result as JSON")
    sync.set_defaults(run=run_sync)


def run_sync(args: argparse.Namespace) -> int:
    vault = config.vault_path(args.vault)
    if not vault:
        raise ConfigurationError(f"no vault: give --vault PATH or set ${config.ENV_VAULT}")
    interval = config.sync_interval(args.sync_interval)
    try:
        from ..sync.daemon import SyncDaemon
    except ImportError as exc:
        raise ConfigurationError(
            f"lobstore sync needs the sync extra ({exc.name} is missing): pip install 'lobstore[sync]'"
        ) from None

    options: dict[str, Any] = {}
    if args.author:
        match = re.fullmatch(r"\s*(.+?)\s*<([^<>\s]+)>\s*", args.author)
        if not match:
            raise ConfigurationError(f"--author must look like 'Name <email>', got {args.author!r}")
        options.update(author_name=match[1], author_email=match[2])
    with store_from_args(args) as store:
        daemon = SyncDaemon(store, vault, interval=interval, **options)
        try:
            if not args.watch:
                result = daemon.run_once(full=True if args.full else None)
                _report(result.to_dict(), args.json)
                return 0 if result.status == "ok" else 1
            return _watch(daemon, args.json)
        finally:
            daemon.sync.close()


def _watch(daemon: Any, as_json: bool) -> int:
    # SIGTERM (Kubernetes stopping the pod) ends the loop like Ctrl-C: the cycle in progress finishes.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    daemon.start()
    seen = 0
    try:
        while daemon.running:
            time.sleep(0.5)
            if daemon.cycles != seen and daemon.last_cycle is not None:
                seen = daemon.cycles
                _report(daemon.last_cycle, as_json)
    except KeyboardInterrupt:
        print("lobstore sync: stopping after the current cycle", file=sys.stderr)
    finally:
        daemon.stop()
    return 0


def _report(cycle: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(cycle), flush=True)
        return
    for skipped in cycle["skipped"]:
        print(f"lobstore sync: left as it is: {skipped}", file=sys.stderr)
    for copy in cycle.get("conflicts", ()):
        print(f"lobstore sync: conflict: an uncommitted edit the remote contradicts is kept as {copy}",
              file=sys.stderr)
    if cycle["error"]:
        print(f"lobstore sync: cycle failed: {cycle['error']}", file=sys.stderr)
        return
    what = "full" if cycle["full"] else "incremental"
    commit = (cycle["commit"] or "")[:12] or "no commit"
    pushed = ", pushed" if cycle["pushed"] else ""
    print(f"{cycle['time']} {what} cycle: {cycle['tasks_changed']} tasks, "
          f"{cycle['files_changed']} files changed, {commit}{pushed}", flush=True)
