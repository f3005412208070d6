"""The lifecycle clock in the library: claims, leases, the sweep's rules (with a fake clock),
and exactly-once moves under concurrent sweeps and restarts. Every test runs on each backend."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from lobstore import open_store
from lobstore.errors import ConfigurationError, ConflictError, ValidationError
from lobstore.lifecycle.settings import LifecycleSettings
from lobstore.lifecycle.sweep import sweep


class FakeClock:
    """The lifecycle clock of a store, moved by hand: ``clock.at(minutes=31)``."""

    def __init__(self, *stores) -> None:
        self.start = stores[0].tasks.now()
        self.now = self.start
        for store in stores:
            store.set_clock(lambda: self.now)

    def at(self, minutes: float = 0, seconds: float = 0) -> None:
        self.now = self.start + timedelta(minutes=minutes, seconds=seconds)


def events(store, ref, *types):
    return [e for e in store.events.for_task(ref) if not types or e.event_type in types]


def investigations(store, ref):
    return [t for t in store.tasks.list(limit=1000) if t.metadata.get("investigates") == ref]


# -- claims ------------------------------------------------------------------------------------
def test_a_claim_takes_the_best_queued_task_priority_then_oldest(store):
    clock = FakeClock(store)
    low = store.tasks.create(name="low", priority="low")
    old = store.tasks.create(name="normal, older", priority="normal")
    high = store.tasks.create(name="high", priority="high")
    new = store.tasks.create(name="normal, newer", priority="normal")
    store.tasks.create(name="blocked critical", priority="critical", status="blocked")
    qa = store.tasks.create(name="critical qa", priority="critical", type="qa")

    got = [store.tasks.claim(lobster=f"lobster-{n}", types=["swe"]) for n in range(5)]
    assert [t.ref if t else None for t in got] == [high.ref, old.ref, new.ref, low.ref, None]
    first = got[0]
    assert (first.status, first.assigned_to, first.attempts) == ("active", "lobster-0", 1)
    assert first.assigned_at == clock.now and first.lease_expires_at == clock.now + timedelta(seconds=300)
    assert store.tasks.get(high.ref) == first
    claimed = events(store, high.ref, "claimed")
    assert len(claimed) == 1 and claimed[0].actor == "lobster-0" and "lobster-0" in claimed[0].detail
    assert store.tasks.claim(lobster="lobster-qa", lease_seconds=60, actor="lobboss").ref == qa.ref  # any type
    assert [e.actor for e in events(store, qa.ref, "claimed")] == ["lobboss"]  # who asked, when given
    assert store.tasks.claim(lobster="lobster-x") is None


@pytest.mark.parametrize(("fields", "field"), [
    ({}, "lobster"),
    ({"lobster": ""}, "lobster"),
    ({"lobster": "l", "lease_seconds": 0}, "lease_seconds"),
    ({"lobster": "l", "lease_seconds": 86_401}, "lease_seconds"),
    ({"lobster": "l", "types": "swe"}, "types"),
    ({"lobster": "l", "colour": "red"}, "colour"),
])
def test_a_bad_claim_is_refused_and_changes_nothing(store, fields, field):
    task = store.tasks.create(name="waiting")
    with pytest.raises(ValidationError) as caught:
        store.tasks.claim(**fields)
    assert caught.value.field == field, caught.value
    assert store.tasks.get(task.ref).status == "queued"
    assert [e.event_type for e in events(store, task.ref)] == ["created"]


# -- leases --------------------------------------------------------------------------------------
def test_a_heartbeat_extends_the_lease_and_tells_a_lobster_that_lost_its_task(store):
    clock = FakeClock(store)
    store.tasks.create(name="work")
    task = store.tasks.claim(lobster="l1", lease_seconds=60)
    clock.at(seconds=50)
    beaten = store.tasks.heartbeat(task.ref, lobster="l1", lease_seconds=120)
    assert beaten.lease_expires_at == clock.now + timedelta(seconds=120)
    after = store.tasks.get(task.ref)
    assert after.lease_expires_at == beaten.lease_expires_at
    assert after.version == task.version  # a lease is no edit: the lobster's expected_version stays good
    assert store.tasks.heartbeat(task.ref).lease_expires_at == clock.now + timedelta(seconds=300)

    with pytest.raises(ConflictError, match="assigned to 'l1', not 'l2'"):
        store.tasks.heartbeat(task.ref, lobster="l2")
    store.tasks.update(task.ref, status="completed", actor="l1")
    with pytest.raises(ConflictError, match="completed, not active"):
        store.tasks.heartbeat(task.ref, lobster="l1")
    assert store.tasks.get(task.ref).lease_expires_at is None
    with pytest.raises(ValidationError):
        store.tasks.heartbeat(task.ref, lease_seconds=-1)


def test_any_write_by_the_assignee_extends_its_lease_and_others_writes_do_not(store):
    clock = FakeClock(store)
    store.tasks.create(name="work")
    task = store.tasks.claim(lobster="l1", lease_seconds=60)
    clock.at(seconds=40)
    store.events.add(task.ref, "note", detail="from someone else", actor="lobboss")
    assert store.tasks.get(task.ref).lease_expires_at == task.lease_expires_at
    store.events.add(task.ref, "note", detail="still working", actor="l1")
    assert store.tasks.get(task.ref).lease_expires_at == clock.now + timedelta(seconds=300)
    clock.at(minutes=4)
    updated = store.tasks.update(task.ref, workflow="tests pass", actor="l1").task
    assert updated.lease_expires_at == clock.now + timedelta(seconds=300)
    assert store.tasks.get(task.ref).lease_expires_at == updated.lease_expires_at
    clock.at(minutes=8)
    unchanged = store.tasks.update(task.ref, status="active", actor="l1")  # changes nothing, still a sign of life
    assert unchanged.updated == () and unchanged.task.version == updated.version
    assert store.tasks.get(task.ref).lease_expires_at == clock.now + timedelta(seconds=300)


def test_a_task_patched_to_active_the_old_way_gets_a_lease_and_is_swept(store):
    clock = FakeClock(store)
    task = store.tasks.create(name="old way")
    active = store.tasks.update(task.ref, status="active", assigned_to="lobster-swe-1", actor="lobboss").task
    assert active.lease_expires_at == clock.now + timedelta(seconds=300) and active.attempts == 1
    assert active.assigned_at == clock.now
    clock.at(minutes=4, seconds=59)
    assert sweep(store) == []
    clock.at(minutes=5)
    [move] = sweep(store)
    assert (move.task_id, move.action) == (task.ref, "requeue")
    again = store.tasks.get(task.ref)
    assert (again.status, again.assigned_to, again.assigned_at, again.lease_expires_at) == ("queued", None, None, None)


# -- the sweep -----------------------------------------------------------------------------------
def test_a_lapsed_lease_is_requeued_and_claimed_again(store):
    clock = FakeClock(store)
    store.tasks.create(name="work")
    first = store.tasks.claim(lobster="lobster-a", lease_seconds=60)
    clock.at(minutes=1)
    [move] = sweep(store)
    assert (move.action, move.event_type) == ("requeue", "requeued")
    [requeued] = events(store, first.ref, "requeued")
    assert requeued.actor == "lobstore-sweep" and "lobster-a" in requeued.detail and "attempt 1 of 3" in requeued.detail
    assert requeued.data["changes"]["status"] == {"old": "active", "new": "queued"}
    second = store.tasks.claim(lobster="lobster-b")
    assert (second.ref, second.attempts, second.assigned_to) == (first.ref, 2, "lobster-b")
    assert sweep(store) == []  # the new lease holds


def test_heartbeats_keep_a_task_for_as_long_as_they_come(store):
    clock = FakeClock(store)
    store.tasks.create(name="long", estimate_minutes=600)
    task = store.tasks.claim(lobster="l1", lease_seconds=60)
    for second in range(50, 3600, 50):
        clock.at(seconds=second)
        store.tasks.heartbeat(task.ref, lobster="l1", lease_seconds=60)
        assert sweep(store) == []
    clock.at(minutes=61, seconds=51)  # the heartbeats stop: the lease lapses a minute later
    [move] = sweep(store)
    assert move.action == "fail" and "assigned 62 min ago" in move.reason


def test_an_orphan_out_of_attempts_fails_even_within_the_window(store):
    clock = FakeClock(store)
    task = store.tasks.create(name="flaky", max_attempts=2)
    for attempt, minute in ((1, 1), (2, 2)):
        store.tasks.claim(lobster=f"l{attempt}", lease_seconds=30)
        clock.at(minutes=minute)
        [move] = sweep(store)
    assert move.action == "fail" and "attempt 2 of 2" in move.reason
    assert store.tasks.get(task.ref).status == "failed" and len(investigations(store, task.ref)) == 1


def test_the_31st_minute_fails_with_exactly_one_investigation_under_two_sweeps_and_a_restart(db_url):
    stores = [open_store(db_url), open_store(db_url)]
    clock = FakeClock(*stores)
    requeue = stores[0].tasks.create(name="dies early")
    orphan = stores[0].tasks.create(name="dies late", type="research")
    stores[0].tasks.claim(lobster="lobster-early", lease_seconds=60)
    stores[0].tasks.claim(lobster="lobster-late", lease_seconds=1800)  # its lease ends at minute 30

    clock.at(minutes=29, seconds=59)
    assert [(m.task_id, m.action) for m in sweep(stores[0])] == [(requeue.ref, "requeue")]
    clock.at(minutes=30, seconds=30)
    barrier = threading.Barrier(2)
    results: list = [None, None]

    def run(index: int) -> None:
        barrier.wait()
        results[index] = sweep(stores[index])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    moves = (results[0] or []) + (results[1] or [])
    assert [(m.task_id, m.action) for m in moves] == [(orphan.ref, "fail")]
    for store in stores:
        store.close()

    restarted = open_store(db_url)  # a restart forgets nothing: the state is the database's
    restarted.set_clock(lambda: clock.now + timedelta(minutes=1))
    assert sweep(restarted) == []
    failed = restarted.tasks.get(orphan.ref)
    [investigation] = investigations(restarted, orphan.ref)
    assert failed.status == "failed" and failed.metadata["investigation"] == investigation.ref
    assert (investigation.type, investigation.priority, investigation.status) == ("system", "high", "queued")
    assert investigation.name == f"Investigate failed task: {orphan.ref}"
    assert orphan.ref in investigation.description and "lobster-late" in investigation.description
    [orphaned] = events(restarted, orphan.ref, "orphaned")
    assert "lobster-late" in orphaned.detail and "assigned 30 min ago" in orphaned.detail
    restarted.close()


@pytest.mark.parametrize(("estimate", "warn", "fail"), [(20, 35, 40), (None, 45, 90), (60, 75, 120)])
def test_timeouts_warn_once_and_fail_at_the_thresholds(store, estimate, warn, fail):
    clock = FakeClock(store)
    task = store.tasks.create(name="timed", estimate_minutes=estimate)
    store.tasks.claim(lobster="l1", lease_seconds=86_400)
    clock.at(minutes=warn, seconds=-1)
    assert sweep(store) == []
    clock.at(minutes=warn)
    [move] = sweep(store)
    assert (move.action, move.event_type) == ("warn", "timeout_warning")
    for minute in (warn, warn + 1, fail - 0.02):
        clock.at(minutes=minute)
        assert sweep(store) == []
    [warning] = events(store, task.ref, "timeout_warning")
    assert f"{warn} min" in warning.detail and f"limit is {fail} min" in warning.detail
    assert store.tasks.get(task.ref).timeout_warned_at == clock.start + timedelta(minutes=warn)
    clock.at(minutes=fail)
    [move] = sweep(store)
    assert (move.action, move.event_type) == ("fail", "timeout_failure")
    assert store.tasks.get(task.ref).status == "failed"
    assert len(events(store, task.ref, "timeout_failure")) == 1 and len(investigations(store, task.ref)) == 1
    clock.at(minutes=fail * 3)
    assert sweep(store) == [] and len(events(store, task.ref, "timeout_warning")) == 1


def test_a_new_attempt_is_warned_again(store):
    clock = FakeClock(store)
    task = store.tasks.create(name="timed", estimate_minutes=30)  # warned at 45, failed at 60
    store.tasks.claim(lobster="l1", lease_seconds=86_400)
    clock.at(minutes=45)
    assert [m.action for m in sweep(store)] == ["warn"]
    store.tasks.update(task.ref, status="queued", actor="lobboss")
    assert store.tasks.get(task.ref).timeout_warned_at is None
    store.tasks.claim(lobster="l2", lease_seconds=86_400)
    clock.at(minutes=90)
    assert [m.action for m in sweep(store)] == ["warn"]
    assert len(events(store, task.ref, "timeout_warning")) == 2


def test_a_task_in_review_never_times_out(store):
    clock = FakeClock(store)
    task = store.tasks.create(name="reviewed", estimate_minutes=10)
    store.tasks.claim(lobster="l1", lease_seconds=60)
    store.tasks.update(task.ref, review_pr="https://github.com/minsley/lobmob/pull/7", actor="l1")
    for minute in (2, 30, 600, 10_000):
        clock.at(minutes=minute)
        assert sweep(store) == []
    assert store.tasks.get(task.ref).status == "active"
    assert events(store, task.ref, "timeout_warning", "timeout_failure", "requeued", "orphaned") == []
    store.tasks.update(task.ref, review_pr=None, actor="lobboss")  # the PR was closed unmerged
    assert [m.action for m in sweep(store)] == ["fail"]


def test_the_sweep_leaves_other_tasks_alone(store):
    clock = FakeClock(store)
    queued = store.tasks.create(name="queued")
    blocked = store.tasks.create(name="blocked", status="blocked")
    done = store.tasks.create(name="done", priority="high")  # claimed first
    store.tasks.claim(lobster="l1", lease_seconds=60)
    store.tasks.update(done.ref, status="completed", actor="l1")
    clock.at(minutes=500)
    assert sweep(store) == []
    assert [store.tasks.get(t.ref).version for t in (queued, blocked)] == [1, 1]


# -- settings ------------------------------------------------------------------------------------
def test_thresholds_are_configuration_with_upstreams_defaults(store):
    defaults = LifecycleSettings()
    assert (defaults.thresholds(None), defaults.thresholds(30)) == ((45, 90), (45, 60))
    assert (defaults.requeue_window_minutes, defaults.lease_seconds) == (30, 300)
    settings = LifecycleSettings.from_env({"LOBSTORE_LEASE_SECONDS": "120", "LOBSTORE_WARN_MINUTES": "10",
                                           "LOBSTORE_FAIL_MINUTES": "20", "LOBSTORE_REQUEUE_WINDOW_MINUTES": "5"})
    assert (settings.lease_seconds, settings.thresholds(None), settings.requeue_window_minutes) == (120, (10, 20), 5)
    store.set_lifecycle(settings)
    clock = FakeClock(store)
    store.tasks.create(name="short fuse")
    task = store.tasks.claim(lobster="l1")
    assert task.lease_expires_at == clock.now + timedelta(seconds=120)
    clock.at(minutes=10)
    store.tasks.heartbeat(task.ref)
    assert [m.action for m in sweep(store)] == ["warn"]
    clock.at(minutes=20)
    assert [m.action for m in sweep(store)] == ["fail"]


@pytest.mark.parametrize(("environ", "problem"), [
    ({"LOBSTORE_LEASE_SECONDS": "soon"}, "LOBSTORE_LEASE_SECONDS must be a whole number"),
    ({"LOBSTORE_WARN_MINUTES": "0"}, "warn_minutes must be above 0"),
    ({"LOBSTORE_LEASE_SECONDS": "100000"}, "at most max_lease_seconds"),
    ({"LOBSTORE_INVESTIGATION_PRIORITY": "urgent"}, "investigation_priority must be one of"),
    ({"LOBSTORE_INVESTIGATION_TYPE": "Lobsigliere!"}, "investigation_type must be a task type"),
])
def test_a_bad_setting_says_which_and_why(environ, problem):
    with pytest.raises(ConfigurationError, match=problem):
        LifecycleSettings.from_env(environ)


def test_the_vault_shows_attempts_the_lease_and_the_review(store):
    from lobstore.sync.render import task_keys

    clock = FakeClock(store)
    store.tasks.create(name="work")
    task = store.tasks.claim(lobster="l1", lease_seconds=600)
    store.tasks.update(task.ref, review_pr="https://github.com/minsley/lobmob/pull/9", actor="l1")
    keys = task_keys(store.tasks.get(task.ref))
    assert keys["attempts"] == 1 and keys["lease_expires_at"] == clock.now + timedelta(seconds=600)
    assert keys["review_pr"] == "https://github.com/minsley/lobmob/pull/9"


def test_the_readme_example_runs_as_written():
    import contextlib
    import io
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "store.tasks.claim" in b]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README lifecycle example", "exec"), {})
    assert out.getvalue().splitlines() == ["T1 active 1", "[('T1', 'requeue')]", "2"]


def test_the_database_clock_decides_not_the_writers(store, monkeypatch):
    from datetime import datetime, timezone

    import lobstore.repositories.tasks as task_module

    real = datetime.now(timezone.utc)
    skewed = real + timedelta(hours=3)  # a writer whose clock runs three hours ahead
    monkeypatch.setattr(task_module, "utcnow", lambda: skewed)
    old_way = store.tasks.create(name="patched")
    store.tasks.create(name="claimed")
    active = store.tasks.update(old_way.ref, status="active", assigned_to="l1", actor="lobboss").task
    claimed = store.tasks.claim(lobster="l2")
    for task in (active, claimed):
        assert abs((task.assigned_at - real).total_seconds()) < 60, task.assigned_at
        assert task.lease_expires_at == task.assigned_at + timedelta(seconds=300)
    assert sweep(store) == []  # three hours "later" by the writer's clock changes nothing
