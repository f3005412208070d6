"""lobstore as a drop-in lobwife: every route of upstream lobwife (minsley/lobmob, commit 2617568)
answers with upstream's meaning and a superset of its fields, and the fleet's own flows work.

Written from upstream's documented behaviour (routes, fields, status codes, the order of the
fleet's calls; see /work/notes/upstream-lobwife.md), never from its code. The helpers below
make the calls lobmob's callers make, in their order, with their bodies. Every test runs on
SQLite and on PostgreSQL. Tokens come from the fake GitHub of fake_github.py, which checks the
app's JWT as GitHub would. lobwife's cron job routes (/api/jobs...) are the scheduler's to
match (issue 13); only what the JSON import carries into them is checked here.

Where lobstore differs on purpose (README, "Replacing lobwife"), the test says so.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

pytest.importorskip("cryptography")

from lobstore import open_store  # noqa: E402
from lobstore.adapters.http import make_app  # noqa: E402
from lobstore.broker.github import GitHubAppTokenProvider  # noqa: E402
from lobstore.cli import main  # noqa: E402

from fake_github import APP_ID, INSTALL_ID  # noqa: E402
from wsgi_client import WsgiClient  # noqa: E402

VAULT_REPO = "minsley/lobmob-vault"
NONE = type(None)
# The fields of upstream's GET /api/v1/tasks/{id}, with their JSON types there. broker_repos is
# a list here (upstream returned the raw JSON text of the list; nothing in the fleet reads it).
TASK_FIELDS = {
    "id": int, "name": str, "slug": (str, NONE), "type": str, "status": str, "priority": str,
    "model": (str, NONE), "assigned_to": (str, NONE), "repos": (list, NONE), "discord_thread_id": (str, NONE),
    "estimate_minutes": (int, NONE), "requires_qa": bool, "workflow": (str, NONE), "created_at": str,
    "updated_at": str, "queued_at": (str, NONE), "assigned_at": (str, NONE), "completed_at": (str, NONE),
    "broker_repos": (list, NONE), "broker_status": (str, NONE), "token_count": int,
    "broker_registered_at": (str, NONE), "task_id": str,
}
LISTED_TASK_FIELDS = {k: v for k, v in TASK_FIELDS.items() if not k.startswith("broker_") and k != "token_count"}
# An event row (upstream's task_id was the number; here it is the ref, as every other answer has it).
EVENT_FIELDS = {"id": int, "task_id": (str, int), "event_type": str, "detail": (str, NONE), "actor": (str, NONE),
                "created_at": str}
BROKER_SUMMARY = {"enabled": bool, "app_id": (str, NONE), "active_tasks": int, "total_tokens_issued": int,
                  "audit_entries": int}
REGISTRATION_FIELDS = {"repos": list, "lobster_type": (str, NONE), "registered_at": str, "status": str,
                       "token_count": int}
AUDIT_FIELDS = {"timestamp": str, "task_id": str, "repos": list, "action": str}


def assert_shape(value: dict, fields: dict) -> None:
    """Every field upstream's answer has is here, with upstream's JSON type (extra fields are fine)."""
    for name, kind in fields.items():
        assert name in value, f"{name} missing from {sorted(value)}"
        assert isinstance(value[name], kind), f"{name}: {value[name]!r} is not {kind}"


def assert_json_error(response, status: int) -> dict:
    assert response.status == status, response.body
    assert response.content_type == "application/json"
    assert isinstance(response.json["error"], str) and response.json["error"]
    return response.json


def now_z() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the fleet's callers, as upstream documents their calls ---------------------------------------
def mcp_create_task(api, name: str, **fields) -> dict:
    """lobboss's create_task MCP tool: {name, type, priority} and what else is given; reads id and task_id."""
    response = api.post("/api/v1/tasks", {"name": name, "type": "swe", "priority": "normal", **fields})
    assert response.status == 201, response.body
    assert_shape(response.json, {"id": int, "task_id": str})
    return response.json


def poller_claims(api, task: dict, job: str) -> None:
    """lobboss's task poller, for one queued task: the broker PATCH, the spawn's compat register,
    the claim, the spawned event (src/lobboss/task_poller.py, src/lobboss/mcp_tools.py)."""
    repos = [VAULT_REPO, *(task.get("repos") or [])]
    response = api.patch(f"/api/v1/tasks/{task['id']}", {
        "broker_repos": repos, "broker_status": "active",
        "broker_registered_at": datetime.now(timezone.utc).isoformat(), "actor": f"broker/{task['type']}"})
    assert response.status == 200, response.body
    response = api.post(f"/api/tasks/{task['task_id']}/register", {"repos": repos, "lobster_type": task["type"]})
    assert response.status == 200, response.body  # mcp_tools compares with 200
    response = api.patch(f"/api/v1/tasks/{task['id']}", {"status": "active", "assigned_to": job,
                                                         "assigned_at": now_z(), "actor": "task_poller"})
    assert response.status == 200, response.body
    assert api.post(f"/api/v1/tasks/{task['id']}/events", {"event_type": "spawned", "detail": f"Job {job} (swe)",
                                                           "actor": "task_poller"}).status == 201


def lobster_reports(api, db_id: int, status: str) -> None:
    """A lobster's run_task.py at the end: the status PATCH with completed_at, then the event."""
    response = api.patch(f"/api/v1/tasks/{db_id}", {"status": status, "actor": "lobster", "completed_at": now_z()})
    assert response.status == 200, response.body
    assert api.post(f"/api/v1/tasks/{db_id}/events", {"event_type": status, "detail": "turns=12 cost=$0.42",
                                                      "actor": "lobster"}).status == 201


def broker_deregister(api, ref: str):
    """The task manager's `curl -sf -X DELETE $LOBWIFE_URL/api/tasks/T<n>`: no body, no Content-Type."""
    return api.request("DELETE", f"/api/tasks/{ref}")


def lobster_token(api, ref: str):
    """What a lobster's gh wrapper and vault-clone init container ask: POST /api/token {task_id}."""
    return api.post("/api/token", {"task_id": ref})


def trail(api, db_id: int) -> list[str]:
    return [e["event_type"] for e in api.get(f"/api/v1/tasks/{db_id}/events").json]


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
def store(store, github, key):
    store.set_token_provider(GitHubAppTokenProvider(APP_ID, INSTALL_ID, key, api_base=github.url, timeout=5))
    return store


@pytest.fixture
def api(store):
    # stats_ttl=0: /health counts afresh on every call, so a test sees each change at once.
    return WsgiClient(make_app(store, stats_ttl=0))


@pytest.fixture
def vault(tmp_path):
    path = tmp_path / "vault"
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "init"], check=True)
    return path


# == one test per upstream route ==================================================================
def test_health(api, store):
    mcp_create_task(api, "a")
    mcp_create_task(api, "b")
    api.post("/api/tasks/verify-test/register", {"repos": [VAULT_REPO]})
    response = api.get("/health")
    assert response.status == 200
    health = response.json
    assert health["status"] == "ok" and isinstance(health["uptime"], float)
    assert isinstance(health["jobs_running"], int) and health["jobs_running"] == 0
    assert_shape(health["broker"], BROKER_SUMMARY)
    assert (health["broker"]["enabled"], health["broker"]["app_id"]) == (True, APP_ID)
    assert (health["broker"]["active_tasks"], health["broker"]["audit_entries"]) == (1, 1)
    assert health["db"]["ok"] is True and health["db"]["task_count"] == 2
    assert isinstance(health["db"]["size_bytes"], int) and health["db"]["size_bytes"] > 0
    store.set_token_provider(None)
    broker = api.get("/health").json["broker"]
    assert (broker["enabled"], broker["app_id"]) == (False, None)
    # A run in progress, as the process running the schedule (this one or another) records it.
    store.jobs.register("task-manager", schedule="*/5 * * * *")
    asked = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    store.jobs.request_trigger("task-manager", at=asked)
    assert store.jobs.claim_run("task-manager", started_at=asked, trigger=asked)
    assert api.get("/health").json["jobs_running"] == 1


def test_health_counts_are_cached_between_probes(store):
    api = WsgiClient(make_app(store, stats_ttl=3600))
    mcp_create_task(api, "a")
    first = api.get("/health").json["db"]
    mcp_create_task(api, "b")
    again = api.get("/health").json["db"]
    assert first["task_count"] == again["task_count"] == 1  # a probe does not count every task again
    assert again["counted_seconds_ago"] >= first["counted_seconds_ago"]
    assert WsgiClient(make_app(store, stats_ttl=0)).get("/health").json["db"]["task_count"] == 2


def test_api_status(api, store):
    store.jobs.record_run("task-manager", status="success", duration=3.2, output="ok")
    api.post("/api/tasks/verify-test/register", {"repos": [VAULT_REPO]})
    response = api.get("/api/status")
    assert response.status == 200
    status = response.json
    assert status["status"] == "ok" and isinstance(status["uptime"], float)
    assert status["jobs"]["task-manager"]["run_count"] == 1  # keyed by name, as GET /api/jobs
    assert_shape(status["broker"], BROKER_SUMMARY)
    assert status["broker"]["active_tasks"] == 1


def test_compat_register_finds_the_task_by_slug_name_or_number_and_keeps_the_id_as_given(api):
    task = mcp_create_task(api, "Broker test", slug="broker-test-slug")
    for key_ in ("broker-test-slug", "Broker test", task["task_id"], str(task["id"])):
        response = api.post(f"/api/tasks/{key_}/register", {"repos": ["minsley/lobmob"], "lobster_type": "swe"})
        assert response.status == 200
        assert (response.json["status"], response.json["task_id"], response.json["task"]) == (
            "registered", key_, task["task_id"])
    got = api.get(f"/api/v1/tasks/{task['id']}").json
    assert (got["broker_repos"], got["broker_status"]) == (["minsley/lobmob"], "active")
    assert trail(api, task["id"]).count("broker_registered") == 4
    assert api.get("/api/tasks").json.keys() == {task["task_id"]}


def test_compat_register_keeps_a_standalone_registration_for_an_id_that_names_no_task(api):
    response = api.post("/api/tasks/verify-test/register", {"repos": [VAULT_REPO], "lobster_type": "test"})
    assert response.status == 200 and response.json["status"] == "registered"
    assert (response.json["task_id"], response.json["task"]) == ("verify-test", None)
    assert api.post("/api/tasks/T99/register", {"repos": [VAULT_REPO]}).json["task_id"] == "T99"
    assert api.get("/api/v1/tasks").json == []  # no task was made
    assert [(e["task_id"], e["action"]) for e in api.get("/api/token/audit").json] == [
        ("verify-test", "task_registered"), ("T99", "task_registered")]


@pytest.mark.parametrize("body, status, field", [
    ({"lobster_type": "swe"}, 400, "repos"), ({"repos": []}, 400, "repos"),  # as upstream: "repos required"
    ({"repos": "minsley/lobmob"}, 422, "repos"),  # upstream stored a string as-is; refused here, naming it
    ({"repos": ["not a repo"]}, 422, "repos"),
])
def test_compat_register_refuses_bad_repos_naming_the_field_and_writes_nothing(api, body, status, field):
    mcp_create_task(api, "a")
    assert assert_json_error(api.post("/api/tasks/T1/register", body), status)["field"] == field
    assert api.post("/api/tasks/T1/register", body=b"{oops", content_type="application/json").status == 400
    assert api.get("/api/tasks").json == {} and api.get("/api/token/audit").json == []


def test_broker_delete_deregisters_only_and_always_answers_removed(api, github):
    task = mcp_create_task(api, "a")
    api.post(f"/api/tasks/{task['task_id']}/register", {"repos": [VAULT_REPO]})
    response = broker_deregister(api, task["task_id"])
    assert response.status == 200
    assert (response.json["status"], response.json["task_id"]) == ("removed", task["task_id"])
    got = api.get(f"/api/v1/tasks/{task['id']}").json
    assert got["status"] == "queued"  # the task is untouched: not cancelled
    assert got["broker_status"] == "deregistered"
    assert lobster_token(api, task["task_id"]).status == 403
    for name in ("never-registered", task["task_id"]):  # nothing (left) to remove: still "removed"
        again = broker_deregister(api, name)
        assert (again.status, again.json["status"], again.json["ended"]) == (200, "removed", [])
    assert [e["action"] for e in api.get("/api/token/audit").json] == ["task_registered", "task_deregistered"]


def test_broker_list_is_the_registrations_keyed_by_id(api):
    task = mcp_create_task(api, "a")
    api.post("/api/tasks/verify-test/register", {"repos": [VAULT_REPO], "lobster_type": "test"})
    api.post(f"/api/v1/tasks/{task['id']}/register", {"repos": ["minsley/lobmob"], "lobster_type": "swe"})
    listed = api.get("/api/tasks")
    assert listed.status == 200 and isinstance(listed.json, dict)
    assert set(listed.json) == {"verify-test", task["task_id"]}
    for entry in listed.json.values():
        assert_shape(entry, REGISTRATION_FIELDS)
    assert listed.json["verify-test"]["repos"] == [VAULT_REPO]
    assert listed.json["verify-test"]["lobster_type"] == "test" and listed.json["verify-test"]["status"] == "active"


def test_token_for_a_registered_task_and_refusals(api, github):
    task = mcp_create_task(api, "a", slug="the-slug")
    api.post(f"/api/tasks/{task['task_id']}/register", {"repos": [VAULT_REPO, "minsley/unity"]})
    response = lobster_token(api, task["task_id"])
    assert response.status == 200
    assert_shape(response.json, {"token": str, "expires_at": str})
    assert github.requests[-1]["body"]["repositories"] == ["lobmob-vault", "unity"]  # owner stripped
    for key_ in ("the-slug", "a"):  # upstream's lookups: slug and name too
        assert lobster_token(api, key_).json["token"] == response.json["token"]
    assert api.get(f"/api/v1/tasks/{task['id']}").json["token_count"] == 3
    assert assert_json_error(lobster_token(api, "nobody"), 403)["reason"] == "not_registered"
    assert_json_error(api.post("/api/token", {}), 400)  # upstream: "task_id required"
    assert_json_error(api.post("/api/token", body=b"not json", content_type="application/json"), 400)


def test_token_without_a_github_app_is_503_saying_not_configured(api, store):
    """lobmob verify accepts a token or an answer saying "not configured"."""
    store.set_token_provider(None)
    api.post("/api/tasks/verify-test/register", {"repos": [VAULT_REPO]})
    body = assert_json_error(lobster_token(api, "verify-test"), 503)
    assert "not configured" in body["error"]


def test_token_audit(api):
    task = mcp_create_task(api, "a")
    api.post(f"/api/tasks/{task['task_id']}/register", {"repos": [VAULT_REPO]})
    lobster_token(api, task["task_id"])
    api.post("/api/tasks/verify-test/register", {"repos": [VAULT_REPO]})
    broker_deregister(api, "verify-test")
    entries = api.get("/api/token/audit").json
    for entry in entries:
        assert_shape(entry, AUDIT_FIELDS)
    assert {e["action"] for e in entries} == {"task_registered", "token_issued", "task_deregistered"}
    assert [e["action"] for e in api.get("/api/token/audit?task_id=verify-test").json] == [
        "task_registered", "task_deregistered"]
    assert api.get("/api/token/audit?task_id=nothing-here").json == []


def test_service_token(api, github):
    response = api.post("/api/v1/service-token", {"service": "lobboss-init"})
    assert response.status == 200
    assert_shape(response.json, {"token": str, "expires_at": str})
    assert "repositories" not in github.requests[-1]["body"]  # every repository of the installation
    assert github.requests[-1]["body"]["permissions"] == {"contents": "write", "pull_requests": "write",
                                                          "metadata": "read"}
    (entry,) = api.get("/api/token/audit?task_id=lobboss-init").json
    assert (entry["action"], entry["repos"]) == ("service_token_issued", ["*"])
    for body in ({}, {"service": ""}, {"service": "   "}):  # upstream: 400 "service required"
        assert assert_json_error(api.post("/api/v1/service-token", body), 400)["field"] == "service"
    for body in ({"service": 7}, {"service": "Not A Name"}, {"service": "lobboss", "repos": ["a/b"]}):
        assert_json_error(api.post("/api/v1/service-token", body), 422)
    assert len(api.get("/api/token/audit").json) == 1


def test_create_task(api):
    response = api.post("/api/v1/tasks", {"name": "Lifecycle test task", "type": "swe", "priority": "normal",
                                          "slug": "lifecycle-test", "estimate_minutes": 30, "requires_qa": True,
                                          "repos": ["minsley/foo"], "actor": "me"})
    assert response.status == 201
    assert (response.json["id"], response.json["task_id"]) == (1, "T1")
    assert trail(api, 1) == ["created"]
    assert_json_error(api.post("/api/v1/tasks", {"type": "swe"}), 422)  # a name is required
    assert_json_error(api.post("/api/v1/tasks", {"name": "x", "status": "done"}), 422)


def test_list_tasks_newest_first_with_upstreams_default_limit_and_filters(api, store):
    with store.transaction() as tx:
        for n in range(101):
            tx.tasks.create(name=f"task {n}", type="swe" if n % 2 else "research")
    listed = api.get("/api/v1/tasks")
    assert listed.status == 200 and isinstance(listed.json, list) and len(listed.json) == 100
    assert [t["id"] for t in listed.json[:3]] == [101, 100, 99]
    for task in listed.json[:5]:
        assert_shape(task, LISTED_TASK_FIELDS)
    api.patch("/api/v1/tasks/2", {"status": "active"})
    assert [t["id"] for t in api.get("/api/v1/tasks?status=active").json] == [2]
    swe = api.get("/api/v1/tasks?status=queued&type=swe&limit=500").json
    assert len(swe) == 49 and all(t["type"] == "swe" for t in swe)
    assert len(api.get("/api/v1/tasks?status=queued&limit=500").json) == 100


def test_get_task(api):
    mcp_create_task(api, "Lifecycle test task", slug="lifecycle-test", estimate_minutes=30, requires_qa=True,
                    repos=["minsley/foo"], discord_thread_id="12345")
    response = api.get("/api/v1/tasks/1")
    assert response.status == 200
    task = response.json
    assert_shape(task, TASK_FIELDS)
    assert (task["slug"], task["estimate_minutes"], task["requires_qa"], task["repos"]) == (
        "lifecycle-test", 30, True, ["minsley/foo"])
    assert task["discord_thread_id"] == "12345" and task["task_id"] == "T1"
    assert api.get("/api/v1/tasks/T1").json == task  # the T-form too
    assert "T9" in assert_json_error(api.get("/api/v1/tasks/9"), 404)["error"]


def test_patch_task(api):
    mcp_create_task(api, "a")
    response = api.patch("/api/v1/tasks/1", {"status": "active", "assigned_to": "lobster-swe-1",
                                             "assigned_at": "2026-02-16T12:00:00Z", "actor": "task_poller"})
    assert response.status == 200
    assert (response.json["id"], response.json["task_id"]) == (1, "T1") and "status" in response.json["updated"]
    got = api.get("/api/v1/tasks/1").json
    assert (got["status"], got["assigned_to"], got["assigned_at"]) == (
        "active", "lobster-swe-1", "2026-02-16T12:00:00Z")
    # Broker fields, as tests/lobwife-db sends them after a registration.
    broker = api.patch("/api/v1/tasks/1", {"broker_repos": ["minsley/lobmob", VAULT_REPO], "token_count": 5})
    assert broker.status == 200 and {"broker_repos", "token_count"} <= set(broker.json["updated"])
    got = api.get("/api/v1/tasks/1").json
    assert (got["broker_repos"], got["broker_status"], got["token_count"]) == (
        ["minsley/lobmob", VAULT_REPO], "active", 5)
    assert trail(api, 1)[-2:] == ["broker_registered", "broker_updated"]
    assert_json_error(api.patch("/api/v1/tasks/9", {"status": "active"}), 404)
    assert_json_error(api.patch("/api/v1/tasks/1", {"status": "done"}), 422)
    assert_json_error(api.patch("/api/v1/tasks/1", body=b"{", content_type="application/json"), 400)


@pytest.mark.parametrize("body", [
    {"status": "queued", "broker_repos": [VAULT_REPO], "broker_status": None},
    {"status": "queued", "broker_repos": None, "broker_status": "active"},
    {"status": "queued", "broker_repos": [VAULT_REPO], "broker_status": "expired"},
])
def test_a_patch_that_registers_and_deregisters_is_refused_whole(api, body):
    task = mcp_create_task(api, "a")
    poller_claims(api, task, "lobster-swe-t1")
    before = (api.get("/api/v1/tasks/1").json, trail(api, 1), api.get("/api/token/audit").json)
    assert assert_json_error(api.patch("/api/v1/tasks/1", body), 422)["field"] == "broker_status"
    assert (api.get("/api/v1/tasks/1").json, trail(api, 1), api.get("/api/token/audit").json) == before


def test_cancel_task(api):
    mcp_create_task(api, "a")
    response = api.request("DELETE", "/api/v1/tasks/1")
    assert response.status == 200
    assert (response.json["id"], response.json["task_id"], response.json["status"]) == (1, "T1", "cancelled")
    assert api.get("/api/v1/tasks/1").json["status"] == "cancelled" and trail(api, 1)[-1] == "cancelled"
    assert_json_error(api.request("DELETE", "/api/v1/tasks/1"), 409)
    assert_json_error(api.request("DELETE", "/api/v1/tasks/9"), 404)


def test_task_events(api):
    mcp_create_task(api, "a", actor="me")
    api.post("/api/v1/tasks/1/events", {"event_type": "note", "detail": "test", "actor": "a"})
    events = api.get("/api/v1/tasks/1/events").json
    for event in events:
        assert_shape(event, EVENT_FIELDS)
    assert {(e["event_type"], e["actor"]) for e in events} == {("created", "me"), ("note", "a")}


def test_post_task_event(api):
    mcp_create_task(api, "a")
    response = api.post("/api/v1/tasks/1/events", {"event_type": "started", "detail": "type=swe model=opus",
                                                   "actor": "lobster"})
    assert response.status == 201
    assert (response.json["status"], response.json["task_id"]) == ("logged", "T1")
    assert_json_error(api.post("/api/v1/tasks/1/events", {"detail": "no type"}), 422)
    assert_json_error(api.post("/api/v1/tasks/9/events", {"event_type": "note"}), 404)
    assert trail(api, 1) == ["created", "started"]


def test_v1_register(api):
    mcp_create_task(api, "a")
    response = api.post("/api/v1/tasks/1/register", {"repos": [VAULT_REPO], "lobster_type": "swe"})
    assert response.status == 200
    assert (response.json["status"], response.json["task_id"]) == ("registered", "T1")
    got = api.get("/api/v1/tasks/1").json
    assert got["broker_repos"] is not None and got["broker_status"] == "active"
    assert trail(api, 1)[-1] == "broker_registered"
    assert_json_error(api.post("/api/v1/tasks/9/register", {"repos": [VAULT_REPO]}), 404)  # no fallback here
    assert_json_error(api.post("/api/v1/tasks/1/register", {"lobster_type": "swe"}), 400)


def test_sync_status_and_trigger(store, vault):
    from lobstore.sync import SyncDaemon

    daemon = SyncDaemon(store, vault, interval=3600, debounce=0.1, poll=0.05)
    api = WsgiClient(make_app(store, sync=daemon, stats_ttl=0))
    state = api.get("/api/v1/sync").json
    assert (state["enabled"], state["last_sync"], state["running"]) == (True, None, False)
    daemon.start()
    try:
        mcp_create_task(api, "synced")
        response = api.post("/api/v1/sync/trigger")
        assert response.status == 202 and response.json["status"] == "triggered"
        synced = vault / "010-tasks" / "active" / "T1.md"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the cycle writes the file, commits, then records itself
            state = api.get("/api/v1/sync").json
            if synced.exists() and state["last_sync"] is not None:
                break
            time.sleep(0.05)
        assert synced.exists() and isinstance(state["last_sync"], str) and state["running"] is True
    finally:
        daemon.stop(timeout=10)


# == the fleet's flows ============================================================================
def test_the_poller_registers_claims_and_spawns(api, github):
    task = mcp_create_task(api, "Fix login", repos=["minsley/web"], discord_thread_id="987")
    (queued,) = api.get("/api/v1/tasks?limit=100&status=queued").json  # what the poller reads
    assert queued["task_id"] == task["task_id"] and queued["type"] == "swe"
    poller_claims(api, queued, "lobster-swe-t1")
    got = api.get(f"/api/v1/tasks/{task['id']}").json
    assert (got["status"], got["assigned_to"]) == ("active", "lobster-swe-t1")
    assert (got["broker_status"], got["broker_repos"]) == ("active", [VAULT_REPO, "minsley/web"])
    assert trail(api, task["id"]) == ["created", "broker_registered", "broker_registered", "updated", "spawned"]
    # The lobster's vault-clone init container and gh wrapper then get a token for those repos.
    assert lobster_token(api, task["task_id"]).status == 200
    assert github.requests[-1]["body"]["repositories"] == ["lobmob-vault", "web"]


def test_an_orphan_is_requeued_with_its_broker_access_dropped(api):
    task = mcp_create_task(api, "a")
    poller_claims(api, task, "lobster-swe-t1")
    assert lobster_token(api, task["task_id"]).status == 200
    # The task manager (detect_orphans, elapsed < 30 min), in its order.
    broker_deregister(api, task["task_id"])
    response = api.patch(f"/api/v1/tasks/{task['id']}", {
        "status": "queued", "assigned_to": None, "assigned_at": None, "broker_repos": None, "broker_status": None,
        "actor": "task-manager"})
    assert response.status == 200, response.body
    api.post(f"/api/v1/tasks/{task['id']}/events", {"event_type": "requeued", "detail": "lobster-swe-t1 offline "
                                                    "after 12m", "actor": "task-manager"})
    got = api.get(f"/api/v1/tasks/{task['id']}").json
    assert (got["status"], got["assigned_to"], got["assigned_at"]) == ("queued", None, None)  # not cancelled
    assert got["broker_status"] != "active" and got["token_count"] == 1  # the count is kept, as upstream
    assert lobster_token(api, task["task_id"]).status == 403
    # The next poll claims it again and its new lobster gets tokens.
    assert [t["task_id"] for t in api.get("/api/v1/tasks?limit=100&status=queued").json] == [task["task_id"]]
    poller_claims(api, api.get(f"/api/v1/tasks/{task['id']}").json, "lobster-swe-t1-2")
    assert lobster_token(api, task["task_id"]).status == 200
    assert api.get(f"/api/v1/tasks/{task['id']}").json["status"] == "active"


def test_an_orphan_past_30_minutes_is_failed_and_gets_an_investigation_task(api):
    task = mcp_create_task(api, "a")
    poller_claims(api, task, "lobster-swe-t1")
    broker_deregister(api, task["task_id"])
    assert api.patch(f"/api/v1/tasks/{task['id']}", {"status": "failed", "actor": "task-manager"}).status == 200
    api.post(f"/api/v1/tasks/{task['id']}/events", {"event_type": "failed", "detail": "Orphan: lobster-swe-t1 "
                                                    "offline 41m, no PR", "actor": "task-manager"})
    investigation = mcp_create_task(api, f"Investigate failed task: {task['task_id']}", type="system",
                                    priority="high", actor="task-manager")
    got = api.get(f"/api/v1/tasks/{task['id']}").json
    assert got["status"] == "failed" and got["broker_status"] == "deregistered"
    assert trail(api, task["id"])[-3:] == ["broker_deregistered", "updated", "failed"]
    new = api.get(f"/api/v1/tasks/{investigation['id']}").json
    assert (new["type"], new["priority"], new["status"]) == ("system", "high", "queued")
    # When kubectl itself failed, the lobster was alive: its completion still lands.
    lobster_reports(api, task["id"], "completed")
    assert api.get(f"/api/v1/tasks/{task['id']}").json["status"] == "completed"


@pytest.mark.parametrize("outcome", ["completed", "failed"])
def test_a_lobster_finishes_a_task_nobody_set_active(api, outcome):
    """lobboss's spawn_lobster MCP tool only registers (no claim): the task is queued when the
    lobster reports."""
    task = mcp_create_task(api, "a")
    assert api.post(f"/api/tasks/{task['task_id']}/register", {"repos": [VAULT_REPO],
                                                               "lobster_type": "swe"}).status == 200
    assert api.get(f"/api/v1/tasks/{task['id']}").json["status"] == "queued"
    lobster_reports(api, task["id"], outcome)
    got = api.get(f"/api/v1/tasks/{task['id']}").json
    assert got["status"] == outcome and got["completed_at"] is not None


def test_the_lifecycle_of_upstreams_own_test(api):
    """tests/lobwife-task-lifecycle's steps and checks."""
    created = api.post("/api/v1/tasks", {"name": "Lifecycle test task", "type": "swe", "priority": "normal",
                                         "slug": "lifecycle-test", "estimate_minutes": 30}).json
    db_id, ref = created["id"], created["task_id"]
    got = api.get(f"/api/v1/tasks/{db_id}").json
    assert (got["status"], got["type"], got["slug"], got["estimate_minutes"]) == ("queued", "swe", "lifecycle-test", 30)
    assert api.post(f"/api/v1/tasks/{db_id}/register", {"repos": [VAULT_REPO], "lobster_type": "swe"}
                    ).json["status"] == "registered"
    assert "status" in api.patch(f"/api/v1/tasks/{db_id}", {"status": "active", "assigned_to": "lobster-swe-lifecycle",
                                                            "assigned_at": "2026-02-16T12:00:00Z",
                                                            "actor": "task_poller"}).json["updated"]
    api.post(f"/api/v1/tasks/{db_id}/events", {"event_type": "spawned", "actor": "task_poller"})
    api.post(f"/api/v1/tasks/{db_id}/events", {"event_type": "started", "actor": "lobster"})
    assert "status" in api.patch(f"/api/v1/tasks/{db_id}", {
        "status": "completed", "completed_at": "2026-02-16T12:30:00Z", "actor": "lobster"}).json["updated"]
    api.post(f"/api/v1/tasks/{db_id}/events", {"event_type": "completed", "actor": "lobster"})
    got = api.get(f"/api/v1/tasks/{db_id}").json
    assert (got["status"], got["completed_at"], got["assigned_to"]) == (
        "completed", "2026-02-16T12:30:00Z", "lobster-swe-lifecycle")
    assert {"created", "broker_registered", "spawned", "started", "completed"} <= set(trail(api, db_id))
    assert lobster_token(api, ref).status in (403, 503)
    assert api.get("/api/v1/tasks?status=completed").json
    assert isinstance(api.get("/api/v1/tasks?status=queued&type=swe").json, list)


STATE_FILES = {
    "jobs.json": {"task-manager": {"last_run": "2026-02-16T10:00:00+00:00", "last_status": "success",
                                   "last_duration": 3.2, "last_output": "ok", "run_count": 42, "fail_count": 1,
                                   "enabled": True}},
    "tasks.json": {"test-task-1": {"repos": ["minsley/lobmob"], "lobster_type": "swe",
                                   "registered_at": "2026-02-16T10:00:00+00:00", "status": "active", "token_count": 3}},
    "token-audit.json": [{"timestamp": "2026-02-16T10:00:00+00:00", "task_id": "test-task-1",
                          "repos": ["minsley/lobmob"], "action": "task_registered"}],
}


def test_the_json_state_imports_and_the_broker_view_shows_it(db_url, tmp_path, capsys):
    state = tmp_path / "state"
    state.mkdir()
    for name, data in STATE_FILES.items():
        (state / name).write_text(json.dumps(data))
    assert main(["--db", db_url, "import-json", str(state)]) == 0
    assert "imported" in capsys.readouterr().out
    assert sorted(p.name for p in state.iterdir()) == [
        "jobs.json.migrated", "tasks.json.migrated", "token-audit.json.migrated"]
    with open_store(db_url) as store:
        api = WsgiClient(make_app(store, stats_ttl=0))
        broker = api.get("/api/tasks").json
        assert list(broker) == ["test-task-1"]
        assert (broker["test-task-1"]["repos"], broker["test-task-1"]["token_count"]) == (["minsley/lobmob"], 3)
        assert api.get("/api/jobs").json["task-manager"]["run_count"] == 42
        assert [(e["task_id"], e["action"], e["timestamp"]) for e in api.get("/api/token/audit").json] == [
            ("test-task-1", "task_registered", "2026-02-16T10:00:00Z")]
        health = api.get("/health").json
        assert health["db"]["ok"] and health["broker"]["total_tokens_issued"] == 3
        assert api.get("/api/v1/tasks").json == []  # a registration, not a task


# -- the gh credential wrapper, against a real `lobstore serve` --------------------------------------
# What lobmob's gh wrapper does before running gh: with TASK_ID set, ask /api/token; else with
# SERVICE_NAME set, ask /api/v1/service-token; read the token with python3; any failure leaves it
# empty (curl -f fails on any 4xx/5xx). Written here from that description.
GH_WRAPPER = r'''
set -euo pipefail
TOKEN=""
READ='import sys,json; print(json.load(sys.stdin)["token"])'
if [[ -n "${TASK_ID:-}" ]]; then
  TOKEN=$(curl -sf -X POST "$LOBWIFE_URL/api/token" -H "Content-Type: application/json" \
          -d "{\"task_id\": \"$TASK_ID\"}" | "$PYTHON" -c "$READ") || true
elif [[ -n "${SERVICE_NAME:-}" ]]; then
  TOKEN=$(curl -sf -X POST "$LOBWIFE_URL/api/v1/service-token" -H "Content-Type: application/json" \
          -d "{\"service\": \"$SERVICE_NAME\"}" | "$PYTHON" -c "$READ") || true
fi
printf '%s' "$TOKEN"
'''
# lobboss's vault-init container reads the service token with sed, not JSON: the answer must
# carry "token" and its value on one line.
VAULT_INIT = r'''
wget -qO- --post-data='{"service":"lobboss-init"}' --header='Content-Type: application/json' \
  "$LOBWIFE_URL/api/v1/service-token" | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p'
'''


@pytest.fixture
def served(db_url, servers, github, pem, monkeypatch):
    monkeypatch.setenv("GH_APP_ID", APP_ID)
    monkeypatch.setenv("GH_APP_INSTALL_ID", INSTALL_ID)
    monkeypatch.setenv("GH_APP_PEM", base64.b64encode(pem).decode())
    monkeypatch.setenv("LOBSTORE_GITHUB_API", github.url)
    return servers(db_url)


def run_shell(script: str, url: str, **env: str) -> str:
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "LOBWIFE_URL": url, "PYTHON": sys.executable, **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_gh_wrapper_gets_a_token_for_a_task_and_for_a_service(served, github):
    url = f"http://127.0.0.1:{served.port}"
    status, _, task = served.request("POST", "/api/v1/tasks", {"name": "a", "type": "swe"})
    assert status == 201
    assert run_shell(GH_WRAPPER, url, TASK_ID=task["task_id"]) == ""  # not registered yet: gh falls back
    status, _, _ = served.request("POST", f"/api/tasks/{task['task_id']}/register", {"repos": [VAULT_REPO]})
    assert status == 200
    token = run_shell(GH_WRAPPER, url, TASK_ID=task["task_id"])
    assert token.startswith("ghs_fake") and github.requests[-1]["body"]["repositories"] == ["lobmob-vault"]
    service = run_shell(GH_WRAPPER, url, SERVICE_NAME="lobsigliere")
    assert service.startswith("ghs_fake") and service != token
    assert "repositories" not in github.requests[-1]["body"]
    assert run_shell(VAULT_INIT, url).startswith("ghs_fake")
    _, _, audit = served.request("GET", "/api/token/audit")
    assert [(e["task_id"], e["action"]) for e in audit] == [
        (task["task_id"], "task_registered"), (task["task_id"], "token_issued"),
        ("lobsigliere", "service_token_issued"), ("lobboss-init", "service_token_issued")]
    assert served.terminate() == 0
