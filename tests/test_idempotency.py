"""Idempotency-Key on the lobwife API, over WSGI on every backend: a repeat is answered from the
stored response without doing the work again; a reused key with another request is a 422;
concurrent repeats do the work once; the key, the work and the response commit together."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest

from lobstore import StorageError, open_store
from lobstore.adapters.http import make_app
from lobstore.repositories.idempotency import IdempotencyRepository

from wsgi_client import WsgiClient


CREATED = ("created", "created T1: lobster work")


def key(name: str) -> dict[str, str]:
    return {"Idempotency-Key": name}


def trail(client, ref="T1"):
    return [(e["event_type"], e["detail"]) for e in client.get(f"/api/tasks/{ref}/events").json]


def new_task(client, **fields):
    response = client.post("/api/tasks", {"name": "lobster work", **fields})
    assert response.status == 201, response.body
    return response.json


# Each write route: (method, path, body), with task T1 queued beforehand.
WRITES = [
    ("POST", "/api/tasks", {"name": "second task", "actor": "lobboss"}),
    ("PATCH", "/api/tasks/T1", {"status": "active", "actor": "task_poller"}),
    ("DELETE", "/api/v1/tasks/T1", {"actor": "lobboss", "reason": "not needed"}),
    ("POST", "/api/tasks/T1/events", {"event_type": "note", "detail": "PR opened"}),
    ("POST", "/api/tasks/T1/register", {"repos": ["minsley/lobmob"], "lobster_type": "swe"}),
    ("PATCH", "/api/v1/tasks/T1", {"broker_repos": ["minsley/lobmob"], "broker_status": "active"}),
]


@pytest.mark.parametrize("method, path, body", WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
def test_a_repeat_gets_the_stored_answer_and_the_work_is_done_once(client, method, path, body):
    new_task(client)
    first = client.request(method, path, json=body, headers=key("k-1"))
    assert first.status in (200, 201), first.body
    trail_after_first = trail(client)
    tasks_after_first = client.get("/api/v1/tasks").json

    again = client.request(method, path, json=body, headers=key("k-1"))
    assert (again.status, again.json) == (first.status, first.json)
    for header in ("location", "etag", "content-type"):
        assert again.headers.get(header) == first.headers.get(header)
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert trail(client) == trail_after_first
    assert client.get("/api/v1/tasks").json == tasks_after_first


def test_without_a_key_each_post_is_a_new_write(client):
    new_task(client)
    for _ in range(2):
        assert client.post("/api/tasks/T1/events", {"event_type": "note"}).status == 201
    assert [t for t, _ in trail(client)] == ["created", "note", "note"]


def test_the_same_body_spelt_differently_is_the_same_request(client):
    new_task(client)
    first = client.post("/api/tasks/T1/events", body=b'{"event_type": "note", "detail": "x"}',
                        content_type="application/json", headers=key("k"))
    again = client.post("/api/tasks/T1/events", body=b'{"detail":"x","event_type":"note"}',
                        content_type="application/json", headers=key("k"))
    assert again.json == first.json and again.headers["idempotent-replayed"] == "true"
    assert trail(client) == [CREATED, ("note", "x")]


def test_the_same_key_with_a_different_body_is_422_and_changes_nothing(client):
    new_task(client)
    assert client.post("/api/tasks/T1/events", {"event_type": "note", "detail": "one"}, headers=key("k")).status == 201
    refused = client.post("/api/tasks/T1/events", {"event_type": "note", "detail": "two"}, headers=key("k"))
    assert refused.status == 422
    assert refused.json["code"] == "idempotency_key_reused" and refused.json["field"] == "Idempotency-Key"
    assert "different" in refused.json["error"]
    assert trail(client) == [CREATED, ("note", "one")]


def test_the_same_key_with_a_different_if_match_is_a_different_request(client):
    new_task(client)
    assert client.patch("/api/tasks/T1", {"priority": "high"}, headers={**key("k"), "If-Match": '"v1"'}).status == 200
    refused = client.patch("/api/tasks/T1", {"priority": "high"}, headers={**key("k"), "If-Match": '"v2"'})
    assert refused.status == 422 and refused.json["code"] == "idempotency_key_reused"


def test_a_key_is_scoped_by_method_and_path_and_both_api_prefixes_are_one_path(client):
    new_task(client)
    new_task(client, name="other")
    body = {"event_type": "note", "detail": "same body"}
    assert client.post("/api/tasks/T1/events", body, headers=key("shared")).status == 201
    assert client.post("/api/tasks/T2/events", body, headers=key("shared")).status == 201  # another path
    assert client.patch("/api/tasks/T1", {"priority": "high"}, headers=key("shared")).status == 200  # method
    replay = client.post("/api/v1/tasks/T1/events", body, headers=key("shared"))
    assert replay.status == 201 and replay.headers["idempotent-replayed"] == "true"
    assert [t for t, _ in trail(client, "T1")] == ["created", "note", "updated"]
    assert [t for t, _ in trail(client, "T2")] == ["created", "note"]


def test_a_key_is_not_shared_where_the_two_prefixes_mean_different_things(client):
    """DELETE /api/tasks/T1 deregisters (lobwife's broker route); DELETE /api/v1/tasks/T1
    cancels: a key sent to one must never replay the other's answer."""
    new_task(client)
    client.post("/api/tasks/T1/register", {"repos": ["minsley/lobmob"]})
    removed = client.delete("/api/tasks/T1", headers=key("orphan-t1"))
    assert removed.status == 200 and removed.json["status"] == "removed"
    cancelled = client.delete("/api/v1/tasks/T1", headers=key("orphan-t1"))
    assert cancelled.status == 200 and cancelled.json["status"] == "cancelled"
    assert "idempotent-replayed" not in cancelled.headers
    assert client.get("/api/v1/tasks/T1").json["status"] == "cancelled"


def test_a_refused_request_is_not_stored_so_its_repeat_is_tried_again(client):
    body = {"event_type": "spawned", "detail": "lobster-swe-t1"}
    assert client.post("/api/tasks/T1/events", body, headers=key("early")).status == 404  # no task yet
    new_task(client)
    later = client.post("/api/tasks/T1/events", body, headers=key("early"))
    assert later.status == 201 and "idempotent-replayed" not in later.headers
    assert trail(client) == [CREATED, ("spawned", "lobster-swe-t1")]


@pytest.mark.parametrize("bad", ["", "has space", "x" * 256, "caf\u00e9"])
def test_a_malformed_key_is_422_on_every_write_route_and_changes_nothing(store, bad):
    """Every non-GET route the app has — including any added later — takes the header."""
    app = make_app(store)
    client = WsgiClient(app)
    new_task(client)
    writes = {(r.method, re.sub(r"<\w+>", "T1", r.rule)) for r in app.routes if r.method != "GET"}
    assert {("POST", "/api/tasks"), ("DELETE", "/api/v1/tasks/T1")} <= writes
    before = (client.get("/api/v1/tasks").json, trail(client))
    for method, path in sorted(writes):
        response = client.request(method, path, json={"name": "x"}, headers=key(bad), lint=False)
        assert response.status == 422, (method, path, response.body)
        assert response.json["field"] == "Idempotency-Key"
    assert (client.get("/api/v1/tasks").json, trail(client)) == before


def test_a_get_ignores_the_key(client):
    new_task(client)
    assert client.get("/api/tasks/T1", headers=key("k")).status == 200
    assert client.post("/api/tasks/T1/events", {"event_type": "note"}, headers=key("k")).status == 201


def test_the_work_and_the_stored_answer_commit_together(client, store, monkeypatch):
    """If the answer cannot be stored, the work is rolled back with it: a crash can never
    leave a write done whose repeat would do it again."""
    new_task(client)
    original = IdempotencyRepository.record

    def failing(self, *args, **kwargs):
        raise StorageError("the database (test) failed: disk full")

    monkeypatch.setattr(IdempotencyRepository, "record", failing)
    body = {"event_type": "note", "detail": "once"}
    assert client.post("/api/tasks/T1/events", body, headers=key("k")).status == 503
    assert trail(client) == [CREATED]
    assert store.idempotency.count() == 0

    monkeypatch.setattr(IdempotencyRepository, "record", original)
    assert client.post("/api/tasks/T1/events", body, headers=key("k")).status == 201
    assert client.post("/api/tasks/T1/events", body, headers=key("k")).headers["idempotent-replayed"] == "true"
    assert trail(client) == [CREATED, ("note", "once")]


def test_an_expired_key_is_free_again_and_expired_keys_are_removed(store):
    client = WsgiClient(make_app(store, idempotency_ttl=timedelta(0), purge_every=0))
    new_task(client)
    body = {"event_type": "note"}
    for _ in range(2):
        response = client.post("/api/tasks/T1/events", body, headers=key("k"))
        assert response.status == 201 and "idempotent-replayed" not in response.headers
    assert [t for t, _ in trail(client)] == ["created", "note", "note"]
    # Each write sweeps first: what is left is at most the last write's own (expired) key.
    assert store.idempotency.count() == 1
    assert store.idempotency.purge_expired() == 1 and store.idempotency.count() == 0


def test_keys_live_for_a_day_by_default(client, store):
    import sqlalchemy as sa

    from lobstore.schema import idempotency_keys

    new_task(client)
    client.post("/api/tasks/T1/events", {"event_type": "note"}, headers=key("k"))
    with store.backend.reading() as conn:
        row = conn.execute(sa.select(idempotency_keys)).one()
    assert row.expires_at - row.created_at == timedelta(hours=24)
    assert (row.method, row.path, row.response_status) == ("POST", "/api/tasks/T1/events", 201)


# -- concurrency ------------------------------------------------------------------------------
@pytest.fixture
def shared_store(db_url):
    """A store whose connections really run in parallel (the in-memory one has a single one)."""
    with open_store(db_url) as store:
        yield store


def test_concurrent_repeats_of_one_key_do_the_work_once(shared_store):
    app = make_app(shared_store)
    WsgiClient(app).post("/api/tasks", {"name": "busy"})
    threads, rounds = 8, 5
    answers: list[list] = [[] for _ in range(rounds)]

    def send(round_: int, start: threading.Barrier) -> None:
        client = WsgiClient(app)
        start.wait(timeout=30)
        response = client.post("/api/tasks/T1/events", {"event_type": "note", "detail": f"round {round_}"},
                               headers=key(f"round-{round_}"))
        answers[round_].append((response.status, response.json))

    for round_ in range(rounds):
        start = threading.Barrier(threads)
        workers = [threading.Thread(target=send, args=(round_, start)) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert not any(worker.is_alive() for worker in workers)

    for round_ in range(rounds):
        assert len(answers[round_]) == threads
        statuses = {status for status, _ in answers[round_]}
        assert statuses == {201}, answers[round_]
        assert len({body["id"] for _, body in answers[round_]}) == 1  # everyone got the one event
    events = WsgiClient(app).get("/api/tasks/T1/events").json
    assert [e["detail"] for e in events if e["event_type"] == "note"] == [f"round {r}" for r in range(rounds)]


def test_the_openapi_document_offers_the_header_on_every_write_and_nowhere_else(client):
    document = client.get("/api/openapi.json").json
    assert document["components"]["parameters"]["IdempotencyKey"]["in"] == "header"
    seen = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            refs = [p.get("$ref") for p in operation.get("parameters", [])]
            takes_key = "#/components/parameters/IdempotencyKey" in refs
            assert takes_key == (method != "get"), (method, path)
            seen += takes_key
    app_writes = [route for route in make_app(open_store("sqlite://")).routes if route.method != "GET"]
    assert seen == len(app_writes) >= 8  # every write the app has, under /api and /api/v1
