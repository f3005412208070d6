"""Cost events, audit findings and budget alerts on the change feed as their own types: one
``cost`` event per task per ingest, ``audit_finding`` when a finding is first recorded, and
``budget_alert`` for budgets of no task. Events of no task carry a null task ref everywhere."""

from __future__ import annotations

import json


from lobstore import open_store
from lobstore.backends import backend_for
from lobstore.client import Client
from lobstore.migrations import MigrationRunner, packaged_migrations
from lobstore.schema import metadata

from live_server import LiveServer
from schema_compare import from_database, from_metadata
from test_feed import _blocks, _raw_stream

OPUS = "claude-opus-4"


def _costs_and_findings(store):
    """T1 and T2 exist; one ingest costs T1 twice, T2 once and no task once; then a critical
    finding (it gets a fix task) and a warning (it has none)."""
    t1 = store.tasks.create(name="one")
    t2 = store.tasks.create(name="two")
    after = store.events.latest_id()
    store.costs.record_many([
        {"task": t1.ref, "model": OPUS, "cost_usd": 0.25},
        {"task": t2.ref, "model": "other-model", "cost_usd": 1.5},
        {"task": t1.ref, "model": "other-model", "cost_usd": 0.5},
        {"model": OPUS, "cost_usd": 2},
    ])
    store.audits.submit("security", [{"severity": "critical", "title": "leak"},
                                     {"severity": "warning", "title": "old lib", "target": "a/b"}])
    store.audits.submit("security", [{"severity": "warning", "title": "old lib", "target": "a/b"}])  # seen again: no event
    return t1, t2, after


def _expected(store, t1, t2):
    leak, old = sorted(store.audits.list(), key=lambda f: f.id)
    fix = leak.fix_task_ref
    return fix, [
        ("cost", t1.ref, {"task": t1.ref, "count": 2, "usd": 0.75, "uncosted": 0, "models": sorted([OPUS, "other-model"])}),
        ("cost", t2.ref, {"task": t2.ref, "count": 1, "usd": 1.5, "uncosted": 0, "models": ["other-model"]}),
        ("cost", None, {"task": None, "count": 1, "usd": 2.0, "uncosted": 0, "models": [OPUS]}),
        ("created", fix, None),  # the critical finding's fix task
        ("audit_finding", fix, {"id": leak.id, "severity": "critical", "type": "security", "title": "leak",
                                "target": None, "task": fix}),
        ("audit_finding", None, {"id": old.id, "severity": "warning", "type": "security", "title": "old lib",
                                 "target": "a/b", "task": None}),
    ]


def _shape(events):
    return [(e["event_type"], e["task"], None if e["event_type"] == "created" else e["data"]) for e in events]


def test_long_poll_delivers_cost_and_audit_events_in_order_with_their_data(store, client):
    t1, t2, after = _costs_and_findings(store)
    fix, expected = _expected(store, t1, t2)
    answer = client.get(f"/api/v1/events?after={after}").json
    assert _shape(answer["events"]) == expected
    ids = [e["id"] for e in answer["events"]]
    assert ids == sorted(ids)
    assert all(e["task_id"] == e["task"] for e in answer["events"])  # the event JSON: null for no task
    costs = client.get(f"/api/v1/events?after={after}&type=cost").json["events"]
    assert [e["task"] for e in costs] == [t1.ref, t2.ref, None]
    mine = client.get(f"/api/v1/events?after={after}&task={t1.ref}").json["events"]
    assert [e["event_type"] for e in mine] == ["cost"]  # events of no task are left out
    trail = client.get(f"/api/v1/tasks/{t1.ref}/events").json
    assert [(e["event_type"], e["data"].get("count")) for e in trail] == [("created", None), ("cost", 2)]


def test_stream_and_client_deliver_the_new_types(store):
    server = LiveServer(store)
    try:
        after = store.events.latest_id()
        conn, response = _raw_stream(server, f"/api/v1/events/stream?after={after}")
        assert response.status == 200
        t1, t2, _ = _costs_and_findings(store)
        fix, expected = _expected(store, t1, t2)
        blocks = _blocks(response, 1 + 2 + len(expected))[1:]  # the hello, then the two tasks' created
        sent = [json.loads(b[2].removeprefix("data: ")) for b in blocks[2:]]
        assert [b[1] for b in blocks[2:]] == [f"event: {kind}" for kind, _, _ in expected]
        assert _shape(sent) == expected
        conn.close()
        stream = iter(Client(server.url).events(after=after, type="cost,audit_finding"))
        got = [next(stream) for _ in range(5)]
        assert [(e["event_type"], e["task"]) for e in got] == [(k, t) for k, t, _ in expected if k != "created"]
    finally:
        server.stop()


def test_fleet_budget_alert_is_a_feed_event_of_no_task(store, client):
    task = store.tasks.create(name="one")
    budget = store.budgets.create(scope="fleet", period="total", limit_usd=1)
    after = store.events.latest_id()
    store.costs.record(task=task.ref, model=OPUS, cost_usd=0.9)
    events = client.get(f"/api/v1/events?after={after}&type=budget_alert").json["events"]
    assert [(e["task"], e["data"]["budget_id"], e["data"]["threshold"], e["data"]["scope"]) for e in events] == [
        (None, budget.id, 80, "fleet")]
    assert client.get(f"/api/v1/events?after={after}&task={task.ref}").json["events"][0]["event_type"] == "cost"
    assert [e["event_type"] for e in client.get(f"/api/v1/tasks/{task.ref}/events").json] == ["created", "cost"]


def test_store_types_cannot_be_posted(store, client):
    task = store.tasks.create(name="one")
    for kind in ("cost", "audit_finding"):
        response = client.post(f"/api/v1/tasks/{task.ref}/events", {"event_type": kind})
        assert response.status == 422 and response.json["field"] == "event_type"


def test_no_event_when_nothing_new_is_stored(store):
    task = store.tasks.create(name="one")
    store.costs.record(task=task.ref, model=OPUS, cost_usd=1, request_id="r1")
    latest = store.events.latest_id()
    again = store.costs.record(task=task.ref, model=OPUS, cost_usd=1, request_id="r1")
    assert again.duplicate and store.events.latest_id() == latest


def test_migration_keeps_events_ids_and_the_sequence(db_url):
    backend = backend_for(db_url)
    try:
        migrations = packaged_migrations(backend.engine.dialect.name)
        (nullable,) = [m for m in migrations if m.name == "feed_events_without_task"]
        MigrationRunner(backend, [m for m in migrations if m.version < nullable.version]).apply()
        with backend.writing() as conn:
            conn.exec_driver_sql(
                "INSERT INTO tasks (name, type, status, priority, repos, requires_qa, tags, created_at, "
                "updated_at, version, metadata, attempts) VALUES ('old', 'swe', 'active', 'high', '[]', false, "
                "'[]', '2026-02-15 10:00:00', '2026-02-15 10:00:00', 1, '{}', 0)")
            for i in (1, 2, 3):
                conn.exec_driver_sql(
                    "INSERT INTO task_events (task_id, event_type, detail, data, created_at) VALUES "
                    f"(1, 'note', 'n{i}', '{{\"i\": {i}}}', '2026-02-15 10:00:0{i}')")
            conn.exec_driver_sql("DELETE FROM task_events WHERE id = 3")  # the newest id is gone: never reused
    finally:
        backend.close()
    with open_store(db_url) as store:
        assert [(e.id, e.detail, e.data) for e in store.events.for_task("T1")] == [
            (1, "n1", {"i": 1}), (2, "n2", {"i": 2})]
        store.costs.record(model=OPUS, cost_usd=1)  # a cost of no task: an event with task_id NULL
        assert [(e.id, e.task_ref, e.event_type) for e in store.events.feed(after=2)] == [(4, None, "cost")]
        assert from_database(store.backend.engine) == from_metadata(metadata, store.backend.engine.dialect)
