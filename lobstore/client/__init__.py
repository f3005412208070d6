"""A Python client for the lobwife API that keeps working when lobwife is briefly down.

    from lobstore.client import Client
    lobwife = Client("http://lobwife:8081", outbox="/var/lib/lobster/outbox.db")
    lobwife.update_task("T42", status="active", actor="lobster-swe-t42", defer=True)

Every write carries an ``Idempotency-Key``, so a retry after a lost response never counts
twice. Connection errors and 502/503/504 are retried with backoff and jitter. A write marked
``defer=True`` that still cannot reach lobwife goes to the outbox and the call returns a
:class:`Queued`; the outbox is replayed in order, each entry with its original key, before the
next write, after the next successful read, and by :meth:`Client.flush`. An entry lobwife
refuses with a 4xx is moved aside with the reason (``client.outbox.rejected()``). Reads never
queue: they raise :class:`UnavailableError`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ..filters import TaskFilter
from .errors import (
    APIAuthenticationError,
    APIConflictError,
    APIError,
    APIForbiddenError,
    APINotFoundError,
    APIServerError,
    APIValidationError,
    UnavailableError,
)
from .events import EventStream
from .lease import LeaseKeeper
from .outbox import Entry, Outbox, Rejected
from .transport import Transport

__all__ = [
    "APIAuthenticationError",
    "APIConflictError",
    "APIError",
    "APIForbiddenError",
    "APINotFoundError",
    "APIServerError",
    "APIValidationError",
    "Client",
    "EventStream",
    "FlushResult",
    "LeaseKeeper",
    "Outbox",
    "Queued",
    "Rejected",
    "UnavailableError",
]

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8081"
ENV_URL = "LOBWIFE_URL"
ENV_TOKEN = "LOBSTORE_TOKEN"  # the API credential: a lobster's task token, lobboss's own
API = "/api/v1"
# lobwife's token broker routes of the same shape as task routes live under the unversioned
# /api (GET /api/tasks: registrations; DELETE /api/tasks/{id}: deregistration by name).
BROKER_API = "/api"
MAX_SERVER_ERRORS = 5  # answers of 500 (not 502/503/504) before a queued write is set aside
KEEP_QUEUED = frozenset({401, 429})  # refusals of the caller, not of a queued write: it waits


@dataclass(frozen=True)
class Queued:
    """A deferrable write that could not reach lobwife and waits in the outbox."""

    idempotency_key: str
    method: str
    path: str
    queued = True  # so callers can write `if getattr(answer, "queued", False)`


@dataclass
class FlushResult:
    sent: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    remaining: int = 0
    error: str | None = None  # why the flush stopped early, if it did


class Client:
    """The lobwife API, one method per route.

    Each method is one line over :meth:`read` (``GET``, never queued) or :meth:`write`
    (an idempotency key, retries, and with ``defer=True`` the outbox): a new route gets its
    method the same way, and callers may use both directly.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        outbox: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.25,
        actor: str | None = None,
        quiet_period: float = 5.0,
        token: str | None = None,
    ) -> None:
        """``base_url`` defaults to ``$LOBWIFE_URL``, else http://127.0.0.1:8081. ``timeout`` is
        per attempt, in seconds; ``retries`` more attempts follow a failed one, after a random
        pause of up to ``backoff * 2**n`` seconds. Without an ``outbox`` path, ``defer=True``
        writes raise UnavailableError like any other. Once lobwife was found unreachable,
        deferred writes go straight to the outbox for ``quiet_period`` seconds instead of
        waiting through the retries again. ``actor`` is put into writes that name none.
        ``token`` is the API credential sent as ``Authorization: Bearer`` (default
        ``$LOBSTORE_TOKEN``; none against a server run with ``--auth off``)."""
        self.transport = Transport(base_url or os.environ.get(ENV_URL) or DEFAULT_URL,
                                   timeout=timeout, retries=retries, backoff=backoff,
                                   token=token or os.environ.get(ENV_TOKEN) or None)
        self.outbox = Outbox(outbox) if outbox is not None else None
        self.actor = actor
        self.quiet_period = quiet_period
        self._flushing = threading.Lock()
        self._unreachable_until = 0.0

    # -- tasks --------------------------------------------------------------------------------
    def create_task(self, name: str, *, defer: bool = False, **fields: Any) -> dict | Queued:
        """Create a task (fields as the API takes them: type, repos, priority, description, …)."""
        return self.write("POST", "/tasks", self._actor({"name": name, **fields}), defer=defer)

    def get_task(self, ref: str | int) -> dict:
        return self.read(f"/tasks/{_ref(ref)}")

    def list_tasks(self, filter: TaskFilter | None = None, /, **query: Any) -> list[dict]:
        """One page of tasks, newest first and 100 unless asked: those matching ``filter`` (a
        :class:`~lobstore.filters.TaskFilter`, or its fields as keyword arguments: status,
        type, assigned_to, priority, repo, created_since, …; a list value asks for any of its
        items), then ``limit``, ``after`` and ``order`` ("asc" for oldest first). A bad filter
        is a ValidationError before anything is sent."""
        page = {name: query.pop(name) for name in ("limit", "after", "order") if name in query}
        return self.read("/tasks", **_task_filter(filter, query).to_query(), **page)

    def iter_tasks(self, filter: TaskFilter | None = None, /, *, page_size: int = 200, **query: Any) -> Iterator[dict]:
        """Every task matching the filter (as for :meth:`list_tasks`), page after page."""
        after = query.pop("after", None)
        wanted = _task_filter(filter, query)
        while True:
            page = self.list_tasks(wanted, limit=page_size, after=after, **query)
            yield from page
            if len(page) < page_size:
                return
            after = page[-1]["id"]

    def update_task(self, ref: str | int, *, defer: bool = False, **fields: Any) -> dict | Queued:
        """Change fields (status, assigned_to, …; the broker fields broker_repos, broker_status,
        broker_registered_at, token_count; ``expected_version`` to refuse a stale write,
        ``force`` to override the status machine). Answers {"updated": [...], "task": {...}}."""
        return self.write("PATCH", f"/tasks/{_ref(ref)}", self._actor(fields), defer=defer)

    def cancel_task(self, ref: str | int, *, reason: str | None = None, actor: str | None = None,
                    defer: bool = False) -> dict | Queued:
        body = self._actor(_given(actor=actor, reason=reason))
        return self.write("DELETE", f"/tasks/{_ref(ref)}", body or None, defer=defer)

    def task_events(self, ref: str | int, *, after: int | None = None, limit: int | None = None) -> list[dict]:
        """A task's history, oldest first."""
        return self.read(f"/tasks/{_ref(ref)}/events", after=after, limit=limit)

    def add_event(self, ref: str | int, event_type: str, *, detail: str | None = None,
                  data: dict | None = None, actor: str | None = None, defer: bool = False) -> dict | Queued:
        """Log an event (spawned, started, note, completed, …) on a task's trail."""
        body = self._actor({"event_type": event_type, **_given(detail=detail, data=data, actor=actor)})
        return self.write("POST", f"/tasks/{_ref(ref)}/events", body, defer=defer)

    # -- the change feed ----------------------------------------------------------------------
    def events(self, *, after: int | None = None, task: str | int | None = None, type: str | list[str] | None = None,
               status: str | list[str] | None = None) -> EventStream:
        """Every event after ``after`` (None: from now on) as it happens, for ever: an iterator
        that reconnects and resumes by itself (``for event in client.events(): ...``).
        ``task``, ``type`` and ``status`` keep only the events of one task, of these event
        types, or that moved a task to these statuses."""
        query = {"after": after, "task": task, "type": _joined(type), "status": _joined(status)}
        return EventStream(self.transport, after=after, query=query)

    def poll_events(self, *, after: int = 0, wait: int = 25, limit: int | None = None, **filters: Any) -> dict:
        """The long poll: events after ``after`` at once, or as soon as one comes within
        ``wait`` seconds. Answers {"events": [...], "last_id": N}: ask again with after=N."""
        query = {"after": after, "wait": wait, "limit": limit, **{k: _joined(v) for k, v in filters.items()}}
        query = {k: v for k, v in query.items() if v is not None}
        # Its own connection: the answer may take ``wait`` seconds, longer than the usual timeout.
        conn, response = self.transport.open_stream(API + "/events", query, {"Accept": "application/json"},
                                                    max(self.transport.timeout, wait + 10))
        try:
            return json.loads(response.read())
        finally:
            conn.close()
    # -- the lifecycle clock ------------------------------------------------------------------
    def claim(self, lobster: str, *, types: list[str] | None = None, lease_seconds: int | None = None) -> dict | None:
        """Take the best queued task (priority, then oldest) for ``lobster``: the task, now
        active, assigned and leased; None when none is queued (of ``types``). Its retries
        share one idempotency key, so a lost answer never takes a second task."""
        return self.write("POST", "/tasks/claim", {"lobster": lobster, **_given(types=types, lease_seconds=lease_seconds)})

    def heartbeat(self, ref: str | int, *, lobster: str | None = None, lease_seconds: int | None = None) -> dict:
        """Extend the task's lease (default: the server's length) and answer the task.
        APIConflictError: the task is no longer this lobster's; stop working on it. Sent
        without an idempotency key: a heartbeat is safe to repeat and not worth storing."""
        body = _given(lobster=lobster, lease_seconds=lease_seconds)
        answer = self.transport.request("POST", f"{API}/tasks/{_ref(ref)}/heartbeat", body=body).body
        self._reachable()
        return answer

    def holding(self, ref: str | int, *, lobster: str | None = None, lease_seconds: int | None = None,
                every: float | None = None) -> LeaseKeeper:
        """A context manager that heartbeats the task every ``every`` seconds (a third of the
        lease by default) on a background thread while the block runs; its ``lost`` turns
        true when the store took the task back (see lobstore.client.lease)."""
        return LeaseKeeper(self, ref, lobster=lobster, lease_seconds=lease_seconds, every=every)

    # -- costs ------------------------------------------------------------------------------
    def record_cost(self, model: str, *, defer: bool = False, **fields: Any) -> dict | Queued:
        """One LLM call: task_id, agent, input/output/cache_read/cache_write_tokens, cost_usd
        (as the Agent SDK reported it), request_id (a repeat is stored once), created_at."""
        return self.write("POST", "/costs", {"model": model, **fields}, defer=defer)

    def record_costs(self, events: list[dict[str, Any]], *, defer: bool = False) -> list[dict] | Queued:
        """Up to 1,000 events in one all-or-nothing batch."""
        return self.write("POST", "/costs", events, defer=defer)

    def costs(self, **filters: Any) -> list[dict]:
        """Cost events: task_id, model, agent, since, until, after, limit."""
        return self.read("/costs", **filters)

    def cost_summary(self, **filters: Any) -> dict:
        """Totals and groups: period (day|week|month) or since/until, group_by, task_id, model, agent."""
        return self.read("/costs/summary", **filters)

    def task_costs(self, ref: str | int) -> dict:
        return self.read(f"/tasks/{_ref(ref)}/costs")

    def prices(self, **query: Any) -> list[dict]:
        """Prices in effect now (or ``at``), for one ``model``, or ``history=True``."""
        return self.read("/costs/prices", **query)

    def set_price(self, model: str, **prices: Any) -> dict:
        """USD per million tokens: input_usd_per_mtok, output_usd_per_mtok, cache_read_…,
        cache_write_…, effective_from."""
        return self.write("POST", "/costs/prices", self._actor({"model": model, **prices}))

    def task_budget(self, ref: str | int) -> dict:
        """May the task go on spending? ``state`` is ``exhausted`` when a hard budget is spent."""
        return self.read(f"/tasks/{_ref(ref)}/budget")

    def budgets(self, **query: Any) -> list[dict]:
        """Budgets with their spend this period (``include_removed=True`` for the removed too)."""
        return self.read("/budgets", **query)

    def set_budget(self, scope: str, period: str, limit_usd: Any, **fields: Any) -> dict:
        """scope: task, task_type, model, agent or fleet (``target=`` names which); hard=True."""
        return self.write("POST", "/budgets", self._actor(
            {"scope": scope, "period": period, "limit_usd": limit_usd, **fields}))

    def budget_alerts(self, **query: Any) -> list[dict]:
        """The 80 % and 100 % crossings, once per budget period: after, limit, budget_id."""
        return self.read("/budgets/alerts", **query)

    def reprice(self, model: str, since: str, **options: Any) -> dict:
        """Re-price a model's table-priced events at the prices now (until, dry_run=True)."""
        return self.write("POST", "/costs/reprice", self._actor({"model": model, "since": since, **options}))

    # -- audits -------------------------------------------------------------------------------
    def submit_audit(self, audit_type: str, findings: list[dict[str, Any]], *, defer: bool = False,
                     **options: Any) -> dict | Queued:
        """One audit run (options: run_id, close_missing): what it created, updated, resolved."""
        body = self._actor({"audit_type": audit_type, "findings": findings, **options})
        return self.write("POST", "/audits", body, defer=defer)

    def findings(self, **filters: Any) -> list[dict]:
        """Audit findings: audit_type, severity, status, since, until, after, limit."""
        return self.read("/audits", **filters)

    def update_finding(self, finding_id: int, status: str, *, resolution: str | None = None) -> dict:
        body = self._actor({"status": status, **_given(resolution=resolution)})
        return self.write("PATCH", f"/audits/{int(finding_id)}", body)

    # -- token broker -------------------------------------------------------------------------
    def register(self, ref: str | int, repos: list[str], *, lobster_type: str | None = None) -> dict:
        """Give a task access to ``repos`` (owner/repo) through the token broker."""
        body = self._actor({"repos": repos, **_given(lobster_type=lobster_type)})
        return self.write("POST", f"/tasks/{_ref(ref)}/register", body)

    def deregister(self, ref: str | int) -> dict:
        return self.write("DELETE", f"/tasks/{_ref(ref)}/register", self._actor({}) or None)

    def register_name(self, name: str, repos: list[str], *, lobster_type: str | None = None) -> dict:
        """Register what ``name`` names as lobwife did (a task's ref, legacy id, slug or name),
        or keep a standalone registration under it (``POST /api/tasks/{name}/register``)."""
        body = self._actor({"repos": repos, **_given(lobster_type=lobster_type)})
        return self._write("POST", f"{BROKER_API}/tasks/{_ref(name)}/register", body)

    def deregister_name(self, name: str) -> dict:
        """End what was registered under ``name`` (``DELETE /api/tasks/{name}``; the task, if
        any, carries on): {"status": "removed", "ended": [...]}."""
        return self._write("DELETE", f"{BROKER_API}/tasks/{_ref(name)}", self._actor({}) or None)

    def registrations(self, *, status: str | None = None, limit: int | None = None) -> dict[str, dict]:
        """Registrations keyed by task ref or standalone name, newest first (``GET /api/tasks``)."""
        return self._get(f"{BROKER_API}/tasks", {"status": status, "limit": limit})

    def service_token(self, service: str) -> dict:
        """A GitHub token for a fleet service (lobboss, lobsigliere, …): {"token", "expires_at"}."""
        return self.write("POST", "/service-token", {"service": service})

    def token(self, ref: str | int) -> dict:
        """A GitHub token for the task's repos: {"token", "expires_at"}. Never queued."""
        return self.write("POST", "/token", self._actor({"task_id": str(ref)}))

    def token_audit(self, ref: str | int | None = None, *, limit: int | None = None) -> list[dict]:
        return self.read("/token/audit", task_id=None if ref is None else str(ref), limit=limit)

    # -- cron jobs ----------------------------------------------------------------------------
    def jobs(self) -> dict[str, dict]:
        """Every job's state, keyed by name (the jobs file's first, then outside runners')."""
        return self.read("/jobs")

    def job(self, name: str) -> dict:
        return self.read(f"/jobs/{_ref(name)}")

    def record_run(self, name: str, status: str, *, duration: float | None = None, output: str | None = None,
                   started_at: str | None = None, finished_at: str | None = None, exit_code: int | None = None,
                   defer: bool = False) -> dict | Queued:
        """A run an outside runner finished: status success|failed|timeout|error|interrupted (a
        new name creates the job)."""
        body = {"status": status, **_given(duration=duration, output=output, started_at=started_at,
                                           finished_at=finished_at, exit_code=exit_code)}
        return self.write("POST", f"/jobs/{_ref(name)}/runs", body, defer=defer)

    def enable_job(self, name: str) -> dict:
        return self.write("POST", f"/jobs/{_ref(name)}/enable")

    def disable_job(self, name: str) -> dict:
        return self.write("POST", f"/jobs/{_ref(name)}/disable")

    def trigger_job(self, name: str) -> dict:
        """``{"message": "Job NAME triggered"}``; APIConflictError while a ``forbid`` job runs."""
        return self.write("POST", f"/jobs/{_ref(name)}/trigger")

    # -- vault sync ---------------------------------------------------------------------------
    def sync_status(self) -> dict:
        return self.read("/sync")

    def status(self) -> dict:
        """Uptime, every job's state and the token broker's summary (lobwife's dashboard)."""
        return self.read("/status")

    def trigger_sync(self) -> dict:
        return self.write("POST", "/sync/trigger")

    # -- service ------------------------------------------------------------------------------
    def health(self) -> dict:
        """lobwife's /health. A 503 (database down) raises UnavailableError like any read."""
        return self._get("/health", None)

    def openapi(self) -> dict:
        return self.read("/openapi.json")

    # -- any route ----------------------------------------------------------------------------
    def read(self, path: str, **query: Any) -> Any:
        """GET ``/api/v1{path}`` (``None`` query values are left out). Never queued: when
        lobwife cannot be reached it raises UnavailableError after the retries."""
        return self._get(API + path, query)

    def write(self, method: str, path: str, body: Any = None, *, defer: bool = False) -> Any:
        """Send a write to ``/api/v1{path}`` with a new idempotency key (the same on every
        retry). With ``defer=True`` and an outbox, a write that cannot reach lobwife is queued
        and a :class:`Queued` is returned instead of the answer."""
        return self._write(method, API + path, body, defer=defer)

    def _write(self, method: str, target: str, body: Any = None, *, defer: bool = False) -> Any:
        key = str(uuid.uuid4())
        path = target
        if self.outbox is not None and self.outbox.pending():
            # Queued writes go first: a new write must never overtake older ones.
            if not (defer and self._quiet()):
                self.flush()
            waiting = self.outbox.pending()
            if waiting and defer:
                return self._queue(method, target, body, key)
            if waiting:
                raise UnavailableError(
                    f"{waiting} earlier writes wait in the outbox and lobwife does not take them yet; "
                    f"{method} {path} was not sent, so that it cannot overtake them (try again, or defer it)"
                )
        elif defer and self.outbox is not None and self._quiet():
            return self._queue(method, target, body, key)
        try:
            answer = self.transport.request(method, target, body=body, headers={"Idempotency-Key": key}).body
        except UnavailableError:
            if not defer or self.outbox is None:
                raise
            self._unreachable()
            return self._queue(method, target, body, key)
        self._reachable()
        return answer

    # -- the outbox ---------------------------------------------------------------------------
    def flush(self) -> FlushResult:
        """Replay the outbox in order, each entry with its original idempotency key. Stops at
        the first entry that cannot reach lobwife (it stays, with everything after it). An
        entry refused with a 4xx — or with another server error, MAX_SERVER_ERRORS times —
        is moved aside with the reason, so one bad entry never blocks the rest for ever."""
        result = FlushResult()
        if self.outbox is None:
            return result
        with self._flushing:
            while (entry := self.outbox.oldest()) is not None:
                try:
                    self.transport.request(entry.method, entry.path, body=entry.body,
                                           headers={"Idempotency-Key": entry.idempotency_key})
                except UnavailableError as exc:
                    self.outbox.failed_attempt(entry, str(exc))
                    self._unreachable()
                    result.error = str(exc)
                    break
                except APIError as exc:
                    if exc.status in KEEP_QUEUED:
                        # Not this entry's fault: a credential to fix, or a pause to wait out.
                        result.error = str(exc)
                        break
                    if exc.status < 500:
                        self._set_aside(entry, exc.status, exc.message, result)
                        continue
                    # A 500 is a server fault, not this entry's: try later, but not for ever.
                    attempts = self.outbox.failed_attempt(entry, str(exc), server_error=True)
                    if attempts >= MAX_SERVER_ERRORS:
                        self._set_aside(entry, exc.status, f"{exc.message} (after {attempts} attempts)", result)
                        continue
                    result.error = str(exc)
                    break
                self.outbox.done(entry)
                result.sent += 1
            result.remaining = self.outbox.pending()
        if result.sent or result.rejected:  # lobwife answered: it is reachable again
            self._reachable()
            log.info("outbox: replayed %d writes, %d rejected, %d waiting", result.sent,
                     len(result.rejected), result.remaining)
        return result

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------
    def _get(self, target: str, query: dict[str, Any] | None) -> Any:
        body = self.transport.request("GET", target, query=query).body
        self._reachable()
        self._flush_soon()
        return body

    def _set_aside(self, entry: Entry, status: int, reason: str, result: FlushResult) -> None:
        assert self.outbox is not None
        log.warning("lobwife refused queued %s %s (HTTP %d): %s; moved aside to the outbox's "
                    "rejected list", entry.method, entry.path, status, reason)
        self.outbox.reject(entry, status, reason)
        result.rejected.append(Rejected(entry, status, reason))

    def _queue(self, method: str, target: str, body: Any, key: str) -> Queued:
        assert self.outbox is not None
        self.outbox.add(method, target, body, key)
        log.warning("lobwife unreachable: queued %s %s (%d waiting)", method, target, self.outbox.pending())
        return Queued(key, method, target)

    def _flush_soon(self) -> None:
        """After a call that reached lobwife: replay what waits, if nobody else is."""
        if self.outbox is None or self._flushing.locked() or not self.outbox.pending():
            return
        self.flush()

    def _quiet(self) -> bool:
        return time.monotonic() < self._unreachable_until

    def _unreachable(self) -> None:
        self._unreachable_until = time.monotonic() + self.quiet_period

    def _reachable(self) -> None:
        self._unreachable_until = 0.0

    def _actor(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The body with this client's default actor, unless the call named one."""
        body = dict(fields)
        if self.actor and body.get("actor") is None:
            body["actor"] = self.actor
        return body


def _given(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def _task_filter(given: TaskFilter | None, filters: dict[str, Any]) -> TaskFilter:
    keyword = {name: filters.pop(name) for name in list(filters) if name not in ("limit", "after", "order")}
    extra = TaskFilter.of(**keyword)
    return extra if given is None else TaskFilter(**{**given.given(), **extra.given()})


def _joined(value: str | list[str] | None) -> str | None:
    return ",".join(value) if isinstance(value, (list, tuple)) else value


def _ref(ref: str | int) -> str:
    return quote(str(ref), safe="")
