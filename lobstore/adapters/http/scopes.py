"""Who may call each route: the one table the API enforces, documents (OpenAPI ``x-scope``) and
tests (every route of the app must be here: tests/test_auth.py).

**Adding a route?** Add one line below: the method, the rule exactly as given to Bottle
(``{api}`` stands for both ``/api`` and ``/api/v1``), and the scope it needs:

- ``PUBLIC``: anyone, without a credential (liveness, the OpenAPI document)
- ``READ``: every GET of fleet data
- ``WRITE``: tasks, events, costs, audits
- ``BROKER``: broker registrations, deregistrations, task tokens
- ``ADMIN``: jobs, prices, the sync trigger, service tokens, credentials

``task=`` lets a *task credential* (the one a lobster gets with its task's registration) use
the route for its own task only: ``"ref"`` when the path's ``<ref>`` names the task,
``"task_id"`` when the JSON body's ``task_id`` does (every item of a batch). Leave it out and
task credentials are refused. ``task_fields`` limits which body fields a task credential may
send (a lobster may move its task's status, not change its repos).

A route missing here is refused to everyone when authentication is required.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...credentials import ADMIN, BROKER, READ, WRITE

PUBLIC = "public"
API = "{api}"  # under both prefixes
PREFIXES = ("/api", "/api/v1")

# What a lobster may change on its own task with its task credential.
LOBSTER_TASK_FIELDS = frozenset({"status", "assigned_at", "completed_at", "review_pr", "actor", "reason",
                                 "expected_version"})


@dataclass(frozen=True)
class Access:
    scope: str
    task: str | None = None  # "ref" (path) or "task_id" (body): a task credential's own task only
    task_fields: frozenset[str] | None = None  # body fields a task credential may send (None: any)


def _table(*rows: tuple) -> dict[tuple[str, str], Access]:
    table: dict[tuple[str, str], Access] = {}
    for method, rule, scope, *rest in rows:
        options = rest[0] if rest else {}
        rules = [rule.replace(API, prefix) for prefix in PREFIXES] if rule.startswith(API) else [rule]
        for expanded in rules:
            if (method, expanded) in table:
                raise ValueError(f"{method} {expanded} is in the access table twice")
            table[method, expanded] = Access(scope, **options)
    return table


OWN = {"task": "ref"}  # the path's <ref> must be the credential's task
OWN_BODY = {"task": "task_id"}  # the body's task_id must be the credential's task

ROUTE_ACCESS: dict[tuple[str, str], Access] = _table(
    ("GET", "/health", PUBLIC),  # details (counts, paths) only with read / admin
    ("GET", "{api}/openapi.json", PUBLIC),
    ("GET", "/metrics", READ),  # Prometheus scrapes with a read credential
    # tasks and events
    ("POST", "{api}/tasks", WRITE),
    ("GET", "/api/v1/tasks", READ),
    ("GET", "{api}/tasks/<ref>", READ, OWN),
    ("PATCH", "{api}/tasks/<ref>", WRITE, {**OWN, "task_fields": LOBSTER_TASK_FIELDS}),
    ("DELETE", "/api/v1/tasks/<ref>", WRITE),  # cancel
    ("POST", "{api}/tasks/claim", WRITE),  # lobboss / a pool lobster takes the next task
    ("POST", "{api}/tasks/<ref>/heartbeat", WRITE, OWN),  # the assignee keeps its lease
    ("GET", "{api}/tasks/<ref>/events", READ, OWN),
    ("POST", "{api}/tasks/<ref>/events", WRITE, OWN),
    ("GET", "/api/v1/events", READ),  # the change feed: a page, or a long poll with ?wait=
    ("GET", "/api/v1/events/stream", READ),  # the change feed as Server-Sent Events
    # costs and audits
    ("POST", "{api}/costs", WRITE, OWN_BODY),
    ("GET", "{api}/costs", READ),
    ("GET", "{api}/costs/summary", READ),
    ("GET", "{api}/tasks/<ref>/costs", READ, OWN),
    ("GET", "{api}/costs/prices", READ),
    ("POST", "{api}/costs/prices", ADMIN),
    ("POST", "{api}/costs/reprice", ADMIN),
    ("GET", "{api}/budgets", READ),
    ("POST", "{api}/budgets", ADMIN),
    ("GET", "{api}/budgets/alerts", READ),
    ("DELETE", "{api}/budgets/<budget_id>", ADMIN),
    ("GET", "{api}/tasks/<ref>/budget", READ, OWN),
    ("POST", "{api}/audits", WRITE),
    ("GET", "{api}/audits", READ),
    ("PATCH", "{api}/audits/<finding_id>", WRITE),
    # the token broker (the unversioned /api/tasks routes are lobwife's broker view)
    ("GET", "/api/tasks", READ),
    ("DELETE", "/api/tasks/<ref>", BROKER),  # deregister only
    ("POST", "/api/v1/tasks/<ref>/register", BROKER),
    ("POST", "/api/tasks/<ref>/register", BROKER),  # by ref, legacy id, slug, name, or standalone
    ("DELETE", "{api}/tasks/<ref>/register", BROKER),
    ("POST", "{api}/token", BROKER, OWN_BODY),
    ("GET", "{api}/token/audit", READ),
    ("POST", "{api}/service-token", ADMIN),
    # the web dashboard (lobstore.adapters.dashboard): pages with read, its forms with admin
    ("GET", "/", READ),
    ("GET", "/ui/tasks", READ),
    ("GET", "/ui/tasks/<ref>", READ),
    ("GET", "/ui/costs", READ),
    ("GET", "/ui/audits", READ),
    ("GET", "/ui/jobs", READ),
    ("GET", "/ui/broker", READ),
    ("POST", "/ui/audits/<finding_id>", ADMIN),  # resolve or ignore a finding
    ("POST", "/ui/jobs/<name>/<action>", ADMIN),  # trigger, enable, disable
    # status, cron jobs, the vault sync, credentials
    ("GET", "{api}/status", READ),
    ("GET", "{api}/jobs", READ),
    ("GET", "{api}/jobs/<name>", READ),
    ("POST", "{api}/jobs/<name>/runs", ADMIN),
    ("POST", "{api}/jobs/<name>/enable", ADMIN),
    ("POST", "{api}/jobs/<name>/disable", ADMIN),
    ("POST", "{api}/jobs/<name>/trigger", ADMIN),
    ("GET", "{api}/sync", READ),  # the vault's path only with admin
    ("POST", "{api}/sync/trigger", ADMIN),
    ("GET", "{api}/credentials", ADMIN),
    ("POST", "{api}/credentials", ADMIN),
    ("DELETE", "{api}/credentials/<name>", ADMIN),
)


def access_for(method: str, rule: str) -> Access | None:
    return ROUTE_ACCESS.get((method, rule))
