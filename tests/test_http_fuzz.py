"""Malformed requests, hundreds of them: every answer is a JSON 4xx and nothing changes."""

from __future__ import annotations

import json
import random

import pytest

from lobstore.adapters.http import make_app
from lobstore.repositories.events import EVENT_CLEANERS
from lobstore.repositories.tasks import CREATE_CLEANERS, UPDATE_OPTION_CLEANERS

from wsgi_client import WsgiClient

SEED = 20260216
MAX_BODY = 4096

# Values of the wrong type or out of range for every field they are put in below.
BAD_VALUES = [
    None, [], {}, [None], {"a": 1}, 1.5, -1, 10**40, -(10**40), 1e308, True, "", " ", "\x00",
    "x" * 600, "\ud800", "💥" * 300, "9" * 5000,
]
TASK_FIELDS = ["name", "type", "status", "priority", "repos", "tags", "estimate_minutes", "requires_qa",
               "queued_at", "expected_version", "force", "actor", "created_at"]
EVENT_FIELDS = ["event_type", "detail", "data", "actor"]
TASK_CLEANERS = {**CREATE_CLEANERS, **UPDATE_OPTION_CLEANERS}
BROKEN_JSON = [
    b"{", b"}", b'{"name": }', b'{"name": "a",}', b"{'name': 'a'}", b'{"name": "a"', b"NaN", b'{"a": Infinity}',
    b'{"a": -Infinity}', b"\xff\xfe\x00{", b'{"name": "\xc3\x28"}', b"[" * 5000 + b"]" * 5000, b"\x00",
    b'{"name": "a"}{"name": "b"}', b"\xef\xbb\xbf{}", b"01", b'{"a": 1e99999}', b"tru", b'"\\ud800',
]
JSON_NOT_OBJECTS = [b"[]", b"1", b'"x"', b"null", b"true", b"9" * 4000, b"-0.0e-5"]
CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded", "text/json", "application/xml",
                 "multipart/form-data", "", "application/json-patch+json", "image/png", "*/*", "💥"]
PATH_JUNK = [
    "/api/tasks/T1/", "/api/tasks//events", "/api//tasks", "/API/tasks", "/api/tasks/T1/events/x",
    "/api/tasks/%00", "/api/tasks/..%2F..%2Fetc%2Fpasswd", "/api/tasks/" + "9" * 400, "/api/tasks/T-1",
    "/api/tasks/%F0%9F%92%A5", "/api/tasks/%ff%fe", "/api/tasks/T1%20", "/api/tasks/%E2%80%AE1T",
    "/api/tasks/" + "a" * 5000, "/api/v1/v1/tasks", "/api/tasks/T1/events%00", "/%2e%2e/api/tasks",
    "/api/tasks/T99999999999999999999", "/health/", "/api/openapi.json/x",
]
QUERY_JUNK = [
    "limit=-1", "limit=1e3", "limit=" + "9" * 5000, "limit=", "limit=%00", "after=T0", "after=%ff",
    "status=", "status=%E2%80%AE", "created_since=2026-13-45", "order=", "x=1", "limit=1&limit=2",
    "&&&=&", "%ff=1", "status=queued&bogus", "repo=a/b/c", "created_until=" + "2" * 300,
    "updated_since=0001-01-01T00:00:00%2B01:00", "a" * 2000 + "=1",
]


def refused(cleaner) -> list:
    """The bad values this field's library cleaner refuses (null is fine for some fields)."""
    out = []
    for value in BAD_VALUES:
        try:
            cleaner(value)
        except ValueError:
            out.append(value)
    return out


def malformed_requests(rng: random.Random) -> list[tuple[str, str, dict]]:
    """(method, target, request options) for requests that must all be refused with a 4xx."""
    out: list[tuple[str, str, dict]] = []
    writes = [("POST", "/api/tasks"), ("PATCH", "/api/tasks/T1"), ("POST", "/api/tasks/T1/events"),
              ("DELETE", "/api/tasks/T1")]
    # Broken JSON, and JSON that is not an object, to every route that reads a body.
    for body in BROKEN_JSON + JSON_NOT_OBJECTS:
        method, path = rng.choice(writes)
        out.append((method, rng.choice(["/api", "/api/v1"]) + path[4:], {"body": body, "content_type": "application/json"}))
    # Every task field with values of the wrong type or range (those its cleaner refuses).
    for field in TASK_FIELDS:
        for value in rng.sample(refused(TASK_CLEANERS[field]), 6):
            if field in UPDATE_OPTION_CLEANERS and field != "actor" or rng.random() < 0.5:
                method, path, body = "PATCH", "/api/tasks/T1", {field: value}
                if field in UPDATE_OPTION_CLEANERS:
                    body["name"] = "fuzz"  # a real change, so only the bad option can refuse it
            else:
                method, path, body = "POST", "/api/tasks", {"name": "fuzz", field: value}
            out.append((method, path, {"body": json.dumps(body).encode(), "content_type": "application/json"}))
    # Event fields with wrong types, and event types clients may not post.
    for field in EVENT_FIELDS:
        for value in rng.sample(refused(EVENT_CLEANERS[field]), 6):
            body = {"event_type": "note", field: value}
            out.append(("POST", "/api/tasks/T1/events", {"body": json.dumps(body).encode(), "content_type": "application/json"}))
    for depth in (33, 500, 980):  # deeper than allowed, yet shallow enough for the JSON parser
        body = b'{"event_type": "note", "data": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
        out.append(("POST", "/api/tasks/T1/events", {"body": body, "content_type": "application/json"}))
    for event_type in ("created", "updated", "cancelled", "Note", "1x", "", "a b", "é"):
        out.append(("POST", "/api/tasks/T1/events", {"json": {"event_type": event_type}}))
    # Unknown fields, with unicode names.
    for name in ("colour", "ïd", "💥", "", "Name", "task_id", "id", "version", "events", "\u202e"):
        out.append((rng.choice(["POST", "PATCH"]), rng.choice(["/api/tasks", "/api/tasks/T1"]),
                    {"json": {"name": "fuzz", name: 1}}))
    # Empty bodies and wrong content types.
    for method, path in writes[:3]:
        out.append((method, path, {"body": b"", "content_type": "application/json"}))
        out.append((method, path, {"body": b""}))
        for content_type in CONTENT_TYPES:
            out.append((method, path, {"body": b'{"name": "fuzz", "event_type": "note"}', "content_type": content_type}))
    # Bodies over the limit, some claiming a length they do not have.
    for method, path in writes:
        out.append((method, path, {"json": {"name": "fuzz", "description": "x" * MAX_BODY}}))
        out.append((method, path, {"body": b"{}", "content_type": "application/json", "content_length": "9" * 30}))
    # Path and query junk, with every method.
    for path in PATH_JUNK:
        out.append((rng.choice(["GET", "POST", "PATCH", "DELETE", "PUT"]), path, {"json": {"name": "fuzz"}}))
    for query in QUERY_JUNK:
        out.append(("GET", rng.choice(["/api/tasks?", "/api/v1/tasks?", "/api/tasks/T1/events?"]) + query, {}))
        out.append(("GET", "/api/tasks/T1?" + query, {}))
    # Methods no route takes, and refs that name no task.
    for method in ("PUT", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "BREW"):
        out.append((method, rng.choice(["/api/tasks", "/api/tasks/T1", "/health"]), {"lint": False}))
    for ref in ("T2", "0", "-1", "T", "t", "legacy\u202eid", "%20", "T1.0", "0x1", "T01e1"):
        out.append((rng.choice(["GET", "PATCH", "DELETE"]), f"/api/tasks/{ref}", {"json": {"name": "b"}}))
    # Statuses that do not exist, and stale versions.
    for status in ("done", "system-done"):
        out.append(("PATCH", "/api/tasks/T1", {"json": {"status": status}}))
    out.append(("PATCH", "/api/tasks/T1", {"json": {"status": "completed", "expected_version": 7}}))
    out.append(("PATCH", "/api/tasks/T1", {"json": {"name": "b"}, "headers": {"If-Match": '"v7"'}}))
    out.append(("PATCH", "/api/tasks/T1", {"json": {"name": "b"}, "headers": {"If-Match": "💥"}}))
    return out


def assert_all_refused(client, requests: list[tuple[str, str, dict]]) -> None:
    """Each request gets a JSON 4xx with an error message and a code."""
    for method, target, options in requests:
        response = client.request(method, target, **options)
        what = f"{method} {target[:80]} {str(options)[:160]} -> {response.status} {response.body[:200]!r}"
        assert 400 <= response.status < 500, what
        assert response.content_type == "application/json", what
        body = response.json
        assert isinstance(body.get("error"), str) and isinstance(body.get("code"), str), what


def test_malformed_requests_get_json_4xx_answers_and_change_nothing(store):
    client = WsgiClient(make_app(store, max_body=MAX_BODY))
    assert client.post("/api/tasks", {"name": "the one task", "actor": "setup"}).status == 201
    before = (client.get("/api/tasks/T1").json, store.events.latest_id())
    requests = malformed_requests(random.Random(SEED))
    assert len(requests) >= 200
    assert_all_refused(client, requests)
    assert (client.get("/api/tasks/T1").json, store.events.latest_id()) == before
    assert store.tasks.count() == 1


@pytest.mark.parametrize("seed", range(3))
def test_random_bytes_as_bodies_get_json_4xx(store, seed):
    rng = random.Random(seed)
    client = WsgiClient(make_app(store))
    client.post("/api/tasks", {"name": "a"})
    for _ in range(40):
        body = rng.randbytes(rng.randrange(0, 300))
        response = client.request(rng.choice(["POST", "PATCH"]), rng.choice(["/api/tasks", "/api/tasks/T1"]),
                                  body=body, content_type=rng.choice(["application/json", "text/plain"]))
        assert 400 <= response.status < 500 and response.json["code"], response.body
    assert store.tasks.count() == 1


# -- costs, audits, the token broker and cron jobs ---------------------------------------------
def fleet_malformed_requests(rng: random.Random) -> list[tuple[str, str, dict]]:
    """Malformed requests to the write routes of costs, audits, the broker and jobs."""
    from lobstore.repositories.audits import FINDING_CLEANERS, RUN_CLEANERS as AUDIT_RUN_CLEANERS
    from lobstore.repositories.broker import REGISTER_CLEANERS
    from lobstore.repositories.costs import EVENT_CLEANERS as COST_CLEANERS, PRICE_CLEANERS
    from lobstore.repositories.jobs import RUN_CLEANERS as JOB_RUN_CLEANERS

    out: list[tuple[str, str, dict]] = []
    writes = [("POST", "/api/costs"), ("POST", "/api/costs/prices"), ("POST", "/api/audits"),
              ("PATCH", "/api/audits/1"), ("POST", "/api/tasks/T1/register"), ("DELETE", "/api/tasks/T1/register"),
              ("POST", "/api/token"), ("POST", "/api/jobs/task-manager/runs"),
              ("POST", "/api/jobs/task-manager/enable"), ("POST", "/api/jobs/task-manager/trigger")]
    as_json = lambda body: {"body": json.dumps(body).encode(), "content_type": "application/json"}  # noqa: E731
    price = {"model": "fuzz", "input_usd_per_mtok": 1, "output_usd_per_mtok": 2}
    for body in BROKEN_JSON + JSON_NOT_OBJECTS:
        method, path = rng.choice(writes)
        out.append((method, rng.choice(["/api", "/api/v1"]) + path[4:], {"body": body, "content_type": "application/json"}))
    for method, path in writes:
        for content_type in rng.sample(CONTENT_TYPES, 3):
            out.append((method, path, {"body": b'{"model": "fuzz"}', "content_type": content_type}))
        out.append((method, path, {"json": {"model": "fuzz", "description": "x" * MAX_BODY}}))
        out.append((method, path, {"body": b"{}", "content_type": "application/json", "content_length": "9" * 30}))
    # Each field of each body, with values of the wrong type or range, alone and in batches.
    for cleaners, make in [
        (COST_CLEANERS, lambda f, v: ("POST", "/api/costs", {"model": "fuzz", "task_id": "T1", f: v})),
        (COST_CLEANERS, lambda f, v: ("POST", "/api/costs", [{"model": "fuzz"}] * 3 + [{"model": "fuzz", f: v}])),
        (PRICE_CLEANERS, lambda f, v: ("POST", "/api/costs/prices", {**price, f: v})),
        (FINDING_CLEANERS, lambda f, v: ("POST", "/api/audits", {
            "audit_type": "fuzz", "close_missing": True,
            "findings": [{"severity": "critical", "title": "new", f: v}]})),
        (AUDIT_RUN_CLEANERS, lambda f, v: ("POST", "/api/audits", {
            "audit_type": "security", "findings": [], "close_missing": True, f: v})),
        (REGISTER_CLEANERS, lambda f, v: ("POST", "/api/tasks/T1/register", {"repos": ["fuzz/fuzz"], f: v})),
        (JOB_RUN_CLEANERS, lambda f, v: ("POST", "/api/jobs/task-manager/runs", {"status": "success", f: v})),
    ]:
        for field, cleaner in cleaners.items():
            for value in rng.sample(refused(cleaner), min(4, len(refused(cleaner)))):
                method, path, body = make(field, value)
                out.append((method, path, as_json(body)))
    # Unknown fields, including names that clash with Python parameters.
    valid = [{"model": "fuzz"}, price, {"audit_type": "fuzz", "findings": []}, {"status": "resolved"},
             {"repos": ["fuzz/fuzz"]}, {}, {"task_id": "T9"}, {"status": "success"}, {}, {}]
    for (method, path), body in zip(writes, valid):  # a body that passes but for the unknown field
        for name in ("self", "name", "finding_id", *rng.sample(["ref", "💥", "", "Model", "ttl", "\u202e"], 2)):
            out.append((method, path, {"json": {**body, name: 1}}))
    out.append(("POST", "/api/tasks/T1/register", {"json": {"repos": ["fuzz/fuzz"], "task": "T2"}}))
    for body in ({"status": "bogus"}, {"resolution": "no status"}, {"status": "resolved", "x": 1}):
        out.append(("PATCH", rng.choice(["/api/audits/1", "/api/v1/audits/1"]), {"json": body}))
    for finding in ("0", "2", "-1", "abc", "9" * 30, "%00", "1.0"):
        out.append(("PATCH", f"/api/audits/{finding}", {"json": {"status": "resolved"}}))
    # Token requests that can only be refused (T1 is registered, so no real task id here).
    for task_id in (None, [], {}, 1.5, True, 10**40, "", "T9", "\u202e", ["T1"]):
        out.append(("POST", "/api/token", {"json": {"task_id": task_id}}))
    out.append(("POST", "/api/token", {"json": {"task_id": "T1", "actor": ["x"]}}))
    out.append(("POST", "/api/token", {"json": {"task_id": "T1", "repos": ["fuzz/fuzz"]}}))
    for name in ("%00", "-x", "a%20b", "💥", "a" * 101, "..", "task-manager%2F..", "."):
        out.append((rng.choice(["POST", "GET"]), f"/api/jobs/{name}/runs", {"json": {"status": "success"}}))
        out.append(("POST", f"/api/jobs/{name}/disable", {}))
    for ref in ("T2", "0", "%00", "T1%20x"):
        # (Under the unversioned /api an unknown id is registered standalone, as lobwife did.)
        out.append(("POST", f"/api/v1/tasks/{ref}/register", {"json": {"repos": ["fuzz/fuzz"]}}))
        out.append(("GET", f"/api/tasks/{ref}/costs", {}))
    # Field names no text can hold (a lone surrogate is echoed in the 422), and dates at the
    # edges of the calendar, where the summary's hour and period arithmetic would overflow.
    for path in ("/api/tasks", "/api/costs", "/api/tasks/T1/events"):
        out.append(("POST", path, {"body": b'{"name": "a", "model": "m", "\\ud800": 1}',
                                   "content_type": "application/json"}))
    for query in ("since=9999-12-31T23:30:00Z&until=9999-12-31T23:40:00Z", "until=0001-01-01T00:30:00Z",
                  "until=0001-01-02T00:30:00Z&period=month", "since=1899-12-31&until=1900-01-02"):
        out.append(("GET", "/api/costs/summary?" + query, {}))
    for target in ("/api/costs?", "/api/audits?", "/api/costs/summary?", "/api/costs/prices?", "/api/token/audit?",
                   "/api/jobs?", "/api/tasks/T1/costs?"):
        for query in rng.sample(QUERY_JUNK, 5) + ["after=" + "9" * 20, "since=2026-13-45", "period=%ff"]:
            out.append(("GET", target + query, {}))
    return out


def fleet_state(client) -> list:
    return [client.get(path).json for path in (
        "/api/v1/tasks?limit=1000", "/api/tasks", "/api/costs?limit=1000", "/api/costs/prices?history=true", "/api/audits",
        "/api/token/audit", "/api/jobs", "/api/jobs/task-manager", "/api/tasks/T1/events")]


def test_malformed_requests_to_costs_audits_broker_and_jobs_get_json_4xx_and_change_nothing(store):
    client = WsgiClient(make_app(store, max_body=MAX_BODY))
    client.post("/api/tasks", {"name": "the one task"})
    assert client.post("/api/tasks/T1/register", {"repos": ["minsley/lobmob"]}).status == 200
    assert client.post("/api/costs", {"model": "claude-opus-4-6", "task_id": "T1"}).status == 201
    assert client.post("/api/audits", {"audit_type": "security",
                                       "findings": [{"severity": "info", "title": "a"}]}).status == 200
    assert client.post("/api/jobs/task-manager/runs", {"status": "success", "output": "ok"}).status == 201
    before = fleet_state(client)
    requests = fleet_malformed_requests(random.Random(SEED))
    assert len(requests) >= 300
    assert_all_refused(client, requests)
    assert fleet_state(client) == before
