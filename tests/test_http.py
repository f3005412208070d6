"""The lobwife HTTP API over WSGI: every route, its answers and its refusals, on every backend."""

from __future__ import annotations

import re
import time

import pytest

from lobstore import StorageError, open_store
from lobstore.adapters.http import make_app

from wsgi_client import WsgiClient, assert_error


def trail(client, ref):
    return [(e["event_type"], e["actor"]) for e in client.get(f"/api/tasks/{ref}/events").json]


# -- create -----------------------------------------------------------------------------------
def test_create_answers_201_with_id_task_id_and_where_to_find_it(client, api):
    response = client.post(f"{api}/tasks", {"name": "Unity UI overhaul", "repos": ["minsley/unity"],
                                            "actor": "lobboss"})
    assert response.status == 201
    task = response.json
    assert (task["id"], task["task_id"], task["status"], task["version"]) == (1, "T1", "queued", 1)
    assert task["repos"] == ["minsley/unity"]
    assert response.headers["location"] == f"{api}/tasks/T1"
    assert response.headers["etag"] == '"v1"'
    assert client.get(response.headers["location"]).json == task
    assert trail(client, "T1") == [("created", "lobboss")]


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": 42}, "name"),
        ({"name": "x", "repos": "minsley/unity"}, "repos"),
        ({"name": "x", "repos": ["not a repo"]}, "repos"),
        ({"name": "x", "priority": "urgent"}, "priority"),
        ({"name": "x", "estimate_minutes": "ten"}, "estimate_minutes"),
        ({"name": "x", "estimate_minutes": 10**30}, "estimate_minutes"),
        ({"name": "x", "requires_qa": "yes"}, "requires_qa"),
        ({"name": "x", "status": "done"}, "status"),
        ({"name": "x", "colour": "blue"}, "colour"),
        ({"name": "x", "id": 7}, "id"),
        ({"name": "x", "actor": ["me"]}, "actor"),
        ({"name": "x", "created_at": "yesterday"}, "created_at"),
    ],
)
def test_create_refuses_bad_fields_with_422_naming_the_field_and_stores_nothing(client, store, body, field):
    body_ = assert_error(client.post("/api/tasks", body), 422, "invalid", field)
    assert field in body_["error"]
    assert store.tasks.count() == 0 and store.events.latest_id() == 0


def test_create_with_a_legacy_id_already_taken_is_409(client, store):
    assert client.post("/api/tasks", {"name": "a", "legacy_id": "task-2026-02-15-a1b2"}).status == 201
    assert_error(client.post("/api/tasks", {"name": "b", "legacy_id": "task-2026-02-15-a1b2"}), 409, "conflict")
    assert store.tasks.count() == 1
    assert client.get("/api/tasks/task-2026-02-15-a1b2").json["name"] == "a"


# -- read -------------------------------------------------------------------------------------
def test_get_finds_a_task_by_number_ref_or_legacy_id(client, api):
    client.post(f"{api}/tasks", {"name": "a", "legacy_id": "2026-02-15-unity-ui"})
    for ref in ("1", "T1", "t1", "2026-02-15-unity-ui"):
        response = client.get(f"{api}/tasks/{ref}")
        assert response.status == 200 and response.json["task_id"] == "T1"
        assert response.headers["etag"] == '"v1"'


@pytest.mark.parametrize("ref", ["T2", "0", "T0", "nope", "99999999999999999999999"])
def test_get_of_an_unknown_task_is_404(client, api, ref):
    client.post(f"{api}/tasks", {"name": "a"})
    assert_error(client.get(f"{api}/tasks/{ref}"), 404, "not_found")


def test_get_refuses_query_parameters_it_does_not_take(client):
    client.post("/api/tasks", {"name": "a"})
    assert_error(client.get("/api/tasks/T1?fields=name"), 422, field="fields")


# -- list -------------------------------------------------------------------------------------
def make_tasks(client, n, **fields):
    return [client.post("/api/tasks", {"name": f"task {i}", **fields}).json for i in range(n)]


def test_list_is_an_array_newest_first_and_filters_combine(client):
    make_tasks(client, 2, type="research")
    make_tasks(client, 2, type="swe", priority="high", repos=["acme/web"])
    client.patch("/api/tasks/T3", {"status": "active", "assigned_to": "lobster-swe-t3"})
    ids = lambda response: [t["task_id"] for t in response.json]  # noqa: E731
    # The task list lives under /api/v1 (GET /api/tasks is the token broker's, as in lobwife).
    everything = client.get("/api/v1/tasks")
    assert everything.status == 200 and ids(everything) == ["T4", "T3", "T2", "T1"]
    assert "link" not in everything.headers
    assert ids(client.get("/api/v1/tasks?type=research")) == ["T2", "T1"]
    assert ids(client.get("/api/v1/tasks?status=active")) == ["T3"]
    assert ids(client.get("/api/v1/tasks?status=active&status=queued&type=swe")) == ["T4", "T3"]
    assert ids(client.get("/api/v1/tasks?status=active,queued&priority=high")) == ["T4", "T3"]
    assert ids(client.get("/api/v1/tasks?repo=acme/web&assigned_to=lobster-swe-t3")) == ["T3"]
    assert ids(client.get("/api/v1/tasks?order=asc&limit=3")) == ["T1", "T2", "T3"]
    assert ids(client.get("/api/v1/tasks?created_since=2000-01-01T00:00:00Z&created_until=2000-01-02")) == []


def test_list_gives_100_unless_asked_as_lobwife_did(client, store):
    with store.transaction() as tx:
        for i in range(101):
            tx.tasks.create(name=f"task {i}")
    listed = client.get("/api/v1/tasks").json
    assert len(listed) == 100 and (listed[0]["id"], listed[-1]["id"]) == (101, 2)
    assert len(client.get("/api/v1/tasks?limit=500").json) == 101


@pytest.mark.parametrize("order, expected", [("asc", list(range(1, 8))), ("desc", list(range(7, 0, -1)))])
def test_list_pages_follow_the_link_header_through_every_task(client, order, expected):
    make_tasks(client, 7)
    api = "/api/v1"
    seen, target, pages = [], f"{api}/tasks?limit=3&status=queued" + ("&order=asc" if order == "asc" else ""), 0
    while target:
        response = client.get(target)
        assert response.status == 200
        seen += [t["id"] for t in response.json]
        pages += 1
        link = response.headers.get("link")
        if link is None:
            break
        match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
        assert match, link
        target = match.group(1)
        assert target.startswith(f"{api}/tasks?") and "status=queued" in target and "limit=3" in target
    assert seen == expected and pages == 3


@pytest.mark.parametrize(
    "query, field",
    [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=abc", "limit"), ("limit=-1", "limit"),
     ("limit=1&limit=2", "limit"), ("status=nope", "status"),
     ("repo=x", "repo"), ("created_since=soon", "created_since"), ("order=random", "order"),
     ("after=legacy-id", "after"), ("after=", "after"), ("sort=name", "sort"), ("status=", "status")],
)
def test_list_refuses_bad_parameters_with_422_naming_them(client, query, field):
    assert_error(client.get(f"/api/v1/tasks?{query}"), 422, "invalid", field)


# -- update -----------------------------------------------------------------------------------
def test_patch_answers_what_changed_and_the_task_and_records_the_actor(client, api):
    client.post(f"{api}/tasks", {"name": "a"})
    response = client.patch(f"{api}/tasks/T1", {"status": "active", "assigned_to": "lobster-swe-t1",
                                                "actor": "task_poller"})
    assert response.status == 200
    body = response.json
    assert body["updated"] == ["assigned_at", "assigned_to", "status"]
    assert body["task"]["status"] == "active" and body["task"]["version"] == 2
    assert response.headers["etag"] == '"v2"'
    assert client.get(f"{api}/tasks/T1").json == body["task"]
    assert trail(client, "T1")[-1] == ("updated", "task_poller")


def test_patch_with_the_same_values_changes_nothing(client):
    client.post("/api/tasks", {"name": "a"})
    response = client.patch("/api/tasks/T1", {"name": "a"})
    assert response.status == 200 and response.json["updated"] == []
    assert response.json["task"]["version"] == 1 and len(trail(client, "T1")) == 1


def test_patch_with_a_stale_etag_or_version_is_409_and_changes_nothing(client):
    client.post("/api/tasks", {"name": "a"})
    etag = client.get("/api/tasks/T1").headers["etag"]
    assert client.patch("/api/tasks/T1", {"name": "b"}, headers={"If-Match": etag}).status == 200
    body = assert_error(client.patch("/api/tasks/T1", {"name": "c"}, headers={"If-Match": etag}), 409, "conflict")
    assert body["version"] == 2
    assert_error(client.patch("/api/tasks/T1", {"name": "c", "expected_version": 1}), 409, "conflict")
    assert_error(client.patch("/api/tasks/T1", {"name": "c"}, headers={"If-Match": 'W/"v2"'}), 409)
    assert_error(client.patch("/api/tasks/T1", {"name": "c"}, headers={"If-Match": '"something"'}), 409)
    task = client.get("/api/tasks/T1").json
    assert (task["name"], task["version"]) == ("b", 2)
    # The current ETag, or "*", lets the change through.
    assert client.patch("/api/tasks/T1", {"name": "c"}, headers={"If-Match": '"v2"'}).status == 200
    assert client.patch("/api/tasks/T1", {"name": "d"}, headers={"If-Match": "*"}).status == 200
    assert client.patch("/api/tasks/T1", {"name": "e", "expected_version": 4}).status == 200


def test_patch_refuses_an_if_match_that_disagrees_with_expected_version(client):
    client.post("/api/tasks", {"name": "a"})
    assert_error(client.patch("/api/tasks/T1", {"name": "b", "expected_version": 2},
                              headers={"If-Match": '"v1"'}), 422, field="expected_version")
    assert client.get("/api/tasks/T1").json["name"] == "a"


def test_patch_refuses_a_move_the_status_machine_forbids_and_lists_the_allowed_ones(client):
    client.post("/api/tasks", {"name": "a"})
    client.patch("/api/tasks/T1", {"status": "cancelled"})
    body = assert_error(client.patch("/api/tasks/T1", {"status": "active"}), 409, "invalid_transition")
    assert body["allowed"] == ["queued"]
    # The way out is said in the request's terms (JSON), not the library's force=True.
    assert '"force": true' in body["error"] and "force=True" not in body["error"]
    assert client.get("/api/tasks/T1").json["status"] == "cancelled"
    forced = client.patch("/api/tasks/T1", {"status": "active", "force": True, "actor": "ops"})
    assert forced.status == 200 and forced.json["task"]["status"] == "active"


@pytest.mark.parametrize(
    "body, field",
    [({"status": 3}, "status"), ({"colour": "red"}, "colour"), ({"task": "T2"}, "task"),
     ({"version": 9}, "version"), ({"force": "yes", "name": "b"}, "force"),
     ({"expected_version": "1", "name": "b"}, "expected_version"),
     ({"expected_version": 10**40, "name": "b"}, "expected_version"), ({"tags": [1]}, "tags")],
)
def test_patch_refuses_bad_fields_with_422(client, body, field):
    client.post("/api/tasks", {"name": "a"})
    assert_error(client.patch("/api/tasks/T1", body), 422, "invalid", field)
    assert client.get("/api/tasks/T1").json["version"] == 1


def test_patch_with_nothing_to_change_is_422(client):
    client.post("/api/tasks", {"name": "a"})
    assert_error(client.patch("/api/tasks/T1", {"actor": "me"}), 422, "invalid")


def test_patch_of_an_unknown_task_is_404(client):
    assert_error(client.patch("/api/tasks/T9", {"name": "b"}), 404, "not_found")
    assert_error(client.patch("/api/tasks/T9", {"name": "b"}, headers={"If-Match": '"bogus"'}), 404)


# -- cancel -----------------------------------------------------------------------------------
def test_delete_cancels_and_a_second_delete_is_409(client):
    api = "/api/v1"  # DELETE /api/tasks/{id} is the token broker's deregistration, as in lobwife
    client.post(f"{api}/tasks", {"name": "a"})
    response = client.delete(f"{api}/tasks/T1", {"actor": "lobboss", "reason": "duplicate"})
    assert response.status == 200 and response.json["status"] == "cancelled"
    assert response.json["completed_at"] is not None
    assert trail(client, "T1")[-1] == ("cancelled", "lobboss")
    assert_error(client.delete(f"{api}/tasks/T1"), 409, "invalid_transition")
    assert len(trail(client, "T1")) == 2


def test_delete_without_a_body_cancels(client):
    client.post("/api/tasks", {"name": "a"})
    assert client.request("DELETE", "/api/v1/tasks/T1").json["status"] == "cancelled"


def test_delete_of_a_completed_task_is_409_and_it_stays_completed(client):
    client.post("/api/tasks", {"name": "a"})
    client.patch("/api/tasks/T1", {"status": "active"})
    client.patch("/api/tasks/T1", {"status": "completed"})
    assert_error(client.delete("/api/v1/tasks/T1"), 409, "invalid_transition")
    assert client.get("/api/tasks/T1").json["status"] == "completed"


def test_delete_refuses_unknown_fields_and_unknown_tasks(client):
    client.post("/api/tasks", {"name": "a"})
    assert_error(client.delete("/api/v1/tasks/T1", {"force": True}), 422, field="force")
    assert_error(client.delete("/api/v1/tasks/T1", {"actor": 5}), 422, field="actor")
    assert client.get("/api/tasks/T1").json["status"] == "queued"
    assert_error(client.delete("/api/v1/tasks/T2"), 404, "not_found")


# -- events -----------------------------------------------------------------------------------
def test_events_posted_join_the_trail_oldest_first(client, api):
    client.post(f"{api}/tasks", {"name": "a", "actor": "lobboss"})
    response = client.post(f"{api}/tasks/T1/events", {"event_type": "spawned", "detail": "job lobster-swe-t1",
                                                      "actor": "lobboss", "data": {"job": "lobster-swe-t1"}})
    assert response.status == 201
    event = response.json
    assert (event["task_id"], event["event_type"], event["data"]) == ("T1", "spawned", {"job": "lobster-swe-t1"})
    assert event.pop("status") == "logged"  # lobwife's answer, beside the event itself
    client.post(f"{api}/tasks/T1/events", {"event_type": "note", "actor": "lobster-swe-t1"})
    events = client.get(f"{api}/tasks/T1/events").json
    assert [e["event_type"] for e in events] == ["created", "spawned", "note"]
    assert events[1] == event
    after = client.get(f"{api}/tasks/T1/events?after={event['id']}&limit=5").json
    assert [e["event_type"] for e in after] == ["note"]


@pytest.mark.parametrize(
    "body, field",
    [({}, "event_type"), ({"event_type": "Has Spaces"}, "event_type"), ({"event_type": "created"}, "event_type"),
     ({"event_type": "note", "data": [1]}, "data"), ({"event_type": "note", "detail": 5}, "detail"),
     ({"event_type": "note", "when": "now"}, "when")],
)
def test_event_posts_refuse_bad_fields_with_422(client, store, body, field):
    client.post("/api/tasks", {"name": "a"})
    assert_error(client.post("/api/tasks/T1/events", body), 422, "invalid", field)
    assert store.events.latest_id() == 1


def test_events_of_an_unknown_task_are_404(client):
    assert_error(client.get("/api/tasks/T1/events"), 404, "not_found")
    assert_error(client.post("/api/tasks/T1/events", {"event_type": "note"}), 404, "not_found")


def test_event_listing_refuses_bad_parameters(client):
    client.post("/api/tasks", {"name": "a"})
    assert_error(client.get("/api/tasks/T1/events?after=x"), 422, field="after")
    assert_error(client.get("/api/tasks/T1/events?limit=0"), 422, field="limit")
    assert_error(client.get("/api/tasks/T1/events?since=1"), 422, field="since")


# -- what the HTTP layer refuses before the store sees it --------------------------------------
WRITES = [("POST", "/tasks"), ("PATCH", "/tasks/T1"), ("POST", "/tasks/T1/events")]


@pytest.mark.parametrize("method, path", WRITES)
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonx"])
def test_bodies_that_are_not_json_are_415(client, store, api, method, path, content_type):
    client.post("/api/tasks", {"name": "a"})
    response = client.request(method, api + path, body=b'{"name": "b", "event_type": "note"}',
                              content_type=content_type)
    assert_error(response, 415, "unsupported_media_type")
    assert store.tasks.count() == 1 and store.events.latest_id() == 1


def test_json_with_a_charset_is_accepted(client):
    response = client.post("/api/tasks", body='{"name": "naïve ünïcode"}'.encode(),
                           content_type="application/json; charset=utf-8")
    assert response.status == 201 and response.json["name"] == "naïve ünïcode"


@pytest.mark.parametrize("method, path", WRITES)
def test_bodies_over_the_limit_are_413(store, api, method, path):
    client = WsgiClient(make_app(store, max_body=1000))
    client.post("/api/tasks", {"name": "a"})
    big = {"name": "b", "event_type": "note", "description": "x" * 2000}
    assert_error(client.request(method, api + path, json=big), 413, "too_large")
    # A Content-Length alone is enough to refuse, before reading anything.
    assert_error(client.request(method, api + path, body=b"{}", content_type="application/json",
                                content_length=str(10**12)), 413)
    assert store.tasks.count() == 1 and store.events.latest_id() == 1


@pytest.mark.parametrize("body", [b"{", b"{'name': 'a'}", b"nul", b'{"name": NaN}', b"\xff\xfe{}",
                                  b'{"name": "a"} trailing', b"[" * 100_000])
def test_broken_json_is_400(client, store, body):
    assert_error(client.post("/api/tasks", body=body, content_type="application/json"), 400, "malformed")
    assert store.tasks.count() == 0


@pytest.mark.parametrize("body", [b"[]", b'"name"', b"42", b"null", b'[{"name": "a"}]'])
def test_json_that_is_not_an_object_is_422(client, store, body):
    assert_error(client.post("/api/tasks", body=body, content_type="application/json"), 422, field="body")
    assert store.tasks.count() == 0


def test_an_empty_body_where_one_is_needed_is_400(client):
    assert_error(client.post("/api/tasks", body=b"", content_type="application/json"), 400, "malformed")


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", "12"])
def test_a_bad_content_length_is_400(client, length):
    # cheroot refuses most of these itself; the app must not trust a lax server either.
    assert_error(client.post("/api/tasks", body=b'{"name":"a"}'[:5], content_type="application/json",
                             content_length=length, lint=False), 400, "malformed")


# -- routing ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/ui", "/api", "/api/task", "/api/tasks/T1/nope", "/api/v2/tasks",
                                  "/api/tasks/", "/index.html", "/api/tasks/T1/events/1"])
def test_unknown_routes_are_json_404(client, path):
    assert_error(client.get(path), 404, "no_route")


@pytest.mark.parametrize("method, path, allowed", [
    ("PUT", "/api/tasks", {"GET", "POST"}),
    ("DELETE", "/api/tasks", {"GET", "POST"}),
    ("POST", "/api/v1/tasks/T1", {"GET", "PATCH", "DELETE"}),
    ("PATCH", "/api/tasks/T1/events", {"GET", "POST"}),
    ("POST", "/health", {"GET"}),
])
def test_wrong_methods_are_json_405_with_allow(client, method, path, allowed):
    assert_error(client.request(method, path), 405, "method_not_allowed")
    response = client.request(method, path)
    assert set(response.headers["allow"].split(",")) >= allowed


# -- health and the OpenAPI document ----------------------------------------------------------
def test_health_reports_uptime_backend_schema_and_task_count(store):
    client = WsgiClient(make_app(store, started=time.monotonic() - 120))
    make_tasks(client, 3)
    response = client.get("/health")
    assert response.status == 200
    health = response.json
    assert health["status"] == "ok" and health["uptime"] >= 120
    assert health["db"]["ok"] is True and health["db"]["tasks"] == 3
    assert health["db"]["backend"] == store.backend.name and health["db"]["schema_version"] == store.migrations.latest


def test_health_is_503_when_the_database_does_not_answer(store, monkeypatch, caplog):
    client = WsgiClient(make_app(store))

    def broken(**_filters):
        raise StorageError("the database (sqlite) failed: disk I/O error")

    monkeypatch.setattr(store.tasks, "count", broken)
    response = client.get("/health")
    assert response.status == 503 and response.content_type == "application/json"
    assert response.json["status"] == "error" and response.json["db"]["ok"] is False
    # The driver's words stay in the server log, found by the error id the client is given.
    error_id = re.search(r"error id ([0-9a-f]{12})", response.json["db"]["error"]).group(1)
    assert "disk I/O error" not in response.body.decode()
    assert any(error_id in r.getMessage() and "disk I/O error" in r.getMessage() for r in caplog.records)


def openapi_operations(document):
    return {(method.upper(), path) for path, item in document["paths"].items()
            for method in item if method != "parameters"}


def test_openapi_document_is_valid_and_lists_every_route_and_no_other(client, api):
    from openapi_spec_validator import validate

    response = client.get(f"{api}/openapi.json")
    assert response.status == 200
    document = response.json
    validate(document)
    app = make_app(open_store("sqlite://"))
    routes = {(route.method, re.sub(r"<(\w+)>", r"{\1}", route.rule)) for route in app.routes}
    assert routes == openapi_operations(document)
    assert {("GET", "/api/v1/tasks/{ref}"), ("GET", "/health")} <= routes  # the check sees both kinds


def test_the_task_schema_holds_the_fields_of_a_task_as_served(client):
    schemas = client.get("/api/openapi.json").json["components"]["schemas"]
    task = client.post("/api/tasks", {"name": "a"}).json
    assert set(schemas["Task"]["properties"]) == set(task)


def request_bodies(document):
    """(method, path, object schema) of every write whose body the document describes."""
    schemas = document["components"]["schemas"]
    for path, item in document["paths"].items():
        if not path.startswith("/api/") or path.startswith("/api/v1/"):
            continue
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {}) if isinstance(operation, dict) else {}
            schema = content.get("application/json", {}).get("schema")
            if schema is None:
                continue
            if "$ref" in schema:
                schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
            if schema.get("type") == "object":
                yield method.upper(), path, schema


def test_every_request_body_the_document_describes_is_the_one_the_api_checks(store, client):
    """The document's request schemas are derived from the library's field tables; this holds
    them to what the API does: a field the schema lacks is refused by name, and a body without
    the schema's first required field is refused naming that field."""
    document = client.get("/api/openapi.json").json
    client.post("/api/tasks", {"name": "a"})
    client.post("/api/audits", {"audit_type": "docs", "findings": [{"severity": "info", "title": "x"}]})
    client.post("/api/jobs/nightly/runs", {"status": "success"})
    values = {"{ref}": "T1", "{finding_id}": "1", "{name}": "nightly"}
    checked = set()
    for method, path, schema in request_bodies(document):
        target = path
        for placeholder, value in values.items():
            target = target.replace(placeholder, value)
        unknown = client.request(method, target, json={"zz_not_a_field": 1})
        assert_error(unknown, 422, field="zz_not_a_field")
        assert "zz_not_a_field" not in schema.get("properties", {})
        if schema.get("required"):
            missing = client.request(method, target, json={})
            assert missing.status in (400, 422), (method, path, missing.body)
            assert missing.json["field"] == schema["required"][0], (method, path, missing.json)
        checked.add((method, path))
    assert store.tasks.count() == 1 and store.tasks.get("T1").version == 1  # every refusal changed nothing
    assert {("POST", "/api/tasks"), ("PATCH", "/api/tasks/{ref}"), ("POST", "/api/tasks/{ref}/events"),
            ("POST", "/api/audits"), ("POST", "/api/token"), ("POST", "/api/jobs/{name}/runs")} <= checked


def test_each_app_is_its_own(store):
    one, two = make_app(store), make_app(store)
    assert one is not two and one.routes is not two.routes


# -- vault sync -------------------------------------------------------------------------------
class RecordingSync:
    def __init__(self):
        self.triggers = 0
        self.error = None

    def status(self):
        return {"enabled": True, "vault": "/vault", "interval": 300.0, "running": True,
                "last_cycle": {"time": "2026-02-16T12:00:00Z", "commit": "abc123", "files_changed": 2,
                               "error": self.error}}

    def trigger(self):
        self.triggers += 1


def test_sync_routes_without_a_vault_say_so(client, api):
    response = client.get(f"{api}/sync")
    assert response.status == 200
    assert response.json == {"enabled": False, "vault": None, "running": False, "last_cycle": None,
                             "last_sync": None}
    body = assert_error(client.post(f"{api}/sync/trigger"), 503, "not_configured")
    assert "--vault" in body["error"]


def test_sync_trigger_asks_the_running_sync_for_a_cycle(store, api):
    sync = RecordingSync()
    client = WsgiClient(make_app(store, sync=sync))
    state = client.get(f"{api}/sync").json
    # lobwife's fields (enabled, last_sync, running) beside lobstore's.
    assert (state["last_cycle"]["commit"], state["last_sync"], state["running"]) == (
        "abc123", "2026-02-16T12:00:00Z", True)
    sync.error = "push rejected"
    assert client.get(f"{api}/sync").json["last_sync"] is None  # that cycle did not bring it up to date
    response = client.post(f"{api}/sync/trigger")
    assert response.status == 202 and response.json["status"] == "triggered"
    assert sync.triggers == 1
    assert_error(client.post(f"{api}/sync/trigger", json={"now": True}), 422)  # takes no fields
    assert sync.triggers == 1
