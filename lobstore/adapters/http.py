"""The lobwife HTTP API: a Bottle app over a :class:`~lobstore.store.Store`.

``make_app(store)`` builds a new app per call (no module-level app, no global routes). JSON in
and out; every route answers under ``/api`` and ``/api/v1`` (the lobmob client uses the
latter). Fields are validated by the library, which names the bad field; this module only
turns HTTP into library calls and lobstore errors into status codes (``ERROR_STATUS``).
No request, however malformed, gets a 500 or an HTML page.

Every route that is not a GET is a write and goes through :class:`IdempotentWrites`: its
handler runs inside one ``store.transaction()`` and receives it as its first argument (``db``;
use ``db.tasks``, never ``self.store.tasks``, which refuses to open a second writer), and an
``Idempotency-Key`` header makes the write happen once however often it is sent. A route added
to the table in ``make_app`` gets both without further work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

from bottle import Bottle, HTTPError, HTTPResponse, request

from .. import __version__
from ..errors import (
    ConflictError,
    LobstoreError,
    NotConfiguredError,
    NotFoundError,
    SchemaVersionError,
    StorageError,
    TokenRefusedError,
    UnavailableError,
    ValidationError,
)
from ..models import Task
from ..repositories.idempotency import DEFAULT_TTL, StoredResponse
from ..store import Store, Transaction
from .openapi import openapi_document

log = logging.getLogger(__name__)

PREFIXES = ("/api", "/api/v1")
MAX_BODY_BYTES = 1024 * 1024  # a task description may be 200,000 characters; 1 MiB covers it
DEFAULT_PAGE = 50
MAX_QUERY_FIELDS = 100
JSON_TYPES = ("application/json",)

LIST_MANY = ("status", "type", "assigned_to", "priority")  # may repeat, or be comma-separated
LIST_ONE = ("repo", "created_since", "created_until", "updated_since", "updated_until", "order", "after")
CANCEL_FIELDS = ("actor", "reason")
EVENT_FIELDS = ("event_type", "detail", "actor", "data")
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"  # "true" on an answer replayed from a stored response
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII: UUIDs, ULIDs, "lobster-t42-17"
PURGE_EVERY = 60.0  # seconds between sweeps of expired idempotency keys
_BODY_KEY = "lobstore.body"  # where the request body is kept once read
LIBRARY_PAGE = 100  # the library's default page of cost events and audit findings
COST_LIST = ("task_id", "model", "agent", "since", "until", "after", "limit")
COST_SUMMARY = ("since", "until", "period", "group_by", "task_id", "model", "agent")
PRICE_QUERY = ("model", "at", "history")
AUDIT_LIST = ("audit_type", "severity", "status", "since", "until", "after", "limit")
AUDIT_RUN_FIELDS = ("audit_type", "findings", "run_id", "close_missing", "actor")
AUDIT_UPDATE_FIELDS = ("status", "resolution", "actor")
REGISTER_FIELDS = ("repos", "lobster_type", "actor")
TOKEN_FIELDS = ("task_id", "actor")
JOB_RUN_FIELDS = ("status", "duration", "output", "finished_at")


class MalformedRequestError(LobstoreError):
    """The request cannot be read at all: broken JSON, a bad Content-Length, bad encoding."""

    code = "malformed"


class UnsupportedMediaTypeError(LobstoreError):
    code = "unsupported_media_type"


class PayloadTooLargeError(LobstoreError):
    code = "too_large"


class MissingFieldError(MalformedRequestError):
    """A required field is absent where today's callers expect a 400 (the old broker's routes)."""

    code = "missing_field"


# The one place lobstore errors become status codes: the first class that matches wins.
ERROR_STATUS: tuple[tuple[type[LobstoreError], int], ...] = (
    (MalformedRequestError, 400),
    (TokenRefusedError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),  # InvalidTransitionError and stale versions included
    (PayloadTooLargeError, 413),
    (UnsupportedMediaTypeError, 415),
    (ValidationError, 422),
    (SchemaVersionError, 503),
    (UnavailableError, 503),  # not configured, no token provider, GitHub failing, no job runner
    (StorageError, 503),
)
# What Bottle itself raises (routing, its own failures) gets a code of the same family.
ROUTING_CODES = {404: "no_route", 405: "method_not_allowed", 500: "internal"}


def status_for(error: LobstoreError) -> int:
    for kind, status in ERROR_STATUS:
        if isinstance(error, kind):
            return status
    return 500


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> HTTPResponse:
    try:
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate from the request (e.g. echoed in an error): escape it
        body = json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode()
    return HTTPResponse(body, status, {"Content-Type": "application/json", **(headers or {})})


def error_response(error: LobstoreError) -> HTTPResponse:
    return json_response(error.to_dict(), status_for(error))


def etag(task: Task) -> str:
    return f'"v{task.version}"'


class SyncControl(Protocol):
    """What the API needs of a running vault sync (lobstore.sync.SyncDaemon)."""

    def status(self) -> dict[str, Any]: ...
    def trigger(self) -> None: ...


def make_app(
    store: Store,
    *,
    max_body: int = MAX_BODY_BYTES,
    started: float | None = None,
    sync: SyncControl | None = None,
    idempotency_ttl: timedelta = DEFAULT_TTL,
    purge_every: float = PURGE_EVERY,
) -> Bottle:
    """A new Bottle app serving ``store``. ``started`` is a ``time.monotonic()`` reading (the
    server's start) for /health's uptime; by default, now. ``sync`` is the vault sync running
    beside the API, if any (``/api/sync``). Idempotency keys are kept for ``idempotency_ttl``
    and expired ones swept at most every ``purge_every`` seconds."""
    api = TaskApi(store, max_body=max_body, started=time.monotonic() if started is None else started,
                  sync=sync)
    writes = IdempotentWrites(store, max_body=max_body, ttl=idempotency_ttl, purge_every=purge_every)
    costs = CostApi(store, max_body=max_body)
    audits = AuditApi(store, max_body=max_body)
    broker = BrokerApi(store, max_body=max_body)
    jobs = JobApi(store, max_body=max_body)
    app = Bottle(catchall=True)
    app.default_error_handler = _bottle_error  # type: ignore[method-assign]
    routes: list[tuple[str, str, Callable[..., HTTPResponse]]] = [
        ("POST", "/tasks", api.create_task),
        ("GET", "/tasks", api.list_tasks),
        ("GET", "/tasks/<ref>", api.get_task),
        ("PATCH", "/tasks/<ref>", api.update_task),
        ("DELETE", "/tasks/<ref>", api.cancel_task),
        ("GET", "/tasks/<ref>/events", api.list_events),
        ("POST", "/tasks/<ref>/events", api.add_event),
        ("GET", "/sync", api.sync_status),
        ("POST", "/sync/trigger", api.sync_trigger),
        ("GET", "/openapi.json", api.openapi),
        ("GET", "/costs", costs.list_costs),
        ("GET", "/costs/summary", costs.summary),
        ("GET", "/costs/prices", costs.list_prices),
        ("GET", "/tasks/<ref>/costs", costs.task_costs),
        ("GET", "/audits", audits.list_findings),
        ("POST", "/costs", costs.record_costs),
        ("POST", "/costs/prices", costs.set_price),
        ("POST", "/audits", audits.submit_audit),
        ("PATCH", "/audits/<finding_id>", audits.update_finding),
        ("POST", "/tasks/<ref>/register", broker.register),
        ("DELETE", "/tasks/<ref>/register", broker.deregister),
        ("POST", "/token", broker.issue_token),
        ("GET", "/token/audit", broker.token_audit),
        ("GET", "/jobs", jobs.list_jobs),
        ("GET", "/jobs/<name>", jobs.get_job),
        ("POST", "/jobs/<name>/runs", jobs.record_run),
        ("POST", "/jobs/<name>/enable", jobs.enable_job),
        ("POST", "/jobs/<name>/disable", jobs.disable_job),
        ("POST", "/jobs/<name>/trigger", jobs.trigger_job),
    ]
    for method, path, handler in routes:
        if method != "GET":
            # Every write: one transaction and idempotency keys; or, for the few that must not
            # hold the write lock, a checked key and no stored answer (they are safe to repeat).
            handler = writes.plain(handler) if getattr(handler, "outside_transaction", False) else writes.wrap(handler)
        for prefix in PREFIXES:
            app.route(prefix + path, method, _answering_errors(handler))
    app.route("/health", "GET", _answering_errors(api.health))
    return app


def _answering_errors(handler: Callable[..., HTTPResponse]) -> Callable[..., HTTPResponse]:
    def call(**kwargs: Any) -> HTTPResponse:
        try:
            return handler(**kwargs)
        except LobstoreError as exc:
            return error_response(exc)

    call.__name__ = handler.__name__
    return call


class IdempotentWrites:
    """Runs write handlers in one transaction, and makes them idempotent by key.

    Without an ``Idempotency-Key`` the handler simply runs in its transaction. With one, the
    key is claimed, the handler runs and its response is stored, all in that same transaction:
    a crash leaves either all three or none. A repeat with the same key, method, path and
    request gets the stored response (marked ``Idempotent-Replayed: true``) and does nothing;
    the same key with a different request is a 422. Only answers the handler returns are
    stored: a refused request (4xx/5xx raised as an error) rolled back and changed nothing, so
    repeating it simply tries again.
    """

    def __init__(self, store: Store, *, max_body: int, ttl: timedelta, purge_every: float) -> None:
        self.store = store
        self.max_body = max_body
        self.ttl = ttl
        self.purge_every = purge_every
        self._next_purge = 0.0
        self._purge_lock = threading.Lock()

    def wrap(self, handler: Callable[..., HTTPResponse]) -> Callable[..., HTTPResponse]:
        def write(**params: Any) -> HTTPResponse:
            key = idempotency_key()
            self._purge_if_due()
            # Read the body before taking the write lock: a slow client then holds up no one,
            # and a 400 or 413 costs nothing.
            request_body(self.max_body)
            if key is None:
                with self.store.transaction() as tx:
                    return handler(tx, **params)
            fingerprint = request_fingerprint(self.max_body)
            method, path = request.method, canonical_path(request.path)
            with self.store.transaction() as tx:
                stored = tx.idempotency.claim(key, method, path, fingerprint, ttl=self.ttl)
                if stored is None:
                    response = handler(tx, **params)
                    tx.idempotency.record(key, method, path, _to_stored(response))
                    return response
            log.info("replaying the stored answer to %s %s (Idempotency-Key %s)", method, path, key)
            return HTTPResponse(stored.body.encode(), stored.status, {**stored.headers, REPLAYED_HEADER: "true"})

        write.__name__ = handler.__name__
        return write

    def plain(self, handler: Callable[..., HTTPResponse]) -> Callable[..., HTTPResponse]:
        def write(**params: Any) -> HTTPResponse:
            idempotency_key()  # a malformed key is refused here as everywhere
            request_body(self.max_body)
            return handler(**params)

        write.__name__ = handler.__name__
        return write

    def _purge_if_due(self) -> None:
        """Sweep expired keys now and then, in a transaction of its own: a sweep that fails
        is logged and never fails the write that triggered it."""
        now = time.monotonic()
        if now < self._next_purge or not self._purge_lock.acquire(blocking=False):
            return
        try:
            self._next_purge = now + self.purge_every
            self.store.idempotency.purge_expired()
        except LobstoreError as exc:
            log.warning("could not remove expired idempotency keys: %s", exc)
        finally:
            self._purge_lock.release()


def _to_stored(response: HTTPResponse) -> StoredResponse:
    headers = {name: value for name, value in response.headerlist if name.lower() != "content-length"}
    body = response.body if isinstance(response.body, bytes) else str(response.body).encode()
    return StoredResponse(response.status_code, body.decode("utf-8"), headers)


def _bottle_error(error: HTTPError) -> bytes:
    """Bottle's own errors (no route, wrong method, an unexpected exception) as JSON."""
    from bottle import response

    status = error.status_code
    if status == 404:
        message = f"no route {request.method} {request.path}: see /api/openapi.json"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.path}; allowed: {response.get_header('Allow', '')}"
    elif status >= 500:
        # The traceback goes to the log, never to the client.
        log.error("unhandled error on %s %s: %s", request.method, request.path, error.traceback or error.body)
        message = "internal error: the server log has the details"
    else:
        message = str(error.body)
    response.content_type = "application/json"
    body = {"error": message, "code": ROUTING_CODES.get(status, "http_error")}
    return json.dumps(body, ensure_ascii=False).encode()


def outside_transaction(handler: Callable[..., HTTPResponse]) -> Callable[..., HTTPResponse]:
    """Marks a write handler that must not run inside the request's write transaction: it
    does no database work of its own, or it waits on another service (holding the store's
    write lock meanwhile would stall every other writer). Its answer is not stored under an
    Idempotency-Key, so it must be safe to repeat."""
    handler.outside_transaction = True  # type: ignore[attr-defined]
    return handler


class TaskApi:
    """The handlers. Each reads the request, makes one library call and shapes the answer."""

    def __init__(self, store: Store, *, max_body: int, started: float, sync: SyncControl | None) -> None:
        self.store = store
        self.sync = sync
        self.max_body = max_body
        self.started = started
        self._openapi = json_response(openapi_document()).body

    # -- tasks ------------------------------------------------------------------------------
    def create_task(self, db: Transaction) -> HTTPResponse:
        task = db.tasks.create(**read_json(self.max_body))
        location = f"{request.script_name.rstrip('/')}{_prefix()}/tasks/{task.ref}"
        return json_response(task.to_dict(), 201, {"Location": location, "ETag": etag(task)})

    def list_tasks(self) -> HTTPResponse:
        params = read_query(LIST_MANY + LIST_ONE + ("limit",))
        filters: dict[str, Any] = {
            name: [v for value in params[name] for v in value.split(",")]
            for name in LIST_MANY if name in params
        }
        filters.update({name: single(params, name) for name in LIST_ONE if name in params})
        limit = whole_number(single(params, "limit"), "limit") if "limit" in params else DEFAULT_PAGE
        tasks = self.store.tasks.list(limit=limit, **filters)
        return json_response([t.to_dict() for t in tasks], headers=next_page(params, tasks, limit))

    def get_task(self, ref: str) -> HTTPResponse:
        read_query(())
        task = self.store.tasks.get(ref)
        return json_response(task.to_dict(), headers={"ETag": etag(task)})

    def update_task(self, db: Transaction, ref: str) -> HTTPResponse:
        fields = read_json(self.max_body)
        expected = if_match_version(ref, db)
        if expected is not None:
            if fields.setdefault("expected_version", expected) != expected:
                raise ValidationError(
                    f"expected_version {fields['expected_version']!r} disagrees with If-Match "
                    f"(version {expected}): give one of them", field="expected_version",
                )
        result = db.tasks.update(ref, **fields)
        body = {"updated": list(result.updated), "task": result.task.to_dict()}
        return json_response(body, headers={"ETag": etag(result.task)})

    def cancel_task(self, db: Transaction, ref: str) -> HTTPResponse:
        fields = only(read_json(self.max_body, required=False), CANCEL_FIELDS, "a cancellation")
        task = db.tasks.cancel(ref, **fields)
        return json_response(task.to_dict(), headers={"ETag": etag(task)})

    # -- events -----------------------------------------------------------------------------
    def list_events(self, ref: str) -> HTTPResponse:
        params = read_query(("after", "limit"))
        options = {name: whole_number(single(params, name), name) for name in params}
        return json_response([e.to_dict() for e in self.store.events.for_task(ref, **options)])

    def add_event(self, db: Transaction, ref: str) -> HTTPResponse:
        fields = only(read_json(self.max_body), EVENT_FIELDS, "an event")
        if "event_type" not in fields:
            raise ValidationError("event_type is required (e.g. spawned, started, note)", field="event_type")
        event = db.events.add(ref, **fields)
        return json_response(event.to_dict(), 201)

    # -- vault sync -------------------------------------------------------------------------
    def sync_status(self) -> HTTPResponse:
        read_query(())
        if self.sync is None:
            return json_response({"enabled": False, "vault": None, "running": False, "last_cycle": None})
        return json_response(self.sync.status())

    @outside_transaction
    def sync_trigger(self) -> HTTPResponse:
        only(read_json(self.max_body, required=False), (), "a sync trigger")
        if self.sync is None:
            raise NotConfiguredError(
                "no vault sync runs in this server: start `lobstore serve` with --vault PATH "
                "(or $LOBSTORE_VAULT)"
            )
        self.sync.trigger()
        return json_response({"status": "triggered", "detail": "a sync cycle runs soon; see GET /api/sync"}, 202)

    # -- service ----------------------------------------------------------------------------
    def openapi(self) -> HTTPResponse:
        return HTTPResponse(self._openapi, 200, {"Content-Type": "application/json"})

    def health(self) -> HTTPResponse:
        uptime = round(time.monotonic() - self.started, 3)
        try:
            db = {"ok": True, **self.store.describe(), "tasks": self.store.tasks.count()}
        except LobstoreError as exc:
            log.warning("health check: the database does not answer: %s", exc)
            db = {"ok": False, "backend": self.store.backend.name, "error": exc.message}
        body = {"status": "ok" if db["ok"] else "error", "version": __version__, "uptime": uptime, "db": db}
        return json_response(body, 200 if db["ok"] else 503)


class Handlers:
    """What the route groups below share: the store and the body size limit."""

    def __init__(self, store: Store, *, max_body: int) -> None:
        self.store = store
        self.max_body = max_body


class CostApi(Handlers):
    """Cost events, their sums and the prices (the ``/costs`` routes)."""

    def record_costs(self, db: Store | Transaction) -> HTTPResponse:
        """One event (an object) or a batch (an array of up to 1,000, all or none). A repeated
        ``request_id`` answers with the event stored the first time: 200 instead of 201."""
        body = read_json(self.max_body, batch=True)
        if isinstance(body, list):
            events = db.costs.record_many(body)
            fresh = any(not event.duplicate for event in events)
            return json_response([event.to_dict() for event in events], 201 if fresh else 200)
        event = db.costs.record(**body)  # the library names an unknown field
        return json_response(event.to_dict(), 200 if event.duplicate else 201)

    def list_costs(self) -> HTTPResponse:
        params = read_query(COST_LIST)
        filters = _renamed({name: single(params, name) for name in params if name not in ("after", "limit")})
        after, limit = paging(params, LIBRARY_PAGE)
        events = self.store.costs.list(after=after, limit=limit, **filters)
        return json_response([e.to_dict() for e in events], headers=next_page(params, events, limit))

    def summary(self) -> HTTPResponse:
        params = read_query(COST_SUMMARY)
        filters = _renamed({name: single(params, name) for name in params})
        return json_response(self.store.costs.summary(**filters).to_dict())

    def task_costs(self, ref: str) -> HTTPResponse:
        read_query(())
        return json_response(self.store.costs.for_task(ref).to_dict())

    def list_prices(self) -> HTTPResponse:
        """The prices in effect now (or ``at`` a time); ``history=true``: every price ever set."""
        params = read_query(PRICE_QUERY)
        model = single(params, "model") if "model" in params else None
        if "history" in params and flag(single(params, "history"), "history"):
            if "at" in params:
                raise ValidationError("give at or history=true, not both", field="at")
            prices = self.store.costs.prices(model)
        else:
            at = single(params, "at") if "at" in params else None
            prices = [p for p in self.store.costs.current_prices(at) if model is None or p.model == model]
        return json_response([price.to_dict() for price in prices])

    def set_price(self, db: Store | Transaction) -> HTTPResponse:
        fields = read_json(self.max_body)
        price = db.costs.set_price(fields.pop("model", None), **fields)  # the library names an unknown field
        return json_response(price.to_dict(), 201)



class AuditApi(Handlers):
    """Audit findings (the ``/audits`` routes)."""

    def submit_audit(self, db: Store | Transaction) -> HTTPResponse:
        fields = only(read_json(self.max_body), AUDIT_RUN_FIELDS, "an audit run")
        for name in ("audit_type", "findings"):
            if fields.get(name) is None:
                hint = " (a list; empty for a clean run)" if name == "findings" else ""
                raise ValidationError(f"{name} is required{hint}", field=name)
        result = db.audits.submit(fields.pop("audit_type"), fields.pop("findings"), **fields)
        return json_response(result.to_dict())

    def list_findings(self) -> HTTPResponse:
        params = read_query(AUDIT_LIST)
        filters = {name: single(params, name) for name in params if name not in ("after", "limit")}
        after, limit = paging(params, LIBRARY_PAGE)
        findings = self.store.audits.list(after=after, limit=limit, **filters)
        return json_response([f.to_dict() for f in findings], headers=next_page(params, findings, limit))

    def update_finding(self, db: Store | Transaction, finding_id: str) -> HTTPResponse:
        fields = only(read_json(self.max_body), AUDIT_UPDATE_FIELDS, "a finding update")
        if fields.get("status") is None:
            raise ValidationError("status is required: resolved, ignored or open", field="status")
        finding = db.audits.update(path_id(finding_id, "audit finding"), **fields)
        return json_response(finding.to_dict())


class BrokerApi(Handlers):
    """The token broker: registrations, tokens and its audit trail."""

    def register(self, db: Store | Transaction, ref: str) -> HTTPResponse:
        fields = only(read_json(self.max_body), REGISTER_FIELDS, "a registration")
        if fields.get("repos") in (None, []):  # today's callers get a 400 for this, not a 422
            raise MissingFieldError('repos is required: the owner/repo names the task may access, '
                                    'e.g. ["minsley/lobmob"]', field="repos")
        registration = db.broker.register(ref, **fields)
        return json_response({**registration.to_dict(), "status": "registered"})

    def deregister(self, db: Store | Transaction, ref: str) -> HTTPResponse:
        fields = only(read_json(self.max_body, required=False), CANCEL_FIELDS, "a deregistration")
        return json_response(db.broker.deregister(ref, **fields).to_dict())

    @outside_transaction
    def issue_token(self) -> HTTPResponse:
        """Through the store, never inside the request's transaction: GitHub may take seconds,
        and an answer holding a token must not be stored anywhere (idempotency included). A
        repeat is safe: the broker hands out the task's cached token."""
        fields = only(read_json(self.max_body), TOKEN_FIELDS, "a token request")
        if fields.get("task_id") is None:
            raise ValidationError("task_id is required: the task the token is for (T42)", field="task_id")
        token = self.store.broker.issue_token(fields["task_id"], actor=fields.get("actor"))
        return json_response(token.to_dict(), headers={"Cache-Control": "no-store"})

    def token_audit(self) -> HTTPResponse:
        params = read_query(("task_id", "limit"))
        task = single(params, "task_id") if "task_id" in params else None
        options = {"limit": whole_number(single(params, "limit"), "limit")} if "limit" in params else {}
        entries = self.store.broker.audit(task or None, **options)
        return json_response([entry.to_dict() for entry in entries])



class JobApi(Handlers):
    """lobwife's cron job state (the ``/jobs`` routes)."""

    def list_jobs(self) -> HTTPResponse:
        read_query(())
        return json_response({name: job.to_dict() for name, job in self.store.jobs.list().items()})

    def get_job(self, name: str) -> HTTPResponse:
        read_query(())
        return json_response(self.store.jobs.get(name).to_detail())

    def record_run(self, db: Store | Transaction, name: str) -> HTTPResponse:
        fields = only(read_json(self.max_body), JOB_RUN_FIELDS, "a job run")
        if fields.get("status") is None:
            raise ValidationError("status is required: success, failed, timeout or error", field="status")
        return json_response(db.jobs.record_run(name, **fields).to_detail(), 201)

    def enable_job(self, db: Store | Transaction, name: str) -> HTTPResponse:
        only(read_json(self.max_body, required=False), (), "enabling a job")
        return json_response(db.jobs.enable(name).to_detail())

    def disable_job(self, db: Store | Transaction, name: str) -> HTTPResponse:
        only(read_json(self.max_body, required=False), (), "disabling a job")
        return json_response(db.jobs.disable(name).to_detail())

    @outside_transaction
    def trigger_job(self, name: str) -> HTTPResponse:
        """Outside the request's transaction: starting a job is a side effect no rollback can
        take back, and the runner must not be called while the write lock is held."""
        only(read_json(self.max_body, required=False), (), "a job trigger")
        self.store.jobs.trigger(name)
        return json_response({"status": "triggered", "job": name}, 202)


# -- reading requests -------------------------------------------------------------------------
def read_json(max_body: int, *, required: bool = True, batch: bool = False) -> Any:
    """The request body as a JSON object. Refuses what is not JSON (415), too large (413),
    unreadable (400) or not an object (422)."""
    raw = request_body(max_body)
    content_type = request.environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if not raw and not content_type and not required:
        return {}
    if content_type not in JSON_TYPES:
        shown = content_type or "no Content-Type"
        raise UnsupportedMediaTypeError(f"send JSON with Content-Type: application/json, not {shown}")
    if not raw:
        if not required:
            return {}
        raise MalformedRequestError("the request body is empty: send a JSON object")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise MalformedRequestError(f"the body is not valid JSON: {_short(exc)}") from None
    if isinstance(data, list) and batch:  # a batch: the library checks its items
        return data
    if not isinstance(data, dict):
        wanted = "a JSON object or an array of them" if batch else "a JSON object"
        raise ValidationError(f"the body must be {wanted}, not {type(data).__name__}", field="body")
    return data


def request_body(max_body: int) -> bytes:
    """The request body, read once (the idempotency check and the handler both need it)."""
    environ = request.environ
    if _BODY_KEY not in environ:
        environ[_BODY_KEY] = read_body(environ, max_body)
    return environ[_BODY_KEY]


def idempotency_key() -> str | None:
    key = request.environ.get("HTTP_IDEMPOTENCY_KEY")
    if key is None:
        return None
    if not _KEY_RE.match(key):
        raise ValidationError(
            f"{IDEMPOTENCY_HEADER} must be 1 to 255 visible ASCII characters (a UUID will do), "
            f"got {key[:40]!r}", field=IDEMPOTENCY_HEADER,
        )
    return key


def request_fingerprint(max_body: int) -> str:
    """What makes two requests with one key "the same": the body (as JSON, so key order and
    spacing do not matter), the query string and If-Match."""
    raw = request_body(max_body)
    try:
        body = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):  # not JSON: compare the bytes; the handler refuses it anyway
        body = raw
    digest = hashlib.sha256()
    for part in (body, request.environ.get("QUERY_STRING", ""), request.environ.get("HTTP_IF_MATCH", "")):
        data = part if isinstance(part, bytes) else part.encode("latin-1", "replace")
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def canonical_path(path: str) -> str:
    """One key scope for both spellings of a route: /api/v1/tasks and /api/tasks are one."""
    prefix = _prefix_of(path)
    return PREFIXES[0] + path[len(prefix):] if prefix else path


def read_body(environ: Mapping[str, Any], max_body: int) -> bytes:
    length_header = environ.get("CONTENT_LENGTH") or ""
    stream = environ["wsgi.input"]
    if length_header:
        if not length_header.isascii() or not length_header.isdigit():
            raise MalformedRequestError(f"Content-Length must be a number of bytes, got {length_header!r}")
        length = int(length_header)
        if length > max_body:
            raise PayloadTooLargeError(f"the body is {length} bytes; at most {max_body}", limit=max_body)
        data = stream.read(length) if length else b""
        if len(data) < length:
            raise MalformedRequestError(f"the body ended after {len(data)} of {length} bytes")
        return data
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        data = stream.read(max_body + 1)  # the server has already removed the chunk framing
        if len(data) > max_body:
            raise PayloadTooLargeError(f"the body is over {max_body} bytes", limit=max_body)
        return data
    return b""


def read_query(allowed: Iterable[str]) -> dict[str, list[str]]:
    """The query string as name -> values; an unknown name is a 422 naming it."""
    known = tuple(allowed)
    try:
        text = request.environ.get("QUERY_STRING", "").encode("latin-1").decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_QUERY_FIELDS)
    except ValueError as exc:  # bad UTF-8, too many fields
        raise MalformedRequestError(f"the query string cannot be read: {_short(exc)}") from None
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        if name not in known:
            hint = f"known: {', '.join(known)}" if known else "this route takes none"
            raise ValidationError(f"unknown query parameter {name!r}; {hint}", field=name)
        params.setdefault(name, []).append(value)
    return params


def single(params: Mapping[str, list[str]], name: str) -> str:
    values = params[name]
    if len(values) > 1:
        raise ValidationError(f"{name} may be given once, got {len(values)} values", field=name)
    return values[0]


def whole_number(value: str, name: str) -> int:
    # Range checks are the library's; this is only the step from query text to a number.
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        raise ValidationError(f"{name} must be a whole number, got {value[:40]!r}", field=name)
    return int(value)


def flag(value: str, name: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValidationError(f"{name} must be true or false, got {value[:40]!r}", field=name)


def path_id(value: str, what: str) -> int:
    """A numeric id from the path; anything else names nothing there is (404)."""
    if not value.isascii() or not value.isdigit() or len(value) > 18 or int(value) < 1:
        raise NotFoundError(f"no {what} {value[:40]!r}: ids are whole numbers from 1")
    return int(value)


def paging(params: Mapping[str, list[str]], default: int) -> tuple[int | None, int]:
    """``after`` (None: from the start) and ``limit`` (``default`` when not given) as numbers."""
    after = whole_number(single(params, "after"), "after") if "after" in params else None
    limit = whole_number(single(params, "limit"), "limit") if "limit" in params else default
    return after, limit


def next_page(params: Mapping[str, list[str]], items: list[Any], limit: int) -> dict[str, str]:
    """A ``Link`` to the next page when this one is full (keyset paging: after the last id)."""
    if len(items) < limit or not items:
        return {}
    following = [(k, v) for k, values in params.items() if k != "after" for v in values]
    following.append(("after", str(items[-1].id)))
    return {"Link": f'<{request.script_name.rstrip("/")}{request.path}?{urlencode(following)}>; rel="next"'}


def _renamed(filters: dict[str, Any]) -> dict[str, Any]:
    """Cost filters as the library names them: JSON's ``task_id`` is its ``task``."""
    if "task_id" in filters:
        filters["task"] = filters.pop("task_id")
    return filters


def only(fields: dict[str, Any], allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    """Refuse fields a library call does not take, naming the first one."""
    for name in fields:
        if name not in allowed:
            known = f"known fields: {', '.join(allowed)}" if allowed else "it takes none"
            raise ValidationError(f"unknown field {name!r} for {what}; {known}", field=name)
    return fields


_ETAG_RE = re.compile(r'^"v([0-9]{1,18})"$')


def if_match_version(ref: str, db: Transaction) -> int | None:
    """The version an ``If-Match: "v3"`` header expects; None when there is no header.

    ``*`` matches any existing task. An ETag this API never issued cannot match: a 409.
    """
    header = request.environ.get("HTTP_IF_MATCH")
    if header is None:
        return None
    tags = [tag.strip() for tag in header.split(",") if tag.strip()]
    if tags == ["*"]:
        db.tasks.get(ref)  # 404 if there is no such task
        return None
    versions = {int(m.group(1)) for m in map(_ETAG_RE.match, tags) if m}
    if len(versions) == 1:
        (version,) = versions
        if version >= 1:
            return version
    if len(versions) > 1:
        raise ValidationError("If-Match may name one version of the task", field="If-Match")
    current = db.tasks.get(ref)
    raise ConflictError(
        f"If-Match {header[:80]!r} does not match {current.ref} (its ETag is {etag(current)})",
        task_id=current.ref, version=current.version,
    )


def _prefix() -> str:
    return _prefix_of(request.path) or PREFIXES[0]


def _prefix_of(path: str) -> str | None:
    return next((p for p in sorted(PREFIXES, key=len, reverse=True) if path.startswith(p + "/")), None)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _short(exc: BaseException) -> str:
    return str(exc)[:200] or type(exc).__name__
