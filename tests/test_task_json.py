"""The hot read routes' JSON, made straight from the database (repositories/task_json.py: by
SQLite itself, from rows on PostgreSQL), is exactly ``Task.to_dict()``: the same keys in the
same order and the same values, on every backend, for tasks with every field set and with none,
registered with the broker or not, inside a transaction and outside it."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from lobstore.errors import NotFoundError
from lobstore.schema import tasks

FULL = dict(
    name="Fix the flaky login test ☃", type="swe", status="queued", priority="high", model="opus",
    repos=["minsley/lobmob", "minsley/other"], description="line one\nline \"two\" \\ tab\t",
    discord_thread_id="12345", estimate_minutes=42, requires_qa=True, workflow="review",
    tags=["ci", "flaky"], legacy_id="task-2026-02-15-a1b2", vault_path="tasks/T1.md",
    metadata={"nested": {"list": [1, 2.5, None, True], "text": "é"}, "empty": {}},
    created_at=datetime(2026, 2, 15, 9, 30, 1, tzinfo=timezone.utc), actor="lobboss",
)


def same_json(store, ref) -> dict:
    expected = store.tasks.get(ref).to_dict()
    found = store.tasks.get_json(ref)
    got = json.loads(found.body)
    assert got == expected
    assert list(got) == list(expected)  # the order clients see
    assert (found.ids, found.versions) == ((expected["id"],), (expected["version"],))
    return got


def listed(tasks, **options) -> list[dict]:
    found = tasks.list_json(**options)
    got = json.loads(found.body)
    assert found.ids == tuple(task["id"] for task in got)
    assert found.versions == tuple(task["version"] for task in got)
    return got


def seed(store) -> None:
    store.tasks.create(**FULL)
    store.tasks.create(name="bare")
    store.tasks.create(name="registered", repos=["minsley/lobmob"])
    store.broker.register("T3", repos=["minsley/lobmob"])
    store.tasks.create(name="claimed", type="research")
    store.tasks.claim(lobster="lobster-7", types=["research"])
    store.tasks.create(name="done")
    store.tasks.update("T5", status="active", actor="lobster-1")
    store.tasks.update("T5", status="completed", actor="lobster-1")


def test_one_task_reads_as_to_dict_with_every_field_and_with_none(store):
    seed(store)
    for ref in ("T1", "T2", "T3", "T4", "T5", "task-2026-02-15-a1b2", "t3", 3):
        same_json(store, ref)
    full = same_json(store, "T1")
    assert full["requires_qa"] is True and full["repos"] == ["minsley/lobmob", "minsley/other"]
    assert full["created_at"] == "2026-02-15T09:30:01Z" and full["metadata"]["nested"]["text"] == "é"
    registered = same_json(store, "T3")
    assert registered["broker_repos"] == ["minsley/lobmob"] and registered["broker_status"] == "active"
    assert same_json(store, "T4")["lease_expires_at"] is not None


def test_lists_read_as_to_dict_in_every_order_filter_and_page(store):
    seed(store)
    for options in (
        {}, {"order": "desc"}, {"limit": 2}, {"limit": 2, "after": "T2"}, {"order": "desc", "after": 4},
        {"status": "queued"}, {"status": ["queued", "active", "completed"]}, {"type": "research"},
        {"repo": "minsley/lobmob"}, {"text": "flaky"}, {"assigned_to": "nobody"},
    ):
        expected = [task.to_dict() for task in store.tasks.list(**options)]
        got = listed(store.tasks, **options)
        assert got == expected, options
        assert [list(task) for task in got] == [list(task) for task in expected]


def test_inside_a_transaction_the_read_sees_its_own_writes(store):
    seed(store)
    with store.transaction() as tx:
        tx.tasks.update("T2", status="active", actor="lobster-2")
        assert same_json(tx, "T2")["status"] == "active"
        assert listed(tx.tasks, status="active") == [t.to_dict() for t in tx.tasks.list(status="active")]


def test_a_missing_task_is_the_same_error(store):
    seed(store)
    for ref in ("T99", "task-none", 0):
        with pytest.raises(NotFoundError) as fast:
            store.tasks.get_json(ref)
        with pytest.raises(NotFoundError) as slow:
            store.tasks.get(ref)
        assert str(fast.value) == str(slow.value)


@pytest.mark.backends("sqlite-memory", "sqlite-file")
@pytest.mark.parametrize("stored", [
    "2026-03-01 12:00:00.000000",  # as SQLAlchemy writes it
    "2026-03-01 12:00:00",  # without the fraction
    "2026-03-01 12:00:00.999999",  # a fraction is dropped, not rounded
    "2026-03-01T13:00:00+01:00",  # written by hand, with an offset
    "2026-03-01T12:00:00",
    "2026-03-01 12:00:00+0000",  # shapes SQLite's own date functions cannot read
    "20260301T120000",
])
def test_sqlite_times_in_other_shapes_read_as_to_dict(store, stored):
    seed(store)
    with store.backend.engine.begin() as conn:
        conn.execute(sa.text("UPDATE tasks SET completed_at = :stored WHERE id = 2"), {"stored": stored})
    got = same_json(store, "T2")
    assert got["completed_at"] == "2026-03-01T12:00:00Z"
    assert listed(store.tasks) == [task.to_dict() for task in store.tasks.list()]


def test_the_json_forms_match_the_table(store):
    """Every column of the tasks table reaches the JSON form (a field added with the schema
    alone, as CONTRIBUTING.md describes, is listed like the others)."""
    seed(store)
    got = same_json(store, "T1")
    assert {column.name for column in tasks.columns} <= set(got)
