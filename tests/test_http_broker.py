"""The token broker and cron job routes over HTTP (WSGI), on every backend: issue 6's acceptance
as lobsters and lobwife's scheduler see it. Tokens come from the fake GitHub of fake_github.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

pytest.importorskip("cryptography")

from lobstore.adapters.http import make_app  # noqa: E402
from lobstore.errors import JobRunningError  # noqa: E402
from lobstore.broker.github import GitHubAppTokenProvider  # noqa: E402

from fake_github import APP_ID, INSTALL_ID  # noqa: E402
from wsgi_client import WsgiClient, assert_error  # noqa: E402

AUDIT_KEYS = {"timestamp", "task_id", "repos", "action", "credential"}  # lobwife's, and who asked
# Upstream lobwife's fields, then lobstore's.
JOB_KEYS = {"description", "schedule", "enabled", "running", "last_run", "last_status", "last_duration", "run_count",
            "fail_count", "next_run", "script", "command", "concurrency", "timeout", "last_output", "last_exit_code",
            "skip_count", "last_skipped_at", "running_since"}


@pytest.fixture
def with_github(store, github, key):
    """The store's token provider is the GitHub App provider, talking to the fake GitHub."""
    store.set_token_provider(GitHubAppTokenProvider(APP_ID, INSTALL_ID, key, api_base=github.url, timeout=5))
    return github


def audit(client, query=""):
    return [(e["task_id"], e["action"]) for e in client.get(f"/api/token/audit{query}").json]


def register(client, ref="T1", api="/api", **body):
    return client.post(f"{api}/tasks/{ref}/register", {"repos": ["minsley/lobmob"], "lobster_type": "swe", **body})


# -- registration ---------------------------------------------------------------------------
def test_register_answers_registered_and_the_task_shows_it(client, api):
    client.post("/api/tasks", {"name": "a"})
    response = register(client, api=api, actor="lobster-swe-t1")
    assert response.status == 200
    body = response.json
    assert (body["status"], body["task_id"], body["repos"], body["lobster_type"]) == (
        "registered", "T1", ["minsley/lobmob"], "swe")
    assert body["token_count"] == 0 and body["expires_at"] > body["registered_at"]
    task = client.get("/api/tasks/T1").json
    assert (task["broker_status"], task["broker_repos"]) == ("active", ["minsley/lobmob"])
    assert audit(client) == [("T1", "task_registered")]
    events = client.get("/api/tasks/T1/events").json
    assert (events[-1]["event_type"], events[-1]["actor"]) == ("broker_registered", "lobster-swe-t1")


@pytest.mark.parametrize("body", [{"lobster_type": "swe"}, {"repos": None}, {"repos": []}])
def test_register_without_repos_is_400_as_today_and_writes_nothing(client, body):
    client.post("/api/tasks", {"name": "a"})
    error = assert_error(client.post("/api/tasks/T1/register", body), 400, field="repos")
    assert "repos" in error["error"]
    assert client.get("/api/tasks/T1").json["broker_status"] is None and audit(client) == []


@pytest.mark.parametrize("body, field", [
    ({"repos": "minsley/lobmob"}, "repos"), ({"repos": ["not a repo"]}, "repos"),
    ({"repos": ["minsley/lobmob"], "lobster_type": "Has Space"}, "lobster_type"),
    ({"repos": ["minsley/lobmob"], "ttl": 60}, "ttl"), ({"repos": ["minsley/lobmob"], "actor": 5}, "actor"),
])
def test_register_with_bad_fields_is_422_and_writes_nothing(client, body, field):
    client.post("/api/tasks", {"name": "a"})
    assert_error(client.post("/api/tasks/T1/register", body), 422, "invalid", field)
    assert client.get("/api/tasks/T1").json["broker_status"] is None and audit(client) == []


def test_register_an_unknown_or_ended_task(client):
    assert_error(register(client, "T9", api="/api/v1"), 404, "not_found")  # v1: the task must exist
    client.post("/api/tasks", {"name": "a"})
    client.patch("/api/tasks/T1", {"status": "completed", "force": True})
    for api in ("/api", "/api/v1"):
        assert_error(register(client, api=api), 409, "conflict")
    assert audit(client) == []


def test_deregister_ends_it_and_tokens_are_refused_after(client, with_github, api):
    client.post("/api/tasks", {"name": "a"})
    register(client)
    response = client.delete(f"{api}/tasks/T1/register", {"actor": "lobboss", "reason": "done"})
    assert response.status == 200
    assert (response.json["task_id"], response.json["status"]) == ("T1", "deregistered")
    assert client.get("/api/tasks/T1").json["status"] == "queued"  # the task itself carries on
    body = assert_error(client.post("/api/token", {"task_id": "T1"}), 403, "token_refused")
    assert body["reason"] == "deregistered"
    assert client.request("DELETE", f"{api}/tasks/T1/register").status == 200  # again: unchanged
    assert audit(client) == [("T1", "task_registered"), ("T1", "task_deregistered")]
    assert with_github.requests == []


def test_deregister_refusals(client):
    client.post("/api/tasks", {"name": "a"})
    assert_error(client.request("DELETE", "/api/tasks/T1/register"), 404, "not_found")  # never registered
    assert_error(client.request("DELETE", "/api/tasks/T2/register"), 404, "not_found")
    register(client)
    assert_error(client.delete("/api/tasks/T1/register", {"force": True}), 422, field="force")
    assert client.get("/api/tasks/T1").json["broker_status"] == "active"


def test_cancelling_a_task_over_http_deregisters_it(client, with_github):
    client.post("/api/tasks", {"name": "a"})
    register(client)
    assert client.post("/api/token", {"task_id": "T1"}).status == 200
    assert client.delete("/api/v1/tasks/T1", {"actor": "lobboss"}).status == 200
    task = client.get("/api/tasks/T1").json
    assert (task["status"], task["broker_status"], task["token_count"]) == ("cancelled", "deregistered", 1)
    assert audit(client)[-1] == ("T1", "task_deregistered")
    assert assert_error(client.post("/api/token", {"task_id": "T1"}), 403)["reason"] == "terminal"


# -- tokens ---------------------------------------------------------------------------------
def test_a_token_comes_from_github_for_the_tasks_repos_and_is_reused(client, with_github, api):
    client.post("/api/tasks", {"name": "a", "legacy_id": "test-task-1"})
    register(client, repos=["minsley/lobmob", "minsley/unity"])
    response = client.post(f"{api}/token", {"task_id": "test-task-1", "actor": "lobster-swe-t1"})
    assert response.status == 200
    assert set(response.json) == {"token", "expires_at"} and response.json["token"] == "ghs_fake1"
    assert response.headers["cache-control"] == "no-store"
    (request,) = with_github.requests
    assert request["body"]["repositories"] == ["lobmob", "unity"]  # the fake checked the JWT too
    again = client.post(f"{api}/token", {"task_id": "T1"})
    assert again.json == response.json and len(with_github.requests) == 1  # reused, not minted
    assert client.get("/api/tasks/T1").json["token_count"] == 2
    assert audit(client, "?task_id=T1") == [("T1", "task_registered"), ("T1", "token_issued"), ("T1", "token_issued")]
    assert all("ghs_" not in str(e) for e in client.get("/api/tasks/T1/events").json)


@pytest.mark.parametrize("setup, task_id, reason", [
    ("none", "T9", "not_registered"),  # the old broker answered 403 for a task it did not know
    ("none", "T1", "not_registered"),
    ("expired", "T1", "expired"),
    ("completed", "T1", "terminal"),
])
def test_tokens_are_refused_with_403_saying_why(client, store, with_github, setup, task_id, reason):
    client.post("/api/tasks", {"name": "a"})
    if setup == "expired":
        store.broker.register("T1", repos=["minsley/lobmob"], ttl=timedelta(microseconds=1))
    if setup == "completed":
        register(client)
        client.patch("/api/tasks/T1", {"status": "completed", "force": True})
    body = assert_error(client.post("/api/token", {"task_id": task_id}), 403, "token_refused")
    assert body["reason"] == reason
    assert with_github.requests == [] and client.get("/api/tasks/T1").json["token_count"] == 0


def test_without_a_provider_tokens_answer_503_saying_what_to_set(client, api):
    client.post("/api/tasks", {"name": "a"})
    register(client)
    body = assert_error(client.post(f"{api}/token", {"task_id": "T1"}), 503, "no_token_provider")
    assert "GH_APP_ID" in body["error"]
    assert client.get("/api/tasks/T1").json["token_count"] == 0


@pytest.mark.parametrize("status, message", [(401, "Bad credentials"), (422, "repository does not exist"),
                                             (500, "Server Error")])
def test_a_github_error_is_503_with_githubs_status_and_reason(client, with_github, status, message):
    client.post("/api/tasks", {"name": "a"})
    register(client)
    with_github.fail = (status, f'{{"message": "{message}"}}'.encode())
    body = assert_error(client.post("/api/token", {"task_id": "T1"}), 503, "token_provider_failed")
    assert body["upstream_status"] == status and message in body["reason"]
    assert client.get("/api/tasks/T1").json["token_count"] == 0
    assert audit(client) == [("T1", "task_registered")]
    with_github.fail = None  # GitHub is back: the next request mints a token
    assert client.post("/api/token", {"task_id": "T1"}).status == 200


@pytest.mark.parametrize("body, status, field", [
    ({}, 400, "task_id"), ({"task_id": None}, 400, "task_id"), ({"task_id": ""}, 400, "task_id"),  # as lobwife
    ({"task_id": "T1", "repos": ["x/y"]}, 422, "repos"), ({"task_id": "T1", "actor": ["me"]}, 422, "actor")])
def test_bad_token_requests_are_4xx_naming_the_field(client, with_github, body, status, field):
    client.post("/api/tasks", {"name": "a"})
    register(client)
    assert_error(client.post("/api/token", body), status, field=field)
    assert with_github.requests == [] and client.get("/api/tasks/T1").json["token_count"] == 0


def test_token_audit_entries_have_lobwifes_shape(client, store, with_github, api):
    for name in ("a", "b"):
        client.post("/api/tasks", {"name": name})
    register(client, "T1")
    register(client, "T2", repos=["minsley/unity"])
    client.post("/api/token", {"task_id": "T2"})
    store.broker.register("T1", repos=["minsley/lobmob"], ttl=timedelta(microseconds=1))
    store.broker.expire()
    entries = client.get(f"{api}/token/audit").json
    assert all(set(e) == AUDIT_KEYS for e in entries)
    assert [(e["task_id"], e["action"]) for e in entries] == [
        ("T1", "task_registered"), ("T2", "task_registered"), ("T2", "token_issued"),
        ("T1", "task_registered"), ("T1", "registration_expired")]
    assert entries[2]["repos"] == ["minsley/unity"] and entries[0]["timestamp"].endswith("Z")
    assert [e["action"] for e in client.get(f"{api}/token/audit?task_id=T2").json] == ["task_registered", "token_issued"]
    assert [e["action"] for e in client.get(f"{api}/token/audit?limit=1").json] == ["registration_expired"]
    assert client.get(f"{api}/token/audit?task_id=T9").json == []  # nothing recorded under T9, as lobwife said
    assert_error(client.get(f"{api}/token/audit?limit=0"), 422, field="limit")
    assert_error(client.get(f"{api}/token/audit?action=token_issued"), 422, field="action")


# -- cron jobs ------------------------------------------------------------------------------
def test_recording_runs_makes_a_job_known_and_counts_them(client, api):
    response = client.post(f"{api}/jobs/task-manager/runs", {"status": "success", "duration": 3.2, "output": "ok",
                                                            "finished_at": "2026-02-16T10:00:00Z"})
    assert response.status == 201
    job = response.json
    assert (job["name"], job["run_count"], job["fail_count"], job["last_output"]) == ("task-manager", 1, 0, "ok")
    client.post(f"{api}/jobs/task-manager/runs", {"status": "failed", "output": "\n".join(map(str, range(250)))})
    jobs = client.get(f"{api}/jobs").json
    assert list(jobs) == ["task-manager"] and set(jobs["task-manager"]) == JOB_KEYS
    assert (jobs["task-manager"]["run_count"], jobs["task-manager"]["fail_count"]) == (2, 1)
    assert jobs["task-manager"]["last_status"] == "failed"
    detail = client.get(f"{api}/jobs/task-manager").json
    assert set(detail) == JOB_KEYS | {"name"}
    lines = detail["last_output"].splitlines()
    assert "50 earlier lines truncated" in lines[0] and lines[1:] == [str(n) for n in range(50, 250)]


def test_enable_and_disable(client, api):
    client.post("/api/jobs/nightly-audit/runs", {"status": "success"})
    response = client.post(f"{api}/jobs/nightly-audit/disable")
    assert response.status == 200 and response.json["message"] == "Job nightly-audit disabled"
    assert response.json["enabled"] is False
    assert client.get("/api/jobs").json["nightly-audit"]["enabled"] is False
    response = client.post(f"{api}/jobs/nightly-audit/enable", {})
    assert (response.json["message"], response.json["enabled"]) == ("Job nightly-audit enabled", True)
    assert_error(client.post(f"{api}/jobs/nightly-audit/disable", {"now": True}), 422, field="now")
    assert client.get("/api/jobs/nightly-audit").json["enabled"] is True
    body = assert_error(client.post(f"{api}/jobs/nope/disable"), 404, "not_found")
    assert body["message"] == body["error"] == "Unknown job: nope"
    assert_error(client.get(f"{api}/jobs/nope"), 404, "not_found")


@pytest.mark.parametrize("target, body, field", [
    ("/api/jobs/task-manager/runs", {}, "status"),
    ("/api/jobs/task-manager/runs", {"status": "ok"}, "status"),
    ("/api/jobs/task-manager/runs", {"status": "success", "duration": -1}, "duration"),
    ("/api/jobs/task-manager/runs", {"status": "success", "duration": "3s"}, "duration"),
    ("/api/jobs/task-manager/runs", {"status": "success", "output": 5}, "output"),
    ("/api/jobs/task-manager/runs", {"status": "success", "finished_at": "later"}, "finished_at"),
    ("/api/jobs/task-manager/runs", {"status": "success", "run_count": 9}, "run_count"),
    ("/api/jobs/bad%20name/runs", {"status": "success"}, "name"),
    ("/api/jobs/-x/runs", {"status": "success"}, "name"),
])
def test_bad_runs_are_422_and_change_nothing(client, target, body, field):
    client.post("/api/jobs/task-manager/runs", {"status": "success"})
    assert_error(client.post(target, body), 422, "invalid", field)
    jobs = client.get("/api/jobs").json
    assert list(jobs) == ["task-manager"] and jobs["task-manager"]["run_count"] == 1


class FakeRunner:
    """A scheduler as the store sees it; the real one is tested in test_jobs.py."""

    def __init__(self, running=()):
        self.triggered: list[str] = []
        self.running = set(running)

    def job_names(self):
        return ["task-manager", "busy"]

    def trigger_job(self, name):
        if name in self.running:
            raise JobRunningError(f"Job {name} is already running", job=name)
        self.triggered.append(name)

    def next_slot(self, name):
        return None


def test_trigger_without_a_runner_is_503_saying_so(client, api):
    client.post("/api/jobs/task-manager/runs", {"status": "success"})
    body = assert_error(client.post(f"{api}/jobs/task-manager/trigger"), 503, "no_job_runner")
    assert "runner" in body["error"] and body["message"] == body["error"]
    assert_error(client.post(f"{api}/jobs/nope/trigger"), 404, "not_found")


def test_trigger_asks_the_attached_runner(client, store, api):
    runner = FakeRunner(running={"busy"})
    store.set_job_runner(runner)
    response = client.post(f"{api}/jobs/task-manager/trigger")
    assert response.status == 200 and response.json == {"message": "Job task-manager triggered"}
    assert runner.triggered == ["task-manager"]
    body = assert_error(client.post(f"{api}/jobs/busy/trigger"), 409, "job_running")
    assert body["message"] == "Job busy is already running"
    body = assert_error(client.post(f"{api}/jobs/unknown/trigger"), 404, "not_found")
    assert body["message"] == "Unknown job: unknown"
    assert_error(client.post(f"{api}/jobs/task-manager/trigger", {"at": "now"}), 422, field="at")
    assert runner.triggered == ["task-manager"]


def test_openapi_schemas_list_the_fields_the_api_gives(client):
    schemas = client.get("/api/openapi.json").json["components"]["schemas"]
    assert set(schemas["Job"]["properties"]) == JOB_KEYS
    assert set(schemas["TokenAuditEntry"]["properties"]) == AUDIT_KEYS


# -- what the HTTP layer refuses on every new write route, before the library sees it --------
NEW_WRITES = [("POST", "/costs"), ("POST", "/costs/prices"), ("POST", "/audits"), ("PATCH", "/audits/1"),
              ("POST", "/tasks/T1/register"), ("DELETE", "/tasks/T1/register"), ("POST", "/token"),
              ("POST", "/jobs/task-manager/runs"), ("POST", "/jobs/task-manager/enable"),
              ("POST", "/jobs/task-manager/disable"), ("POST", "/jobs/task-manager/trigger")]


def snapshot(client):
    """Everything these routes could change, as a client reads it."""
    return [client.get(path).json for path in ("/api/tasks", "/api/costs", "/api/costs/prices?history=true",
                                               "/api/audits", "/api/token/audit", "/api/jobs",
                                               "/api/tasks/T1/events")]


@pytest.fixture
def seeded(store):
    client = WsgiClient(make_app(store, max_body=1000))
    client.post("/api/tasks", {"name": "a"})
    register(client)
    client.post("/api/audits", {"audit_type": "security", "findings": [{"severity": "info", "title": "a"}]})
    client.post("/api/jobs/task-manager/runs", {"status": "success"})
    return client


@pytest.mark.parametrize("method, path", NEW_WRITES)
def test_new_write_routes_refuse_what_is_not_json_too_large_or_unreadable(seeded, api, method, path):
    before = snapshot(seeded)
    body = b'{"model": "m", "status": "resolved", "repos": ["a/b"], "task_id": "T1"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        assert_error(seeded.request(method, api + path, body=body, content_type=content_type),
                     415, "unsupported_media_type")
    assert_error(seeded.request(method, api + path, json={"detail": "x" * 2000}), 413, "too_large")
    assert_error(seeded.request(method, api + path, body=b'{"model": ', content_type="application/json"),
                 400, "malformed")
    assert snapshot(seeded) == before
