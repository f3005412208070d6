"""`lobstore serve`: the HTTP API on cheroot, with clean shutdown and one log line per request
(``access.RequestLog``: request ids, the access log and request metrics).

Sizing (DESIGN.md, "Serving notes"): a connection waits in a selector, not in a worker thread,
until a whole request head has arrived (``httpserver``), so threads bound only the requests
*in progress* and are sized for the cores (few), connections for the fleet (many, capped).
cheroot's default of keeping at most 10 idle keep-alive connections made its tail collapse
(the eleventh client reconnects after each response, and with a listen backlog of 5 its SYN
can be dropped); we keep every fleet connection alive and give the listener a deep backlog.
bench/bench_http.py measures it.

Bottle and cheroot are the ``[http]`` extra: they are imported only when the server runs, so
``lobstore --help`` works without them.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from .. import config
from ..errors import ConfigurationError, LobstoreError
from ..lifecycle.service import LeaseSweeper
from ..lifecycle.settings import LifecycleSettings
from ..broker.expiry import DEFAULT_INTERVAL as EXPIRY_INTERVAL
from ..broker.expiry import ExpirySweep
from ..maintenance.scheduled import BackupPlan, BackupService
from ..duties import identity
from ..services import BackgroundService
from ..store import Store, open_store
from .access import RequestLog

log = logging.getLogger(__name__)

DEFAULT_THREADS = 8  # requests in progress at once; on 2 cores more only fight over the GIL
SHUTDOWN_GRACE = 10  # seconds in-flight requests get to finish after SIGTERM

INSTALL_HINT = "pip install 'lobstore[http]'"


@dataclass(frozen=True)
class ServeSettings:
    host: str
    port: int
    db_url: str
    vault: Path | None
    threads: int = DEFAULT_THREADS
    work_slots: int | None = None  # of the threads, working at once (lobstore/work.py); None: by backend
    cpu: str = "off"  # the core the serving threads share: auto, off or a CPU (adapters/cores.py; serve's default: auto)
    id_prefix: str = "T"
    sync_interval: float = config.DEFAULT_SYNC_INTERVAL
    broker_ttl: timedelta = config.DEFAULT_BROKER_TTL
    expiry_interval: float = EXPIRY_INTERVAL
    broker_policy: Path | None = None  # a TOML file (lobstore.broker.policy); None: the defaults
    auth: str | None = None  # required or off (the open API of old); None: off on loopback only
    auth_explicit: bool = False  # whether --auth / $LOBSTORE_AUTH chose it (not the default)
    jobs: Path | None = None  # the cron jobs file (None: no jobs run here)
    backups: BackupPlan | None = None  # scheduled backups (--backup-dir)
    access_log: bool = True  # one INFO line per request (--no-access-log)
    max_streams: int | None = None  # event streams and waiting long polls at once (None: threads // 2)
    takeover: float = config.DEFAULT_TAKEOVER  # s between a standby's tries to take a duty
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)  # leases, timeouts, the sweep


@dataclass
class Components:
    """The background parts that run beside the API. Each is started after the store opens
    and before the first request, and stopped (in reverse order) after the last request and
    before the store closes."""

    sync: Any = None  # lobstore.sync.SyncDaemon when a vault is configured
    expiry: ExpirySweep | None = None  # the token broker's registration expiry sweep
    backups: BackupService | None = None  # scheduled backups with retention
    jobs: Any = None  # lobstore.cron.JobScheduler when a jobs file is given (stopped first)
    leases: LeaseSweeper | None = None  # the lifecycle clock's sweep (one process per database)

    def services(self) -> list[BackgroundService]:
        return [part for part in (self.sync, self.expiry, self.leases, self.backups, self.jobs) if part is not None]

    def duties(self) -> dict[str, Any]:
        """Which duties this replica holds and which it stands by for (/health, /api/status)."""
        return duties_of(self.services())


def duties_of(services: list[BackgroundService]) -> dict[str, Any]:
    guarded = [service for service in services if service.duty is not None]
    return {
        "replica": identity(),
        "held": sorted(service.duty for service in guarded if service.on_duty),
        "standby": sorted(service.duty for service in guarded if not service.on_duty),
    }


def build_components(store: Store, settings: ServeSettings, environ: Mapping[str, str] = os.environ) -> Components:
    """The one place background components are made from the settings (and the GitHub App's
    ``GH_APP_*`` variables in ``environ``, lobwife's names for them)."""
    components = Components()
    policy = config.broker_policy(str(settings.broker_policy) if settings.broker_policy else None, environ)
    store.set_broker_policy(policy)
    provider = config.token_provider(environ, owner=policy.owner)  # a half-configured app stops the start here
    store.set_token_provider(provider)
    if provider is None:
        log.info("token broker: no GitHub App configured, POST /api/token answers 503 "
                 "(set %s, %s and %s or %s)", config.ENV_GH_APP_ID, config.ENV_GH_APP_INSTALL_ID,
                 config.ENV_GH_APP_PEM, config.ENV_GH_APP_PEM_PATH)
    else:
        log.info("token broker: GitHub App tokens from %s", provider.url)
        _learn_owner(provider)
    log.info("token broker policy (%s): repositories %s; services %s", policy.source,
             ", ".join(policy.repositories) if policy.repositories is not None else "of the installation's owner",
             ", ".join(policy.service_policy.services) or "none")
    store.set_registration_ttl(settings.broker_ttl)
    components.expiry = ExpirySweep(store, interval=settings.expiry_interval)
    store.set_lifecycle(settings.lifecycle)
    components.leases = LeaseSweeper(store)
    life = settings.lifecycle
    log.info("lifecycle clock: leases of %d s, a sweep every %g s; orphans re-queued within %g min and %d attempts; "
             "timeouts at estimate + %g / × %g min (%g / %g without)", life.lease_seconds, life.sweep_interval,
             life.requeue_window_minutes, life.max_attempts, life.warn_after_estimate_minutes,
             life.fail_estimate_factor, life.warn_minutes, life.fail_minutes)
    if settings.vault is not None:
        try:
            from ..sync.daemon import SyncDaemon
        except ImportError as exc:
            raise ConfigurationError(
                f"--vault needs the sync extra ({exc.name} is missing): pip install 'lobstore[sync]'"
            ) from None
        components.sync = SyncDaemon(store, settings.vault, interval=settings.sync_interval)
        log.info("vault sync: %s every %.0f s and soon after significant events",
                 settings.vault, settings.sync_interval)
    if settings.jobs is not None:
        from ..cron import JobScheduler, load_jobs  # a bad jobs file stops the start here

        components.jobs = JobScheduler(store, load_jobs(settings.jobs))
        store.set_job_runner(components.jobs)
    if settings.backups is not None:
        plan = settings.backups
        components.backups = BackupService(store, plan.folder, interval=plan.interval,
                                           keep_daily=plan.keep_daily, keep_weekly=plan.keep_weekly)
        log.info("scheduled backups: into %s every %.0f s, keeping %d daily and %d weekly",
                 plan.folder, plan.interval, plan.keep_daily, plan.keep_weekly)
    for service in components.services():
        service.takeover = settings.takeover
    return components


def _learn_owner(provider: Any) -> None:
    """Ask GitHub whose installation this is, so registrations for another owner's repositories
    are refused at once; if GitHub does not answer now, the check waits for the first token."""
    try:
        log.info("token broker: the installation belongs to %s", provider.installation_owner())
    except LobstoreError as exc:
        log.warning("token broker: could not learn the GitHub App installation's owner (%s); "
                    "repositories of other owners are refused when a token is asked for", exc)


# -- serving ----------------------------------------------------------------------------------
def serve(settings: ServeSettings, *, stop: threading.Event | None = None) -> int:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set). In-flight requests finish, background
    services stop, the store closes; returns 0."""
    try:
        from .http import make_app
        from .http.wire import MAX_BODY_BYTES
        from .cores import AUTO, CoreKeeper, ServingCore
        from .httpserver import HardenedServer, ServerLimits
        from .metrics import Metrics
    except ImportError as exc:
        raise ConfigurationError(f"`lobstore serve` needs Bottle and cheroot: {INSTALL_HINT} ({exc})") from exc

    if settings.auth is None:
        settings = replace(settings, auth=config.auth_mode(None, settings.host, {})[0])
    elif settings.auth == config.AUTH_OFF and not config.is_loopback(settings.host) and not settings.auth_explicit:
        raise ConfigurationError(  # auth_mode never chooses this; a caller building settings might
            f"refusing to serve {settings.host} without authentication: say --auth off to mean it"
        )
    stop = stop or threading.Event()
    started = time.monotonic()
    core = ServingCore.for_setting(settings.cpu)
    keeper: CoreKeeper | None = None
    store = open_store(settings.db_url, id_prefix=settings.id_prefix)
    running: list[BackgroundService] = []
    try:
        components = build_components(store, settings)
        metrics = Metrics(store)
        metrics.watch(components.services())
        app = make_app(store, started=started, sync=components.sync, metrics=metrics, auth=_auth(store, settings),
                       max_streams=settings.max_streams or max(1, settings.threads // 2), lifecycle=settings.lifecycle,
                       duties=components.duties)
        server = HardenedServer(
            (settings.host, settings.port),
            RequestLog(app, metrics=metrics, access_log=settings.access_log),
            ServerLimits(threads=settings.threads, max_body=MAX_BODY_BYTES, **work_limits(store, settings)),
            core=core,
            shutdown_timeout=SHUTDOWN_GRACE,
        )
        try:
            server.prepare()  # binds now, so a taken port is an error here and not in a thread
        except OSError as exc:
            raise ConfigurationError(f"cannot listen on {settings.host}:{settings.port}: {exc}") from exc
        host, port = server.bind_addr[:2]
        for service in components.services():
            service.start()
            running.append(service)
        _on_signals(stop)
        thread = threading.Thread(target=_serving(server, stop), name="lobstore-http", daemon=True)
        thread.start()
        if core is not None and settings.cpu == AUTO:  # a core named by the user stays
            keeper = CoreKeeper(core)
            keeper.start()
        # Tests and scripts read this line to find the port when started with --port 0.
        work = server.work
        lent = f", up to {work.count} beside long requests" if work.prompt < work.count else ""
        log.info("lobstore serving %s on http://%s:%d (%d threads, %d working at once%s%s)", store.backend.url, host,
                 port, settings.threads, work.prompt, lent, f", on CPU {core.cpu}" if core is not None else "")
        while not stop.wait(1.0):
            pass
        log.info("stopping: letting in-flight requests finish")
        store.backend.changes.close()  # event streams and long polls end now; clients resume
        server.stop()
        thread.join()
    finally:
        if keeper is not None:
            keeper.stop()
        for service in reversed(running):
            try:
                service.stop(timeout=SHUTDOWN_GRACE)
            except Exception:  # one failing service must not keep the others or the store open
                log.exception("stopping %s failed", service.name)
        store.close()
    log.info("stopped")
    return 0


def work_limits(store: Store, settings: ServeSettings) -> dict[str, Any]:
    """The work slots (lobstore/work.py). SQLite: one slot per core (at least two), since its
    requests are all CPU; one of them is prompt, the others are lent only beside requests that
    run long. PostgreSQL: every thread, all prompt, since its requests mostly wait on the server
    — and a request waiting on a row lock that another holds must never keep that other from the
    slot it needs to finish. ``--work-slots`` sets the count either way."""
    from .httpserver import cpu_work_slots

    sqlite = store.backend.name == "sqlite"
    count = settings.work_slots or (cpu_work_slots() if sqlite else settings.threads)
    return {"work_slots": count, "prompt_slots": 1 if sqlite else None}


def _auth(store: Store, settings: ServeSettings) -> Any:
    """The API's authentication settings, and a word in the log about them."""
    from .http.auth import AuthSettings

    if settings.auth == config.AUTH_OFF:
        if config.is_loopback(settings.host):
            log.info("authentication off: anyone on this machine may call every route (--auth required "
                     "to need credentials)")
        else:
            log.warning("authentication OFF on %s: anyone who can reach this port may read and change every "
                        "task and mint GitHub tokens; use it only behind a network that admits just the fleet",
                        settings.host)
        return None
    live = len(store.credentials.list())
    if live:
        log.info("authentication required: %d live credential(s) (lobstore credentials list)", live)
    else:
        log.warning("authentication required and no credentials exist yet: every request but /health is "
                    "refused; make one with `lobstore credentials create NAME --scope ...`")
    return AuthSettings(required=True)


def _serving(server: Any, stop: threading.Event) -> Callable[[], None]:
    def run() -> None:
        try:
            server.serve()
        except Exception:
            log.exception("the HTTP server failed")
        finally:
            stop.set()  # whatever ended the server, the main thread shuts down

    return run


def _on_signals(stop: threading.Event) -> None:
    def handle(signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handle)
