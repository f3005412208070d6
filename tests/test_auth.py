"""Who may call what: the access table against every route of the app, the route × credential
matrix on every backend, task credentials, the failure throttle, and what /health and the
error answers show to whom."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from lobstore import open_store
from lobstore.adapters.http import make_app
from lobstore.adapters.http.auth import AuthSettings
from lobstore.adapters.http.scopes import ROUTE_ACCESS
from lobstore.adapters.http.throttle import FailureThrottle
from lobstore.clock import utcnow
from lobstore.credentials import IMPLIES
from lobstore.errors import StorageError
from lobstore.schema import credentials, idempotency_keys

from fake_github import APP_ID, INSTALL_ID
from wsgi_client import WsgiClient

DENIED_CODES = {"unauthenticated", "forbidden"}  # what the auth layer answers; handlers use others


def missing_rules(app) -> list[str]:
    """Routes of ``app`` without an access rule, as the lines to add to scopes.py."""
    return [f'("{route.method}", "{route.rule}", <PUBLIC|READ|WRITE|BROKER|ADMIN>),'
            for route in app.routes if (route.method, route.rule) not in ROUTE_ACCESS]


def test_every_route_of_the_app_has_an_access_rule_and_every_rule_a_route():
    app = make_app(open_store("sqlite://"))
    missing = missing_rules(app)
    assert not missing, (
        "these routes have no access rule, so with --auth required everyone is refused. Add a line "
        "for each to ROUTE_ACCESS in lobstore/adapters/http/scopes.py (use {api} for a route under "
        "both /api and /api/v1):\n  " + "\n  ".join(missing)
    )
    routes = {(route.method, route.rule) for route in app.routes}
    stale = sorted(set(ROUTE_ACCESS) - routes)
    assert not stale, f"access rules for routes the app does not have (remove them from scopes.py): {stale}"


def test_a_route_added_without_a_rule_is_refused_and_reported(store):
    app = make_app(store, auth=AuthSettings())
    app.route("/api/v1/brand-new", "GET", lambda: {"secret": "data"})
    admin = store.credentials.create("ops", scopes=["admin"]).secret
    response = WsgiClient(app).get("/api/v1/brand-new", headers=bearer(admin))
    assert response.status == 403 and "no access rule" in response.json["error"]
    assert missing_rules(app) == ['("GET", "/api/v1/brand-new", <PUBLIC|READ|WRITE|BROKER|ADMIN>),']


def test_the_openapi_document_shows_who_may_call_each_operation():
    from openapi_spec_validator import validate

    client = WsgiClient(make_app(open_store("sqlite://")))
    document = client.get("/api/openapi.json").json
    validate(document)
    assert document["components"]["securitySchemes"]["bearer"] == {**document["components"]["securitySchemes"][
        "bearer"], "type": "http", "scheme": "bearer"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            rule = ROUTE_ACCESS[method.upper(), re.sub(r"\{(\w+)\}", r"<\1>", path)]
            assert operation["x-scope"] == rule.scope, (method, path)
            assert operation["security"] == ([] if rule.scope == "public" else [{"bearer": []}])
            assert ("x-task-credential" in operation) == (rule.task is not None)
            if rule.scope != "public":
                assert {"401", "403"} <= set(operation["responses"])
    token = document["paths"]["/api/v1/token"]["post"]
    assert (token["x-scope"], token["x-task-credential"]) == ("broker", "allowed for the task named by the body: task_id")


# -- the matrix: every route × every kind of caller, on every backend ------------------------
# The policy as the issue states it, written here independently of scopes.py: (scope, whether
# a task credential may use it for its own task). A path without /api is both prefixes'. A
# route of the app not listed here is checked against its rule in scopes.py.
POLICY = {
    ("GET", "/health"): ("public", False),
    ("GET", "/openapi.json"): ("public", False),
    ("POST", "/tasks"): ("write", False),
    ("GET", "/tasks"): ("read", False),  # /api/v1: tasks; /api: the broker's registrations
    ("GET", "/tasks/<ref>"): ("read", True),
    ("PATCH", "/tasks/<ref>"): ("write", True),
    ("DELETE", "/api/v1/tasks/<ref>"): ("write", False),  # cancel
    ("POST", "/tasks/claim"): ("write", False),  # a task credential holds one task; it claims none
    ("POST", "/tasks/<ref>/heartbeat"): ("write", True),
    ("DELETE", "/api/tasks/<ref>"): ("broker", False),  # deregister (lobwife's)
    ("GET", "/tasks/<ref>/events"): ("read", True),
    ("POST", "/tasks/<ref>/events"): ("write", True),
    ("POST", "/costs"): ("write", True),
    ("GET", "/costs"): ("read", False),
    ("GET", "/costs/summary"): ("read", False),
    ("GET", "/tasks/<ref>/costs"): ("read", True),
    ("GET", "/costs/prices"): ("read", False),
    ("POST", "/costs/prices"): ("admin", False),
    ("POST", "/audits"): ("write", False),
    ("GET", "/audits"): ("read", False),
    ("PATCH", "/audits/<finding_id>"): ("write", False),
    ("POST", "/tasks/<ref>/register"): ("broker", False),
    ("POST", "/service-token"): ("admin", False),
    ("GET", "/status"): ("read", False),
    ("DELETE", "/tasks/<ref>/register"): ("broker", False),
    ("POST", "/token"): ("broker", True),
    ("GET", "/token/audit"): ("read", False),
    ("GET", "/jobs"): ("read", False),
    ("GET", "/jobs/<name>"): ("read", False),
    ("POST", "/jobs/<name>/runs"): ("admin", False),
    ("POST", "/jobs/<name>/enable"): ("admin", False),
    ("POST", "/jobs/<name>/disable"): ("admin", False),
    ("POST", "/jobs/<name>/trigger"): ("admin", False),
    ("GET", "/sync"): ("read", False),
    ("POST", "/sync/trigger"): ("admin", False),
    ("GET", "/credentials"): ("admin", False),
    ("POST", "/credentials"): ("admin", False),
    ("DELETE", "/credentials/<name>"): ("admin", False),
}
# Bodies a task credential's own-task routes are judged by (the rest: an empty object).
BODIES = {
    ("PATCH", "/tasks/<ref>"): {"status": "active", "actor": "lobster"},
    ("POST", "/tasks/<ref>/events"): {"event_type": "note"},
    ("POST", "/token"): {"task_id": "{own}"},
    ("POST", "/costs"): [{"task_id": "{own}", "model": "claude-opus-4-6", "input_tokens": 10}],
}
NAMED = ("read", "write", "broker", "admin")
# Task credentials before the rest: a cancel or a deregistration by a writer ends them.
CALLERS = ("none", "revoked", "expired", "task_other", "task_same", *NAMED)


def short(rule: str) -> str:
    return re.sub(r"^/api(/v1)?", "", rule)


def policy_of(method: str, rule: str) -> tuple[str, bool] | None:
    return POLICY.get((method, rule)) or POLICY.get((method, short(rule)))


def expected(rule_key, caller, rule) -> str:
    scope, task_ok = policy_of(*rule_key) or (rule.scope, rule.task is not None)
    if caller in ("revoked", "expired"):
        return "401"
    if scope == "public":
        return "pass"
    if caller == "none":
        return "401"
    if caller == "task_same":
        return "pass" if task_ok else "403"
    if caller == "task_other":
        return "403"
    return "pass" if scope in IMPLIES[caller] else "403"


def outcome(response) -> str:
    code = response.json.get("code") if response.content_type == "application/json" and isinstance(
        response.json, dict) else None
    if response.status in (401, 403) and code in DENIED_CODES:
        return str(response.status)
    assert response.status != 429, response.body
    return "pass"


def bearer(secret: str | None) -> dict[str, str]:
    return {} if secret is None else {"Authorization": f"Bearer {secret}"}


def test_every_route_for_every_caller(store):
    # A throttle that never slows: the revoked and expired callers fail on purpose, hundreds of times.
    # Event streams end at once: the WSGI client reads an answer to its end.
    client = WsgiClient(make_app(store, auth=AuthSettings(throttle=FailureThrottle(free_failures=10**9)),
                                 stream_seconds=0))
    secrets = {name: store.credentials.create(name, scopes=[name]).secret for name in NAMED}
    secrets["revoked"] = store.credentials.create("gone", scopes=["admin"]).secret
    store.credentials.revoke("gone")
    secrets["expired"] = store.credentials.create("old", scopes=["admin"], expires_at=utcnow() + timedelta(days=1)).secret
    with store.backend.writing() as conn:
        conn.execute(sa.update(credentials).where(credentials.c.name == "old")
                     .values(expires_at=utcnow() - timedelta(seconds=1)))
    store.jobs.record_run("task-manager", status="success")
    finding = store.audits.submit("docs", [{"severity": "info", "title": "stale page"}]).created[0]

    app_routes = sorted({(route.method, route.rule) for route in client.raw_app.routes})
    assert set(app_routes) == set(ROUTE_ACCESS)
    for method, rule in app_routes:  # the table says what the issue says
        said = policy_of(method, rule)
        if said is not None:
            access = ROUTE_ACCESS[method, rule]
            assert (access.scope, access.task is not None) == said, (method, rule)
    mismatches = []
    for method, rule in app_routes:
        own = store.tasks.create(name=f"own {method} {rule}")
        other = store.tasks.create(name=f"other {method} {rule}")
        for task in (own, other):
            store.broker.register(task.ref, repos=["minsley/lobmob"])
        secrets["task_same"] = store.credentials.create_for_task(own.ref).secret
        secrets["task_other"] = store.credentials.create_for_task(other.ref).secret
        throwaway = f"c{own.id}"
        store.credentials.create(throwaway, scopes=["read"])
        path = (rule.replace("<ref>", own.ref).replace("<finding_id>", str(finding.id))
                .replace("<name>", throwaway if "credentials" in rule else "task-manager"))
        body = json.loads(json.dumps(BODIES.get((method, short(rule)), {})).replace("{own}", own.ref))
        for caller in CALLERS:
            options = {"headers": bearer(secrets.get(caller))}
            if rule.startswith("/ui/"):  # a dashboard form, posted from the dashboard's own page
                options["headers"]["Sec-Fetch-Site"] = "same-origin"
            if method != "GET":
                options["json"] = body
            got = outcome(client.request(method, path, **options))
            want = expected((method, rule), caller, ROUTE_ACCESS[method, rule])
            if got != want:
                mismatches.append(f"{method} {path} as {caller}: expected {want}, got {got}")
    assert not mismatches, "\n".join(mismatches)


# -- lobboss, its lobster and the task credential ----------------------------------------------
@pytest.fixture
def secured(store):
    return WsgiClient(make_app(store, auth=AuthSettings()))


@pytest.fixture
def with_github(store, github, key):
    from lobstore.broker.github import GitHubAppTokenProvider

    store.set_token_provider(GitHubAppTokenProvider(APP_ID, INSTALL_ID, key, api_base=github.url, timeout=5))
    return github


def make(store, name, *scopes):
    return bearer(store.credentials.create(name, scopes=list(scopes)).secret)


def denied(response, status, *words):
    assert response.status == status, response.body
    assert response.json["code"] == ("unauthenticated" if status == 401 else "forbidden")
    for word in words:
        assert word in response.json["error"]
    return response.json


def test_lobboss_registers_a_task_and_its_lobster_works_that_task_alone(store, secured, with_github):
    lobboss = make(store, "lobboss", "write", "broker")
    for name in ("mine", "theirs"):
        assert secured.post("/api/v1/tasks", {"name": name}, headers=lobboss).status == 201
    answer = secured.post("/api/tasks/T1/register", {"repos": ["minsley/lobmob"], "lobster_type": "swe"},
                          headers=lobboss)
    assert answer.status == 200 and answer.headers["cache-control"] == "no-store"
    task_token = answer.json["task_token"]
    assert task_token.startswith("lbt_") and answer.json["task_token_expires_at"] == answer.json["expires_at"]
    secured.post("/api/tasks/T2/register", {"repos": ["minsley/unity"]}, headers=lobboss)
    lobster = bearer(task_token)

    assert secured.get("/api/v1/tasks/T1", headers=lobster).json["name"] == "mine"
    assert secured.patch("/api/v1/tasks/T1", {"status": "active", "actor": "lobster"}, headers=lobster).status == 200
    assert secured.post("/api/v1/tasks/T1/events", {"event_type": "started"}, headers=lobster).status == 201
    assert secured.post("/api/v1/costs", {"task_id": "T1", "model": "claude-opus-4-6", "input_tokens": 5},
                        headers=lobster).status == 201
    token = secured.post("/api/token", {"task_id": "T1"}, headers=lobster)
    assert token.status == 200 and token.json["token"].startswith("ghs_fake")
    assert [r["body"]["repositories"] for r in with_github.requests] == [["lobmob"]]

    # Nothing for another task, and nothing beyond its own task's status, events and costs.
    denied(secured.get("/api/v1/tasks/T2", headers=lobster), 403, "acts on T1 only", "'T2'")
    denied(secured.post("/api/token", {"task_id": "T2"}, headers=lobster), 403, "acts on T1 only")
    denied(secured.post("/api/v1/costs", [{"task_id": "T1", "model": "m"}, {"task_id": "2", "model": "m"}],
                        headers=lobster), 403, "'2'")
    denied(secured.post("/api/v1/costs", {"model": "m"}, headers=lobster), 403, "names no task")
    denied(secured.patch("/api/v1/tasks/T1", {"repos": ["evil/repo"]}, headers=lobster), 403, "not repos")
    denied(secured.patch("/api/v1/tasks/T1", {"status": "completed", "force": True}, headers=lobster), 403, "force")
    denied(secured.get("/api/v1/tasks", headers=lobster), 403, "task credential", "read scope")
    denied(secured.post("/api/tasks/T1/register", {"repos": ["minsley/secret"]}, headers=lobster), 403,
           "broker scope")
    assert [r["body"]["repositories"] for r in with_github.requests] == [["lobmob"]]  # GitHub saw nothing more

    audit = secured.get("/api/token/audit", headers=lobboss).json
    assert [(e["task_id"], e["action"], e["credential"]) for e in audit] == [
        ("T1", "task_registered", "lobboss"), ("T2", "task_registered", "lobboss"),
        ("T1", "token_issued", "task:T1")]

    assert secured.delete("/api/v1/tasks/T1/register", headers=lobboss).status == 200
    denied(secured.get("/api/v1/tasks/T1", headers=lobster), 401, "revoked")
    assert secured.get("/api/token/audit?task_id=T1", headers=lobboss).json[-1]["credential"] == "lobboss"


def test_minting_without_a_credential_is_401_and_github_sees_nothing(store, secured, with_github):
    store.tasks.create(name="a")
    store.broker.register("T1", repos=["minsley/lobmob"])
    body = denied(secured.post("/api/token", {"task_id": "T1"}), 401, "Authorization: Bearer")
    assert body["reason"] == "missing"
    response = secured.post("/api/token", {"task_id": "T1"}, headers=make(store, "dashboard", "read"))
    denied(response, 403, "needs the broker scope", "'dashboard' has read")
    denied(secured.post("/api/tasks/T1/register", {"repos": ["other-org/payroll"]}), 401)
    assert with_github.requests == []
    assert store.broker.get("T1").repos == ("minsley/lobmob",)


def test_a_registration_replayed_by_idempotency_key_never_stores_the_task_token(store, secured):
    lobboss = make(store, "lobboss", "broker", "write")
    store.tasks.create(name="a")
    headers = {**lobboss, "Idempotency-Key": "register-t1"}
    first = secured.post("/api/tasks/T1/register", {"repos": ["minsley/lobmob"]}, headers=headers)
    again = secured.post("/api/tasks/T1/register", {"repos": ["minsley/lobmob"]}, headers=headers)
    assert first.json["task_token"].startswith("lbt_")
    assert again.headers["idempotent-replayed"] == "true" and again.json["task_token"].startswith("withheld")
    made = secured.post("/api/credentials", {"name": "dash", "scopes": ["read"]},
                        headers={**make(store, "ops", "admin"), "Idempotency-Key": "dash"})
    with store.backend.reading() as conn:
        stored = " ".join(row.response_body for row in conn.execute(sa.select(idempotency_keys)))
    assert first.json["task_token"] not in stored and made.json["secret"] not in stored and "withheld" in stored
    assert secured.get("/api/v1/tasks/T1", headers=bearer(first.json["task_token"])).status == 200


def test_a_registration_without_authentication_hands_out_no_task_token(store):
    client = WsgiClient(make_app(store))  # auth off: nothing to authenticate a lobster with
    store.tasks.create(name="a")
    answer = client.post("/api/tasks/T1/register", {"repos": ["minsley/lobmob"]}, headers=bearer("anything"))
    assert answer.status == 200 and "task_token" not in answer.json
    assert store.credentials.list(include_tasks=True) == []


def test_credentials_over_http_for_admins(store, secured):
    ops = make(store, "ops", "admin")
    made = secured.post("/api/v1/credentials", {"name": "dash", "scopes": ["read"], "expires_at": "2999-01-01"},
                        headers=ops)
    assert made.status == 201 and made.json["created_by"] == "ops" and made.json["expires_at"] == "2999-01-01T00:00:00Z"
    dash = bearer(made.json["secret"])
    assert secured.get("/api/v1/tasks", headers=dash).status == 200
    listed = secured.get("/api/v1/credentials", headers=ops).json
    assert [c["name"] for c in listed] == ["ops", "dash"] and all("secret" not in c for c in listed)
    denied(secured.get("/api/v1/credentials", headers=dash), 403, "admin")
    assert secured.post("/api/v1/credentials", {"name": "x", "scopes": ["root"]}, headers=ops).status == 422
    assert secured.post("/api/v1/credentials", {"name": "dash", "scopes": ["read"]}, headers=ops).status == 409
    revoked = secured.delete("/api/v1/credentials/dash", headers=ops)
    assert revoked.status == 200 and revoked.json[0]["revoked_at"] is not None
    denied(secured.get("/api/v1/tasks", headers=dash), 401, "'dash' was revoked")
    assert secured.delete("/api/v1/credentials/dash", headers=ops).status == 404


@pytest.mark.parametrize("header", ["Basic b3BzOnB3", "Bearer", "Bearer  ", "lbs_abc", "Token lbs_x"])
def test_an_authorization_header_that_is_not_a_bearer_secret_is_401(secured, header):
    body = denied(secured.get("/api/v1/tasks", headers={"Authorization": header}), 401, "Bearer <secret>")
    assert body["reason"] == "malformed"


def test_a_401_says_how_to_authenticate(secured):
    response = secured.get("/api/v1/tasks")
    assert response.headers["www-authenticate"] == 'Bearer realm="lobstore"'


# -- what /health, /api/sync and errors show to whom -------------------------------------------
def test_health_shows_more_to_whom_may_see_more(store, secured):
    anonymous = secured.get("/health")
    assert anonymous.status == 200 and anonymous.json == {"status": "ok", "version": anonymous.json["version"],
                                                          "db": {"ok": True}}
    reader = secured.get("/health", headers=make(store, "dash", "read")).json
    assert reader["db"]["tasks"] == 0 and "uptime" in reader and reader["db"]["backend"] == store.backend.name
    assert not {"url", "path"} & set(reader["db"])
    admin = secured.get("/health", headers=make(store, "ops", "admin")).json
    assert admin["db"]["url"] == store.backend.url
    opened = WsgiClient(make_app(store)).get("/health").json  # auth off: as before
    assert opened["db"]["url"] == store.backend.url
    denied(secured.get("/health", headers=bearer("lbs_" + "x" * 43)), 401)  # a bad credential is never ignored


class FakeSync:
    def status(self):
        return {"enabled": True, "vault": "/srv/secret/vault", "interval": 300.0, "running": False,
                "last_cycle": {"time": "2026-01-01T00:00:00Z", "error": "git push https://x:tok@github.com failed"}}

    def trigger(self):
        pass


def test_the_vault_path_and_a_sync_error_only_for_admins(store):
    client = WsgiClient(make_app(store, sync=FakeSync(), auth=AuthSettings()))
    reader = client.get("/api/sync", headers=make(store, "dash", "read")).json
    assert reader["vault"] is None and "tok@" not in json.dumps(reader) and reader["interval"] == 300.0
    admin = client.get("/api/sync", headers=make(store, "ops", "admin")).json
    assert admin["vault"] == "/srv/secret/vault" and "failed" in admin["last_cycle"]["error"]


def test_a_database_error_reaches_the_client_as_an_error_id(store, monkeypatch, caplog):
    client = WsgiClient(make_app(store))

    def broken(*_args, **_filters):
        raise StorageError('the database (postgresql) failed: relation "tasks" at db.internal:5432 is locked')

    monkeypatch.setattr(store.tasks, "list_json", broken)
    response = client.get("/api/v1/tasks")
    assert response.status == 503 and response.json["code"] == "storage"
    assert "db.internal" not in response.body.decode() and "relation" not in response.body.decode()
    error_id = response.json["error_id"]
    assert re.fullmatch(r"[0-9a-f]{12}", error_id) and error_id in response.json["error"]
    logged = [r.getMessage() for r in caplog.records if error_id in r.getMessage()]
    assert len(logged) == 1 and "db.internal:5432" in logged[0] and "GET /api/v1/tasks" in logged[0]


# -- repeated bad credentials --------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_repeated_bad_credentials_from_one_address_are_slowed_and_logged_once(store, caplog):
    clock = Clock()
    throttle = FailureThrottle(free_failures=3, base_delay=10, max_delay=40, clock=clock)
    client = WsgiClient(make_app(store, auth=AuthSettings(throttle=throttle)))
    good = make(store, "dash", "read")
    wrong = bearer("lbs_" + "w" * 43)
    store.credentials.create("old", scopes=["read"])
    caplog.set_level(logging.DEBUG, logger="lobstore")

    def get(headers, addr="10.0.0.9"):
        return client.get("/api/v1/tasks", headers=headers, remote_addr=addr)

    assert [get(wrong).status for _ in range(4)] == [401, 401, 401, 401]  # the 4th starts a wait of 10 s
    slowed = get(good)  # while it waits, even a good credential from there is not checked
    assert slowed.status == 429 and slowed.headers["retry-after"] == "10"
    assert slowed.json["code"] == "too_many_failures" and slowed.json["retry_after"] == 10
    assert get(good, addr="10.0.0.10").status == 200  # other addresses are not held up
    clock.now += 11
    assert get(wrong).status == 401  # the 5th: 20 s now
    assert get(wrong).json["retry_after"] == 20
    clock.now += 21
    get(wrong), get(wrong)
    clock.now += 100
    assert get(wrong).status == 401 and get(wrong).json["retry_after"] == 40  # never more than max_delay
    clock.now += 41
    assert get(good).status == 200  # a good credential clears the address
    assert [get(wrong).status for _ in range(3)] == [401, 401, 401]

    refusals = [r for r in caplog.records if r.levelno >= logging.WARNING and "refused a credential" in r.getMessage()]
    assert len(refusals) == 1 and "10.0.0.9" in refusals[0].getMessage()  # once per name and address
    assert not any("w" * 43 in r.getMessage() for r in caplog.records)  # secrets are never logged


def test_the_throttle_forgets_quiet_addresses_and_holds_a_bounded_number():
    clock = Clock()
    throttle = FailureThrottle(max_addresses=3, free_failures=1, forget_after=60, clock=clock)
    for _ in range(2):
        throttle.failed("a", "unknown credential", "unknown")
    with pytest.raises(Exception) as caught:
        throttle.check("a")
    assert caught.value.retry_after == 1
    clock.now += 61
    throttle.check("a")  # forgotten: a fresh start
    for address in ("b", "c", "d", "e"):
        throttle.failed(address, "x", "unknown")
    assert len(throttle) == 3


@pytest.mark.parametrize("method, path, body, field", [
    ("DELETE", "/api/v1/tasks/T1/register", {"credential_id": 1}, "credential_id"),
    ("DELETE", "/api/tasks/T1", {"credential_id": 1}, "credential_id"),
    ("POST", "/api/v1/tasks/T1/register", {"repos": ["minsley/lobmob"], "may_change_repos": True}, "may_change_repos"),
    ("POST", "/api/token", {"task_id": "T1", "only_task": 2}, "only_task"),
    ("POST", "/api/v1/credentials", {"name": "x", "scopes": ["admin"], "created_by": "someone"}, "created_by"),
])
def test_no_request_body_can_say_who_asked(store, secured, method, path, body, field):
    admin = make(store, "ops", "admin")
    store.tasks.create(name="a")
    store.broker.register("T1", repos=["minsley/lobmob"])
    response = secured.request(method, path, json=body, headers=admin)
    assert response.status == 422 and response.json["field"] == field
    assert [e.credential for e in store.broker.audit()] == [None]  # only the registration above
