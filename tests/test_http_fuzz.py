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
    # Status moves the machine refuses, and stale versions.
    for status in ("completed", "done"):
        out.append(("PATCH", "/api/tasks/T1", {"json": {"status": status}}))
    out.append(("PATCH", "/api/tasks/T1", {"json": {"name": "b"}, "headers": {"If-Match": '"v7"'}}))
    out.append(("PATCH", "/api/tasks/T1", {"json": {"name": "b"}, "headers": {"If-Match": "💥"}}))
    return out


def test_malformed_requests_get_json_4xx_answers_and_change_nothing(each_store):
    store = each_store
    client = WsgiClient(make_app(store, max_body=MAX_BODY))
    assert client.post("/api/tasks", {"name": "the one task", "actor": "setup"}).status == 201
    before = (client.get("/api/tasks/T1").json, store.events.latest_id())
    requests = malformed_requests(random.Random(SEED))
    assert len(requests) >= 200
    for method, target, options in requests:
        response = client.request(method, target, **options)
        what = f"{method} {target[:80]} {str(options)[:120]} -> {response.status} {response.body[:200]!r}"
        assert 400 <= response.status < 500, what
        assert response.content_type == "application/json", what
        body = response.json
        assert isinstance(body.get("error"), str) and isinstance(body.get("code"), str), what
    assert (client.get("/api/tasks/T1").json, store.events.latest_id()) == before
    assert store.tasks.count() == 1


@pytest.mark.parametrize("seed", range(3))
def test_random_bytes_as_bodies_get_json_4xx(each_store, seed):
    rng = random.Random(seed)
    client = WsgiClient(make_app(each_store))
    client.post("/api/tasks", {"name": "a"})
    for _ in range(40):
        body = rng.randbytes(rng.randrange(0, 300))
        response = client.request(rng.choice(["POST", "PATCH"]), rng.choice(["/api/tasks", "/api/tasks/T1"]),
                                  body=body, content_type=rng.choice(["application/json", "text/plain"]))
        assert 400 <= response.status < 500 and response.json["code"], response.body
    assert each_store.tasks.count() == 1
