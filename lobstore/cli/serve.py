"""``lobstore serve``: the lobwife HTTP API and the background services beside it."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from .. import config
from ..adapters import server
from ..errors import ConfigurationError
from ..lifecycle.settings import LifecycleSettings
from ..maintenance.scheduled import DEFAULT_KEEP_DAILY, DEFAULT_KEEP_WEEKLY, BackupPlan
from .support import add_sync_interval


def register(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="run the lobwife HTTP API",
        description="Serve the lobwife HTTP API until SIGTERM or Ctrl-C. "
                    "Flags win over the environment, which wins over the defaults.",
    )
    serve.add_argument("--host", help=f"address to listen on (${config.ENV_HOST}, default {config.DEFAULT_HOST})")
    serve.add_argument("--port", type=int, help=f"port (${config.ENV_PORT}, default {config.DEFAULT_PORT}; 0 = any free)")
    # SUPPRESS: without the flag here, `lobstore --db URL serve` keeps the top-level value.
    serve.add_argument("--db", metavar="URL", default=argparse.SUPPRESS,
                       help=f"database URL (${config.ENV_URL}, default {config.DEFAULT_URL})")
    serve.add_argument("--vault", metavar="PATH", help=f"vault folder for sync (${config.ENV_VAULT}; unset: no sync)")
    add_sync_interval(serve, "seconds between vault sync cycles")
    serve.add_argument("--broker-ttl", type=float, metavar="SECONDS",
                       help=f"how long a token broker registration lives (${config.ENV_BROKER_TTL}, default 86400)")
    serve.add_argument("--broker-policy", metavar="FILE",
                       help=f"the token broker's policy, a TOML file: allowed repositories, permissions per "
                            f"lobster type, services (${config.ENV_BROKER_POLICY}; see README, Security)")
    serve.add_argument("--auth", choices=(config.AUTH_REQUIRED, config.AUTH_OFF),
                       help=f"require API credentials, or serve the open API of old (${config.ENV_AUTH}; "
                            "default: required unless --host is a loopback address). See `lobstore credentials`")
    serve.add_argument("--jobs", metavar="FILE",
                       help=f"cron jobs file (TOML) to run on schedule (${config.ENV_JOBS}; unset: no jobs run "
                            "here); see examples/jobs.toml")
    serve.add_argument("--takeover", type=float, metavar="SECONDS",
                       help=f"how often a standby replica tries to take a duty another replica held: vault sync, "
                            f"expiry, jobs, backups (${config.ENV_TAKEOVER}, default {config.DEFAULT_TAKEOVER:g})")
    serve.add_argument("--threads", type=int, default=server.DEFAULT_THREADS,
                       help=f"requests handled at once (default {server.DEFAULT_THREADS})")
    serve.add_argument("--work-slots", type=int, metavar="N",
                       help="of those, how many run at once; the others wait their turn (Python runs one thread "
                            "at a time: more only trade CPU for switching). Default: the cores, at least 2, on "
                            "SQLite; --threads on PostgreSQL, whose requests mostly wait on the server")
    serve.add_argument("--cpu", metavar="auto|off|N",
                       help=f"the core the request threads share (${config.ENV_CPU}; default auto: the one serve "
                            "starts on, moved when other work crowds it). Python runs one thread at a time, and "
                            "handing that lock between cores costs about half the server's CPU; background work "
                            "(sync, jobs, backups) still runs on any core. off: let the kernel place them")
    serve.add_argument("--max-streams", type=int, metavar="N",
                       help="event streams and waiting long polls served at once; each holds a thread "
                            "(default: half of --threads)")
    serve.add_argument("--log-format", choices=("text", "json"), default=argparse.SUPPRESS,
                       help=f"text (default) or json, one object per line (${config.ENV_LOG_FORMAT})")
    serve.add_argument("--no-access-log", dest="access_log", action="store_false", default=None,
                       help=f"no INFO line per request (${config.ENV_ACCESS_LOG}=off); metrics still count them")
    backups = serve.add_argument_group("scheduled backups")
    backups.add_argument("--backup-dir", metavar="PATH",
                         help=f"back up into this folder on a schedule (${config.ENV_BACKUP_DIR}; unset: no backups)")
    backups.add_argument("--backup-interval", type=float, metavar="SECONDS",
                         help=f"seconds between backups (${config.ENV_BACKUP_INTERVAL}, default 86400)")
    backups.add_argument("--backup-keep-daily", type=int, metavar="N",
                         help=f"keep the newest backup of each of the last N days (${config.ENV_BACKUP_KEEP_DAILY}, default 7)")
    backups.add_argument("--backup-keep-weekly", type=int, metavar="M",
                         help=f"and of each of the last M weeks (${config.ENV_BACKUP_KEEP_WEEKLY}, default 4)")
    serve.set_defaults(run=run_command)


def run_command(args: argparse.Namespace) -> int:
    if not 1 <= args.threads <= 64:
        raise ConfigurationError(f"--threads must be from 1 to 64, got {args.threads}")
    if args.max_streams is not None and not 1 <= args.max_streams < args.threads:
        raise ConfigurationError(f"--max-streams must be from 1 to --threads - 1 ({args.threads - 1}) so other "
                                 f"requests keep a thread, got {args.max_streams}")
    if args.work_slots is not None and not 1 <= args.work_slots <= args.threads:
        raise ConfigurationError(f"--work-slots must be from 1 to --threads ({args.threads}), got {args.work_slots}")
    host = config.host(args.host)
    auth, auth_explicit = config.auth_mode(args.auth, host)
    settings = server.ServeSettings(
        host=host,
        auth=auth,
        auth_explicit=auth_explicit,
        port=config.port(args.port),
        db_url=config.database_url(args.db),
        vault=config.vault_path(args.vault),
        threads=args.threads,
        work_slots=args.work_slots,
        cpu=config.serving_cpu(args.cpu),
        id_prefix=config.id_prefix(args.id_prefix),
        sync_interval=config.sync_interval(args.sync_interval),
        broker_ttl=config.broker_ttl(args.broker_ttl),
        broker_policy=Path(args.broker_policy) if args.broker_policy else None,
        jobs=config.jobs_file(args.jobs),
        backups=_backup_plan(args),
        access_log=config.access_log(args.access_log),
        max_streams=args.max_streams,
        takeover=config.takeover(args.takeover),
        lifecycle=LifecycleSettings.from_env(),
    )
    logging.getLogger("lobstore").setLevel(logging.INFO)  # a server says what it does
    return server.serve(settings)


def _backup_plan(args: argparse.Namespace) -> BackupPlan | None:
    folder = config.backup_dir(args.backup_dir)
    if folder is None:
        return None
    return BackupPlan(
        folder=folder,
        interval=config.backup_interval(args.backup_interval),
        keep_daily=config.backup_keep(args.backup_keep_daily, config.ENV_BACKUP_KEEP_DAILY, DEFAULT_KEEP_DAILY),
        keep_weekly=config.backup_keep(args.backup_keep_weekly, config.ENV_BACKUP_KEEP_WEEKLY, DEFAULT_KEEP_WEEKLY),
    )
