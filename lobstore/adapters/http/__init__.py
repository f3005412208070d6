"""The lobwife HTTP API: a Bottle app over a :class:`~lobstore.store.Store`.

``make_app(store)`` builds a new app per call (no module-level app, no global routes). JSON in
and out. Two namespaces, as lobwife has them: ``/api/v1`` is the task API; under the
unversioned ``/api`` the token broker's routes keep the broker's meaning (``GET /api/tasks``
lists registrations, ``DELETE /api/tasks/{id}`` deregisters, ``POST /api/tasks/{id}/register``
falls back to a standalone registration). Every other route answers under both. Fields are
validated by the library, which names the bad field; this module only turns HTTP into
library calls and lobstore errors into status codes (``wire.ERROR_STATUS``).
No request, however malformed, gets a 500 or an HTML page.

The package: ``wire`` reads requests and writes JSON answers; ``writes`` runs writes in one
transaction with idempotency keys; ``tasks``, ``costs``, ``audits``, ``broker`` and ``jobs``
hold the handlers of the route groups (over ``handlers.Handlers``); this module builds the app
from the routes table.

Every route that is not a GET is a write and goes through :class:`IdempotentWrites`: its
handler runs inside one ``store.transaction()`` and receives it as its first argument (``db``;
use ``db.tasks``, never ``self.store.tasks``, which refuses to open a second writer), and an
``Idempotency-Key`` header makes the write happen once however often it is sent. A route added
to the table in ``make_app`` gets both without further work.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bottle import Bottle, HTTPError, HTTPResponse, request

from ...errors import LobstoreError, StorageError
from ...repositories.idempotency import DEFAULT_TTL
from ...store import Store
from ..metrics import Metrics
from .audits import AuditApi
from .auth import AuthSettings, Authenticator
from .broker import BrokerApi
from .budgets import BudgetApi
from .costs import CostApi
from .credentials import CredentialApi
from .feed import DEFAULT_MAX_STREAMS, HEARTBEAT, STREAM_SECONDS, FeedApi
from .jobs import JobApi
from .status import STATS_TTL, StatusApi
from .tasks import SyncControl, TaskApi
from .wire import MAX_BODY_BYTES, PREFIXES, ROUTING_CODES, error_response, private_error
from .writes import PURGE_EVERY, IdempotentWrites

log = logging.getLogger(__name__)

BOTH = PREFIXES
V1 = ("/api/v1",)  # the task API's home
UNVERSIONED = ("/api",)  # where lobwife's token broker had routes of the same shape


def make_app(
    store: Store,
    *,
    max_body: int = MAX_BODY_BYTES,
    started: float | None = None,
    sync: SyncControl | None = None,
    idempotency_ttl: timedelta = DEFAULT_TTL,
    purge_every: float = PURGE_EVERY,
    stats_ttl: float = STATS_TTL,
    metrics: Metrics | None = None,
    auth: AuthSettings | None = None,
    max_streams: int = DEFAULT_MAX_STREAMS,
    heartbeat: float = HEARTBEAT,
    stream_seconds: float = STREAM_SECONDS,
    lifecycle: Any = None,
    duties: Callable[[], dict[str, Any]] | None = None,
) -> Bottle:
    """A new Bottle app serving ``store``. ``started`` is a ``time.monotonic()`` reading (the
    server's start) for /health's uptime; by default, now. ``sync`` is the vault sync running
    beside the API, if any (``/api/sync``). Idempotency keys are kept for ``idempotency_ttl``
    and expired ones swept at most every ``purge_every`` seconds. /health counts tasks and
    registrations at most every ``stats_ttl`` seconds. ``metrics`` answers ``GET /metrics``
    (by default a new one over ``store``). ``auth`` decides who may call what
    (adapters/http/scopes.py); None serves the open API of old, as ``lobstore serve --auth
    off`` does. At most ``max_streams`` event streams and waiting long polls are served at
    once; a quiet stream gets a comment every ``heartbeat`` seconds and ends after
    ``stream_seconds`` (clients resume). ``lifecycle`` (a LifecycleSettings) is shown on the
    dashboard's overview: the task manager's timeouts. ``duties`` says which duties this
    replica holds (``/health``, ``/api/status``)."""
    api = TaskApi(store, max_body=max_body, sync=sync)
    status = StatusApi(store, max_body=max_body, started=time.monotonic() if started is None else started,
                       stats_ttl=stats_ttl, duties=duties)
    writes = IdempotentWrites(store, max_body=max_body, ttl=idempotency_ttl, purge_every=purge_every)
    costs = CostApi(store, max_body=max_body)
    budgets = BudgetApi(store, max_body=max_body)
    audits = AuditApi(store, max_body=max_body)
    broker = BrokerApi(store, max_body=max_body)
    jobs = JobApi(store, max_body=max_body)
    credentials = CredentialApi(store, max_body=max_body)
    feed = FeedApi(store, max_body=max_body, max_streams=max_streams, heartbeat=heartbeat,
                   stream_seconds=stream_seconds)
    app = Bottle(catchall=True)
    app.default_error_handler = _bottle_error  # type: ignore[method-assign]
    routes: list[tuple[str, str, Callable[..., HTTPResponse], tuple[str, ...]]] = [
        ("POST", "/tasks", api.create_task, BOTH),
        ("POST", "/tasks/claim", api.claim_task, BOTH),
        ("POST", "/tasks/<ref>/heartbeat", api.heartbeat_task, BOTH),
        ("GET", "/tasks", api.list_tasks, V1),
        ("GET", "/tasks", broker.registrations, UNVERSIONED),
        ("GET", "/tasks/<ref>", api.get_task, BOTH),
        ("PATCH", "/tasks/<ref>", api.update_task, BOTH),
        ("DELETE", "/tasks/<ref>", api.cancel_task, V1),
        ("DELETE", "/tasks/<ref>", broker.deregister_by_name, UNVERSIONED),
        ("GET", "/tasks/<ref>/events", api.list_events, BOTH),
        ("POST", "/tasks/<ref>/events", api.add_event, BOTH),
        ("GET", "/events", feed.long_poll, V1),
        ("GET", "/events/stream", feed.stream, V1),
        ("GET", "/sync", api.sync_status, BOTH),
        ("POST", "/sync/trigger", api.sync_trigger, BOTH),
        ("GET", "/openapi.json", api.openapi, BOTH),
        ("GET", "/status", status.status, BOTH),
        ("GET", "/costs", costs.list_costs, BOTH),
        ("GET", "/costs/summary", costs.summary, BOTH),
        ("GET", "/costs/prices", costs.list_prices, BOTH),
        ("GET", "/tasks/<ref>/costs", costs.task_costs, BOTH),
        ("GET", "/audits", audits.list_findings, BOTH),
        ("POST", "/costs", costs.record_costs, BOTH),
        ("POST", "/costs/prices", costs.set_price, BOTH),
        ("POST", "/costs/reprice", costs.reprice, BOTH),
        ("GET", "/budgets", budgets.list_budgets, BOTH),
        ("POST", "/budgets", budgets.create_budget, BOTH),
        ("GET", "/budgets/alerts", budgets.list_alerts, BOTH),
        ("DELETE", "/budgets/<budget_id>", budgets.remove_budget, BOTH),
        ("GET", "/tasks/<ref>/budget", budgets.task_budget, BOTH),
        ("POST", "/audits", audits.submit_audit, BOTH),
        ("PATCH", "/audits/<finding_id>", audits.update_finding, BOTH),
        ("POST", "/tasks/<ref>/register", broker.register, V1),
        ("POST", "/tasks/<ref>/register", broker.register_by_name, UNVERSIONED),
        ("DELETE", "/tasks/<ref>/register", broker.deregister, BOTH),
        ("POST", "/token", broker.issue_token, BOTH),
        ("GET", "/token/audit", broker.token_audit, BOTH),
        ("POST", "/service-token", broker.service_token, BOTH),
        ("GET", "/jobs", jobs.list_jobs, BOTH),
        ("GET", "/jobs/<name>", jobs.get_job, BOTH),
        ("POST", "/jobs/<name>/runs", jobs.record_run, BOTH),
        ("POST", "/jobs/<name>/enable", jobs.enable_job, BOTH),
        ("POST", "/jobs/<name>/disable", jobs.disable_job, BOTH),
        ("POST", "/jobs/<name>/trigger", jobs.trigger_job, BOTH),
        ("GET", "/credentials", credentials.list_credentials, BOTH),
        ("POST", "/credentials", credentials.create_credential, BOTH),
        ("DELETE", "/credentials/<name>", credentials.revoke_credential, BOTH),
    ]
    for method, path, handler, prefixes in routes:
        if method != "GET":
            # Every write: one transaction and idempotency keys; or, for the few that must not
            # hold the write lock, a checked key and no stored answer (they are safe to repeat).
            # A key is shared by both spellings of a route only where both mean the same.
            shared = prefixes == BOTH
            handler = writes.plain(handler) if getattr(handler, "outside_transaction", False) \
                else writes.wrap(handler, shared=shared)
        for prefix in prefixes:
            app.route(prefix + path, method, _answering_errors(handler))
    _dashboard_routes(app, store, writes, max_body, lifecycle, sync)
    app.route("/health", "GET", _answering_errors(status.health))
    app.route("/metrics", "GET", _answering_errors((metrics or Metrics(store)).route()))
    # On every route, those added after this line too: who may call it (scopes.ROUTE_ACCESS).
    app.install(Authenticator(store, auth, max_body=max_body))
    return app


def _dashboard_routes(app: Bottle, store: Store, writes: IdempotentWrites, max_body: int, lifecycle: Any,
                      sync: SyncControl | None) -> None:
    """The web dashboard (lobstore.adapters.dashboard), when Jinja2 is installed."""
    try:
        from ..dashboard import Dashboard
    except ImportError as exc:  # the http extra brings it; a bare install serves the API alone
        log.info("no web dashboard: %s", exc)
        return
    from ...lifecycle.settings import LifecycleSettings

    rules = lifecycle or LifecycleSettings()
    thresholds = {"lease": f"{rules.lease_seconds} s",
                  "warning": f"estimate + {rules.warn_after_estimate_minutes:g} min (else {rules.warn_minutes:g} min)",
                  "failure": f"estimate × {rules.fail_estimate_factor:g} (else {rules.fail_minutes:g} min)"}
    # The vault sync running beside the API (a SyncDaemon) knows where each task's file goes.
    ui = Dashboard(store, max_body=max_body, thresholds=thresholds, vault=getattr(sync, "sync", None))
    for path, page in (("/", ui.overview), ("/ui/tasks", ui.tasks), ("/ui/tasks/<ref>", ui.task),
                       ("/ui/costs", ui.costs), ("/ui/audits", ui.audits), ("/ui/jobs", ui.jobs),
                       ("/ui/broker", ui.broker)):
        app.route(path, "GET", _answering_errors(page))
    app.route("/ui/audits/<finding_id>", "POST", _answering_errors(writes.wrap(ui.audit_action, shared=False)))
    app.route("/ui/jobs/<name>/<action>", "POST", _answering_errors(writes.plain(ui.job_action)))


def _answering_errors(handler: Callable[..., HTTPResponse]) -> Callable[..., HTTPResponse]:
    def call(**kwargs: Any) -> HTTPResponse:
        try:
            return handler(**kwargs)
        except LobstoreError as exc:
            if isinstance(exc, StorageError):  # the database failed: the operator needs the cause
                log.error("%s %s: %s", request.method, request.path, exc, exc_info=exc)
            response = error_response(exc)
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:  # busy or throttled: when to come back
                response.set_header("Retry-After", str(retry_after))
            return response

    call.__name__ = handler.__name__
    return call


def _bottle_error(error: HTTPError) -> bytes:
    """Bottle's own errors (no route, wrong method, an unexpected exception) as JSON."""
    from bottle import response

    status = error.status_code
    if status == 404:
        message = f"no route {request.method} {request.path}: see /api/openapi.json"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.path}; allowed: {response.get_header('Allow', '')}"
    elif status >= 500:
        # The traceback goes to the log, never to the client: it gets the id to find it by.
        response.content_type = "application/json"
        return json.dumps(private_error(error.traceback or str(error.body), status)).encode()
    else:
        message = str(error.body)
    response.content_type = "application/json"
    body = {"error": message, "code": ROUTING_CODES.get(status, "http_error")}
    return json.dumps(body, ensure_ascii=False).encode()
