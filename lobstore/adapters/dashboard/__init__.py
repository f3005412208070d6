"""The web dashboard: server-rendered pages (Jinja2) over the store, at ``/`` of ``lobstore serve``.

Every page works without JavaScript; a few lines of it (``live.js`` inline in the layout)
follow the change feed with ``EventSource`` and reload the overview or a task page when
something it shows changed. Pages read through the repositories with bounded queries (counts,
keyset pages, the cost rollups), so they stay fast at 100,000 tasks and 1,000,000 cost events.
Admin actions are HTML forms (POST, then a redirect back); they check that the request came
from this site (``Sec-Fetch-Site`` or ``Origin``), as a browser sends stored credentials to any
site's forms.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
from bottle import HTTPResponse, request

from ... import status as st
from ...clock import to_iso, utcnow
from ...errors import ForbiddenError, LobstoreError, ValidationError
from ...filters import TaskFilter
from ...lifecycle.rules import SWEEP_EVENT_TYPES
from ...models import SEVERITIES
from ...pricing import micro_to_usd
from ...repositories.events import STORE_EVENT_TYPES
from ...store import Store, Transaction
from ..http.wire import path_id, read_query, request_body, single, whole_number
from ..http.writes import outside_transaction
from .charts import daily_chart

PAGE = 50  # tasks per page
ACTIVE_ROWS = 25
RECENT_ROWS = 10
COST_DAYS = 30
RECENT_COSTS = 10_000  # the cost events the top tasks and agents are drawn from
TASK_LIST = ("status", "type", "assigned_to", "repo", "text", "after")


def _usd(micro: int | None) -> str:
    value = micro_to_usd(micro)
    return "—" if value is None else f"${value:,.2f}"


def _ago(when: Any) -> str:
    if when is None:
        return "—"
    seconds = int((utcnow() - when).total_seconds())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


class Dashboard:
    def __init__(self, store: Store, *, max_body: int, thresholds: dict[str, Any] | None = None,
                 vault: Any = None) -> None:
        self.store = store
        self.vault = vault  # the VaultSync writing the vault (its root and renderer), if any
        self.max_body = max_body
        self.thresholds = thresholds or {}
        self.env = jinja2.Environment(loader=jinja2.PackageLoader("lobstore.adapters.dashboard", "templates"),
                                      autoescape=True, trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(usd=_usd, ago=_ago, iso=to_iso)
        # An SSE event with a type reaches only the listeners of that type: the page listens to
        # every type the store and the lifecycle sweep write (a lobster's own notes change no row).
        self.env.globals["live_event_types"] = sorted(STORE_EVENT_TYPES | {*SWEEP_EVENT_TYPES, "broker_updated"})

    def _page(self, name: str, **values: Any) -> HTTPResponse:
        body = self.env.get_template(name).render(path=request.path, **values)
        return HTTPResponse(body.encode(), 200, {"Content-Type": "text/html; charset=utf-8",
                                                 "Cache-Control": "no-store"})

    def _vault_file(self, task: Any) -> dict[str, str] | None:
        """Where the vault sync writes the task's file, and an Obsidian link that opens it."""
        if self.vault is None:
            return None
        path = self.vault.renderer.task_path(task)
        query = urlencode({"vault": self.vault.root.name, "file": path.removesuffix(".md")}, quote_via=quote)
        return {"path": path, "link": f"obsidian://open?{query}"}

    # -- pages -------------------------------------------------------------------------------
    def overview(self) -> HTTPResponse:
        tasks, now = self.store.tasks, utcnow()
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return self._page(
            "overview.html",
            by_status=tasks.count_by("status"), statuses=st.STATUSES,
            active=tasks.list(status=st.ACTIVE, limit=ACTIVE_ROWS, order="desc"),
            completed=tasks.list(status=st.COMPLETED, order="desc", limit=RECENT_ROWS),
            failed=tasks.list(status=[st.FAILED, st.CANCELLED], order="desc", limit=RECENT_ROWS),
            today=self.store.costs.summary(since=day, until=now + timedelta(seconds=1)).totals,
            week=self.store.costs.summary(since=day - timedelta(days=6), until=now + timedelta(seconds=1)).totals,
            findings=[f for severity in ("critical", "warning")  # the two upper of SEVERITIES
                      for f in self.store.audits.list(status="open", severity=severity, limit=RECENT_ROWS)],
            jobs=sorted(self.store.jobs.list().values(), key=lambda j: j.name),
            sync=self.store.sync_state.all(),
            thresholds=self.thresholds, latest=self.store.events.latest_id(),
        )

    def tasks(self) -> HTTPResponse:
        params = read_query(TASK_LIST)
        after = whole_number(single(params, "after"), "after") if "after" in params else None
        wanted = TaskFilter.from_query({k: v for k, v in params.items() if k != "after" and v != [""]})
        page = self.store.tasks.list(wanted, limit=PAGE, after=after, order="desc")
        return self._page("tasks.html", tasks=page, query=wanted.to_query(), statuses=st.STATUSES,
                          next_after=page[-1].id if len(page) == PAGE else None)

    def task(self, ref: str) -> HTTPResponse:
        task = self.store.tasks.get(ref)
        try:
            registration = self.store.broker.get(task.ref)
        except LobstoreError:
            registration = None
        return self._page("task.html", task=task, vault_file=self._vault_file(task),
                          events=self.store.events.for_task(task.ref),
                          costs=self.store.costs.for_task(task.ref), registration=registration,
                          audit=self.store.broker.audit(task.ref), latest=self.store.events.latest_id())

    def costs(self) -> HTTPResponse:
        costs, now = self.store.costs, utcnow()
        until = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        since = until - timedelta(days=COST_DAYS)
        days = costs.daily_by_model(since=since, until=until)
        return self._page(
            "costs.html", chart=daily_chart(days, since, COST_DAYS),
            by_model=costs.summary(since=since, until=until, group_by="model"),
            # No rollup keeps tasks and agents: the newest events are summed, a bounded read.
            by_task=costs.recent_leaders("task", events=RECENT_COSTS),
            by_agent=costs.recent_leaders("agent", events=RECENT_COSTS), recent_costs=RECENT_COSTS,
            prices=costs.current_prices(),
        )

    def audits(self) -> HTTPResponse:
        findings = self.store.audits.list(status="open", limit=200)
        findings.sort(key=lambda f: (-SEVERITIES.index(f.severity), -f.id))  # the worst first
        return self._page("audits.html", findings=findings,
                          counts=self.store.audits.count_by("severity", status="open"))

    def jobs(self) -> HTTPResponse:
        return self._page("jobs.html", jobs=sorted(self.store.jobs.list().values(), key=lambda j: j.name))

    def broker(self) -> HTTPResponse:
        return self._page("broker.html", registrations=self.store.broker.list(limit=200),
                          audit=self.store.broker.audit(limit=200))

    # -- admin actions (HTML forms) ----------------------------------------------------------
    def audit_action(self, db: Transaction, finding_id: str) -> HTTPResponse:
        _same_site()
        form = _form(self.max_body)
        action, why = form.get("action"), form.get("resolution") or None
        number = path_id(finding_id, "audit finding")
        if action == "resolve":
            db.audits.resolve(number, why)
        elif action == "ignore":
            db.audits.ignore(number, why)
        else:
            raise ValidationError(f"action must be resolve or ignore, got {action!r}", field="action")
        return _back("/ui/audits")

    @outside_transaction  # a trigger asks the job runner, which must not wait on our write lock
    def job_action(self, name: str, action: str) -> HTTPResponse:
        _same_site()
        jobs = self.store.jobs
        moves = {"trigger": jobs.trigger, "enable": jobs.enable, "disable": jobs.disable}
        if action not in moves:
            raise ValidationError(f"action must be trigger, enable or disable, got {action!r}", field="action")
        moves[action](name)
        return _back("/ui/jobs")


def _form(max_body: int) -> dict[str, str]:
    """An HTML form's fields (the body is read once, by the write wrapper first)."""
    text = request_body(max_body).decode("utf-8", "replace")
    return {name: value for name, value in parse_qsl(text, keep_blank_values=True)}


def _same_site() -> None:
    """A form post must come from this site: a browser sends remembered credentials with a
    form posted from anywhere. Browsers say where a post comes from (``Sec-Fetch-Site``,
    ``Origin``); a post that says nothing, or ``Origin: null`` (a sandboxed frame, a data:
    page), is refused too."""
    host = request.get_header("Host")
    fetch_site = request.get_header("Sec-Fetch-Site")
    origin = request.get_header("Origin")
    if fetch_site is not None:
        same = fetch_site == "same-origin"
    else:
        same = origin is not None and origin != "null" and origin.split("://", 1)[-1] == host
    if not same:
        raise ForbiddenError(f"a dashboard form must be posted from a page of {host} "
                             f"(Origin: {origin or 'none'}, Sec-Fetch-Site: {fetch_site or 'none'})")


def _back(where: str) -> HTTPResponse:
    return HTTPResponse(status=303, headers={"Location": where})
