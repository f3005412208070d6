"""The contract every backend keeps, run against each by test_store.py (the ``store`` fixture of
conftest.py is the backend matrix)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from lobstore import (
    ConflictError,
    InvalidTransitionError,
    LobstoreError,
    NotFoundError,
    ValidationError,
)
from lobstore.status import STATUSES, TRANSITIONS

from faults import break_event_inserts

ISO_Z = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"

ALLOWED = [(a, b) for a in STATUSES for b in STATUSES if b in TRANSITIONS[a]]
REFUSED = [(a, b) for a in STATUSES for b in STATUSES if a != b and b not in TRANSITIONS[a]]

# The shortest forced-free path from a new (queued) task to each status.
PATH_TO = {
    "queued": [],
    "active": ["active"],
    "blocked": ["blocked"],
    "failed": ["failed"],
    "cancelled": ["cancelled"],
    "completed": ["active", "completed"],
}


def in_threads(threads: int, work) -> list[BaseException]:
    """Run ``work(n)`` in ``threads`` threads at once; return what they raised."""
    errors: list[BaseException] = []

    def run(n):
        try:
            work(n)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return errors


def create_in_threads(store, threads: int, per_thread: int) -> list[BaseException]:
    def work(worker):
        for n in range(per_thread):
            store.tasks.create(name=f"worker {worker} task {n}", actor=f"w{worker}")

    return in_threads(threads, work)


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


class StoreContract:
    __test__ = False

    def task_in(self, store, status: str, **fields):
        task = store.tasks.create(name=f"task to be {status}", **fields)
        for step in PATH_TO[status]:
            task = store.tasks.update(task.id, status=step, actor="setup").task
        assert task.status == status
        return task

    def events_of(self, store, ref):
        return [e.event_type for e in store.events.for_task(ref)]

    # -- create and get ---------------------------------------------------------------------
    def test_ids_are_sequential_and_refs_name_them(self, store):
        tasks = [store.tasks.create(name=f"task {n}") for n in range(3)]
        assert [t.id for t in tasks] == [1, 2, 3]
        assert [t.ref for t in tasks] == ["T1", "T2", "T3"]
        for ref in (2, "2", "T2", "t2", " T2 "):
            assert store.tasks.get(ref).name == "task 1"

    def test_created_task_has_defaults_and_a_created_event(self, store):
        task = store.tasks.create(name="Unity UI overhaul", repos=["minsley/unity"], actor="lobboss")
        assert (task.status, task.type, task.priority, task.version) == ("queued", "swe", "normal", 1)
        assert task.slug == "unity-ui-overhaul"
        assert task.queued_at == task.created_at
        (event,) = store.events.for_task("T1")
        assert (event.event_type, event.actor, event.task_ref) == ("created", "lobboss", "T1")
        assert store.tasks.get("T1") == task

    def test_json_form_has_id_task_id_and_utc_timestamps(self, store):
        task = store.tasks.create(name="x", tags=["ui"], repos=["a/b"])
        data = task.to_dict()
        assert data["id"] == 1 and data["task_id"] == "T1"
        assert data["repos"] == ["a/b"] and data["tags"] == ["ui"]
        for key in ("created_at", "updated_at", "queued_at"):
            assert data[key] is not None
            assert __import__("re").match(ISO_Z, data[key]), data[key]
        event = store.events.for_task(1)[0].to_dict()
        assert event["task_id"] == "T1" and event["created_at"].endswith("Z")

    def test_legacy_ids_find_tasks_and_cannot_be_reused(self, store):
        store.tasks.create(name="old", legacy_id="task-2026-02-15-a1b2")
        assert store.tasks.get("task-2026-02-15-a1b2").ref == "T1"
        with pytest.raises(ConflictError, match="already belongs to T1"):
            store.tasks.create(name="again", legacy_id="task-2026-02-15-a1b2")
        assert store.tasks.count() == 1

    def test_unknown_tasks_are_not_found(self, store):
        store.tasks.create(name="x")
        for ref in ("T2", 99, "t0", "nope", "", None, True, "a\x00b", "\ud800"):
            with pytest.raises(NotFoundError):
                store.tasks.get(ref)

    @pytest.mark.parametrize(
        "fields, field",
        [({"name": "\ud800"}, "name"), ({"name": "x", "legacy_id": "a\udfffb"}, "legacy_id"),
         ({"name": "x", "tags": ["\ud800"]}, "tags"), ({"name": "x", "created_at": "0001-01-01T00:00:00+01:00"},
                                                        "created_at"),
         ({"name": "x", "completed_at": "9999-12-31T23:59:59-14:00"}, "completed_at")],
    )
    def test_text_no_database_can_store_is_a_validation_error(self, store, fields, field):
        # Lone surrogates (JSON "\ud800") and out-of-range dates once escaped as driver errors.
        with pytest.raises(ValidationError) as caught:
            store.tasks.create(**fields)
        assert caught.value.field == field
        assert store.tasks.count() == 0

    @pytest.mark.parametrize("data", [{"a": "\x00"}, {"\x00": 1}, {"a": ["\ud800"]}, {"\udfff": {"b": 1}},
                                      {"a": nested(33)}, {"a": nested(980)}])
    def test_event_data_that_jsonb_would_refuse_is_a_validation_error_everywhere(self, store, data):
        store.tasks.create(name="x")
        with pytest.raises(ValidationError) as caught:
            store.events.add("T1", "note", data=data)
        assert caught.value.field == "data"
        assert self.events_of(store, "T1") == ["created"]

    def test_original_timestamps_are_kept_on_create(self, store):
        created = datetime(2026, 2, 13, 10, 0, tzinfo=timezone.utc)
        done = "2026-02-14T08:30:00+00:00"
        task = store.tasks.create(name="imported", status="completed", created_at=created, completed_at=done)
        assert task.created_at == created
        assert task.completed_at == datetime(2026, 2, 14, 8, 30, tzinfo=timezone.utc)
        assert store.tasks.get(task.id).completed_at == task.completed_at

    def test_by_legacy_ids_finds_only_existing_tasks(self, store):
        made = [store.tasks.create(name=f"old {i}", legacy_id=f"task-2026-02-{i + 1:02d}-a1b2") for i in range(3)]
        store.tasks.create(name="no legacy id")
        wanted = [f"task-2026-02-{i + 1:02d}-a1b2" for i in range(1, 3)] + ["2026-01-01-missing"]
        found = store.tasks.by_legacy_ids(wanted)
        assert {k: t.ref for k, t in found.items()} == {made[1].legacy_id: "T2", made[2].legacy_id: "T3"}
        assert store.tasks.by_legacy_ids([]) == {}

    def test_get_many_reads_many_tasks_at_once_and_leaves_out_missing_ones(self, store):
        with store.transaction() as tx:
            for n in range(1, 603):  # more than one batch of 500
                tx.tasks.create(name=f"task {n}")
        store.tasks.update("T7", status="active", assigned_to="lobster-7")
        found = store.tasks.get_many([7, 602, 1, 7, 9999])
        assert sorted(found) == [1, 7, 602]
        assert found[7] == store.tasks.get("T7") and found[7].assigned_to == "lobster-7"
        assert len(store.tasks.get_many(range(1, 700))) == 602
        assert store.tasks.get_many([]) == {}
        with pytest.raises(ValidationError, match="id"):
            store.tasks.get_many(["T1"])

    def test_sync_state_is_kept_per_vault(self, store):
        from lobstore.models import SyncState

        assert store.sync_state.get("/vault/a") == SyncState()
        first = SyncState(last_event_id=5, last_full_at=datetime(2026, 2, 1, tzinfo=timezone.utc),
                          last_cycle={"commit": "abc", "files_changed": 2}, last_cost_event_id=3)
        store.sync_state.save("/vault/a", first)
        assert store.sync_state.get("/vault/a") == first
        later = SyncState(last_event_id=9, last_full_at=None, last_cycle={"error": "push rejected"})
        store.sync_state.save("/vault/a", later)
        store.sync_state.save("/vault/b", first)
        assert store.sync_state.get("/vault/a") == later
        assert store.sync_state.get("/vault/b") == first

    def test_metadata_keeps_keys_without_a_column(self, store):
        assert store.tasks.create(name="plain").metadata == {}
        extra = {"pr_number": 17, "related_task": "task-2026-02-01-a1b2", "nested": {"ok": [1, "ü"]}}
        task = store.tasks.create(name="with extras", metadata=extra)
        assert task.metadata == extra
        again = store.tasks.get(task.ref)
        assert again.metadata == extra
        assert again.to_dict()["metadata"] == extra
        assert store.tasks.get("T1").to_dict()["metadata"] == {}

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({}, "name"),
            ({"name": ""}, "name"),
            ({"name": 5}, "name"),
            ({"name": "x", "colour": "red"}, "colour"),
            ({"name": "x", "priority": "urgent"}, "priority"),
            ({"name": "x", "status": "done"}, "status"),
            ({"name": "x", "repos": "a/b"}, "repos"),
            ({"name": "x", "repos": ["not a repo"]}, "repos"),
            ({"name": "x", "estimate_minutes": -5}, "estimate_minutes"),
            ({"name": "x", "estimate_minutes": True}, "estimate_minutes"),
            ({"name": "x", "requires_qa": "yes"}, "requires_qa"),
            ({"name": "x", "created_at": "yesterday"}, "created_at"),
            ({"name": "x", "type": "Not A Type"}, "type"),
            ({"name": "x", "legacy_id": "T5"}, "legacy_id"),  # T5 would name task 5, not this one
            ({"name": "x", "legacy_id": "42"}, "legacy_id"),
            ({"name": "x", "metadata": ["not", "an", "object"]}, "metadata"),
        ],
    )
    def test_invalid_create_names_the_field_and_writes_nothing(self, store, fields, field):
        with pytest.raises(ValidationError) as info:
            store.tasks.create(**fields)
        assert info.value.field == field
        assert field in str(info.value)
        assert store.tasks.count() == 0
        assert store.events.latest_id() == 0

    # -- the status machine ---------------------------------------------------------------------
    @pytest.mark.parametrize(("current", "target"), ALLOWED)
    def test_every_allowed_transition_works(self, store, current, target):
        task = self.task_in(store, current)
        result = store.tasks.update(task.id, status=target, actor="poller")
        assert result.task.status == target == store.tasks.get(task.id).status
        assert "status" in result.updated
        event = store.events.for_task(task.id)[-1]
        assert event.data["changes"]["status"] == {"old": current, "new": target}
        assert "forced" not in event.data

    @pytest.mark.parametrize(("current", "target"), REFUSED)
    def test_every_refused_transition_names_the_allowed_targets(self, store, current, target):
        task = self.task_in(store, current)
        before = store.events.latest_id()
        with pytest.raises(InvalidTransitionError) as info:
            store.tasks.update(task.id, status=target)
        assert info.value.allowed == sorted(TRANSITIONS[current])
        for allowed in TRANSITIONS[current]:
            assert allowed in str(info.value)
        assert store.tasks.get(task.id) == task
        assert store.events.latest_id() == before

    @pytest.mark.parametrize(("current", "target"), REFUSED)
    def test_force_overrides_and_is_recorded(self, store, current, target):
        task = self.task_in(store, current)
        result = store.tasks.update(task.id, status=target, force=True, actor="admin")
        assert result.task.status == target
        event = store.events.for_task(task.id)[-1]
        assert event.data["forced"] is True
        assert "forced" in event.detail and event.actor == "admin"

    def test_system_active_means_active(self, store):
        task = store.tasks.create(name="x")
        assert store.tasks.update(task.id, status="system-active").task.status == "active"

    def test_entering_statuses_sets_and_clears_timestamps(self, store):
        task = store.tasks.create(name="x")
        active = store.tasks.update(task.id, status="active", assigned_to="lobster-swe-t1").task
        assert active.assigned_at is not None and active.completed_at is None
        requeued = store.tasks.update(task.id, status="queued").task
        assert requeued.assigned_to is None and requeued.assigned_at is None
        assert requeued.queued_at is not None
        failed = store.tasks.update(task.id, status="failed").task
        assert failed.completed_at is not None
        reopened = store.tasks.reopen(task.id, actor="human")
        assert reopened.status == "queued" and reopened.completed_at is None
        assert self.events_of(store, task.id)[-1] == "reopened"

    def test_explicit_timestamps_win_over_implied_ones(self, store):
        task = store.tasks.create(name="x")
        when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        assert store.tasks.update(task.id, status="active", assigned_at=when).task.assigned_at == when

    def test_cancel_records_a_cancelled_event_and_refuses_ended_tasks(self, store):
        task = store.tasks.create(name="x")
        cancelled = store.tasks.cancel(task.ref, actor="lobboss", reason="duplicate")
        assert cancelled.status == "cancelled" and cancelled.completed_at is not None
        event = store.events.for_task(task.id)[-1]
        assert (event.event_type, event.actor) == ("cancelled", "lobboss")
        assert "duplicate" in event.detail
        with pytest.raises(InvalidTransitionError):
            store.tasks.cancel(task.ref)
        done = self.task_in(store, "completed")
        with pytest.raises(InvalidTransitionError, match="terminal") as refused:
            store.tasks.cancel(done.id)
        assert "force" not in str(refused.value)  # cancel takes no force: do not suggest it

    def test_reopen_only_failed_or_cancelled(self, store):
        task = self.task_in(store, "active")
        with pytest.raises(InvalidTransitionError):
            store.tasks.reopen(task.id)
        assert store.tasks.get(task.id).status == "active"

    # -- updates --------------------------------------------------------------------------------
    def test_update_records_old_and_new_values_and_bumps_version(self, store):
        task = store.tasks.create(name="x", tags=["a"])
        result = store.tasks.update(task.id, name="y", tags=["a", "b"], actor="human")
        assert result.updated == ("name", "tags")
        assert result.task.version == 2 and result.task.tags == ("a", "b")
        event = store.events.for_task(task.id)[-1]
        assert event.event_type == "updated"
        assert event.data["changes"]["tags"] == {"old": ["a"], "new": ["a", "b"]}
        assert store.tasks.get(task.id) == result.task

    def test_setting_same_values_writes_nothing(self, store):
        task = store.tasks.create(name="x", priority="high")
        result = store.tasks.update(task.id, name="x", priority="high")
        assert result.updated == () and result.task == task
        assert len(store.events.for_task(task.id)) == 1

    def test_stale_version_is_refused_and_changes_nothing(self, store):
        task = store.tasks.create(name="x")
        store.tasks.update(task.id, name="y", expected_version=1)
        with pytest.raises(ConflictError, match="version 1"):
            store.tasks.update(task.id, name="z", expected_version=1)
        assert store.tasks.get(task.id).name == "y"

    def test_invalid_update_is_refused_whole(self, store):
        task = store.tasks.create(name="x")
        with pytest.raises(ValidationError) as info:
            store.tasks.update(task.id, name="y", repos=[42])
        assert info.value.field == "repos"
        with pytest.raises(ValidationError, match="nothing to update"):
            store.tasks.update(task.id)
        with pytest.raises(ValidationError):
            store.tasks.update(task.id, id=7)
        assert store.tasks.get(task.id) == task

    def test_failed_event_insert_rolls_back_the_update(self, store):
        task = store.tasks.create(name="x")
        break_event_inserts(store, "updated")
        with pytest.raises(LobstoreError):
            store.tasks.update(task.id, status="active", name="changed")
        after = store.tasks.get(task.id)
        assert after == task  # same status, name and version
        assert self.events_of(store, task.id) == ["created"]

    def test_failed_event_insert_rolls_back_the_create(self, store):
        break_event_inserts(store, "created")
        with pytest.raises(LobstoreError):
            store.tasks.create(name="x")
        assert store.tasks.count() == 0

    # -- listing ----------------------------------------------------------------------------------
    def test_list_filters(self, store):
        a = store.tasks.create(name="a", type="swe", repos=["acme/web"], priority="high")
        b = store.tasks.create(name="b", type="research", repos=["acme/api", "acme/web"])
        c = store.tasks.create(name="c", type="qa")
        store.tasks.update(b.id, status="active", assigned_to="lobster-research-t2")
        store.tasks.update(c.id, status="blocked")

        def ids(**filters):
            return [t.id for t in store.tasks.list(**filters)]

        assert ids() == [1, 2, 3]
        assert ids(status="queued") == [a.id]
        assert ids(status=["active", "blocked"]) == [b.id, c.id]
        assert ids(type="research") == [b.id]
        assert ids(type=["swe", "qa"]) == [a.id, c.id]
        assert ids(assigned_to="lobster-research-t2") == [b.id]
        assert ids(priority="high") == [a.id]
        assert ids(repo="acme/web") == [a.id, b.id]
        assert ids(repo="acme/api") == [b.id]
        assert ids(repo="acme/we") == []
        assert ids(status="queued", repo="acme/web", type="swe") == [a.id]
        assert store.tasks.count(status=["active", "blocked"]) == 2

    def test_count_by_groups_matching_tasks(self, store):
        store.tasks.create(name="a", type="swe")
        store.tasks.create(name="b", type="research", assigned_to="lobster-1")
        store.tasks.create(name="c", type="swe", status="active", assigned_to="lobster-1")
        assert store.tasks.count_by("type") == {"research": 1, "swe": 2}
        assert store.tasks.count_by("status") == {"active": 1, "queued": 2}
        assert store.tasks.count_by("assigned_to") == {"": 1, "lobster-1": 2}
        assert store.tasks.count_by("type", status="queued") == {"research": 1, "swe": 1}
        assert store.tasks.count_by("status", type="qa") == {}
        with pytest.raises(ValidationError, match="count_by field must be one of"):
            store.tasks.count_by("name")

    def test_list_by_date_ranges(self, store):
        base = datetime(2026, 2, 1, tzinfo=timezone.utc)
        for day in range(5):
            store.tasks.create(name=f"day {day}", created_at=base + timedelta(days=day))
        got = store.tasks.list(created_since="2026-02-02", created_until=base + timedelta(days=4))
        assert [t.name for t in got] == ["day 1", "day 2", "day 3"]
        store.tasks.update(1, name="touched")
        assert [t.id for t in store.tasks.list(updated_until=base + timedelta(days=10))] == [2, 3, 4, 5]
        assert 1 in [t.id for t in store.tasks.list(updated_since=datetime.now(timezone.utc) - timedelta(minutes=5))]

    def test_keyset_pagination_covers_everything_once(self, store):
        for n in range(23):
            store.tasks.create(name=f"t{n}", status="active" if n % 2 else "queued")
        for order in ("asc", "desc"):
            seen, after = [], None
            while True:
                page = store.tasks.list(status="queued", limit=5, after=after, order=order)
                seen += [t.id for t in page]
                if len(page) < 5:
                    break
                after = page[-1].ref
            expected = [n + 1 for n in range(23) if n % 2 == 0]
            assert seen == (expected if order == "asc" else expected[::-1])

    @pytest.mark.parametrize(
        "filters",
        [{"limit": 0}, {"limit": 5000}, {"status": "nope"}, {"status": []}, {"repo": "x"},
         {"created_since": "soon"}, {"order": "random"}, {"after": "legacy-id"}, {"after": -1},
         {"after": ""}, {"after": "T0"}],
    )
    def test_bad_list_filters_are_validation_errors(self, store, filters):
        with pytest.raises(ValidationError):
            store.tasks.list(**filters)

    @pytest.mark.parametrize("status", [{}, [], ["active"], 1, None, "done"])
    def test_a_status_that_is_not_a_status_name_is_a_validation_error(self, store, status):
        store.tasks.create(name="x")
        with pytest.raises(ValidationError) as caught:
            store.tasks.update("T1", status=status)
        assert caught.value.field == "status"

    def test_a_field_named_task_is_an_unknown_field(self, store):
        # HTTP bodies are passed as keywords: a "task" key must not collide with the argument.
        store.tasks.create(name="x")
        with pytest.raises(ValidationError) as caught:
            store.tasks.update("T1", task="T2")
        assert caught.value.field == "task"
        assert store.tasks.get("T1").version == 1

    # -- events -----------------------------------------------------------------------------------
    def test_client_events_join_the_trail_in_order(self, store):
        task = store.tasks.create(name="x")
        store.events.add("T1", "spawned", actor="lobboss", detail="job lobster-swe-t1")
        store.tasks.update(task.id, status="active")
        event = store.events.add(task.id, "note", data={"pr": 12, "links": ["a"]})
        assert event.data == {"pr": 12, "links": ["a"]}
        assert self.events_of(store, task.id) == ["created", "spawned", "updated", "note"]

    @pytest.mark.parametrize(
        ("event_type", "kwargs", "field"),
        [("created", {}, "event_type"), ("Bad Type", {}, "event_type"), ("note", {"data": [1]}, "data"),
         ("note", {"data": {"x": float("nan")}}, "data"), ("note", {"actor": 5}, "actor")],
    )
    def test_bad_client_events_are_refused(self, store, event_type, kwargs, field):
        store.tasks.create(name="x")
        with pytest.raises(ValidationError) as info:
            store.events.add(1, event_type, **kwargs)
        assert info.value.field == field
        assert self.events_of(store, 1) == ["created"]

    def test_event_on_unknown_task_is_not_found(self, store):
        with pytest.raises(NotFoundError):
            store.events.add("T7", "note")

    def test_feed_follows_every_task_by_event_id(self, store):
        store.tasks.create(name="a")
        store.tasks.create(name="b")
        store.tasks.update(1, status="active")
        feed = store.events.feed(after=0)
        assert [(e.task_ref, e.event_type) for e in feed] == [("T1", "created"), ("T2", "created"), ("T1", "updated")]
        assert [e.id for e in store.events.feed(after=feed[0].id, limit=1)] == [feed[1].id]
        assert store.events.feed(after=store.events.latest_id()) == []

    # -- transactions -----------------------------------------------------------------------------
    def test_transaction_commits_together(self, store):
        with store.transaction() as tx:
            task = tx.tasks.create(name="x")
            tx.tasks.update(task.id, status="active")
            tx.events.add(task.id, "started")
        assert store.tasks.get(1).status == "active"
        assert self.events_of(store, 1) == ["created", "updated", "started"]

    def test_transaction_rolls_back_on_error(self, store):
        store.tasks.create(name="kept")
        with pytest.raises(RuntimeError):
            with store.transaction() as tx:
                tx.tasks.create(name="lost")
                tx.tasks.update(1, name="renamed")
                raise RuntimeError("boom")
        assert [t.name for t in store.tasks.list()] == ["kept"]
        assert store.events.latest_id() == 1

    def test_nested_store_write_inside_transaction_is_a_clear_error(self, store):
        with pytest.raises(LobstoreError, match="use tx.tasks"):
            with store.transaction():
                store.tasks.create(name="x")

    def test_concurrent_creates_get_distinct_ids_and_events(self, store):
        threads, per_thread = 8, 25
        assert create_in_threads(store, threads, per_thread) == []
        ids = [t.id for t in store.tasks.list(limit=1000)]
        assert len(ids) == len(set(ids)) == threads * per_thread
        assert len(store.events.feed(limit=1000)) == threads * per_thread

    def test_concurrent_updates_of_one_task_lose_nothing(self, store):
        task = store.tasks.create(name="x", tags=[])
        errors = in_threads(10, lambda n: store.tasks.update(task.id, name=f"name {n}", actor=f"w{n}"))
        assert errors == []
        assert store.tasks.get(task.id).version == 11
        assert len(store.events.for_task(task.id)) == 11


def table_names(store) -> set[str]:
    return set(sa.inspect(store.backend.engine).get_table_names())
